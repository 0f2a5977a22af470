"""The analysis pipeline on a small MLflow run made here: checkpoints, metrics, the report."""

import math
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from magistral_kedro.analysis import project_weights
from magistral_kedro.models import save_checkpoint
from magistral_kedro.params import AnalysisParams
from magistral_kedro.pipelines.analysis import create_pipeline
from magistral_kedro.pipelines.analysis.nodes import load_rl_run
from tests.support.pipelines import RAW, run


def analysis_params(**overrides) -> AnalysisParams:
    return AnalysisParams.model_validate({**RAW["analysis"], **overrides})


@pytest.fixture()
def rl_run(micro_checkpoint, tmp_path):
    """An MLflow run with 4 RL checkpoints drifting along one direction, and GRPO metrics in
    which reward grows with log(length)."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("analysis")
    generator = torch.Generator().manual_seed(0)
    drift = {
        n: torch.randn(p.shape, generator=generator)
        for n, p in micro_checkpoint.model.named_parameters()
    }
    with mlflow.start_run() as started:
        for step in (5, 10, 15, 20):
            with torch.no_grad():
                for name, parameter in micro_checkpoint.model.named_parameters():
                    parameter.add_(0.01 * drift[name])
            save_checkpoint(micro_checkpoint, tmp_path / f"step_{step}")
            mlflow.log_artifacts(str(tmp_path / f"step_{step}"), f"checkpoints/rl/step_{step:06d}")
        for step in range(1, 21):
            length = 20 + 3 * step
            mlflow.log_metrics(
                {
                    "reward/total": 0.2 * np.log(length) - 0.3,
                    "completion/mean_tokens": length,
                    "policy/entropy": 1 / step,
                    "clip/high_frac": 0.0,
                },
                step=step,
            )
        yield started.info.run_id
    mlflow.set_tracking_uri("")


def test_trajectory_fit_and_report(rl_run, micro_checkpoint):
    inputs = {
        "rl_model": micro_checkpoint,
        "params:analysis": analysis_params(run_id=rl_run),
        "eval_summary": pd.DataFrame([{"benchmark": "heldout", "slice": "all", "pass_at_1": 0.5}]),
        "eval_comparison": pd.DataFrame(),
        "curation_report": pd.DataFrame([{"stage": "read", "rows_out": 10}]),
    }
    out = run(create_pipeline(), inputs)
    trajectory, stats = out["weight_trajectory"], out["weight_trajectory_stats"]
    assert list(trajectory["step"]) == [5, 10, 15, 20]
    assert stats["pca"]["explained_variance"][0] > 0.99  # the drift is along one direction
    assert list(np.diff(trajectory["pc1"]) > 0) == [True] * 3
    fit = stats["reward_vs_log_length"]
    assert fit["slope"] == pytest.approx(0.2) and fit["r2"] == pytest.approx(1.0)
    assert stats["pca"]["cosine_reward_length"] == pytest.approx(1.0, abs=1e-6)
    report = out["analysis_report"]
    assert report.count("data:image/png;base64,") == 2
    assert "slope 0.200" in report and "Curation funnel" in report
    assert out["rl_history"]["run_id"].iloc[0] == rl_run


def test_a_model_past_the_threshold_is_projected_and_a_small_one_flattened(
    rl_run, micro_checkpoint
):
    # tied: the output matrix is saved once, as the input embedding
    state = {n: p for n, p in micro_checkpoint.model.state_dict().items() if n != "lm_head.weight"}
    weights = sum(p.numel() for p in state.values())
    defaults = analysis_params(run_id=rl_run)
    assert defaults.flatten_max_parameters >= weights  # the micro model is flattened by default
    flat, _ = load_rl_run(micro_checkpoint, defaults)
    assert flat.shape == (4, 1 + weights)
    params = analysis_params(run_id=rl_run, flatten_max_parameters=weights - 1, projection_dim=16)
    points, _ = load_rl_run(micro_checkpoint, params)
    assert points.shape == (4, 17)  # step + 16 coordinates
    last = project_weights(state, 16, params.projection_seed)  # the fixture's last checkpoint
    np.testing.assert_allclose(points.iloc[-1, 1:].to_numpy(dtype=float), last, rtol=1e-6)


def test_a_sharded_checkpoint_reads_through_its_index(micro_checkpoint, tmp_path):
    """A user's own checkpoints, saved in shards, give the points one-file checkpoints give."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("shards")
    runs = {}
    for layout, shard_size in (("one", "1GB"), ("shards", "20KB")):
        with mlflow.start_run() as started:
            for step in (1, 2):
                with torch.no_grad():
                    micro_checkpoint.model.model.norm.weight.fill_(step)
                folder = tmp_path / layout / f"step_{step}"
                micro_checkpoint.model.save_pretrained(folder, max_shard_size=shard_size)
                mlflow.log_artifacts(str(folder), f"checkpoints/rl/step_{step:06d}")
            runs[layout] = started.info.run_id
    assert len(list((tmp_path / "shards" / "step_1").glob("*.safetensors"))) > 1
    try:
        for overrides in ({}, {"flatten_max_parameters": 0, "projection_dim": 8}):
            one, shards = (
                load_rl_run(micro_checkpoint, analysis_params(run_id=runs[k], **overrides))[0]
                for k in ("one", "shards")
            )
            pd.testing.assert_frame_equal(one, shards)
    finally:
        mlflow.set_tracking_uri("")


