"""The MLflow side of training: the last value of a step logged twice, and which checkpoints
reach the store."""

import itertools

import mlflow
import pytest
from mlflow.entities import Metric

from magistral_kedro.models import save_checkpoint
from magistral_kedro.tracking import (
    MlflowTracker,
    artifact_steps,
    last_per_step,
    training_checkpoints,
)


def test_a_step_logged_twice_takes_the_value_logged_last():
    history = [
        Metric("reward/total", 0.5, 3_000, 3),  # a resumed run's value: newest, listed first
        Metric("reward/total", 0.1, 1_000, 1),
        Metric("reward/total", 0.2, 1_000, 3),
        Metric("reward/total", 0.3, 2_000, 2),
        Metric("reward/total", 0.4, 2_000, 2),  # the same time: the later in the history
    ]
    assert last_per_step(history) == {1: 0.1, 2: 0.4, 3: 0.5}
    assert list(last_per_step(history)) == [1, 2, 3]


def test_checkpoint_artifacts_are_spread_over_the_run_first_and_last_kept():
    steps = training_checkpoints(40, 2)
    assert steps == list(range(2, 41, 2))
    assert training_checkpoints(45, 10) == [10, 20, 30, 40, 45]  # the last step checkpoints too
    assert artifact_steps(steps, None) is None
    assert artifact_steps(steps, 20) is None  # not exceeded: every one
    assert artifact_steps(steps, 3) == {2, 22, 40}
    assert artifact_steps(steps, 1) == {40}
    five = sorted(artifact_steps(range(50, 1001, 50), 5) or [])
    assert five[0] == 50 and five[-1] == 1000 and len(five) == 5
    gaps = {b - a for a, b in itertools.pairwise(five)}
    assert max(gaps) - min(gaps) <= 50  # evenly, to a checkpoint


@pytest.fixture()
def store(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("tracking")
    yield tmp_path
    mlflow.set_tracking_uri("")


def test_the_tracker_uploads_only_the_kept_checkpoints(store, micro_checkpoint):
    save_checkpoint(micro_checkpoint, store / "hf")
    tracker = MlflowTracker("rl", artifact_steps(training_checkpoints(8, 2), 2))
    with mlflow.start_run() as run:
        assert tracker.attach(None) == run.info.run_id
        for step in (2, 4, 6, 8):
            tracker.log_metrics({"reward/total": step / 10, "bad key!": 1.0}, step)
            tracker.log_checkpoint(store / "hf", step)
    client = mlflow.MlflowClient()
    uploaded = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints/rl")]
    assert uploaded == ["checkpoints/rl/step_000002", "checkpoints/rl/step_000008"]
    files = {a.path.rsplit("/", 1)[1] for a in client.list_artifacts(run.info.run_id, uploaded[1])}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    history = client.get_metric_history(run.info.run_id, "reward/total")
    assert last_per_step(history) == {2: 0.2, 4: 0.4, 6: 0.6, 8: 0.8}
    assert "bad key_" in client.get_run(run.info.run_id).data.metrics


def test_without_a_run_the_tracker_logs_nothing(micro_checkpoint, tmp_path):
    tracker = MlflowTracker("sft")
    assert tracker.attach(None) is None
    tracker.log_metrics({"sft/loss": 1.0}, 1)
    tracker.log_checkpoint(tmp_path, 1)  # not even read
