"""Project hooks: a quiet, offline start, rules across parameter sections checked before any
node, every parameter in MLflow (flattened), and rank 0 alone writing datasets under a
multi-process launch."""

from __future__ import annotations

import logging
import os
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset

from magistral_kedro.tracking import flatten, plain
from magistral_kedro.training import distributed

logger = logging.getLogger(__name__)


class QuietStartHook:
    """Nothing reaches for the network or prompts: runs must work offline and unattended."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Set offline switches before any library reads them."""
        for key, value in {
            "KEDRO_DISABLE_TELEMETRY": "true",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }.items():
            os.environ.setdefault(key, value)
        # Per-file progress bars of save/load flood the run log; the training bar stays.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


class ParameterRulesHook:
    """Rules that span parameter sections (e.g. asynchronous GRPO needs the transformers
    backend), checked before the first node: Kedro validates each section alone, and a conflict
    found only when its node starts would cost every node before it."""

    @hook_impl
    def before_pipeline_run(self, catalog: Any) -> None:
        """Raise ValueError naming every broken rule."""
        from magistral_kedro.check import rule_problems, validate_sections

        validated, invalid = validate_sections(catalog.load("parameters"))
        if invalid:  # Kedro reports these itself, with the section, key and value
            return
        problems = rule_problems(validated)
        if problems:
            raise ValueError("; ".join(problems))


class ParameterLoggingHook:
    """Logs every parameter a node receives, flattened (``sft.engine.optim.lr``), defaults included.

    kedro-mlflow logs each ``params:`` input too, but a typed section arrives as one object and is
    logged as one long string; this hook adds one searchable MLflow param per leaf value.
    """

    def __init__(self) -> None:
        self._logged: set[str] = set()

    @hook_impl
    def before_pipeline_run(self) -> None:
        """A new run logs everything afresh."""
        self._logged = set()

    @hook_impl
    def before_node_run(self, inputs: dict[str, Any]) -> None:
        """Log this node's parameters that the run has not logged yet."""
        if mlflow.active_run() is None:
            return
        flat: dict[str, Any] = {}
        for name, value in inputs.items():
            if name.startswith("params:"):
                flat.update(flatten({name.removeprefix("params:"): plain(value)}))
        new = {k: str(v)[:6000] for k, v in flat.items() if k not in self._logged}
        items = list(new.items())
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per call
            mlflow.log_params(dict(items[start : start + 100]))
        self._logged.update(new)


class RankZeroWritesHook:
    """Under a launcher (:mod:`magistral_kedro.launch`) ranks > 0 run the same pipeline, but its
    outputs stay in memory there: the files, versions and MLflow artifacts are rank 0's."""

    @hook_impl
    def before_pipeline_run(self, pipeline: Any, catalog: Any) -> None:
        """Swap every dataset the pipeline writes for a MemoryDataset on ranks > 0."""
        if distributed.is_main():
            return
        for name in pipeline.all_outputs():
            catalog[name] = MemoryDataset()

    @hook_impl
    def before_node_run(self) -> None:
        """Every rank runs the same nodes in the same order: wait here until every rank (rank 0
        included, with its saves) has finished the node before, so no rank reads a file rank 0
        has not written yet."""
        distributed.barrier()
