"""The checkpoints' PCA trajectory in weight space, and the reward-length relation.

Magistral (section 6) projects RL checkpoints to 2-D with PCA and finds a direction along which
both reward and output length grow, and reward rising with log(output length). These functions
compute the same quantities for any run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components of ``points [n, D]`` (n >= 2): coordinates ``[n, 2]``
    and the share of variance each explains ``[2]`` (a single axis for n = 2: the second
    coordinate and share are 0)."""
    if points.shape[0] < 2:
        raise ValueError(f"PCA needs at least 2 checkpoints, got {points.shape[0]}")
    centred = points - points.mean(axis=0, keepdims=True)
    # The Gram matrix is n x n: cheap for a handful of checkpoints whatever D is.
    gram = centred @ centred.T
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues)[::-1][:2]
    values = np.clip(eigenvalues[order], 0.0, None)
    coords = eigenvectors[:, order] * np.sqrt(values)
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        values = np.pad(values, (0, 2 - values.shape[0]))
    total = float(np.clip(eigenvalues, 0.0, None).sum()) or 1.0
    # A component's sign is arbitrary: orient PC1 so that the run moves along +PC1.
    if coords[-1, 0] < coords[0, 0]:
        coords[:, 0] *= -1
    return coords, values / total


@dataclass(frozen=True)
class Fit:
    """``y = slope * x + intercept`` by least squares, with R^2 and the number of points."""

    slope: float
    intercept: float
    r2: float
    n: int


def fit_log_length(reward: np.ndarray, length: np.ndarray) -> Fit:
    """Reward regressed on log(mean output length) (the relation the paper reports)."""
    x, y = np.log(np.asarray(length, dtype=float)), np.asarray(reward, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0:
        raise ValueError(f"a fit needs 3+ points with different lengths, got {len(x)}")
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / total if total > 0 else 0.0
    return Fit(float(slope), float(intercept), r2, len(x))


def growth_direction(coords: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The unit vector in the 2-D PCA plane along which ``values`` grow fastest: the gradient of
    their linear fit on the coordinates, ridge-regularised (1% of the total variance) so that a
    component the checkpoints barely move along cannot take an arbitrary weight. Zeros if the
    values or the checkpoints do not vary."""
    x = coords - coords.mean(axis=0)
    y = np.asarray(values, dtype=float)
    y = y - y.mean()
    gram = x.T @ x
    if not (np.ptp(y) > 0 and np.trace(gram) > 0):
        return np.zeros(2)
    ridge = 1e-2 * float(np.trace(gram)) * np.eye(2)
    gradient = np.linalg.solve(gram + ridge, x.T @ y)
    norm = float(np.linalg.norm(gradient))
    return gradient / norm if norm > 0 else np.zeros(2)


def window_means(steps: Sequence[int], values: Sequence[float], at: Sequence[int]) -> list[float]:
    """At each checkpoint step of ``at``, the mean of ``values`` (one per step of ``steps``)
    over the steps since the previous checkpoint (NaN where there is none)."""
    step_array, value_array = np.asarray(steps), np.asarray(values, dtype=float)
    out, previous = [], 0
    for step in at:
        window = value_array[(step_array > previous) & (step_array <= step)]
        window = window[~np.isnan(window)]
        out.append(float(window.mean()) if window.size else float("nan"))
        previous = step
    return out


@dataclass(frozen=True)
class Directions:
    """The checkpoints in the PCA plane and the directions along which reward and length grow."""

    coords: np.ndarray  # [n, 2]
    explained: np.ndarray  # [2] share of variance
    reward: np.ndarray  # [2] unit vector
    length: np.ndarray  # [2] unit vector

    @property
    def cosine(self) -> float:
        """Cosine between the reward and the length directions (0 if either is 0)."""
        return float(self.reward @ self.length)


def reward_length_directions(
    points: np.ndarray, reward: Sequence[float], length: Sequence[float]
) -> Directions:
    """PCA of the checkpoints ``points [n, D]`` (n >= 2) and the directions in its plane along
    which ``reward`` and ``length`` (one per checkpoint; NaN: the mean, resp. 0) grow."""
    coords, explained = pca_2d(points)
    rewards = np.asarray(reward, dtype=float)
    fill = float(np.nanmean(rewards)) if np.isfinite(rewards).any() else 0.0
    rewards = np.where(np.isnan(rewards), fill, rewards)
    lengths = np.nan_to_num(np.asarray(length, dtype=float), nan=0.0)
    return Directions(
        coords, explained, growth_direction(coords, rewards), growth_direction(coords, lengths)
    )
