"""Eval nodes: any checkpoint on any benchmark set; metrics per benchmark, language and
difficulty; one comparison table across the MLflow runs of the experiment."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from magistral_kedro.curation.sources import map_source, require_mappings
from magistral_kedro.evaluation import (
    evaluate_generation,
    grade_samples,
    named_metrics,
    summary_table,
)
from magistral_kedro.generation import GenerationConfig, open_generator
from magistral_kedro.models import CheckpointRef, ModelSource, dtype_name, tokenizer_of
from magistral_kedro.params import EvalParams, ModelEvalParams, PromptParams
from magistral_kedro.registry import checkpoint_directory, log_evaluation, problem_set
from magistral_kedro.registry import log_model as log_model_to_mlflow
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tasks.frames import problems_to_frame
from magistral_kedro.tasks.schema import validate_rows
from magistral_kedro.tracking import as_metrics_dataset

logger = logging.getLogger(__name__)

#: The columns of the comparison: the same names in every evaluation's metrics.
COMPARED = ("greedy_accuracy", "pass_at_1", "pass_at_k", "maj_at_k", "format_rate", "language_rate")


def collect_benchmarks(
    heldout: pd.DataFrame, sources: dict[str, list[dict[str, Any]]], params: EvalParams
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The benchmark sets: the held-out split (``heldout``) and each ``eval_sources`` file mapped
    by ``eval.benchmarks``. Rows that cannot be mapped or validated (e.g. no answer) are
    returned as rejects with the reason; an empty benchmark is left out with a warning."""
    require_mappings(sources, params.benchmarks, "eval.benchmarks")
    benchmarks: dict[str, pd.DataFrame] = {}
    if params.heldout:
        benchmarks["heldout"] = heldout
    rejects: list[dict[str, Any]] = []
    for name, rows in sources.items():
        mapped, unmappable = map_source(name, rows, params.benchmarks[name])
        valid, invalid = validate_rows(mapped)
        rejects += unmappable + invalid
        if unmappable or invalid:
            logger.warning(
                "benchmark %s: %d of %d rows rejected (see eval_rejects); first: %s",
                name,
                len(unmappable) + len(invalid),
                len(rows),
                (unmappable + invalid)[0]["reject_reason"],
            )
        benchmarks[name] = problems_to_frame(valid)
    for name, frame in list(benchmarks.items()):
        if frame.empty:
            logger.warning("benchmark %s has no usable problem: left out", name)
            del benchmarks[name]
    if not benchmarks:
        raise ValueError("no benchmark to evaluate on: eval.heldout is off and no source has rows")
    table = pd.DataFrame(rejects, columns=["source", "source_row", "reject_reason"])
    return benchmarks, table


def resolve_checkpoint(rl_model: ModelSource, params: EvalParams) -> ModelSource:
    """``eval.checkpoint``: null -> this run's RL model; a directory; an MLflow
    ``runs:/<run_id>/<path>`` URI or a registered model, ``models:/magistral-rl/latest``,
    fetched from the tracking store. Nothing is loaded here (the RL model input only orders
    this node after training)."""
    reference = params.checkpoint
    if reference is None:
        return rl_model
    path = Path(reference)
    if reference.startswith(("runs:/", "models:/")):
        try:
            path = checkpoint_directory(reference)
        except ValueError as error:
            raise ValueError(f"eval.checkpoint={error}") from error
    logger.info("evaluating %s (%s)", reference, path)
    return CheckpointRef(path, dtype_name(rl_model))


