"""The GRPO loop: generate groups -> verify -> advantages -> collate -> clipped loss -> step.

Synchronous (generation, then training, each step); the generator's own log-probs are the old
policy. Resumable: a checkpoint holds model, optimiser, scheduler, RNG, step, curriculum stage and
the tracking run, and every step's data is a function of (seed, step), so a killed run started
again continues where it stopped, into the same tracking run, without counting a step twice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from magistral_kedro.config import config
from magistral_kedro.generation import SamplingConfig, TransformersGenerator
from magistral_kedro.grpo.core import loss_denominator, magistral_advantages, magistral_loss
from magistral_kedro.models.factory import Checkpoint, save_checkpoint
from magistral_kedro.rewards import RewardBreakdown, RewardConfig, score_batch
from magistral_kedro.tasks.schema import Problem
from magistral_kedro.training.batching import collate_causal_lm, greedy_collate, token_logprobs
from magistral_kedro.training.checkpointing import CheckpointManager
from magistral_kedro.training.engine import EngineConfig, TrainEngine, create_engine
from magistral_kedro.training.tracker import Tracker

Positive = Annotated[int, Field(gt=0)]
SAMPLES_FILE = "samples.jsonl"
LOGGED = "LOGGED"  # marker: this checkpoint's metrics and model are in the tracker


@config
class Stage:
    """One curriculum stage (MAGISTRAL.md section 5), in force from ``start_step`` or as soon as
    the mean reward of the last step reaches ``min_reward``, whichever comes first."""

    start_step: Annotated[int, Field(ge=0)] = 0
    l_max: Positive = 128
    l_cache: Annotated[int, Field(ge=0)] = 32
    n_prompts: Positive = 32
    difficulty: tuple[int, int] = (0, 1_000_000)
    min_reward: float | None = None


@config
class GRPOConfig:
    """Knobs of the loop; the paper's values are the defaults where it gives one."""

    group_size: Annotated[int, Field(ge=2)] = 8
    eps_low: Annotated[float, Field(ge=0, lt=1)] = 0.2
    eps_high: Annotated[float, Field(ge=0)] = 0.28
    temperature: Annotated[float, Field(gt=0)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    n_minibatches: Positive = 1
    max_tokens_per_microbatch: Positive = 8192
    generation_batch_size: Positive = 256
    checkpoint_every: Positive = 10
    keep_checkpoints: Positive = 2
    samples_per_step: Annotated[int, Field(ge=0)] = 4
    reward_workers: Positive = 2


def _stage_index(stages: Sequence[Stage], step: int, current: int, last_reward: float) -> int:
    index = current
    for i in range(current + 1, len(stages)):
        threshold = stages[i].min_reward
        if stages[i].start_step <= step or (threshold is not None and last_reward >= threshold):
            index = i
    return index


def _draw(problems: Sequence[Problem], stage: Stage, seed: int, step: int) -> list[int]:
    low, high = stage.difficulty
    eligible = [i for i, p in enumerate(problems) if low <= p.difficulty <= high]
    if not eligible:
        raise ValueError(f"no training problem has a difficulty in {stage.difficulty}")
    rng = np.random.default_rng([seed, step])
    size = min(stage.n_prompts, len(eligible))
    return [eligible[int(i)] for i in rng.choice(len(eligible), size=size, replace=False)]


def _policy_loss(
    engine: TrainEngine,
    sequences: list[list[int]],
    prompt_lengths: list[int],
    old_logprobs: list[list[float]],
    advantages: torch.Tensor,
    pad_id: int,
    grpo: GRPOConfig,
) -> dict[str, float]:
    """Backward over one minibatch, cut into microbatches; the denominator is its token count."""
    local_tokens = sum(len(s) - p for s, p in zip(sequences, prompt_lengths, strict=True))
    total_tokens = loss_denominator(local_tokens)
    sums: dict[str, float] = {}
    for group in greedy_collate([len(s) for s in sequences], grpo.max_tokens_per_microbatch):
        batch = collate_causal_lm(
            [sequences[i] for i in group], [prompt_lengths[i] for i in group], pad_id
        )
        old = torch.zeros_like(batch["loss_mask"])
        for row, i in enumerate(group):
            old[row, prompt_lengths[i] : len(sequences[i])] = torch.tensor(old_logprobs[i])
        output = engine.forward(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
        logits = output.logits.float() / grpo.temperature  # as the generator scaled them
        logprobs = token_logprobs(logits, batch["input_ids"])
        loss, stats = magistral_loss(
            logprobs, old, advantages[group], batch["loss_mask"], grpo.eps_low, grpo.eps_high,
            total_tokens=total_tokens,
        )  # fmt: skip
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"GRPO loss is {float(loss.detach())}")
        engine.backward(loss)
        with torch.no_grad():
            probs = torch.softmax(logits[:, :-1], dim=-1)
            entropy = -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1)
            mask = batch["loss_mask"][:, 1:]
            weight = float(batch["loss_mask"].sum())
            stats["policy/entropy"] = float((entropy * mask).sum() / mask.sum().clamp(min=1))
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + value * weight
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * total_tokens
    return {key: value / local_tokens for key, value in sums.items()}


