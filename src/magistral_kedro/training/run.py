"""What SFT and GRPO share around their loops, with one behaviour for both.

A :class:`TrainingRun` reuses a finished run with the same fingerprint, resumes an unfinished
one (engine, RNG, the loop's own state), writes checkpoints with the whole model exported for
Hugging Face and the tracker, stops on a non-finite loss naming the step and the last good
checkpoint, marks the run complete, and keeps the run's metrics in one tracking run: a resumed
run continues the run it started in, logs the steps after its checkpoint again and records where
it resumed (readers take the last value logged for a step). Rank 0 alone logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from magistral_kedro.models.factory import Checkpoint, save_checkpoint
from magistral_kedro.training import distributed
from magistral_kedro.training.checkpointing import HF_DIR, CheckpointManager
from magistral_kedro.training.engine import TrainEngine

LOGGED = "LOGGED"  # marker: this checkpoint's model is in the tracker

if TYPE_CHECKING:
    from magistral_kedro.tracking import Tracker


class TrainingRun:
    """One training run under ``root`` (``name``: ``sft`` or ``rl``, the metrics' prefix)."""

    def __init__(
        self,
        name: str,
        root: str | Path,
        keep_last: int,
        fingerprint: str,
        tracker: Tracker | None,
    ) -> None:
        self.name = name
        distributed.check_shared_directory(root, f"{name}.checkpoint_dir")  # before any work
        self.manager = CheckpointManager(root, keep_last, fingerprint)
        self.tracker = tracker if distributed.is_main() else None
        self.run_id: str | None = None

    @property
    def root(self) -> Path:
        """The run's checkpoint directory."""
        return self.manager.root

    def finished(self) -> Path | None:
        """The model of a finished run with the same fingerprint (what training again would
        produce), or None."""
        last = distributed.on_rank_zero(self.manager.finished)  # one decision for every rank
        if last is None:
            return None
        if distributed.is_main():
            tqdm.write(f"{self.name}: reusing {last}: a finished run with the same inputs")
        return last / HF_DIR

    def begin(self, engine: TrainEngine) -> dict[str, Any]:
        """Resume into ``engine`` from the latest checkpoint of an unfinished run with the same
        fingerprint, or start fresh; returns the loop's saved state (``step`` 0 when fresh)."""
        resume_from = distributed.on_rank_zero(self.manager.resumable)
        state: dict[str, Any] = {"step": 0}
        if resume_from is None:
            self.manager.start_fresh()
        else:
            state = self.manager.load(resume_from, engine)
            if distributed.is_main():
                tqdm.write(f"{self.name}: resuming from {resume_from} (step {state['step']})")
        run_id = self.tracker.attach(state.get("run_id")) if self.tracker is not None else None
        self.run_id = distributed.broadcast_object(run_id)  # rank 0's run, on every rank
        if resume_from is not None:
            self.log({f"{self.name}/resumed_at_step": float(state["step"])}, state["step"])
            if not (resume_from / LOGGED).exists():  # killed while handing it to the tracker
                self._log_checkpoint(resume_from, state["step"])
        return state

    def log(self, metrics: dict[str, float], step: int) -> None:
        """One step's metrics, now."""
        if self.tracker is not None:
            self.tracker.log_metrics(metrics, step)

    def save(
        self,
        step: int,
        engine: TrainEngine,
        tokenizer: PreTrainedTokenizerBase,
        state: dict[str, Any],
    ) -> Path:
        """A checkpoint of ``step`` with the loop's ``state``, the whole model exported (ZeRO-3
        shards gathered; rank 0 writes) and handed to the tracker."""

        def export(path: Path) -> None:
            save_checkpoint(Checkpoint(engine.model, tokenizer), path)  # type: ignore[arg-type]

        path = self.manager.save(step, engine, {**state, "run_id": self.run_id}, export)
        self._log_checkpoint(path, step)
        return path

    def _log_checkpoint(self, path: Path, step: int) -> None:
        if self.tracker is not None:
            self.tracker.log_checkpoint(path / HF_DIR, step)
            (path / LOGGED).touch()

    def stop(self, error: FloatingPointError, step: int) -> FloatingPointError:
        """The error to raise for a non-finite loss in ``step`` (counted from 1, as logged):
        where to start again from."""
        last = self.manager.checkpoints()
        return FloatingPointError(
            f"{self.name}: {error} at step {step}; stopped before the update. Last good "
            f"checkpoint: {last[-1] if last else 'none'}. Try a lower "
            f"{self.name}.engine.optim.lr."
        )

    def end(self) -> Path:
        """Mark the run complete; the trained model's directory."""
        self.manager.mark_complete()
        return self.manager.checkpoints()[-1] / HF_DIR