def evaluate_benchmarks(
    checkpoint: ModelSource,
    benchmarks: dict[str, pd.DataFrame],
    params: EvalParams,
    prompt: PromptParams,
    reward: RewardConfig,
    generation: GenerationConfig,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Every benchmark's first ``eval.max_problems`` problems, greedy and k samples each, through
    the ``generation`` backend (one engine for all benchmarks).

    Returns the per-sample table, the summary (per benchmark, and per language and difficulty)
    and MLflow metrics ``eval/<benchmark>/<metric>`` (``eval/<benchmark>/language_fr/...``)."""
    parts = []
    tokenizer = tokenizer_of(checkpoint)
    with open_generator(checkpoint, generation, seed) as generator:
        for name, frame in benchmarks.items():
            graded = grade_samples(
                generator,
                tokenizer,
                frame.head(params.max_problems),
                prompt.system_prompt,
                params.sampling,
                reward,
                seed,
                params.k,
                params.temperature,
                params.greedy,
            )
            parts.append(graded.assign(benchmark=name))
    samples = pd.concat(parts, ignore_index=True)
    summary = summary_table(samples)
    metrics = named_metrics(summary, "eval/{benchmark}")
    for row in summary[summary["slice"] == "all"].to_dict("records"):
        logger.info(
            "eval %s: pass@1 %.3f, pass@%d %.3f, maj@%d %.3f over %d problems",
            row["benchmark"],
            row["pass_at_1"],
            params.k,
            row["pass_at_k"],
            params.k,
            row.get("maj_at_k", float("nan")),
            row["problems"],
        )
    return samples, summary, as_metrics_dataset(metrics)


def evaluate_model(
    checkpoint: ModelSource,
    evaluation: pd.DataFrame,
    settings: ModelEvalParams,
    prompt: PromptParams,
    reward: RewardConfig,
    generation: GenerationConfig,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A trained model on the eval split, graded by the Magistral reward: the node of the
    evaluation template (namespaces ``sft_eval``, ``rl_eval``). Returns one row per completion
    (greedy and sampled) and the metrics ``<settings.metrics_prefix>/<metric>``, named as the
    eval pipeline's (:func:`~magistral_kedro.evaluation.named_metrics`)."""
    return evaluate_generation(
        checkpoint,
        evaluation,
        prompt.system_prompt,
        settings.max_problems,
        settings.sampling,
        reward,
        generation,
        seed,
        prefix=settings.metrics_prefix,
        k=settings.k,
        temperature=settings.temperature,
    )


def log_model(
    checkpoint: ModelSource,
    metrics: dict[str, float],
    evaluation: pd.DataFrame,
    settings: ModelEvalParams,
    prompt: PromptParams,
) -> dict[str, Any]:
    """The evaluated model into MLflow, the second node of the evaluation template: logged as an
    MLflow model (transformers flavour, tokenizer included) and registered as
    ``settings.registered_model`` (null: not logged), its metrics logged into the run, linked to
    the model and to the eval set. Returns where it went (empty without an MLflow run)."""
    name = settings.metrics_prefix.removesuffix("_eval") + "_model"
    info = None
    if settings.registered_model is not None:
        info = log_model_to_mlflow(
            checkpoint, name, metrics, prompt.system_prompt, settings.registered_model
        )
    log_evaluation(
        metrics, problem_set(evaluation, "eval_problems"), info.model_id if info else None
    )
    if info is None:
        return {}
    return {**dataclasses.asdict(info), "model_uri": info.model_uri}


def _model_label(prefix: str, params: dict[str, str]) -> str:
    """What a run's metric prefix evaluated: sft_eval -> SFT, rl_eval -> SFT+RL or RL..."""
    rl_label = "RL" if params.get("rl.init") == "base" else "SFT+RL"
    if prefix == "sft_eval":
        return "SFT"
    if prefix == "rl_eval":
        return rl_label
    checkpoint = params.get("eval.checkpoint", "None")
    if checkpoint in ("None", ""):
        return rl_label
    for name, label in (("base_model", "base"), ("sft_model", "SFT"), ("rl_model", rl_label)):
        if name in checkpoint:
            return label
    return checkpoint


def _evaluations(metrics: dict[str, float]) -> dict[tuple[str, str], dict[str, float]]:
    """A run's metrics of all problems by (evaluation, benchmark): ``sft_eval/<metric>`` and
    ``rl_eval/<metric>`` (the held-out split), ``eval/<benchmark>/<metric>``."""
    groups: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if parts[0] in ("sft_eval", "rl_eval") and len(parts) == 2:
            groups.setdefault((parts[0], "heldout"), {})[parts[1]] = value
        elif parts[0] == "eval" and len(parts) == 3:
            groups.setdefault(("eval", parts[1]), {})[parts[2]] = value
    return groups


def compare_runs(summary: pd.DataFrame, params: EvalParams) -> pd.DataFrame:
    """One row per (MLflow run, model it evaluated), newest runs first: the metrics of
    :data:`COMPARED` of the SFT and RL evaluations and of every eval benchmark (one naming
    scheme: the same names under each prefix), with the model labelled base / SFT / RL /
    SFT+RL from the run's parameters. ``summary`` orders the node after this run's evaluation.

    A run's value of a metric is MLflow's latest: at its highest step, the one logged last
    (evaluations log at step 0; logged again, the later value counts)."""
    active = mlflow.active_run()
    if active is None:
        logger.warning("no active MLflow run: the comparison lists no runs")
        return pd.DataFrame()
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [active.info.experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=params.compare_runs,
    )
    rows = []
    for run in runs:
        metrics = dict(run.data.metrics)
        if run.info.run_id == active.info.run_id:  # this run's eval metrics are not logged yet
            metrics |= named_metrics(summary[summary["slice"] == "all"], "eval/{benchmark}")
        for (prefix, benchmark), values in _evaluations(metrics).items():
            rows.append(
                {
                    "run_id": run.info.run_id,
                    "run_name": run.info.run_name,
                    "started": pd.Timestamp(run.info.start_time, unit="ms"),
                    "model": _model_label(prefix, run.data.params),
                    "evaluated_by": prefix,
                    "benchmark": benchmark,
                    **{metric: values.get(metric) for metric in COMPARED},
                }
            )
    return pd.DataFrame(rows)
