"""Analysis nodes: the RL run's checkpoints in weight space, reward against length, training
curves, and one self-contained HTML report of it all."""

from __future__ import annotations

import base64
import html
import io
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from magistral_kedro.analysis import (
    checkpoint_point,
    fit_log_length,
    reward_length_directions,
    window_means,
)
from magistral_kedro.analysis.weights import INDEX_FILE, SINGLE_FILE, read_index
from magistral_kedro.models import ModelSource
from magistral_kedro.params import AnalysisParams
from magistral_kedro.tracking import last_per_step

logger = logging.getLogger(__name__)

#: GRPO metrics drawn as training curves, by panel.
CURVES = {
    "reward": [
        "reward/total",
        "reward/format",
        "reward/correct",
        "reward/length",
        "reward/language",
    ],
    "output length (tokens)": ["completion/mean_tokens", "completion/max_tokens"],
    "entropy": ["policy/entropy"],
    "clip fractions": ["clip/low_frac", "clip/high_frac"],
}
CHECKPOINTS = "checkpoints/rl"


def _rl_run_id(params: AnalysisParams) -> str:
    """``analysis.run_id``, else this run if it trained GRPO, else the newest run that did."""
    client = mlflow.MlflowClient()
    if params.run_id is not None:
        try:
            client.get_run(params.run_id)
        except Exception as error:
            raise ValueError(
                f"analysis.run_id={params.run_id!r} is not a run of the MLflow store at "
                f"{mlflow.get_tracking_uri()}"
            ) from error
        return params.run_id
    active = mlflow.active_run()
    if active is None:
        raise ValueError("no active MLflow run and no analysis.run_id: nothing to analyse")
    if client.list_artifacts(active.info.run_id, CHECKPOINTS):
        return active.info.run_id
    for run in client.search_runs(
        [active.info.experiment_id], order_by=["attributes.start_time DESC"]
    ):
        if client.list_artifacts(run.info.run_id, CHECKPOINTS):
            return run.info.run_id
    raise ValueError(f"no run of the experiment has RL checkpoints ({CHECKPOINTS}/step_*)")


def _download_weights(client: mlflow.MlflowClient, run_id: str, entry: str, folder: str) -> str:
    """The weight files of checkpoint ``entry`` of the run (one ``model.safetensors``, or the
    index and the shards it names; not the tokenizer or optimiser state) downloaded under
    ``folder``; returns the local checkpoint directory."""
    names = {Path(artifact.path).name for artifact in client.list_artifacts(run_id, entry)}
    if INDEX_FILE in names:
        index = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{entry}/{INDEX_FILE}", dst_path=folder
        )
        files = sorted(set(read_index(index).values()))
    elif SINGLE_FILE in names:
        files = [SINGLE_FILE]
    else:
        raise FileNotFoundError(
            f"checkpoint {entry} of run {run_id} has no weights: expected {SINGLE_FILE} or "
            f"{INDEX_FILE} among {sorted(names)}"
        )
    for file in files:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{entry}/{file}", dst_path=folder
        )
    return str(Path(local).parent)