def train_grpo(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
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
) -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    """Run ``engine_config.optim.max_steps`` GRPO steps on ``problems`` (``prompts[i]`` is the
    model input of ``problems[i]``). Returns the trained model and the sampled completions logged
    along the way (a few per step)."""
    if len(problems) != len(prompts) or not problems:
        raise ValueError(f"need one prompt per problem, got {len(problems)} and {len(prompts)}")
    if not stages:
        raise ValueError("at least one curriculum stage is needed")
    max_steps = engine_config.optim.max_steps
    pad_id = tokenizer.pad_token_id
    assert pad_id is not None, "the tokenizer needs a pad token"
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]

    torch.manual_seed(seed)
    model.train()
    engine = create_engine(model, engine_config)
    manager = CheckpointManager(checkpoint_dir, grpo.keep_checkpoints, fingerprint)
    state: dict[str, Any] = {
        "step": 0,
        "stage": 0,
        "last_reward": 0.0,
        "run_id": None,
        "skipped": 0,
    }
    resume_from = manager.resumable()
    if resume_from is not None:
        state.update(manager.load(resume_from, engine))
        tqdm.write(f"rl: resuming from {resume_from} (step {state['step']})")
    else:
        manager.start_fresh()
    if tracker is not None:
        state["run_id"] = tracker.attach(state["run_id"])
    samples_path = Path(checkpoint_dir) / SAMPLES_FILE
    if samples_path.exists():  # rows of steps after the checkpoint will be written again
        rows = [json.loads(line) for line in samples_path.read_text().splitlines()]
        kept_rows = [json.dumps(r, ensure_ascii=False) for r in rows if r["step"] <= state["step"]]
        samples_path.write_text("".join(line + "\n" for line in kept_rows))

    # Metrics wait for the checkpoint that makes their steps final: a resume redoes the steps
    # after the last checkpoint, and the tracking history must not hold them twice.
    pending: list[tuple[dict[str, float], int]] = []

    def flush(path: Path, rows: list[tuple[dict[str, float], int]]) -> None:
        """Log a checkpoint's metrics and model once; the marker file says it was done."""
        if tracker is not None:
            for metrics, at in rows:
                tracker.log_metrics(metrics, at)
            tracker.log_checkpoint(path / "hf", int(path.name.removeprefix("step_")))
        (path / LOGGED).touch()

    def checkpoint(step: int) -> None:
        def export(path: Path) -> None:
            save_checkpoint(Checkpoint(engine.model, tokenizer), path)  # type: ignore[arg-type]

        keys = ("stage", "last_reward", "run_id", "skipped")
        # The metrics travel inside the checkpoint: killed before they are logged, the resumed
        # run logs them; killed after, it finds the marker and does not log them twice.
        payload = {**{k: state[k] for k in keys}, "metrics": pending}
        path = manager.save(step, engine, payload, export)
        flush(path, pending)
        pending.clear()

    if resume_from is not None and not (resume_from / LOGGED).exists():
        flush(resume_from, [(m, at) for m, at in state.pop("metrics", [])])
    state.pop("metrics", None)

    progress = tqdm(total=max_steps, initial=state["step"], desc="rl", unit="step", leave=False)
    for step in range(state["step"], max_steps):
        state["stage"] = _stage_index(stages, step, state["stage"], state["last_reward"])
        stage = stages[state["stage"]]
        cfg = dataclasses.replace(reward, l_max=stage.l_max, l_cache=stage.l_cache)
        chosen = _draw(problems, stage, seed, step)

        began = time.perf_counter()
        sampling = SamplingConfig(
            max_new_tokens=stage.l_max,
            temperature=grpo.temperature,
            top_p=grpo.top_p,
            batch_size=grpo.generation_batch_size,
        )
        groups = TransformersGenerator(engine.model, tokenizer).generate(  # type: ignore[arg-type]
            [prompts[i] for i in chosen], n=grpo.group_size, sampling=sampling,
            seed=seed * 1_000_003 + step,
        )  # fmt: skip
        generated = time.perf_counter()
        flat = [(i, s) for i, group in zip(chosen, groups, strict=True) for s in group]
        rewards: list[RewardBreakdown] = score_batch(
            [s.text for _, s in flat], [problems[i] for i, _ in flat],
            [len(s.token_ids) for _, s in flat], cfg, n_workers=grpo.reward_workers,
            seed=seed + step,
        )  # fmt: skip
        verified = time.perf_counter()

        totals = torch.tensor([float(r.total) for r in rewards])
        group_index = torch.tensor([g for g, group in enumerate(groups) for _ in group])
        advantages, keep = magistral_advantages(totals, group_index)
        n_kept = int(keep.sum())
        lengths = [len(s.token_ids) for _, s in flat]
        metrics: dict[str, float] = {
            "reward/total": float(totals.mean()),
            "reward/format": float(np.mean([r.format for r in rewards])),
            "reward/correct": float(np.mean([r.correct for r in rewards])),
            "reward/length": float(np.mean([r.length for r in rewards])),
            "reward/language": float(np.mean([r.language for r in rewards])),
            "accuracy": float(np.mean([r.correct > 0 for r in rewards])),
            "groups/dropped_frac": 1.0 - n_kept / len(flat),
            "completion/mean_tokens": float(np.mean(lengths)),
            "completion/max_tokens": float(max(lengths)),
            "completion/truncated_frac": float(
                np.mean([s.finish_reason == "length" for _, s in flat])
            ),
            "curriculum/stage": float(state["stage"]),
            "curriculum/l_max": float(stage.l_max),
            "time/generate_s": generated - began,
            "time/verify_s": verified - generated,
            "throughput/generate_tokens_per_s": sum(lengths) / max(generated - began, 1e-9),
        }
        if n_kept == 0:  # every group all-right or all-wrong: nothing to learn from this batch
            state["skipped"] += 1
            metrics["train/skipped_steps"] = float(state["skipped"])
        else:
            kept = [k for k in range(len(flat)) if keep[k]]
            order = np.random.default_rng([seed, step, 1]).permutation(kept)
            train_tokens = 0
            for chunk in np.array_split(order, grpo.n_minibatches):
                if len(chunk) == 0:
                    continue
                rows = [int(k) for k in chunk]
                sequences = [prompt_ids[flat[k][0]] + flat[k][1].token_ids for k in rows]
                try:
                    stats = _policy_loss(
                        engine, sequences, [len(prompt_ids[flat[k][0]]) for k in rows],
                        [flat[k][1].logprobs for k in rows], advantages[rows], pad_id, grpo,
                    )  # fmt: skip
                except FloatingPointError as error:
                    last = manager.checkpoints()
                    raise FloatingPointError(
                        f"{error} at step {step}; stopped before the update. Last good "
                        f"checkpoint: {last[-1] if last else 'none'}. Try a lower learning rate."
                    ) from error
                metrics.update(stats)
                metrics.update({f"train/{k}": v for k, v in engine.step().items()})
                train_tokens += sum(len(s) for s in sequences)
            trained = time.perf_counter()
            metrics["time/train_s"] = trained - verified
            metrics["throughput/train_tokens_per_s"] = train_tokens / max(trained - verified, 1e-9)
        state["last_reward"] = metrics["reward/total"]
        done = step + 1
        pending.append((metrics, done))
        with samples_path.open("a") as out:
            for k in range(min(grpo.samples_per_step, len(flat))):
                index, sample = flat[k]
                row = {"step": done, "problem_id": problems[index].id, "completion": sample.text,
                       **rewards[k].__dict__}  # fmt: skip
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        progress.update(1)
        progress.set_postfix(
            reward=f"{metrics['reward/total']:.3f}", acc=f"{metrics['accuracy']:.2f}"
        )
        state["step"] = done
        if done % grpo.checkpoint_every == 0 or done == max_steps:
            checkpoint(done)
    progress.close()
    manager.mark_complete()
    samples = (
        [json.loads(line) for line in samples_path.read_text().splitlines()]
        if samples_path.exists()
        else []
    )
    result = engine.model
    result.eval()
    return result, samples
