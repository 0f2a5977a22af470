"""Problem tables: the DataFrame form of :class:`Problem` lists that the catalog stores."""

from __future__ import annotations

import pandas as pd

from magistral_kedro.tasks.schema import Problem, validate_rows

COLUMNS = list(Problem.model_fields)


def problems_to_frame(problems: list[Problem]) -> pd.DataFrame:
    """One row per problem, columns in schema order (JSON-friendly: tests as lists of dicts)."""
    return pd.DataFrame([p.model_dump() for p in problems], columns=COLUMNS)


def frame_to_problems(frame: pd.DataFrame) -> list[Problem]:
    """Rows of a curated table back to :class:`Problem` objects (they were validated already)."""
    problems, rejects = validate_rows(frame.to_dict(orient="records"))
    if rejects:
        raise ValueError(
            f"{len(rejects)} row(s) of a curated table no longer match the schema; first: "
            f"{rejects[0]['reject_reason']}"
        )
    return problems
