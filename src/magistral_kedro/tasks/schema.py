"""The common problem schema, shared by the embedded generators and by real data sets.

One row is one problem. Math problems carry an exact ``answer``; code problems carry stdin/stdout
``tests`` (and, when known, reference ``solutions`` per programming language). ``reference`` is an
optional worked completion in the Magistral format (``<think>...</think>`` then a summary), which is
what supervised fine-tuning learns from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: ISO 639-1 codes of the languages the embedded default speaks (docs/recipe.md, section 2).
LANGUAGES: tuple[str, ...] = ("en", "fr", "es", "it", "de", "zh", "ru")


class TestCase(BaseModel):
    """One stdin -> stdout test of a code problem."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str
    output: str


class Problem(BaseModel):
    """A verifiable problem: the unit of every data set in the project."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    kind: Literal["math", "code"]
    language: str = Field(description="ISO 639-1 code of the prompt's language, e.g. 'en'.")
    difficulty: int = Field(ge=0, description="0 = unknown; higher is harder.")
    prompt: str = Field(min_length=1)
    answer: str | None = None
    tests: list[TestCase] | None = None
    solutions: dict[str, str] | None = None
    reference: str | None = None
    source: str = Field(min_length=1)
    # Provenance and extras, all optional: the row of the source file the problem came from, the
    # id of the problem it was translated from, and a Python program that prints one random test
    # input for the seed it reads on stdin (code problems; used to add tests where too few).
    source_row: int | None = None
    translated_from: str | None = None
    input_generator: str | None = None

    @field_validator("language")
    @classmethod
    def _iso_code(cls, value: str) -> str:
        if len(value) != 2 or not value.isalpha() or not value.islower():
            raise ValueError(f"language must be an ISO 639-1 code like 'en', got {value!r}")
        return value

    @model_validator(mode="after")
    def _verifiable(self) -> Problem:
        if self.kind == "math" and not (self.answer and self.answer.strip()):
            raise ValueError("a math problem needs a non-empty 'answer'")
        if self.kind == "code" and not self.tests:
            raise ValueError("a code problem needs at least one test in 'tests'")
        return self


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    """Turn what pandas gives back (NaN for missing, numpy arrays for lists) into plain values."""
    out: dict[str, Any] = {}
    for key, cell in row.items():
        if isinstance(cell, float) and math.isnan(cell):
            continue  # a missing cell
        value = cell.tolist() if hasattr(cell, "tolist") else cell
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
        out[str(key)] = value
    return out


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "row"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def validate_rows(rows: Iterable[Mapping[str, Any]]) -> tuple[list[Problem], list[dict[str, Any]]]:
    """Validate raw rows against :class:`Problem`.

    Returns the valid problems and one reject per invalid row: the row as given plus
    ``reject_reason`` (which field is wrong and why) and ``row_index`` (its position in the input),
    so nothing is dropped silently.
    """
    valid: list[Problem] = []
    rejects: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        cleaned = _clean(row)
        try:
            valid.append(Problem.model_validate(cleaned))
        except ValidationError as error:
            rejects.append({**cleaned, "row_index": index, "reject_reason": _describe(error)})
    return valid, rejects
