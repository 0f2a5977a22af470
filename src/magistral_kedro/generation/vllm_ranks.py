"""How a vLLM engine sits among the ranks of a launch: its executor, its device, and the prompts
of a tensor-parallel group.

- **One engine per rank, on its rank's device.** With more than one rank, every rank builds its
  engine with ``distributed_executor_backend="external_launcher"``: vLLM then joins the
  launcher's process group and takes the device of ``LOCAL_RANK``. Without it, vLLM's in-process
  executor takes device 0 in every rank and makes it current under the trainer.
  :func:`keeping_current_device` also puts back whatever device was current before.
- **Tensor parallelism across ranks** (``tensor_parallel_size`` = k > 1): vLLM makes every k
  consecutive ranks (0..k-1, k..2k-1, ...) one engine, and each of them must feed it the same
  prompts at the same time. The callers still deal work per rank (GRPO's groups, evaluation's
  chunks), so a group *pools* it: at each call every member hands its prompts to the others
  (:class:`PromptPool`), all members submit the members' prompts concatenated in rank order,
  each with the seed its own rank would have used, and each keeps its own share. A rank's samples
  are therefore the ones it would have drawn alone. A member with fewer calls to make (one
  chunk fewer) takes part in the others' remaining calls with nothing of its own from
  :meth:`PromptPool.drain` when its engine is closed, so no member waits forever.
- **Shutting an engine down leaves the launcher's process group** (:func:`keeping_process_group`):
  vLLM's teardown would destroy it, and the trainer (and a later engine) still needs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from magistral_kedro.generation.base import SamplingConfig
from magistral_kedro.training import distributed


def executor_kwargs() -> dict[str, Any]:
    """``vllm.LLM`` arguments for the world this process is in: the external launcher whenever
    a launcher started more than one rank (see the module docstring)."""
    if distributed.world_size() > 1 or distributed.launched():
        return {"distributed_executor_backend": "external_launcher"}
    return {}


@contextlib.contextmanager
def keeping_current_device() -> Iterator[None]:
    """The accelerator device current before the block is current after it (vLLM may set its
    own while it builds an engine; the trainer's tensors live on the one it had)."""
    if not torch.cuda.is_available():
        yield
        return
    device = torch.cuda.current_device()
    try:
        yield
    finally:
        torch.cuda.set_device(device)


@contextlib.contextmanager
def keeping_process_group() -> Iterator[None]:
    """torch.distributed's default group outlives the block. vLLM's engine shutdown destroys
    it along with vLLM's own groups, and under the external launcher it is the trainer's: the
    ranks' gradients, barriers and checkpoints need it after the engine is gone. Other groups
    go as vLLM asks."""
    if not dist.is_initialized():
        yield
        return
    destroy = dist.destroy_process_group

    def destroy_all_but_the_default(group: Any = None) -> None:
        if group is not None and group is not dist.group.WORLD:
            destroy(group)

    dist.destroy_process_group = destroy_all_but_the_default
    try:
        yield
    finally:
        dist.destroy_process_group = destroy


@dataclass(frozen=True)
class Share:
    """One member's call: its prompts (token ids) and how to sample them."""

    prompts: list[list[int]]
    n: int
    sampling: SamplingConfig
    seed: int


class PromptPool:
    """The members of this rank's tensor-parallel group exchange their calls (module docstring).

    ``size`` is the tensor-parallel size; the world must be a multiple of it. Every rank of the
    world builds its pool at the same point (each tensor-parallel group is a collective made by
    all of them), as every rank builds its engine.
    """

    def __init__(self, size: int) -> None:
        world, rank = distributed.world_size(), distributed.rank()
        if world % size:
            raise ValueError(
                f"generation.vllm.tensor_parallel_size {size} does not divide the {world} ranks "
                "of the launch (each group of that many consecutive ranks shares one engine)"
            )
        self.size = size
        self.index = rank % size  # this rank's place in its group
        self.group: Any = None
        for first in range(0, world, size):  # every rank makes every group, in the same order
            group = dist.new_group(list(range(first, first + size)), backend="gloo")
            if first <= rank < first + size:
                self.group = group

    def exchange(self, mine: Share | None) -> list[Share | None]:
        """Every member's call this round, in rank order (None: a member with nothing left)."""
        everyone: list[Share | None] = [None] * self.size
        dist.all_gather_object(everyone, mine, group=self.group)
        return everyone


def pool_for(tensor_parallel_size: int) -> PromptPool | None:
    """A pool when the ranks of a launch share engines (tensor parallel > 1 over several ranks);
    None when each rank's engine is its own (or one process drives the whole engine)."""
    if tensor_parallel_size == 1 or distributed.world_size() == 1:
        return None
    return PromptPool(tensor_parallel_size)
