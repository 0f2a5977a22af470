"""Where training reports: the :class:`Tracker` seam the loops log through, and its MLflow side.

kedro-mlflow opens one MLflow run per ``kedro run``; :class:`MlflowTracker` logs into it (or, for
a resumed training, into the run that training started in). When no run is active (a node function
called from a test or a notebook), it logs nothing. The training library knows only the protocol
(tests use a list); nothing here knows Kedro but :func:`as_metrics_dataset`, the node-output form
kedro-mlflow's metrics dataset takes.

A resumed training logs the steps after its checkpoint again, so a step may have two values in
a run's history: every reader takes the last one logged (:func:`last_per_step`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import mlflow
from pydantic import BaseModel

logger = logging.getLogger(__name__)
_ILLEGAL = re.compile(r"[^A-Za-z0-9_/.\- ]")


def metric_key(name: str) -> str:
    """An MLflow-legal metric name: characters outside ``[A-Za-z0-9_/.- ]`` become ``_``."""
    return _ILLEGAL.sub("_", name)


def plain(value: Any) -> Any:
    """Typed parameters (pydantic models, config dataclasses) as plain dicts; others unchanged."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def as_metrics_dataset(metrics: Mapping[str, float], step: int = 0) -> dict[str, dict[str, Any]]:
    """Node output for kedro-mlflow's ``MlflowMetricsHistoryDataset``: {key: {value, step}}."""
    return {
        metric_key(k): {"value": float(v), "step": step}
        for k, v in metrics.items()
        if math.isfinite(float(v))
    }


def last_per_step(history: Iterable[mlflow.entities.Metric]) -> dict[int, float]:
    """``{step: value}`` of one metric's history in step order, a step logged twice (a resumed
    run logs the steps after its checkpoint again) taking the value logged last: the newest
    timestamp, and of equal timestamps the later in the history."""
    ordered = sorted(enumerate(history), key=lambda pair: (pair[1].timestamp, pair[0]))
    last = {metric.step: metric.value for _, metric in ordered}
    return dict(sorted(last.items()))


def artifact_steps(checkpoint_steps: Iterable[int], keep: int | None) -> frozenset[int] | None:
    """Which checkpoints go to the tracker: all (None) if ``keep`` is None or not exceeded, else
    ``keep`` of them spread evenly over the run, the first and the last always among them (so
    the analysis still sees the whole trajectory, at a coarser resolution)."""
    steps = sorted(set(checkpoint_steps))
    if keep is None or len(steps) <= keep:
        return None
    if keep == 1:
        return frozenset(steps[-1:])
    picked = {steps[round(i * (len(steps) - 1) / (keep - 1))] for i in range(keep)}
    return frozenset(picked)


def training_checkpoints(max_steps: int, every: int) -> list[int]:
    """The steps a training loop checkpoints at: every ``every`` steps and the last."""
    return sorted({*range(every, max_steps + 1, every), max_steps})


class Tracker(Protocol):
    """Receives a training run's metrics and checkpoints."""

    def attach(self, run_id: str | None) -> str | None:
        """Continue ``run_id`` (a resumed run's) or the current run; returns the run used."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """One step's metrics."""

    def log_checkpoint(self, path: Path, step: int) -> None:
        """A model + tokenizer directory."""


class MlflowTracker:
    """The training loops' tracker: MLflow, continuing a resumed run's own MLflow run.

    ``steps``: the checkpoints to upload as artifacts (None: every one); see
    :func:`artifact_steps`. The others stay on local disk only (until the loop's own
    ``keep_checkpoints`` removes them): nothing is uploaded and deleted again, which works the
    same with every artifact store."""

    def __init__(self, checkpoint_name: str, steps: Collection[int] | None = None) -> None:
        self.checkpoint_name = checkpoint_name
        self.steps = steps
        self.run_id: str | None = None

    @classmethod
    def for_training(
        cls, checkpoint_name: str, max_steps: int, checkpoint_every: int, keep: int | None
    ) -> MlflowTracker:
        """A training loop's tracker, uploading ``keep`` of its checkpoints (None: all)."""
        steps = training_checkpoints(max_steps, checkpoint_every)
        return cls(checkpoint_name, artifact_steps(steps, keep))

    def attach(self, run_id: str | None) -> str | None:
        """Log into ``run_id`` if given (a resumed run), else into the active run, if any."""
        active = mlflow.active_run()
        self.run_id = run_id or (active.info.run_id if active else None)
        if run_id and active and active.info.run_id != run_id:
            mlflow.set_tag("resumed_into_run", run_id)
            logger.info("resumed training: metrics continue in MLflow run %s", run_id)
        return self.run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """One step's metrics."""
        if self.run_id is None:
            return
        finite = {metric_key(k): float(v) for k, v in metrics.items() if math.isfinite(float(v))}
        client = mlflow.MlflowClient()
        timestamp = int(time.time() * 1000)
        client.log_batch(
            self.run_id,
            metrics=[mlflow.entities.Metric(k, v, timestamp, step) for k, v in finite.items()],
        )

    def log_checkpoint(self, path: Path, step: int) -> None:
        """A model + tokenizer directory, as ``checkpoints/<name>/step_<step>`` (if ``step`` is
        one of those to upload)."""
        if self.run_id is None:
            return
        if self.steps is not None and step not in self.steps:
            logger.debug(
                "checkpoint %d of %s: not uploaded (retention)", step, self.checkpoint_name
            )
            return
        mlflow.MlflowClient().log_artifacts(
            self.run_id,
            str(path),
            artifact_path=f"checkpoints/{self.checkpoint_name}/step_{step:06d}",
        )
