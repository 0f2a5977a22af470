"""The curation report: every reject with its stage, the funnel table, its plot and metrics."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from magistral_kedro.pipelines.curation.nodes import STAGES, rejects_of
from magistral_kedro.tasks.frames import COLUMNS
from magistral_kedro.tracking import as_metrics_dataset

logger = logging.getLogger(__name__)


def collect_rejects(**by_stage: pd.DataFrame) -> pd.DataFrame:
    """Every row the funnel dropped, each labelled with the stage (one of :data:`STAGES`) whose
    rejects it came in as, and the reason."""
    unknown = sorted(set(by_stage) - set(STAGES))
    if unknown:
        raise ValueError(f"rejects of unknown stages {unknown}; the stages are {STAGES}")
    frames = [f.assign(stage=stage) for stage, f in by_stage.items() if not f.empty]
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, "stage", "reject_reason"])
    return pd.concat(frames, ignore_index=True, sort=False)


def _reason_summary(reasons: pd.Series) -> str:
    # "duplicate of <id>" reasons differ per row: the code is what comes before " of ".
    codes = reasons.astype(str).str.split(" of ").str[0].str.split(":").str[0]
    return "; ".join(f"{code}: {n}" for code, n in codes.value_counts().items())


def curation_report(
    raw: pd.DataFrame,
    rejects: pd.DataFrame,
    evaluation: pd.DataFrame,
    validation: pd.DataFrame,
    translation_log: pd.DataFrame,
    rl_stage1: pd.DataFrame,
    rl_stage2: pd.DataFrame,
) -> tuple[pd.DataFrame, Figure, dict[str, Any]]:
    """The funnel: rows into and out of every stage, per source and kind, with the reasons; a
    funnel plot; and headline metrics (``curation/...``)."""
    keys = ["source", "kind"]
    read_rejects = rejects[rejects["stage"] == "read"]
    entering = pd.concat([raw[keys], read_rejects[keys].fillna({"kind": "?"})])
    held_out = [
        rejects_of(evaluation, "split", "held out for evaluation"),
        rejects_of(validation, "split", "held out for validation"),
    ]
    drops = pd.concat([rejects, *held_out], ignore_index=True, sort=False).fillna({"kind": "?"})
    rows = []
    for (source, kind), group in entering.groupby(keys, dropna=False):
        n = len(group)
        for stage in STAGES:
            out = drops[
                (drops["stage"] == stage) & (drops["source"] == source) & (drops["kind"] == kind)
            ]
            rows.append(
                {
                    "stage": stage,
                    "source": source,
                    "kind": kind,
                    "rows_in": n,
                    "dropped": len(out),
                    "rows_out": n - len(out),
                    "reasons": _reason_summary(out["reject_reason"]),
                }
            )
            n -= len(out)
    table = pd.DataFrame(rows)
    totals = table.groupby("stage", sort=False)[["rows_in", "rows_out"]].sum()
    metrics = {f"curation/{stage}/rows_out": int(totals.loc[stage, "rows_out"]) for stage in STAGES}
    # An empty log (nothing planned for translation) comes back from JSON Lines without columns.
    status = translation_log.get("status", pd.Series(dtype=str))
    metrics |= {
        "curation/rows_read": len(entering),
        "curation/eval": len(evaluation),
        "curation/validation": len(validation),
        "curation/rl_stage1": len(rl_stage1),
        "curation/rl_stage2": len(rl_stage2),
        "curation/translated": int((status == "translated").sum()),
        "curation/translation_failed": int((status == "failed").sum()),
    }
    logger.info("curation funnel: %s", dict(zip(totals.index, totals["rows_out"], strict=True)))
    return table, funnel_plot(table), as_metrics_dataset(metrics)


def funnel_plot(table: pd.DataFrame) -> Figure:
    """Rows left after each stage, one bar segment per source and kind (log scale: the embedded
    sources are much larger than a user's)."""
    pivot = table.pivot_table(
        index="stage", columns=["source", "kind"], values="rows_out", aggfunc="sum", sort=False
    ).reindex(list(STAGES))
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    axes = figure.subplots()
    left = np.zeros(len(pivot))
    for column in pivot.columns:
        values = pivot[column].fillna(0).to_numpy()
        axes.barh(pivot.index, values, left=left, label=" / ".join(map(str, column)))
        left += values
    for y, total in enumerate(left):
        axes.annotate(
            f"{int(total):,}",
            (total, y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    axes.invert_yaxis()
    axes.set_xlabel("problems left after the stage")
    axes.set_title("Curation funnel")
    axes.legend(fontsize=8, loc="lower right")
    return figure
