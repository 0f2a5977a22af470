"""The MLflow side of training: the last value of a step logged twice."""

from mlflow.entities import Metric

from magistral_kedro.tracking import last_per_step


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
