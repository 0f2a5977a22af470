"""Where a GRPO step's completions come from: one object, whoever generates.

The trainer submits each step's :class:`~magistral_kedro.grpo.curriculum.StepPlan`
(:meth:`Rollouts.submit`, up to :attr:`Rollouts.look_ahead` steps ahead of the one it trains
on), takes the verified completions (:meth:`Rollouts.next`), and after each GRPO step that
updated its weights hands them over (:meth:`Rollouts.sync_weights`). :func:`open_rollouts`
is the one place that decides who generates:

- the trained model itself (transformers, synchronous): generation in the step, from the
  engine's own weights (ZeRO-3 shards gathered for it); nothing to hand over;
- an engine with its own copy of the weights (vLLM): the trainer's weights are pushed to it
  after each optimiser step (and at the start: a resumed run's differ from the checkpoint it
  loaded);
- a generator thread (``grpo.mode: async``, docs/recipe.md, section 3): it keeps its own copy of the
  policy, its own threads and its own random generator, and samples ahead while the trainer
  steps. New weights are loaded between two
  decoding steps, so sequences in flight continue on their KV cache; each completion records
  the policy versions of its first and last token; the loss uses the generator's own log-probs
  as the old policy, which corrects for that. Staleness is bounded by the look-ahead: at most
  ``max_batches_in_flight`` steps are submitted and not yet trained on. Not bit-reproducible
  (timing decides which weights write which token); given the same weight versions at the same
  tokens it samples the same, and it never moves the trainer's random state.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import copy
import dataclasses
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from magistral_kedro.generation import (
    GenerationConfig,
    Generator,
    Sample,
    TransformersGenerator,
    open_generator,
)
from magistral_kedro.generation.base import WeightSyncedGenerator
from magistral_kedro.grpo.config import GRPOConfig, Stage, check_generation_mode
from magistral_kedro.grpo.curriculum import StepPlan
from magistral_kedro.models.factory import Checkpoint, CheckpointRef, ModelSource
from magistral_kedro.rewards import RewardBreakdown, RewardConfig, score_batch
from magistral_kedro.tasks.schema import Problem
from magistral_kedro.training import distributed
from magistral_kedro.training.engine import TrainEngine


def completions(plan: StepPlan, groups: list[list[Sample]]) -> list[tuple[int, Sample]]:
    """(problem index, completion) of every completion of a step, flat and group-major."""
    return [(i, s) for i, group in zip(plan.problem_indices, groups, strict=True) for s in group]


@dataclass
class Rollout:
    """One step's verified completions on this rank, groups in draw order."""

    plan: StepPlan
    groups: list[list[Sample]]
    rewards: list[RewardBreakdown]  # flat, group-major
    generate_s: float
    verify_s: float

    def completions(self) -> list[tuple[int, Sample]]:
        """(problem index, completion) of every completion, flat and group-major."""
        return completions(self.plan, self.groups)


@dataclass(frozen=True)
class Verifier:
    """Scores a step's completions with the Magistral reward at its stage's length limits."""

    problems: Sequence[Problem]
    stages: Sequence[Stage]
    reward: RewardConfig
    workers: int
    seed: int

    def __call__(self, plan: StepPlan, groups: list[list[Sample]]) -> list[RewardBreakdown]:
        """One verdict per completion, flat and group-major."""
        stage = self.stages[plan.stage]
        config = dataclasses.replace(self.reward, l_max=stage.l_max, l_cache=stage.l_cache)
        flat = completions(plan, groups)
        return score_batch(
            [s.text for _, s in flat],
            [self.problems[i] for i, _ in flat],
            [len(s.token_ids) for _, s in flat],
            config,
            n_workers=self.workers,
            seed=self.seed + plan.step,
        )


