"""Problem sets in their own shapes -> rows of the problem schema, by a per-source column mapping.

A MATH-style set (``problem`` / ``solution``, the answer the last ``\\boxed{}`` of the solution), a
GSM8K-style set (the answer after ``####``) and a code set (statement, tests, accepted solutions)
differ only in their mapping. A row that cannot be mapped becomes a reject with the reason; rows are
never dropped silently.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from magistral_kedro.config import config
from magistral_kedro.rewards.answers import extract_boxed

#: The key a source reader puts in a row it could not read (e.g. a line that is not JSON).
UNREADABLE = "__unreadable__"


@config
class AnswerColumn:
    """Where a math answer is: a column as is, the last ``\\boxed{}`` in it, or after ``####``."""

    column: str
    extract: Literal["as_is", "last_boxed", "after_hashes"] = "as_is"


@config
class TestsColumn:
    """Where the tests are: a list of ``{input_key: ..., output_key: ...}`` records (``records``),
    or one ``{"inputs": [...], "outputs": [...]}`` object (``io_lists``, APPS style); either may be
    stored as a JSON string."""

    __test__ = False  # not a pytest class
    column: str
    layout: Literal["records", "io_lists"] = "records"
    input_key: str = "input"
    output_key: str = "output"


@config
class SourceMapping:
    """How one source's columns become problem fields (``curation.sources.<name>``)."""

    kind: Literal["math", "code"]
    prompt: str = Field(description="column holding the problem statement")
    answer: AnswerColumn | None = None
    tests: TestsColumn | None = None
    solutions: str | None = Field(
        default=None, description="column: a list of programs, or {language: program}"
    )
    solutions_language: str = "python"
    input_generator: str | None = None
    id: str | None = Field(default=None, description="column; default '<source>-<row>'")
    difficulty: str | None = Field(default=None, description="column: 3, '3' or 'Level 3'")
    reference: str | None = None
    language: Annotated[str, Field(min_length=2, max_length=2)] = "en"


def _answer(cell: Any, how: AnswerColumn) -> str | None:
    text = "" if cell is None else str(cell)
    if how.extract == "last_boxed":
        return extract_boxed(text)
    if how.extract == "after_hashes":
        _, hashes, after = text.rpartition("####")
        return after.strip() if hashes else None
    return text.strip() or None


def _json(cell: Any) -> Any:
    return json.loads(cell) if isinstance(cell, str) else cell


def _tests(cell: Any, how: TestsColumn) -> list[dict[str, str]]:
    value = _json(cell)
    if how.layout == "io_lists":
        inputs, outputs = value["inputs"], value["outputs"]
        if len(inputs) != len(outputs):
            raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
        pairs = list(zip(inputs, outputs, strict=True))
    else:
        pairs = [(item[how.input_key], item[how.output_key]) for item in value]
    return [{"input": str(i), "output": str(o)} for i, o in pairs]


def _solutions(cell: Any, language: str) -> dict[str, str] | None:
    value = _json(cell)
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    programs = [str(v) for v in value]
    if not programs:
        return None
    # The schema holds {name: program}: several Python programs become python, python_2, ...
    return {language if i == 0 else f"{language}_{i + 1}": p for i, p in enumerate(programs)}


def _difficulty(cell: Any) -> int:
    match = re.search(r"\d+", str(cell)) if cell is not None else None
    return int(match[0]) if match else 0


def _missing(cell: Any) -> bool:
    return cell is None or (isinstance(cell, float) and math.isnan(cell))  # NaN from pandas


def map_row(source: str, index: int, row: Mapping[str, Any], mapping: SourceMapping) -> dict:
    """One source row as a problem-schema row; raises ValueError naming what is wrong, its
    message starting with a reason code (``unreadable``, ``missing_column``, ``no_answer``,
    ``unreadable_tests``)."""
    if UNREADABLE in row:
        raise ValueError(f"unreadable: {row[UNREADABLE]}")
    wanted = [mapping.prompt, mapping.id, mapping.difficulty, mapping.reference]
    wanted += [mapping.input_generator]
    wanted += [mapping.answer.column if mapping.answer else None]
    wanted += [mapping.tests.column if mapping.tests else None, mapping.solutions]
    missing = [c for c in wanted if c is not None and c not in row]
    if missing:
        raise ValueError(f"missing_column: no column {missing} (columns: {sorted(row)})")
    out: dict[str, Any] = {
        "id": str(row[mapping.id]) if mapping.id else f"{source}-{index:06d}",
        "kind": mapping.kind,
        "language": mapping.language,
        "difficulty": _difficulty(row[mapping.difficulty]) if mapping.difficulty else 0,
        "prompt": row[mapping.prompt],
        "source": source,
        "source_row": index,
    }
    if mapping.answer:
        answer = _answer(row[mapping.answer.column], mapping.answer)
        if answer is None:
            raise ValueError(
                f"no_answer: none in column {mapping.answer.column!r} "
                f"(extract: {mapping.answer.extract})"
            )
        out["answer"] = answer
    try:
        if mapping.tests and not _missing(row[mapping.tests.column]):
            out["tests"] = _tests(row[mapping.tests.column], mapping.tests)
        if mapping.solutions and not _missing(row[mapping.solutions]):
            out["solutions"] = _solutions(row[mapping.solutions], mapping.solutions_language)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"unreadable_tests: tests or solutions: {error!r}") from error
    for field in ("reference", "input_generator"):
        column = getattr(mapping, field)
        if column and not _missing(row[column]):
            out[field] = str(row[column])
    return out


def require_mappings(names: Iterable[str], mappings: Mapping[str, SourceMapping], key: str) -> None:
    """Raise ValueError naming every source in ``names`` that ``mappings`` (the parameters at
    ``key``) has no column mapping for."""
    unmapped = sorted(set(names) - set(mappings))
    if unmapped:
        raise ValueError(
            f"source(s) {unmapped} have no column mapping: add {key}.<name> "
            f"(mapped: {sorted(mappings)})"
        )


def map_source(
    source: str, rows: Sequence[Mapping[str, Any]], mapping: SourceMapping
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All rows of one source: (problem-schema rows, rejects with ``source_row``, the ``raw`` row
    as JSON and ``reject_reason``)."""
    mapped, rejects = [], []
    for index, row in enumerate(rows):
        try:
            mapped.append(map_row(source, index, row, mapping))
        except ValueError as error:
            kept = {k: v for k, v in row.items() if k != UNREADABLE}
            rejects.append(
                {
                    "source": source,
                    "kind": mapping.kind,
                    "source_row": index,
                    "raw": json.dumps(kept, default=str)[:2000],
                    "reject_reason": str(error),
                }
            )
    return mapped, rejects
