"""Looking inside a run (docs/recipe.md, section 6): the checkpoints' weight-space trajectory, and
reward against output length. Plain numpy / torch, no Kedro."""

from magistral_kedro.analysis.trajectory import (
    Directions,
    Fit,
    fit_log_length,
    growth_direction,
    pca_2d,
    reward_length_directions,
    window_means,
)
from magistral_kedro.analysis.weights import (
    checkpoint_point,
    checkpoint_tensors,
    count_weights,
    flatten_weights,
    project_checkpoint,
    project_weights,
    weight_files,
)

__all__ = [
    "Directions",
    "Fit",
    "checkpoint_point",
    "checkpoint_tensors",
    "count_weights",
    "fit_log_length",
    "flatten_weights",
    "growth_direction",
    "pca_2d",
    "project_checkpoint",
    "project_weights",
    "reward_length_directions",
    "weight_files",
    "window_means",
]
