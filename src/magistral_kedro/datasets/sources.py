"""Problem sets from their own files, several in one catalog entry, read row by row.

::

    problem_sources:
      type: magistral_kedro.datasets.ProblemSourcesDataset
      sources:
        math500: data/01_raw/math500.jsonl
        my_code: data/01_raw/my_code.parquet

Loads ``{source name: [row dict, ...]}`` for ``curation.sources`` to map. JSON Lines are read line
by line: a line that is not a JSON object becomes a row holding only the reason under
:data:`~magistral_kedro.curation.sources.UNREADABLE`, so one bad line is a counted reject, not a
crashed run. Parquet files are read whole with pandas.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from magistral_kedro.curation.sources import UNREADABLE

logger = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".parquet")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of one JSON Lines or Parquet file (unreadable JSON lines kept with the reason)."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_dict(orient="records")  # type: ignore[return-value]
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                row = {UNREADABLE: f"line {number}: not JSON ({error.msg})"}
            if not isinstance(row, dict):
                row = {UNREADABLE: f"line {number}: a JSON {type(row).__name__}, not an object"}
            rows.append(row)
    return rows


class ProblemSourcesDataset(AbstractDataset[Any, dict[str, list[dict[str, Any]]]]):
    """Read-only: every source file named in ``sources`` (JSON Lines or Parquet). A missing file
    fails the load, naming it; with ``optional``, it is left out with a warning instead (a
    public benchmark that one machine has and another does not)."""

    def __init__(
        self,
        sources: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        optional: bool = False,
    ) -> None:
        self.sources = {name: Path(path) for name, path in (sources or {}).items()}
        self.metadata = metadata
        self.optional = optional
        for name, path in self.sources.items():
            if path.suffix not in SUFFIXES:
                raise DatasetError(f"problem source {name!r}: {path} is not one of {SUFFIXES}")

    def load(self) -> dict[str, list[dict[str, Any]]]:
        missing = {name: str(path) for name, path in self.sources.items() if not path.is_file()}
        if missing and not self.optional:
            raise DatasetError(f"problem source file(s) not found: {missing}")
        if missing:
            logger.warning("problem source file(s) not found, left out: %s", missing)
        return {name: read_rows(path) for name, path in self.sources.items() if name not in missing}

    def save(self, data: Any) -> None:
        raise DatasetError("ProblemSourcesDataset is read-only: it names files you provide")

    def _describe(self) -> dict[str, Any]:
        return {"sources": {name: str(path) for name, path in self.sources.items()}}
