"""Resumable training checkpoints: engine state + RNG + step + caller state, written atomically.

Layout under ``root``::

    step_000200/
        engine.pt | deepspeed/     model, optimiser, scheduler (backend's own format)
        trainer_state.json         step, caller state (data position, metrics...), fingerprint
        rng.pt | rng_rank<r>.pt    python, numpy and torch RNG states (one file per rank)
        hf/                        model + tokenizer as a Hugging Face directory (what MLflow gets)
    COMPLETE                       written when the run finished: a run with the same
                                   fingerprint reuses its last model instead of training again

A checkpoint is written into ``.tmp-step_...`` and renamed when whole, so a run killed mid-write
(kill -9 included) never leaves a half checkpoint that resume would trust.

Under several ranks every rank calls the same methods: each writes its own engine shards and RNG
state, rank 0 alone the shared files and the rename, with barriers between. The directory must be
on a filesystem every rank sees (one node, or a shared mount across nodes).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from magistral_kedro.training import distributed
from magistral_kedro.training.engine import TrainEngine

logger = logging.getLogger(__name__)

PREFIX = "step_"
COMPLETE = "COMPLETE"
HF_DIR = "hf"  # the whole model (ZeRO-3 shards gathered) + tokenizer, in each checkpoint


def rng_state() -> dict[str, Any]:
    """Snapshot of every random generator training touches."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the legacy global one)
        "torch": torch.get_rng_state(),
    }


def _rng_file(directory: Path) -> Path:
    rank = distributed.rank()
    return directory / ("rng.pt" if rank == 0 else f"rng_rank{rank}.pt")


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a :func:`rng_state` snapshot."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])


class CheckpointManager:
    """Saves and finds checkpoints of one training run under ``root``."""

    def __init__(self, root: str | Path, keep_last: int = 2, fingerprint: str = "") -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.root = Path(root)
        self.keep_last = keep_last
        self.fingerprint = fingerprint

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.glob(f"{PREFIX}*") if (p / "trainer_state.json").is_file()]
        return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))

    def _latest_of_this_run(self) -> Path | None:
        """The latest checkpoint, if it was written by a run with the same fingerprint."""
        checkpoints = self.checkpoints()
        if not checkpoints:
            return None
        state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
        return checkpoints[-1] if state.get("fingerprint") == self.fingerprint else None

    def resumable(self) -> Path | None:
        """The latest checkpoint of an unfinished run with the same fingerprint, if any."""
        if (self.root / COMPLETE).exists():
            return None
        return self._latest_of_this_run()

    def finished(self) -> Path | None:
        """The last checkpoint of a finished run with the same fingerprint, if any: its model
        is what training again would produce, so it is reused instead (a whole chain re-run
        after a crash in a later stage does not train this stage again)."""
        if not (self.root / COMPLETE).exists():
            return None
        latest = self._latest_of_this_run()
        return latest if latest is not None and (latest / HF_DIR).is_dir() else None

    def start_fresh(self) -> None:
        """Make room for a new run. An unfinished run of other inputs is moved aside, to
        ``<root>.previous`` (its progress is kept: a setting changed by mistake costs no
        training); a finished one is removed (its model is in the catalog and the tracker)."""
        distributed.barrier()  # every rank has looked for a checkpoint before any is removed
        if distributed.is_main():
            if self.checkpoints() and not (self.root / COMPLETE).exists():
                previous = self.root.with_name(f"{self.root.name}.previous")
                shutil.rmtree(previous, ignore_errors=True)
                self.root.rename(previous)
                logger.warning(
                    "%s held an unfinished run of other inputs: moved to %s", self.root, previous
                )
            elif self.root.exists():
                shutil.rmtree(self.root)
            self.root.mkdir(parents=True)
        distributed.barrier()

    def save(
        self,
        step: int,
        engine: TrainEngine,
        state: dict[str, Any],
        export_hf: Any | None = None,
    ) -> Path:
        """Write checkpoint ``step``; ``export_hf(path)`` may add a Hugging Face copy under hf/."""
        final = self.root / f"{PREFIX}{step:06d}"
        tmp = self.root / f".tmp-{final.name}"
        main = distributed.is_main()
        if main:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        distributed.barrier()
        engine.save_state(tmp)  # collective under DeepSpeed: every rank writes its shards
        torch.save(rng_state(), _rng_file(tmp))
        with engine.full_weights():  # ZeRO-3 gathers on every rank; rank 0 writes
            if export_hf is not None and main:
                export_hf(tmp / HF_DIR)
        distributed.barrier()
        if main:
            payload = {"step": step, "fingerprint": self.fingerprint, **state}
            (tmp / "trainer_state.json").write_text(json.dumps(payload, indent=2))
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            for old in self.checkpoints()[: -self.keep_last]:
                shutil.rmtree(old)
        distributed.barrier()
        return final

    def load(self, path: Path, engine: TrainEngine) -> dict[str, Any]:
        """Restore engine and RNG from ``path``; returns the saved trainer state (with ``step``)."""
        engine.load_state(path)
        set_rng_state(torch.load(_rng_file(path), weights_only=False))
        state: dict[str, Any] = json.loads((path / "trainer_state.json").read_text())
        return state

    def mark_complete(self) -> None:
        """Record that the run finished, so the next run starts fresh instead of resuming."""
        if distributed.is_main():
            (self.root / COMPLETE).write_text("")
        distributed.barrier()
