"""A training run's checkpoint directory must be one directory for every rank: each node of a
cluster writes its engine shards and RNG state into it, rank 0 the rest."""

import os
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from magistral_kedro.training.run import TrainingRun
from tests.support.ranks import free_port, join_as_launched


def _rank(rank: int, port: int, root: str, relative: bool) -> None:
    """Open a training run on ``checkpoints`` from the rank's own project directory (as two
    nodes each have a copy of the project); write what happened to ``root/rank<r>.txt``."""
    project = Path(root) / f"node{rank}"
    project.mkdir()
    os.chdir(project)
    join_as_launched(rank, port)
    directory = "data/rl_state" if relative else str(Path(root) / "shared" / "rl_state")
    try:
        TrainingRun("rl", directory, keep_last=2, fingerprint="f", tracker=None)
        outcome = "opened"
    except RuntimeError as error:
        outcome = str(error)
    (Path(root) / f"rank{rank}.txt").write_text(outcome)
    dist.destroy_process_group()


def _outcomes(tmp_path: Path, relative: bool) -> list[str]:
    mp.spawn(_rank, args=(free_port(), str(tmp_path), relative), nprocs=2, join=True)
    return [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]


@pytest.mark.slow
def test_a_directory_each_node_resolves_on_its_own_stops_every_rank(tmp_path):
    """A relative ``rl.checkpoint_dir`` is each node's own: the run stops before training, on
    every rank, naming the setting and the rank that cannot see rank 0's files."""
    outcomes = _outcomes(tmp_path, relative=True)
    for outcome in outcomes:
        assert "rl.checkpoint_dir" in outcome and "is not shared" in outcome, outcome
        assert str(tmp_path / "node1" / "data" / "rl_state") in outcome, outcome
    assert outcomes[0] == outcomes[1]


@pytest.mark.slow
def test_a_shared_directory_opens_and_keeps_no_probe(tmp_path):
    assert _outcomes(tmp_path, relative=False) == ["opened", "opened"]
    assert list((tmp_path / "shared" / "rl_state").iterdir()) == []


def test_one_process_writes_nothing_on_opening(tmp_path, monkeypatch):
    """Alone, a run has no one to share with: opening it writes no probe (nor the directory)."""
    monkeypatch.chdir(tmp_path)
    TrainingRun("rl", "data/rl_state", keep_last=2, fingerprint="f", tracker=None)
    assert list(tmp_path.iterdir()) == []