class Rollouts(abc.ABC):
    """Rollouts generated in the trainer's step: each submitted step is generated and verified
    when the trainer asks for it."""

    #: steps submitted ahead of the one trained on: 1, each step's stage is decided just before
    look_ahead = 1

    def __init__(
        self,
        generator: Generator,
        prompt_ids: Sequence[list[int]],
        group_size: int,
        verify: Verifier,
    ) -> None:
        self.generator = generator
        self.prompt_ids = prompt_ids
        self.group_size = group_size
        self.verify = verify
        self._submitted: collections.deque[StepPlan] = collections.deque()

    def submit(self, plan: StepPlan) -> None:
        """Queue a step's plan (the trainer decides its stage when it submits it)."""
        self._submitted.append(plan)

    def next(self) -> Rollout:
        """The oldest submitted step, generated and verified now."""
        return self._rollout(self._submitted.popleft())

    def _rollout(self, plan: StepPlan) -> Rollout:
        began = time.perf_counter()
        with self._generating() as generator:
            prompts = [self.prompt_ids[i] for i in plan.problem_indices]
            groups = generator.generate(prompts, self.group_size, plan.sampling, plan.seed)
        generated = time.perf_counter()
        rewards = self.verify(plan, groups)
        return Rollout(plan, groups, rewards, generated - began, time.perf_counter() - generated)

    @contextlib.contextmanager
    def _generating(self) -> Iterator[Generator]:
        yield self.generator

    @abc.abstractmethod
    def sync_weights(self, engine: TrainEngine, version: int) -> None:
        """Hand the trainer's weights, after ``version`` GRPO steps that updated them, to the
        generator."""


class EngineRollouts(Rollouts):
    """An inference engine with its own copy of the weights (vLLM) generates; the trainer's
    weights are pushed to it after every optimiser step."""

    def __init__(
        self,
        generator: WeightSyncedGenerator,
        prompt_ids: Sequence[list[int]],
        group_size: int,
        verify: Verifier,
    ) -> None:
        super().__init__(generator, prompt_ids, group_size, verify)
        self.engine = generator

    def sync_weights(self, engine: TrainEngine, version: int) -> None:
        """Push the trainer's weights in place, bucket by bucket (ZeRO-3: one bucket gathered at
        a time, tied weights under each of their names); the engine may read them again."""
        self.engine.mirror(engine.weight_buckets)


class OwnModelRollouts(Rollouts):
    """The trained model generates, in the step, with its current weights: nothing to sync."""

    def __init__(
        self,
        engine: TrainEngine,
        tokenizer: PreTrainedTokenizerBase,
        prompt_ids: Sequence[list[int]],
        group_size: int,
        verify: Verifier,
    ) -> None:
        generator = TransformersGenerator(engine.model, tokenizer)  # type: ignore[arg-type]
        super().__init__(generator, prompt_ids, group_size, verify)
        self.engine = engine

    @contextlib.contextmanager
    def _generating(self) -> Iterator[Generator]:
        with self.engine.full_weights():  # ZeRO-3: every shard, for the duration of sampling
            yield self.generator

    def sync_weights(self, engine: TrainEngine, version: int) -> None:
        """The generator is the trained model: its weights are already the new ones."""


class _Stopped(Exception):
    """Raised inside generation to abandon it when the trainer closes the rollouts."""


class AsyncRollouts(Rollouts):
    """A generator thread that samples the submitted steps ahead of the trainer with its own
    copy of the policy, loading published weights between two decoding steps. It owns its
    thread count (set in its own thread), its look-ahead and its stop signal; it samples from
    the random generator that each step's seed starts, never from torch's global one."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        prompt_ids: Sequence[list[int]],
        group_size: int,
        verify: Verifier,
        first_version: int,
        look_ahead: int,
        threads: int,
    ) -> None:
        self.policy = copy.deepcopy(model).eval().requires_grad_(False)
        generator = TransformersGenerator(
            self.policy,  # type: ignore[arg-type]
            tokenizer,
            between_steps=self._between_steps,
        )
        super().__init__(generator, prompt_ids, group_size, verify)
        self.look_ahead = look_ahead
        self.threads = threads
        self.version = first_version  # GRPO steps that updated the policy's weights
        self._published: tuple[int, dict[str, torch.Tensor]] | None = None
        self._lock = threading.Lock()
        self._plans: queue.Queue[StepPlan] = queue.Queue()
        self._ready: queue.Queue[Rollout | BaseException] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rollouts")
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

    def _run(self) -> None:
        torch.set_num_threads(self.threads)  # this thread's own pool, not the trainer's
        try:
            while not self._stop.is_set():
                try:
                    plan = self._plans.get(timeout=0.1)
                except queue.Empty:
                    continue
                self._between_steps()  # a new batch starts with the newest weights
                self._ready.put(self._rollout(plan))
        except _Stopped:
            return
        except BaseException as error:  # handed to the trainer, which re-raises it
            self._ready.put(error)

    def submit(self, plan: StepPlan) -> None:
        """Hand a step's plan to the generator thread, which starts on it when free."""
        self._plans.put(plan)

    def next(self) -> Rollout:
        """The oldest submitted step (waits for the thread to finish it)."""
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise RuntimeError("asynchronous generation failed") from item
        return item

    def sync_weights(self, engine: TrainEngine, version: int) -> None:
        """Publish the trainer's new weights (copied: training goes on)."""
        with engine.full_weights() as whole:
            weights = {k: v.detach().clone() for k, v in whole.state_dict().items()}
        with self._lock:
            self._published = (version, weights)

    def close(self) -> None:
        """Stop the generator thread (a batch in progress is dropped at its next token)."""
        self._stop.set()
        self._thread.join(timeout=600)