def load_rl_run(rl_model: ModelSource, params: AnalysisParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The RL run's checkpoints (from its MLflow artifacts) as points in weight space, and its
    per-step GRPO metrics. Each checkpoint's weights (one file or shards) are downloaded, read
    tensor by tensor, reduced (flattened up to ``analysis.flatten_max_parameters`` weights, else
    projected to ``analysis.projection_dim``) and deleted before the next, so memory holds at
    most one small model, or one tensor of a large one. ``rl_model`` only orders this node
    after training.

    The checkpoints are those the training uploaded (``rl.keep_checkpoint_artifacts``). A step
    a resumed run logged again counts with the value logged last (:func:`last_per_step`).

    Returns (checkpoints: ``step`` + one column per coordinate, history: ``step`` + metrics)."""
    del rl_model
    run_id = _rl_run_id(params)
    client = mlflow.MlflowClient()
    entries = sorted(a.path for a in client.list_artifacts(run_id, CHECKPOINTS))
    entries = entries[-params.max_checkpoints :]
    logger.info("analysing run %s: %d RL checkpoints", run_id, len(entries))
    points, steps = [], []
    for entry in entries:
        folder = tempfile.mkdtemp(prefix="ckpt-")
        try:
            local = _download_weights(client, run_id, entry, folder)
            points.append(
                checkpoint_point(
                    local,
                    params.flatten_max_parameters,
                    params.projection_dim,
                    params.projection_seed,
                )
            )
            steps.append(int(entry.rsplit("_", 1)[1]))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    checkpoints = pd.DataFrame(np.array(points)).add_prefix("w")
    checkpoints.insert(0, "step", steps)
    series = {}
    for panel in CURVES.values():
        for key in [*panel, "accuracy"]:
            history = client.get_metric_history(run_id, key)
            series[key] = pd.Series(last_per_step(history), dtype=float)
    history = pd.DataFrame(series).rename_axis("step").reset_index()
    history.insert(0, "run_id", run_id)
    return checkpoints, history


def figure_data_uri(figure: Figure) -> str:
    """A figure as a ``data:image/png;base64,...`` URI, for a self-contained HTML report."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _draw_pca(
    axes: Axes, coords: np.ndarray, table: pd.DataFrame, directions: dict[str, np.ndarray]
) -> PathCollection:
    """The checkpoints at ``coords`` [n, 2], labelled reward / mean tokens, with an arrow per
    growth direction; returns the scatter, for its colour bar."""
    steps = list(table["step"])
    points = axes.scatter(coords[:, 0], coords[:, 1], c=steps, cmap="viridis", zorder=3)
    axes.plot(coords[:, 0], coords[:, 1], color="grey", lw=0.8, zorder=2)
    for x, y, r, n in zip(
        coords[:, 0], coords[:, 1], table["reward"], table["mean_tokens"], strict=True
    ):
        axes.annotate(
            f"{r:.2f} / {n:.0f}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    # Arrows in axes fractions, from the centre: the PCs' spans differ by orders of magnitude,
    # and an arrow in data units runs off the axes (where matplotlib does not draw it). The
    # second is drawn thinner over the first, so two that nearly coincide both show.
    axes.autoscale_view()
    (x0, x1), (y0, y1) = axes.get_xlim(), axes.get_ylim()
    styles = (("tab:red", 5.0), ("tab:blue", 2.0))
    for (name, direction), (colour, width) in zip(directions.items(), styles, strict=True):
        on_axes = np.asarray(direction, dtype=float) / [x1 - x0, y1 - y0]
        norm = float(np.linalg.norm(on_axes))
        if norm > 0:
            tip = 0.5 + 0.35 * on_axes / norm
            arrow = {"arrowstyle": "->", "color": colour, "lw": width}
            axes.annotate("", tip, (0.5, 0.5), "axes fraction", arrowprops=arrow)
        axes.plot([], [], color=colour, lw=width, label=f"{name} grows")
    axes.legend(fontsize=8)
    return points


def _draw_length_fit(axes: Axes, clean: pd.DataFrame, fitted: dict[str, Any]) -> None:
    """Reward against mean output length per step (log x), with the fitted line if any."""
    lengths = clean["completion/mean_tokens"]
    axes.scatter(lengths, clean["reward/total"], c=clean["step"], cmap="viridis", s=12)
    axes.set_xscale("log")
    if len(lengths) and lengths.min() > 0:  # often inside one decade: plain ticks of our own
        ticks = np.unique(np.round(np.geomspace(lengths.min(), lengths.max(), 5)))
        axes.set_xticks(ticks, [f"{t:g}" for t in ticks])
        axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xlabel("mean output length (tokens, log scale)")
    axes.set_ylabel("mean reward")
    if "slope" in fitted:
        xs = np.linspace(lengths.min(), lengths.max())
        axes.plot(xs, fitted["slope"] * np.log(xs) + fitted["intercept"], color="tab:red")
        axes.set_title(
            f"reward = {fitted['slope']:.3f} log(length) {fitted['intercept']:+.2f}"
            f"\n(R\u00b2 = {fitted['r2']:.2f}, {fitted['n']} steps)"
        )


def weight_trajectory(
    checkpoints: pd.DataFrame, history: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, Any], Figure, str]:
    """PCA of the checkpoints (2-D, coloured by step) with reward and mean output length at
    each; the regression of reward on log(length) over every step; the directions in PCA space
    along which reward and length grow. One checkpoint: the PCA is skipped, and the table,
    stats and figure say so."""
    steps = list(checkpoints["step"])
    table = pd.DataFrame({"step": steps})
    for column, key in (("reward", "reward/total"), ("mean_tokens", "completion/mean_tokens")):
        table[column] = window_means(history["step"], history[key], steps)
    stats: dict[str, Any] = {"run_id": str(history["run_id"].iloc[0]), "checkpoints": len(steps)}
    clean = history.dropna(subset=["reward/total", "completion/mean_tokens"])
    try:
        fit = fit_log_length(clean["reward/total"], clean["completion/mean_tokens"])
        stats["reward_vs_log_length"] = fit.__dict__
    except ValueError as error:
        stats["reward_vs_log_length"] = {"skipped": str(error)}
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    pca_axes, fit_axes = figure.subplots(1, 2)
    if len(steps) < 2:
        stats["pca"] = {"skipped": f"{len(steps)} checkpoint(s): PCA needs at least 2"}
        table["pc1"] = table["pc2"] = np.nan
        pca_axes.text(0.5, 0.5, stats["pca"]["skipped"], ha="center", va="center")
    else:
        found = reward_length_directions(
            checkpoints.drop(columns="step").to_numpy(), table["reward"], table["mean_tokens"]
        )
        coords, explained = found.coords, found.explained
        reward_dir, length_dir = found.reward, found.length
        table["pc1"], table["pc2"] = coords[:, 0], coords[:, 1]
        stats["pca"] = {
            "explained_variance": [float(v) for v in explained],
            "reward_direction": [float(v) for v in reward_dir],
            "length_direction": [float(v) for v in length_dir],
            "cosine_reward_length": found.cosine,
        }
        points = _draw_pca(pca_axes, coords, table, {"reward": reward_dir, "length": length_dir})
        figure.colorbar(points, ax=pca_axes, label="step")
        pca_axes.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
        pca_axes.set_ylabel(f"PC2 ({explained[1]:.0%})")
    pca_axes.set_title("RL checkpoints in weight space (labels: reward / mean tokens)")
    _draw_length_fit(fit_axes, clean, stats["reward_vs_log_length"])
    logger.info("weight trajectory: %s", stats)
    return table, stats, figure, figure_data_uri(figure)


