"""The GRPO loop (docs/recipe.md), one step at a time::

    rollout = rollouts.next()                     # the step's groups, generated and verified
    batch   = make_batch(rollout, ...)            # every rank's rewards -> advantages, minibatches
    metrics = update(engine, batch, grpo)         # microbatches, the clipped loss, optimiser steps
    rollouts.sync_weights(engine, version)        # the generator gets the new weights
    run.log(metrics, step); run.save(...)         # every step live; a checkpoint every N steps

Synchronous by default (the step's completions are generated in the step) or asynchronous
(``grpo.mode: async``, a generator thread samples ahead); the old policy is the generator's own
log-probs, or, with truncated importance sampling (on with vLLM), the trainer's before the
update while each token is weighted by their capped ratio (see
:mod:`magistral_kedro.grpo.update`). Resumable: a checkpoint holds model, optimiser, scheduler,
RNG, step, curriculum stage and the tracking run, and every step's data is a function of (seed,
step), so a killed run started again continues where it stopped
(:class:`~magistral_kedro.training.run.TrainingRun`).

Data-parallel over the ranks of a launcher (:mod:`magistral_kedro.launch`): each rank samples
its share of the step's prompts (whole groups), advantages are computed over every rank's
rewards, the loss is divided by the global token count and DeepSpeed averages the gradients.
Only rank 0 logs and writes the shared files.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from magistral_kedro.generation import GenerationConfig, encode_prompts
from magistral_kedro.grpo.batch import StepBatch, make_batch, step_metrics
from magistral_kedro.grpo.config import GRPOConfig, Stage, check_generation_mode, uses_tis
from magistral_kedro.grpo.curriculum import Curriculum, sampling_of, stage_index
from magistral_kedro.grpo.rollouts import Rollout, Rollouts, Verifier, open_rollouts
from magistral_kedro.grpo.update import update
from magistral_kedro.models.factory import CheckpointRef, ModelSource, dtype_name, load_model
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tasks.schema import Problem
from magistral_kedro.training import distributed
from magistral_kedro.training.engine import EngineConfig, TrainEngine, create_engine
from magistral_kedro.training.run import TrainingRun

if TYPE_CHECKING:
    from magistral_kedro.tracking import Tracker

SAMPLES_FILE = "samples.jsonl"


@dataclass
class RunState:
    """What the loop carries from step to step, and a checkpoint saves."""

    step: int = 0  # steps done
    stage: int = 0  # curriculum stage in force
    last_reward: float = 0.0  # mean reward of the last step (stages may start on it)
    skipped: int = 0  # steps with no row to train on (nothing to learn)
    version: int = 0  # GRPO steps that updated the weights (the policy version)

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> RunState:
        """The state a checkpoint saved (other keys ignored)."""
        return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls) if f.name in saved})


def train_grpo(
    start: ModelSource,
    problems: Sequence[Problem],
    prompts: Sequence[str],
    *,
    engine_config: EngineConfig,
    grpo: GRPOConfig,
    stages: Sequence[Stage],
    reward: RewardConfig,
    checkpoint_dir: str | Path,
    seed: int,
    fingerprint: str = "",
    tracker: Tracker | None = None,
    generation: GenerationConfig | None = None,
) -> tuple[CheckpointRef, list[dict[str, Any]]]:
    """Run ``engine_config.optim.max_steps`` GRPO steps from ``start`` on ``problems``
    (``prompts[i]`` is the model input of ``problems[i]``). Returns the trained model (the
    Hugging Face directory of the last checkpoint: whole weights, ZeRO-3 shards gathered, to be
    loaded in ``start``'s dtype) and the sampled completions logged along the way (a few per
    step, rank 0's). A model in memory is consumed (ZeRO-3 partitions it in place). A finished
    run with the same ``fingerprint`` is returned as it is, nothing loaded.

    ``generation`` (transformers by default) decides who generates, see
    :func:`~magistral_kedro.grpo.rollouts.open_rollouts`."""
    if len(problems) != len(prompts) or not problems:
        raise ValueError(f"need one prompt per problem, got {len(problems)} and {len(prompts)}")
    if not stages:
        raise ValueError("at least one curriculum stage is needed")
    generation = generation or GenerationConfig()
    check_generation_mode(grpo, generation)
    grpo = dataclasses.replace(grpo, tis="on" if uses_tis(grpo, generation) else "off")
    run = TrainingRun("rl", checkpoint_dir, grpo.keep_checkpoints, fingerprint, tracker)
    model_dir = run.finished()
    if model_dir is None:
        curriculum = Curriculum(
            stages, problems, sampling_of(grpo), seed, distributed.rank(), distributed.world_size()
        )
        verify = Verifier(problems, stages, reward, grpo.reward_workers, seed)
        model_dir = _train(start, run, prompts, engine_config, grpo, curriculum, verify, generation)
    samples = _read_samples(run.root / SAMPLES_FILE) if distributed.is_main() else []
    return CheckpointRef(model_dir, dtype_name(start)), samples


def _train(
    start: ModelSource,
    run: TrainingRun,
    prompts: Sequence[str],
    engine_config: EngineConfig,
    grpo: GRPOConfig,
    curriculum: Curriculum,
    verify: Verifier,
    generation: GenerationConfig,
) -> Path:
    """Load the start model, resume or begin, train; the trained model's directory."""
    seed = curriculum.seed
    loaded = load_model(start)
    torch.manual_seed(seed)
    loaded.model.train()
    with create_engine(loaded.model, _per_update(engine_config, grpo)) as engine:
        state = RunState.from_saved(run.begin(engine))
        _forget_samples_after(run.root / SAMPLES_FILE, state.step)
        prompt_ids = encode_prompts(loaded.tokenizer, prompts)
        with open_rollouts(
            start,
            engine,
            loaded.tokenizer,
            prompt_ids,
            grpo,
            generation,
            verify,
            seed + distributed.rank(),
            state.version,
        ) as rollouts:
            loop = _Loop(engine, rollouts, grpo, curriculum, run, loaded.tokenizer, prompt_ids)
            loop.train(state, engine_config.optim.max_steps)
    return run.end()


def _per_update(engine_config: EngineConfig, grpo: GRPOConfig) -> EngineConfig:
    """The engine's schedule counts optimiser updates: ``n_minibatches`` per GRPO step."""
    if grpo.n_minibatches == 1:
        return engine_config
    optim = engine_config.optim
    scaled = dataclasses.replace(
        optim,
        max_steps=optim.max_steps * grpo.n_minibatches,
        warmup_steps=optim.warmup_steps * grpo.n_minibatches,
    )
    return dataclasses.replace(engine_config, optim=scaled)


@dataclass
class _Loop:
    """One run's fixed parts, and the steps that use them."""

    engine: TrainEngine
    rollouts: Rollouts
    grpo: GRPOConfig
    curriculum: Curriculum
    run: TrainingRun
    tokenizer: PreTrainedTokenizerBase
    prompt_ids: Sequence[list[int]]  # the prompts as the trainer scores and the generator sees

    def train(self, state: RunState, max_steps: int) -> None:
        """Steps from ``state.step`` to ``max_steps``; ``state`` follows them."""
        pad_id = self.tokenizer.pad_token_id
        assert pad_id is not None, "the tokenizer needs a pad token"
        submitted = state.step
        progress = tqdm(total=max_steps, initial=state.step, desc="rl", unit="step", leave=False,
                        disable=not distributed.is_main())  # fmt: skip
        for step in range(state.step, max_steps):
            until = min(step + self.rollouts.look_ahead, max_steps)
            submitted = self._submit(state, submitted, until)
            began = time.perf_counter()
            rollout = self.rollouts.next()
            waited = time.perf_counter() - began
            batch = make_batch(rollout, self.prompt_ids, pad_id, self.grpo, self.curriculum.seed)
            state.stage = max(state.stage, rollout.plan.stage)
            metrics = self._measure(state, rollout, batch, waited)
            if batch.kept == 0:  # every group all-equal (rs_ft: no right answer): nothing to learn
                state.skipped += 1
                metrics["train/skipped_steps"] = float(state.skipped)
            else:
                metrics |= self._update(batch, step)
                state.version += 1
                self.rollouts.sync_weights(self.engine, state.version)
            state.last_reward = metrics["reward/total"]
            metrics["time/step_s"] = time.perf_counter() - began
            state.step += 1
            self.run.log(metrics, state.step)
            self._write_samples(state.step, rollout)
            progress.update(1)
            progress.set_postfix(reward=f"{metrics['reward/total']:.3f}",
                                 acc=f"{metrics['accuracy']:.2f}")  # fmt: skip
            if state.step % self.grpo.checkpoint_every == 0 or state.step == max_steps:
                self._checkpoint(state)
        progress.close()

    def _submit(self, state: RunState, submitted: int, until: int) -> int:
        """Submit the steps up to ``until`` (excluded), each at the stage in force now: the same
        on every rank, since it depends on the step and the (gathered) last reward only."""
        for step in range(submitted, until):
            stage = stage_index(self.curriculum.stages, step, state.stage, state.last_reward)
            self.rollouts.submit(self.curriculum.plan(step, stage))
        return max(submitted, until)

    def _measure(
        self, state: RunState, rollout: Rollout, batch: StepBatch, waited: float
    ) -> dict[str, float]:
        """The step's rewards, completions, curriculum and generation times."""
        generated_tokens = sum(len(s.token_ids) for group in rollout.groups for s in group)
        return step_metrics(batch, state.version) | {
            "curriculum/stage": float(state.stage),
            "curriculum/l_max": float(self.curriculum.stages[state.stage].l_max),
            "time/generate_s": rollout.generate_s,
            "time/verify_s": rollout.verify_s,
            "time/wait_s": waited,  # async: what the trainer waited for its batch
            "throughput/generate_tokens_per_s": generated_tokens / max(rollout.generate_s, 1e-9),
        }

    def _update(self, batch: StepBatch, step: int) -> dict[str, float]:
        """The policy update of one step and its statistics; a non-finite loss stops the run
        naming the step and the last good checkpoint."""
        began = time.perf_counter()
        try:
            stats, tokens = update(self.engine, batch, self.grpo)
        except FloatingPointError as error:
            raise self.run.stop(error, step + 1) from error
        seconds = time.perf_counter() - began
        return stats | {
            "time/train_s": seconds,
            "throughput/train_tokens_per_s": tokens / max(seconds, 1e-9),
        }

    def _write_samples(self, step: int, rollout: Rollout) -> None:
        """A few of the step's completions to the samples file (rank 0)."""
        if not distributed.is_main():
            return
        flat = rollout.completions()
        with (self.run.root / SAMPLES_FILE).open("a") as out:
            for k in range(min(self.grpo.samples_per_step, len(flat))):
                index, sample = flat[k]
                row = {
                    "step": step,
                    "problem_id": self.curriculum.problems[index].id,
                    "completion": sample.text,
                    **rollout.rewards[k].__dict__,
                }
                out.write(json.dumps(row, ensure_ascii=False) + "\n")

    def _checkpoint(self, state: RunState) -> None:
        # ZeRO-3's gathered weights are one copy by construction: nothing to compare there.
        if distributed.world_size() > 1 and self.engine.config.zero_stage < 3:
            with self.engine.full_weights() as whole:
                _check_replicas(whole, state.step)
        saved = {k: v for k, v in dataclasses.asdict(state).items() if k != "step"}
        self.run.save(state.step, self.engine, self.tokenizer, saved)


def _check_replicas(model: torch.nn.Module, step: int) -> None:
    """Every rank must hold the same weights; a difference means a broken reduction."""
    with torch.no_grad():
        checksum = [float(p.double().sum()) for p in model.parameters()]
    of_rank = distributed.all_gather_objects(checksum)
    for rank, checksum_of_rank in enumerate(of_rank[1:], start=1):
        if checksum_of_rank != of_rank[0]:
            raise RuntimeError(f"rank {rank}'s weights differ from rank 0's after step {step}")


def _forget_samples_after(path: Path, step: int) -> None:
    """Drop the rows of steps after ``step``: a resumed run writes them again."""
    if distributed.is_main() and path.exists():
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        kept = [json.dumps(r, ensure_ascii=False) for r in rows if r["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


def _read_samples(path: Path) -> list[dict[str, Any]]:
    """The sampled completions a run logged, one JSON object a line."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