def _check_zero3(engine: TrainEngine, grpo: GRPOConfig, generation: GenerationConfig) -> None:
    """Under ZeRO-3 the trained module gathers its shards in every forward: generating with it
    (transformers) is one collective per decoding step, which ranks that finish their sequences
    at different steps would wait on forever, and a copy of it (async) keeps its hooks."""
    if engine.config.backend != "deepspeed" or engine.config.zero_stage != 3:
        return
    if grpo.mode == "async":
        raise ValueError("rl.grpo.mode 'async' cannot copy a ZeRO-3 model: use zero_stage 2")
    if generation.backend == "transformers" and distributed.world_size() > 1:
        raise ValueError(
            "ZeRO-3 over several ranks generates with vLLM (generation.backend: vllm): the "
            "trained model's own generation would gather its shards at every decoding step"
        )


@contextlib.contextmanager
def _half_of_the_threads(engine: TrainEngine) -> Iterator[None]:
    """On CPU the generator thread and the trainer run at once: the calling (trainer's) thread
    keeps half of its torch threads meanwhile, the generator thread takes as many (two
    full-width thread pools on the same cores slow both down several times)."""
    threads = torch.get_num_threads()
    if next(engine.model.parameters()).device.type == "cpu":
        torch.set_num_threads(max(1, threads // 2))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def open_rollouts(
    start: ModelSource,
    engine: TrainEngine,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: Sequence[list[int]],
    grpo: GRPOConfig,
    generation: GenerationConfig,
    verify: Verifier,
    seed: int,
    version: int,
) -> Iterator[Rollouts]:
    """The rollouts of a run (see the module docstring for who generates); ``version`` counts
    the GRPO steps that updated the engine's weights (a resumed run's are not 0)."""
    check_generation_mode(grpo, generation)
    _check_zero3(engine, grpo, generation)
    with contextlib.ExitStack() as stack:
        rollouts: Rollouts
        if grpo.mode == "async":
            stack.enter_context(_half_of_the_threads(engine))
            with engine.full_weights() as whole:
                thread = AsyncRollouts(
                    whole, tokenizer, prompt_ids, grpo.group_size, verify, version,
                    look_ahead=grpo.max_batches_in_flight, threads=torch.get_num_threads(),
                )  # fmt: skip
            stack.callback(thread.close)
            rollouts = thread
        elif generation.backend == "transformers":
            rollouts = OwnModelRollouts(engine, tokenizer, prompt_ids, grpo.group_size, verify)
        else:
            with engine.full_weights() as whole:  # a model in memory: written for the engine
                source = start if isinstance(start, CheckpointRef) else Checkpoint(whole, tokenizer)  # type: ignore[arg-type]
                opened = open_generator(source, generation, seed, colocated=True)
                generator = stack.enter_context(opened)
            assert isinstance(generator, WeightSyncedGenerator)
            rollouts = EngineRollouts(generator, prompt_ids, grpo.group_size, verify)
            rollouts.sync_weights(engine, version)  # a resumed run's weights are not the start's
        yield rollouts