def training_curves(history: pd.DataFrame) -> tuple[Figure, str]:
    """Reward per component, output length, entropy and clip fractions over the RL steps."""
    figure = Figure(figsize=(11, 7), layout="constrained")
    for axes, (title, keys) in zip(figure.subplots(2, 2).flat, CURVES.items(), strict=True):
        for key in keys:
            if key in history and history[key].notna().any():
                axes.plot(history["step"], history[key], label=key, lw=1.2)
        axes.set_title(title)
        axes.set_xlabel("step")
        axes.legend(fontsize=7)
    return figure, figure_data_uri(figure)


def _table_html(frame: pd.DataFrame, title: str) -> str:
    if frame is None or frame.empty:
        return f"<h2>{html.escape(title)}</h2><p>Nothing to show.</p>"
    return f"<h2>{html.escape(title)}</h2>" + frame.to_html(
        index=False, float_format=lambda v: f"{v:.3f}", na_rep="", border=0, classes="t"
    )


def html_report(
    trajectory_stats: dict[str, Any],
    trajectory_png: str,
    curves_png: str,
    eval_summary: pd.DataFrame,
    eval_comparison: pd.DataFrame,
    curation_report: pd.DataFrame,
) -> str:
    """One self-contained HTML page: the plots (embedded), the findings, the eval tables."""
    fit = trajectory_stats.get("reward_vs_log_length", {})
    pca = trajectory_stats.get("pca", {})
    if "slope" in fit:
        trend = "rises" if fit["slope"] > 0 else "falls"
        finding = (
            f"Reward {trend} with log(output length): slope {fit['slope']:.3f}, "
            f"R\u00b2 {fit['r2']:.2f} over {fit['n']} steps."
        )
    else:
        finding = f"No reward / length fit: {fit.get('skipped', 'no data')}."
    if "cosine_reward_length" in pca:
        finding += (
            f" In PCA space the reward and length growth directions have cosine "
            f"{pca['cosine_reward_length']:.2f}."
        )
    elif "skipped" in pca:
        finding += f" PCA skipped: {pca['skipped']}."
    summary = (
        eval_summary[eval_summary["slice"] == "all"] if not eval_summary.empty else eval_summary
    )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "img{max-width:100%} table.t{border-collapse:collapse;font-size:13px}"
        "table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>magistral-kedro report</title>",
        f"<style>{style}</style></head><body><h1>magistral-kedro: run report</h1>",
        f"<p>RL run <code>{html.escape(str(trajectory_stats.get('run_id')))}</code>, "
        f"{trajectory_stats.get('checkpoints')} checkpoints. {html.escape(finding)}</p>",
        "<h2>Weight-space trajectory and reward against length</h2>",
        f"<img alt='weight trajectory' src='{trajectory_png}'>",
        "<h2>Training curves</h2>",
        f"<img alt='training curves' src='{curves_png}'>",
        _table_html(summary, "Evaluation (all problems of each benchmark)"),
        _table_html(eval_comparison, "Models across MLflow runs"),
        _table_html(eval_summary, "Evaluation by language and difficulty"),
        _table_html(curation_report, "Curation funnel"),
        "</body></html>",
    ]
    return "\n".join(parts)
