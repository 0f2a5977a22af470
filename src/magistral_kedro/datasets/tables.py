"""A table on disk that is also an MLflow table of the run (``mlflow.log_table``): the MLflow UI
shows it as a table, next to the run's metrics (the run's Artifacts; the experiment's Evaluation
view compares runs' tables), and ``mlflow.load_table`` reads it back::

    eval_samples:
      type: magistral_kedro.datasets.MlflowTableDataset
      artifact_file: eval/eval_samples.json
      dataset:
        type: pandas.JSONDataset
        filepath: data/07_model_output/eval_samples.jsonl
        load_args: {lines: true, orient: records}
        save_args: {lines: true, orient: records}

Saving writes the wrapped dataset, then logs the rows to the active MLflow run (none: the file
alone); loading reads the wrapped dataset. MLflow appends to a table logged twice in one run.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from kedro.io import AbstractDataset


class MlflowTableDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A pandas dataset (``dataset``: its catalog entry) mirrored as the MLflow table
    ``artifact_file`` (``.json``), of at most ``max_rows`` rows (null: all)."""

    def __init__(
        self,
        dataset: dict[str, Any],
        artifact_file: str,
        max_rows: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._dataset = AbstractDataset.from_config("table", dict(dataset))
        self._artifact_file = artifact_file
        self._max_rows = max_rows
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        """The wrapped dataset's rows."""
        data: pd.DataFrame = self._dataset.load()
        return data

    def save(self, data: pd.DataFrame) -> None:
        """Write the rows, and log them to the active MLflow run as a table."""
        self._dataset.save(data)
        active = mlflow.active_run()
        if active is None or data.empty:
            return
        rows = data if self._max_rows is None else data.head(self._max_rows)
        mlflow.MlflowClient().log_table(active.info.run_id, rows, self._artifact_file)

    def _exists(self) -> bool:
        return bool(self._dataset.exists())

    def _describe(self) -> dict[str, Any]:
        return {
            "dataset": self._dataset._describe(),
            "artifact_file": self._artifact_file,
            "max_rows": self._max_rows,
        }
