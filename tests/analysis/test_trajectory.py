"""The weight-space trajectory and the reward / log-length fit."""

import numpy as np
import pytest
import torch

from magistral_kedro.analysis import (
    fit_log_length,
    flatten_weights,
    growth_direction,
    pca_2d,
    project_weights,
    reward_length_directions,
    window_means,
)


def test_flatten_takes_floating_tensors_in_name_order():
    state = {
        "b": torch.tensor([3.0, 4.0]),
        "a": torch.tensor([[1.0], [2.0]]),
        "steps": torch.tensor([7]),
    }
    assert flatten_weights(state).tolist() == [1.0, 2.0, 3.0, 4.0]


def test_the_projection_is_fixed_linear_and_keeps_distances_roughly():
    rng = np.random.default_rng(0)
    states = [
        {"w": torch.tensor(rng.normal(size=3000)), "v": torch.tensor(rng.normal(size=500))}
        for _ in range(2)
    ]
    a, b = (project_weights(s, 256, seed=1) for s in states)
    assert np.allclose(a, project_weights(states[0], 256, seed=1))
    assert not np.allclose(a, project_weights(states[0], 256, seed=2))
    both = {name: states[0][name] + states[1][name] for name in states[0]}
    assert np.allclose(project_weights(both, 256, seed=1), a + b)  # linear
    exact = np.linalg.norm(flatten_weights(states[0]) - flatten_weights(states[1]))
    assert np.linalg.norm(a - b) == pytest.approx(exact, rel=0.25)


def test_pca_recovers_a_line_and_orients_it_along_the_run():
    t = np.arange(6, dtype=float)
    points = np.column_stack([t, 2 * t, np.zeros(6)]) + 1e-6 * np.eye(6, 3)
    coords, explained = pca_2d(points[::-1])  # a run that moves the other way
    assert explained[0] > 0.999 and coords[-1, 0] > coords[0, 0]
    assert np.allclose(np.diff(coords[:, 0]), np.sqrt(5), atol=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        pca_2d(points[:1])


def test_log_length_fit_and_growth_direction():
    length = np.array([10, 20, 40, 80, 160])
    reward = 0.1 * np.log(length) + 0.2
    fit = fit_log_length(reward, length)
    assert fit.slope == pytest.approx(0.1) and fit.intercept == pytest.approx(0.2)
    assert fit.r2 == pytest.approx(1.0) and fit.n == 5
    with pytest.raises(ValueError, match="3\\+ points"):
        fit_log_length(reward[:2], length[:2])
    coords = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=float)
    assert np.allclose(growth_direction(coords, 2 * coords[:, 0] + 0.0), [1, 0])
    assert np.allclose(growth_direction(coords, np.ones(4)), [0, 0])
    assert np.allclose(growth_direction(np.zeros((4, 2)), np.arange(4.0)), [0, 0])  # no movement


def test_window_means_average_the_steps_since_the_previous_checkpoint():
    steps = [1, 2, 3, 4, 5, 6]
    values = [1.0, 3.0, float("nan"), 5.0, 7.0, 9.0]
    assert window_means(steps, values, [2, 4, 6]) == [2.0, 5.0, 8.0]
    assert np.isnan(window_means(steps, values, [2, 2])[1])


def test_reward_and_length_growing_together_point_the_same_way():
    t = np.arange(8, dtype=float)
    points = np.column_stack([t, np.sin(t), np.zeros(8)])
    together = reward_length_directions(points, 0.1 * t, 40 + 2 * t)
    assert together.cosine == pytest.approx(1.0, abs=1e-6)
    opposed = reward_length_directions(points, 0.1 * t, 40 - 2 * t)
    assert opposed.cosine == pytest.approx(-1.0, abs=1e-6)
    flat = reward_length_directions(points, [float("nan")] * 8, 40 + 2 * t)
    assert flat.cosine == 0.0 and flat.coords.shape == (8, 2)
