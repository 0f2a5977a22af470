"""Project hooks: a quiet, offline start, rules across parameter sections checked before any
node, every parameter in MLflow (flattened), system metrics and the problem sets a run reads in
MLflow, and rank 0 alone writing datasets under a multi-process launch."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset

from magistral_kedro.registry import log_problem_set, problem_set
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


class SystemMetricsHook:
    """MLflow's own system metrics (``system/cpu_utilization_percentage``,
    ``system/system_memory_usage_megabytes``, ``system/gpu_*`` where the NVIDIA management
    library, the gpu extra's nvidia-ml-py, finds a GPU...) for every run kedro-mlflow opens,
    sampled every ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds (10 by default).
    ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false`` turns them off."""

    @hook_impl
    def after_context_created(self) -> None:
        """Switch MLflow's monitor on before kedro-mlflow starts the run."""
        os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")


#: The problem sets logged as inputs of the run that reads them, with the use MLflow shows.
PROBLEM_SETS = {
    "train_problems": "training",
    "eval_problems": "evaluation",
    "validation_problems": "validation",
    "rl_problems": "rl",
    "rl_problems_stage2": "rl",
}


class DatasetInputsHook:
    """Lineage: each problem set of :data:`PROBLEM_SETS` a run loads becomes an input of its
    MLflow run (MLflow's dataset tracking: name, digest of the content, schema, row count, the
    file it came from), so a run says which data it trained and was evaluated on."""

    def __init__(self) -> None:
        self._sources: dict[str, str] = {}

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        """Remember where the problem sets live."""
        self._sources = {}
        for name in PROBLEM_SETS:
            try:
                described = catalog.get(name)._describe()
            except Exception:  # not in this catalog (a test's), or not a file dataset
                continue
            if described.get("filepath"):
                self._sources[name] = str(Path(str(described["filepath"])).resolve())

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        """Log a problem set the run just read (once per content)."""
        active = mlflow.active_run()
        if active is None or dataset_name not in PROBLEM_SETS:
            return
        dataset = problem_set(data, dataset_name, self._sources.get(dataset_name))
        log_problem_set(dataset, PROBLEM_SETS[dataset_name], active.info.run_id)


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