def test_one_checkpoint_skips_the_pca_and_says_why(rl_run, micro_checkpoint):
    inputs = {
        "rl_model": micro_checkpoint,
        "params:analysis": analysis_params(run_id=rl_run, max_checkpoints=1),
    }
    out = run(create_pipeline().only_nodes("load_rl_run", "weight_trajectory"), inputs)
    assert "PCA needs at least 2" in out["weight_trajectory_stats"]["pca"]["skipped"]
    assert out["weight_trajectory"]["pc1"].isna().all()


def test_a_run_id_that_does_not_exist_is_named(rl_run, micro_checkpoint):
    with pytest.raises(ValueError, match=r"analysis.run_id=.nope. is not a run"):
        load_rl_run(micro_checkpoint, analysis_params(run_id="nope"))


def test_a_step_logged_again_counts_with_its_last_value(rl_run, micro_checkpoint):
    """A resumed run logs the steps after its checkpoint again: the history keeps, for each
    step, the value logged last (by time, not by the order the store returns)."""
    from mlflow.entities import Metric

    later = int(time.time() * 1000) + 60_000
    client = mlflow.MlflowClient()
    client.log_batch(rl_run, metrics=[Metric("reward/total", 0.9, later, 7)])
    client.log_batch(rl_run, metrics=[Metric("reward/total", 0.1, later - 30_000, 7)])
    assert len([m for m in client.get_metric_history(rl_run, "reward/total") if m.step == 7]) == 3
    _, history = load_rl_run(micro_checkpoint, analysis_params(run_id=rl_run))
    assert list(history["step"]) == list(range(1, 21))
    assert history.set_index("step").loc[7, "reward/total"] == 0.9
    assert history.set_index("step").loc[6, "reward/total"] == pytest.approx(0.2 * np.log(38) - 0.3)


@pytest.mark.parametrize("cosine", [0.0, 0.98])
def test_both_growth_arrows_are_drawn_inside_the_plot(cosine):
    """Each direction the legend names has an arrow inside the axes that can be seen: on
    axes of very unequal spans (PCs), and when the two directions nearly coincide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from magistral_kedro.pipelines.analysis.nodes import _draw_pca

    coords = np.array([[0, 0], [1, 0.05], [2, 0.02], [3, 0.1], [10, 0.3]], dtype=float)
    table = pd.DataFrame({"step": range(5), "reward": 0.1, "mean_tokens": 10.0})
    length = np.array([math.sqrt(1 - cosine**2), cosine])
    figure, axes = plt.subplots()
    _draw_pca(axes, coords, table, {"reward": np.array([0.0, 1.0]), "length": length})
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    box = axes.get_window_extent(renderer)
    arrows = [t.arrow_patch for t in axes.texts if t.arrow_patch is not None]
    assert len(arrows) == 2
    for arrow in arrows:
        extent = arrow.get_window_extent(renderer)
        assert box.contains(*extent.p0) and box.contains(*extent.p1)
        assert max(extent.width, extent.height) > 0.1 * min(box.width, box.height)
    widths = [arrow.get_linewidth() for arrow in arrows]
    assert widths[0] > 1.5 * widths[1]  # the second drawn over the first, both seen
    plt.close(figure)
