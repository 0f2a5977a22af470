"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

#: The recipe's order; ``__default__`` runs those that exist, in this order.
ORDER = ("curation", "sft", "rl", "eval", "analysis")


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline under ``pipelines/`` by name, plus ``__default__`` (the whole chain)."""
    pipelines = find_pipelines(raise_errors=True)
    default = Pipeline([])
    for name in ORDER:
        if name in pipelines:
            default += pipelines[name]
    pipelines["__default__"] = default
    return pipelines
