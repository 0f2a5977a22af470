"""Looking inside a run (docs/recipe.md, section 6): the checkpoints' weight-space trajectory, and
reward against output length. Plain numpy / torch, no Kedro."""

from magistral_kedro.analysis.trajectory import (
    Directions,
    Fit,
    fit_log_length,
    flatten_weights,
    growth_direction,
    pca_2d,
    project_weights,
    reward_length_directions,
    window_means,
)

__all__ = [
    "Directions",
    "Fit",
    "fit_log_length",
    "flatten_weights",
    "growth_direction",
    "pca_2d",
    "project_weights",
    "reward_length_directions",
    "window_means",
]
