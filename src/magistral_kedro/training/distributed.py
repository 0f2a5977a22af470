"""Data-parallel helpers that are no-ops in a single process.

Ranks come from a launcher (``deepspeed``, ``torchrun``; see :mod:`magistral_kedro.launch`). Every
helper answers for one process when no process group is initialised, so the training loops call
them unconditionally and a plain ``kedro run`` never needs a launcher.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    """Number of data-parallel processes (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """True on the rank that writes datasets, checkpoints' shared files and MLflow records."""
    return rank() == 0


def launched() -> bool:
    """True when a launcher started several processes (``WORLD_SIZE`` > 1 in the environment)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(timeout_minutes: int = 60) -> None:
    """Join the process group a launcher described (RANK, WORLD_SIZE, MASTER_ADDR...).

    NCCL with one GPU per local rank where CUDA is available, else gloo (CPU).
    """
    if dist.is_initialized():
        return
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))


def barrier() -> None:
    """Wait for every rank."""
    if _active():
        dist.barrier()


def all_gather_objects(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (``[value]`` in one process). Keep it small."""
    if not _active():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` on every rank."""
    if not _active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def on_rank_zero(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0 alone, its value on every rank (e.g. a digest of large files,
    or a decision every rank must share)."""
    return broadcast_object(compute() if is_main() else None)


def same_on_every_rank(compute: Callable[[], T], what: str) -> T:
    """``compute()`` on every rank, checked equal to rank 0's; RuntimeError on every rank,
    naming ``what`` and the ranks that differ, where it is not. For what every rank must agree
    on and computes from its own inputs: on a cluster each node reads its own copy of the
    project's settings and data (the latest versions in its ``data/``)."""
    value = compute()
    if not _active():
        return value
    views = all_gather_objects((value, socket.gethostname()))
    differ = [f"rank {r} on {host}" for r, (v, host) in enumerate(views) if v != views[0][0]]
    if differ:
        raise RuntimeError(
            f"{what} differ from rank 0's (on {views[0][1]}) on {', '.join(differ)}: every "
            "node must run the same settings on the same data"
        )
    return value


#: The name of the file by which :func:`check_shared_directory` finds out who sees a directory.
PROBE_PREFIX = ".shared-probe-"


def check_shared_directory(directory: str | Path, setting: str) -> None:
    """Raise RuntimeError on every rank unless every rank sees ``directory`` as one directory.

    Rank 0 creates it and writes a probe file there, the others must read it back; the probe
    is removed. A relative path is relative to each process's working directory, which on a
    cluster is each node's own project copy: a checkpoint written there would miss the other
    nodes' shards, and the run would fail at its end or at resume. ``setting`` names the
    parameter in the message. Nothing is written in one process.
    """
    if not _active():
        return
    directory = Path(directory)
    token = on_rank_zero(lambda: _write_probe(directory))
    probe = directory / f"{PROBE_PREFIX}{token}"
    here = (_sees(probe, token), socket.gethostname(), str(directory.resolve()))
    views = all_gather_objects(here)
    if is_main():
        probe.unlink()
    blind = [f"rank {r} on {host} looks in {path}" for r, (seen, host, path) in enumerate(views)
             if not seen]  # fmt: skip
    if blind:
        raise RuntimeError(
            f"{setting} ({views[0][2]} on rank 0) is not shared: {'; '.join(blind)}, and cannot "
            "see the file rank 0 wrote there. Every node must see one directory at one path "
            "(a filesystem every node mounts); a relative path is relative to each node's "
            "project directory."
        )


def _write_probe(directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    (directory / f"{PROBE_PREFIX}{token}").write_text(token)
    return token


def _sees(probe: Path, token: str, tries: int = 5) -> bool:
    """Whether ``probe`` holds ``token``, asked a few times: a network filesystem may show
    another node's new file a moment late."""
    for attempt in range(tries):
        try:
            if probe.read_text() == token:
                return True
        except OSError:
            pass
        time.sleep(0.1 * 2**attempt)
    return False


def my_chunks(n_chunks: int) -> range:
    """The chunks of a chunked loop that this rank does: every ``world_size``-th from its rank
    (all of them in one process). Each chunk must be seeded by its index, not by the rank, so
    that the split does not change what is computed."""
    return range(rank(), n_chunks, world_size())


def gather_chunks(done: dict[int, T], n_chunks: int) -> list[T]:
    """Every rank's ``{chunk: result}`` (its :func:`my_chunks` of ``n_chunks``), merged on every
    rank: the results in chunk order, as one process doing every chunk has them. The results
    travel as pickled objects (through GPU memory on NCCL): keep them to what the caller needs."""
    merged: dict[int, T] = {}
    for part in all_gather_objects(done):
        merged.update(part)
    if sorted(merged) != list(range(n_chunks)):
        raise RuntimeError(f"gathered chunks {sorted(merged)}, expected 0..{n_chunks - 1}")
    return [merged[chunk] for chunk in range(n_chunks)]


def all_reduce_max(value: int) -> int:
    """The largest ``value`` over the ranks."""
    return max(all_gather_objects(value))


def loss_denominator(local_tokens: int) -> float:
    """The token count that makes a step's loss ``sum over all its tokens / their number``.

    With one process this is ``local_tokens``. Across data-parallel ranks whose gradients are
    averaged (DeepSpeed, DDP), every rank divides by ``global_tokens / world_size``: the average
    of the ranks' gradients is then the gradient of the global token-normalised loss.
    """
    return sum(all_gather_objects(local_tokens)) / world_size()
