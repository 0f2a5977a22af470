"""Where the training loops report: one protocol, MLflow in the pipelines, a list in tests."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Tracker(Protocol):
    """Receives a training run's metrics and checkpoints."""

    def attach(self, run_id: str | None) -> str | None:
        """Continue ``run_id`` (a resumed run's) or the current run; returns the run used."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """One step's metrics."""

    def log_checkpoint(self, path: Path, step: int) -> None:
        """A model + tokenizer directory."""
