"""A Tracker for tests: keeps what a training loop logs, in lists."""

from __future__ import annotations


class ListTracker:
    """A Tracker that keeps what it is given (steps, metrics, checkpoints) in lists."""

    def __init__(self, on_metrics=None):
        self.metrics, self.checkpoints, self.attached = [], [], []
        self.on_metrics = on_metrics

    def attach(self, run_id):
        self.attached.append(run_id)
        return run_id or "run-1"

    def log_metrics(self, metrics, step):
        if self.on_metrics is not None:
            self.on_metrics(metrics, step)
        self.metrics.append((step, metrics))

    def log_checkpoint(self, path, step):
        assert (path / "config.json").is_file()
        self.checkpoints.append(step)

    @property
    def steps(self):
        return [step for step, _ in self.metrics]
