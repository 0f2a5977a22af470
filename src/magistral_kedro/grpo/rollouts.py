"""Where a GRPO step's completions come from: generated now (sync) or ahead of time (async).

Asynchronous generation (MAGISTRAL.md section 3): a generator thread keeps its own copy of the
policy and keeps sampling while the trainer steps. Each finished batch is verified and queued;
the trainer takes one batch per step and publishes its new weights, which the generator loads
between two decoding steps, so the sequences in flight continue (their KV cache computed by the
older weights is kept). Each completion records the policy versions that produced its first and
last tokens; the loss uses the generator's own log-probs as the old policy, which corrects for
that. Staleness is bounded: at most ``max_in_flight`` sequences are generated but not yet trained
on. Sampling here is not bit-reproducible (which weights produce which token depends on timing);
the synchronous mode is.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from magistral_kedro.generation import Generator, Sample, SamplingConfig, TransformersGenerator
from magistral_kedro.rewards import RewardBreakdown


class _Stopped(Exception):
    """Raised inside generation to abandon it when the trainer closes the rollouts."""


@dataclass(frozen=True)
class Work:
    """What one step samples on this rank."""

    step: int
    stage: int  # curriculum stage in force when it was drawn
    chosen: list[int]  # problem index of each group
    sampling: SamplingConfig
    seed: int


#: Draws step ``k``'s work.
Plan = Callable[[int], Work]
#: Scores a step's completions (flat, group-major).
Verify = Callable[[Work, list[list[Sample]]], list[RewardBreakdown]]


@dataclass
class Rollout:
    """One step's verified completions on this rank, groups in draw order."""

    work: Work
    groups: list[list[Sample]]
    rewards: list[RewardBreakdown]  # flat, group-major
    generate_s: float
    verify_s: float


def rollout(
    generator: Generator,
    prompts: Sequence[str],
    group_size: int,
    plan: Plan,
    verify: Verify,
    step: int,
) -> Rollout:
    """Generate and verify step ``step``'s groups now, with the generator's current weights."""
    work = plan(step)
    began = time.perf_counter()
    groups = generator.generate(
        [prompts[i] for i in work.chosen], group_size, work.sampling, work.seed
    )
    generated = time.perf_counter()
    rewards = verify(work, groups)
    return Rollout(work, groups, rewards, generated - began, time.perf_counter() - generated)


class AsyncRollouts:
    """A generator thread that runs ahead of the trainer (at most ``ahead`` steps' batches).

    ``ahead`` = max_in_flight // sequences per step: 2 (the paper's bound, 2 * n_batch) lets the
    generator fill the next batch while the trainer trains on the current one and start another.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: object,
        prompts: Sequence[str],
        group_size: int,
        plan: Plan,
        verify: Verify,
        first_step: int,
        ahead: int,
    ) -> None:
        if ahead < 1:
            raise ValueError(f"max_in_flight must allow at least one batch ahead, got {ahead}")
        self.policy = copy.deepcopy(model).eval().requires_grad_(False)
        # On CPU the generator and the trainer run at once: each gets half of torch's threads
        # (two full-width thread pools on the same cores slow both down several times).
        self._threads = torch.get_num_threads()
        if next(model.parameters()).device.type == "cpu":
            torch.set_num_threads(max(1, self._threads // 2))
        self.version = first_step  # optimiser steps behind the policy's weights
        self._published: tuple[int, dict[str, torch.Tensor]] | None = None
        self._lock = threading.Lock()
        self._room = threading.Semaphore(ahead)
        self._ready: queue.Queue[Rollout | BaseException] = queue.Queue()
        self._stop = threading.Event()
        self._generator = TransformersGenerator(
            self.policy,  # type: ignore[arg-type]
            tokenizer,  # type: ignore[arg-type]
            between_steps=self._between_steps,
        )
        args = (prompts, group_size, plan, verify, first_step)
        self._thread = threading.Thread(target=self._run, args=args, daemon=True, name="rollouts")
        self._thread.start()

    def _between_steps(self) -> int:
        """Load weights published since the last decoding step; the version that just ran."""
        if self._stop.is_set():
            raise _Stopped
        ran = self.version
        with self._lock:
            published, self._published = self._published, None
        if published is not None:
            version, weights = published
            with torch.no_grad():
                for name, tensor in self.policy.state_dict().items():
                    tensor.copy_(weights[name])
            self.version = version
        return ran

    def _run(
        self, prompts: Sequence[str], group_size: int, plan: Plan, verify: Verify, step: int
    ) -> None:
        try:
            while not self._stop.is_set():
                while not self._room.acquire(timeout=0.1):
                    if self._stop.is_set():
                        return
                self._between_steps()  # a new batch starts with the newest weights
                self._ready.put(rollout(self._generator, prompts, group_size, plan, verify, step))
                step += 1
        except _Stopped:
            return
        except BaseException as error:  # handed to the trainer, which re-raises it
            self._ready.put(error)

    def next(self) -> Rollout:
        """The oldest finished batch (waits for it); frees room for one more."""
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise RuntimeError("asynchronous generation failed") from item
        self._room.release()
        return item

    def publish(self, model: torch.nn.Module, version: int) -> None:
        """Hand the trainer's new weights to the generator (copied: training goes on)."""
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        with self._lock:
            self._published = (version, weights)

    def close(self) -> None:
        """Stop the generator thread (a batch in progress is dropped at its next token)."""
        self._stop.set()
        self._thread.join(timeout=600)
        torch.set_num_threads(self._threads)
