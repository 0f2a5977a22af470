"""Problem tables: the DataFrame form of :class:`Problem` lists that the catalog stores."""

from __future__ import annotations

from typing import Any, cast

import pandas as pd

from magistral_kedro.tasks.schema import Problem, validate_rows

COLUMNS = list(Problem.model_fields)


def problems_to_frame(problems: list[Problem]) -> pd.DataFrame:
    """One row per problem, columns in schema order (JSON-friendly: tests as lists of dicts)."""
    return pd.DataFrame([p.model_dump() for p in problems], columns=COLUMNS)


def frame_to_problems(frame: pd.DataFrame) -> list[Problem]:
    """Rows of a curated table back to :class:`Problem` objects (they were validated already)."""
    rows = cast("list[dict[str, Any]]", frame.to_dict(orient="records"))
    problems, rejects = validate_rows(rows)
    if rejects:
        raise ValueError(
            f"{len(rejects)} row(s) of a curated table no longer match the schema; first: "
            f"{rejects[0]['reject_reason']}"
        )
    return problems
