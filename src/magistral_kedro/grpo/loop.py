"""The GRPO loop: generate groups -> verify -> advantages -> collate -> clipped loss -> step.

Synchronous by default (generation, then training, each step) or asynchronous
(``grpo.mode: async``, :mod:`magistral_kedro.grpo.rollouts`); either way the generator's own
log-probs are the old policy. Resumable: a checkpoint holds model, optimiser, scheduler, RNG,
step, curriculum stage and the tracking run, and every step's data is a function of (seed, step),
so a killed run started again continues where it stopped, into the same tracking run, without
counting a step twice.

Data-parallel over the ranks of a launcher (:mod:`magistral_kedro.launch`): each rank samples
its share of the step's prompts (whole groups), advantages are computed over every rank's
rewards, the loss is divided by the global token count and DeepSpeed averages the gradients.
Only rank 0 logs and writes the shared files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field
from tqdm.auto import tqdm

from magistral_kedro.config import config
from magistral_kedro.generation import (
    GenerationConfig,
    Generator,
    Sample,
    SamplingConfig,
    TransformersGenerator,
    open_generator,
)
from magistral_kedro.grpo.core import loss_denominator, magistral_advantages, magistral_loss
from magistral_kedro.grpo.rollouts import AsyncRollouts, Rollout, Work, rollout
from magistral_kedro.models.factory import (
    Checkpoint,
    CheckpointRef,
    ModelSource,
    dtype_name,
    load_model,
    save_checkpoint,
)
from magistral_kedro.rewards import RewardBreakdown, RewardConfig, score_batch
from magistral_kedro.tasks.schema import Problem
from magistral_kedro.training import distributed
from magistral_kedro.training.batching import (
    collate_causal_lm,
    greedy_collate,
    token_entropy,
    token_logprobs,
)
from magistral_kedro.training.checkpointing import HF_DIR, CheckpointManager
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
    #: sync: generate, then train, each step. async: generation runs ahead in a thread.
    mode: Literal["sync", "async"] = "sync"
    #: async only: at most this many steps' batches generated and not yet trained on
    #: (in-flight sequences <= max_batches_in_flight * n_batch; the paper's bound is 2).
    max_batches_in_flight: Positive = 2


def check_generation_mode(grpo: GRPOConfig, generation: GenerationConfig) -> None:
    """Raise ValueError when ``grpo.mode`` cannot run with ``generation.backend``."""
    if grpo.mode == "async" and generation.backend != "transformers":
        raise ValueError(
            "rl.grpo.mode 'async' runs its own transformers generator thread: set "
            f"generation.backend to 'transformers' (not {generation.backend!r}) or rl.grpo.mode "
            "to 'sync'"
        )


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


def _zero_gradient_backward(engine: TrainEngine, pad_id: int) -> None:
    """A zero-gradient backward: a rank with fewer microbatches than another still takes part in
    every gradient reduction (DeepSpeed reduces in each backward)."""
    token = torch.tensor([[pad_id]])
    output = engine.forward(input_ids=token, attention_mask=torch.ones_like(token))
    engine.backward(output.logits.sum() * 0.0)


def _policy_loss(
    engine: TrainEngine,
    sequences: list[list[int]],
    prompt_lengths: list[int],
    old_logprobs: list[list[float]],
    advantages: torch.Tensor,
    pad_id: int,
    grpo: GRPOConfig,
) -> dict[str, float]:
    """Backward over one minibatch, cut into microbatches; the denominator is its token count
    over every rank. Returns token-weighted statistics of the whole minibatch (all ranks)."""
    local_tokens = sum(len(s) - p for s, p in zip(sequences, prompt_lengths, strict=True))
    total_tokens = loss_denominator(local_tokens)
    sums: dict[str, float] = {}
    microbatches = greedy_collate([len(s) for s in sequences], grpo.max_tokens_per_microbatch)
    # Every rank runs as many backwards as the busiest (each one reduces gradients across ranks).
    padding = distributed.all_reduce_max(len(microbatches)) - len(microbatches)
    for group in microbatches:
        batch = collate_causal_lm(
            [sequences[i] for i in group], [prompt_lengths[i] for i in group], pad_id
        )
        old = torch.zeros_like(batch["loss_mask"])
        for row, i in enumerate(group):
            old[row, prompt_lengths[i] : len(sequences[i])] = torch.tensor(old_logprobs[i])
        output = engine.forward(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
        logits = output.logits  # [B, T, V]; scaled by the sampler's temperature, as generated
        logprobs = token_logprobs(logits, batch["input_ids"], grpo.temperature)
        mask = batch["loss_mask"].to(logits.device)
        loss, stats = magistral_loss(
            logprobs, old.to(logits.device), advantages[group].to(logits.device), mask,
            grpo.eps_low, grpo.eps_high, total_tokens=total_tokens,
        )  # fmt: skip
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"GRPO loss is {float(loss.detach())}")
        engine.backward(loss)
        entropy = token_entropy(logits.detach(), grpo.temperature)
        weight = float(mask.sum())
        stats["policy/entropy"] = float((entropy * mask).sum() / mask.sum().clamp(min=1))
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + value * weight
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * total_tokens
    for _ in range(padding):
        _zero_gradient_backward(engine, pad_id)
    everyone = distributed.all_gather_objects((sums, local_tokens))
    tokens = sum(n for _, n in everyone)
    return {key: sum(s.get(key, 0.0) for s, _ in everyone) / tokens for key in everyone[0][0]}


def _check_replicas(model: torch.nn.Module, step: int) -> None:
    """Every rank must hold the same weights; a difference means a broken reduction."""
    with torch.no_grad():
        checksum = [float(p.double().sum()) for p in model.parameters()]
    everyone = distributed.all_gather_objects(checksum)
    for other, theirs in enumerate(everyone[1:], start=1):
        if theirs != everyone[0]:
            raise RuntimeError(f"rank {other}'s weights differ from rank 0's after step {step}")


def _metrics(records: list[tuple[Any, ...]], kept: int, version: int) -> dict[str, float]:
    """The step's reward and completion statistics over every rank's completions; ``version``
    is the trainer's policy version (the step whose update produced its weights)."""
    totals, formats, corrects, lengths_r, languages, n_tokens, truncated, first_version = (
        np.array(column, dtype=float) for column in zip(*records, strict=True)
    )
    metrics = {
        "reward/total": float(totals.mean()),
        "reward/format": float(formats.mean()),
        "reward/correct": float(corrects.mean()),
        "reward/length": float(lengths_r.mean()),
        "reward/language": float(languages.mean()),
        "accuracy": float((corrects > 0).mean()),
        "groups/dropped_frac": 1.0 - kept / len(records),
        "completion/mean_tokens": float(n_tokens.mean()),
        "completion/max_tokens": float(n_tokens.max()),
        "completion/truncated_frac": float(truncated.mean()),
    }
    if not np.isnan(first_version).all():  # asynchronous: how old the generating weights were
        staleness = version - first_version
        metrics["async/staleness_mean"] = float(np.nanmean(staleness))
        metrics["async/staleness_max"] = float(np.nanmax(staleness))
    return metrics


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

    ``generation.backend`` transformers samples with the trained model itself; vllm with an
    engine that gets the trainer's weights pushed after every optimiser step."""
    if len(problems) != len(prompts) or not problems:
        raise ValueError(f"need one prompt per problem, got {len(problems)} and {len(prompts)}")
    if not stages:
        raise ValueError("at least one curriculum stage is needed")
    generation = generation or GenerationConfig()
    check_generation_mode(grpo, generation)
    rank = distributed.rank()
    samples_path = Path(checkpoint_dir) / SAMPLES_FILE
    manager = CheckpointManager(checkpoint_dir, grpo.keep_checkpoints, fingerprint)
    finished = manager.finished()
    if finished is not None:
        if rank == 0:
            tqdm.write(f"rl: reusing {finished}: a finished run with the same inputs")
        last = finished
    else:
        with contextlib.ExitStack() as stack:
            generator = None
            if generation.backend != "transformers":  # before the engine partitions the model
                generator = stack.enter_context(open_generator(start, generation, seed + rank))
            last = _train(load_model(start), generator, problems, prompts, engine_config, grpo,
                          stages, reward, manager, seed, tracker)  # fmt: skip
    samples = _read_samples(samples_path) if rank == 0 else []
    return CheckpointRef(last / HF_DIR, dtype_name(start)), samples


def _train(
    start: Checkpoint,
    generator: Generator | None,
    problems: Sequence[Problem],
    prompts: Sequence[str],
    engine_config: EngineConfig,
    grpo: GRPOConfig,
    stages: Sequence[Stage],
    reward: RewardConfig,
    manager: CheckpointManager,
    seed: int,
    tracker: Tracker | None,
) -> Path:
    """The loop itself; returns the last checkpoint's directory."""
    model, tokenizer = start.model, start.tokenizer
    max_steps = engine_config.optim.max_steps
    pad_id = tokenizer.pad_token_id
    assert pad_id is not None, "the tokenizer needs a pad token"
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0
    samples_path = manager.root / SAMPLES_FILE

    torch.manual_seed(seed)
    model.train()
    engine = create_engine(model, engine_config)
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
        if main:
            tqdm.write(f"rl: resuming from {resume_from} (step {state['step']})")
    else:
        manager.start_fresh()
    if tracker is not None:
        state["run_id"] = tracker.attach(state["run_id"])
    state["run_id"] = distributed.broadcast_object(state["run_id"])  # rank 0's run, everywhere
    if main and samples_path.exists():  # rows of steps after the checkpoint will be written again
        rows = [json.loads(line) for line in samples_path.read_text().splitlines()]
        kept_rows = [json.dumps(r, ensure_ascii=False) for r in rows if r["step"] <= state["step"]]
        samples_path.write_text("".join(line + "\n" for line in kept_rows))

    # Metrics wait for the checkpoint that makes their steps final: a resume redoes the steps
    # after the last checkpoint, and the tracking history must not hold them twice.
    pending: list[tuple[dict[str, float], int]] = []

    def flush(path: Path, rows: list[tuple[dict[str, float], int]]) -> None:
        """Log a checkpoint's metrics and model once; the marker file says it was done."""
        if not main:
            return
        if tracker is not None:
            for metrics, at in rows:
                tracker.log_metrics(metrics, at)
            tracker.log_checkpoint(path / "hf", int(path.name.removeprefix("step_")))
        (path / LOGGED).touch()

    def checkpoint(step: int) -> None:
        def export(path: Path) -> None:
            save_checkpoint(Checkpoint(engine.model, tokenizer), path)  # type: ignore[arg-type]

        if world > 1:
            with engine.full_weights() as whole:
                _check_replicas(whole, step)
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

    def plan(step: int) -> Work:
        index = _stage_index(stages, step, state["stage"], state["last_reward"])
        stage = stages[index]
        sampling = SamplingConfig(
            max_new_tokens=stage.l_max,
            temperature=grpo.temperature,
            top_p=grpo.top_p,
            batch_size=grpo.generation_batch_size,
        )
        chosen = _draw(problems, stage, seed, step)[rank::world]  # whole groups per rank
        return Work(step, index, chosen, sampling, seed * 1_000_003 + step + 7_919 * rank)

    def verify(work: Work, groups: list[list[Sample]]) -> list[RewardBreakdown]:
        stage = stages[work.stage]
        cfg = dataclasses.replace(reward, l_max=stage.l_max, l_cache=stage.l_cache)
        flat = [(i, s) for i, group in zip(work.chosen, groups, strict=True) for s in group]
        return score_batch(
            [s.text for _, s in flat], [problems[i] for i, _ in flat],
            [len(s.token_ids) for _, s in flat], cfg, n_workers=grpo.reward_workers,
            seed=seed + work.step,
        )  # fmt: skip

    # The weights' version: the step whose update produced them (skipped steps change nothing).
    version = state["step"]
    background: AsyncRollouts | None = None
    if grpo.mode == "async":
        with engine.full_weights() as whole:
            background = AsyncRollouts(
                whole, tokenizer, prompts, grpo.group_size, plan, verify,
                first_step=version, ahead=grpo.max_batches_in_flight,
            )  # fmt: skip
    own_generator = generator or TransformersGenerator(engine.model, tokenizer)  # type: ignore[arg-type]
    push_weights = getattr(generator, "load_weights", None)
    if push_weights is not None:  # a resumed run's weights are not the ones it was loaded with
        with engine.full_weights() as whole:
            push_weights(whole.state_dict().items())

    def next_rollout(step: int) -> Rollout:
        if background is not None:
            return background.next()
        # Generating from the trained model itself needs its ZeRO-3 shards; vLLM has its copy.
        with contextlib.nullcontext() if generator is not None else engine.full_weights():
            return rollout(own_generator, prompts, grpo.group_size, plan, verify, step)

    progress = tqdm(
        total=max_steps, initial=state["step"], desc="rl", unit="step", leave=False,
        disable=not main,
    )  # fmt: skip
    try:
        for step in range(state["step"], max_steps):
            began = time.perf_counter()
            batch = next_rollout(step)
            verified = time.perf_counter()
            state["stage"] = max(state["stage"], batch.work.stage)
            stage = stages[state["stage"]]
            flat = [(i, s) for i, group in zip(batch.work.chosen, batch.groups, strict=True)
                    for s in group]  # fmt: skip
            # Every rank's rewards: advantages are relative to the whole batch (minibatch
            # normalisation) and the metrics describe it all. Groups never straddle ranks.
            records = [
                (b.total, b.format, b.correct, b.length, b.language, len(s.token_ids),
                 s.finish_reason == "length",
                 s.policy_versions[0] if s.policy_versions is not None else math.nan)
                for (_, s), b in zip(flat, batch.rewards, strict=True)
            ]  # fmt: skip
            group_ids = [g for g, group in enumerate(batch.groups) for _ in group]
            everyone = distributed.all_gather_objects((len(batch.groups), group_ids, records))
            all_records: list[tuple[Any, ...]] = []
            all_groups: list[int] = []
            rows_of_rank: list[range] = []
            n_groups = 0
            for count, ids, recs in everyone:
                rows_of_rank.append(range(len(all_records), len(all_records) + len(recs)))
                all_records += recs
                all_groups += [n_groups + g for g in ids]
                n_groups += count
            totals = torch.tensor([float(r[0]) for r in all_records])
            advantages, keep = magistral_advantages(totals, torch.tensor(all_groups))
            n_kept = int(keep.sum())
            metrics = _metrics(all_records, n_kept, version)
            metrics.update({
                "curriculum/stage": float(state["stage"]),
                "curriculum/l_max": float(stage.l_max),
                "time/generate_s": batch.generate_s,
                "time/verify_s": batch.verify_s,
                "time/wait_s": verified - began,  # async: what the trainer waited for its batch
                "throughput/generate_tokens_per_s": sum(len(s.token_ids) for _, s in flat)
                / max(batch.generate_s, 1e-9),
            })  # fmt: skip
            if n_kept == 0:  # every group all-right or all-wrong: nothing to learn from this batch
                state["skipped"] += 1
                metrics["train/skipped_steps"] = float(state["skipped"])
            else:
                # One permutation of the whole batch; each rank trains its own rows in its order.
                order = np.random.default_rng([seed, step, 1]).permutation(np.flatnonzero(keep))
                chunks_of_rank = [
                    np.array_split(
                        [int(k) - rows.start for k in order if int(k) in rows], grpo.n_minibatches
                    )
                    for rows in rows_of_rank
                ]
                mine = rows_of_rank[rank]
                train_tokens = 0
                for c in range(grpo.n_minibatches):
                    if all(len(chunks[c]) == 0 for chunks in chunks_of_rank):
                        continue
                    rows = [int(k) for k in chunks_of_rank[rank][c]]
                    sequences = [prompt_ids[flat[k][0]] + flat[k][1].token_ids for k in rows]
                    try:
                        stats = _policy_loss(
                            engine, sequences, [len(prompt_ids[flat[k][0]]) for k in rows],
                            [flat[k][1].logprobs for k in rows],
                            advantages[[mine.start + k for k in rows]], pad_id, grpo,
                        )  # fmt: skip
                    except FloatingPointError as error:
                        last = manager.checkpoints()
                        raise FloatingPointError(
                            f"{error} at step {step}; stopped before the update. Last good "
                            f"checkpoint: {last[-1] if last else 'none'}. Try a lower learning "
                            "rate."
                        ) from error
                    metrics.update(stats)
                    metrics.update({f"train/{k}": v for k, v in engine.step().items()})
                    train_tokens += sum(len(s) for s in sequences)
                trained = time.perf_counter()
                metrics["time/train_s"] = trained - verified
                metrics["throughput/train_tokens_per_s"] = train_tokens / max(
                    trained - verified, 1e-9
                )
                version = step + 1
                if background is not None or push_weights is not None:
                    with engine.full_weights() as whole:
                        if background is not None:
                            background.publish(whole, version)
                        elif push_weights is not None:
                            push_weights(whole.state_dict().items())
            metrics["time/step_s"] = time.perf_counter() - began
            state["last_reward"] = metrics["reward/total"]
            done = step + 1
            pending.append((metrics, done))
            if main:
                with samples_path.open("a") as out:
                    for k in range(min(grpo.samples_per_step, len(flat))):
                        index, sample = flat[k]
                        row = {"step": done, "problem_id": problems[index].id,
                               "completion": sample.text, **batch.rewards[k].__dict__}  # fmt: skip
                        out.write(json.dumps(row, ensure_ascii=False) + "\n")
            progress.update(1)
            progress.set_postfix(
                reward=f"{metrics['reward/total']:.3f}", acc=f"{metrics['accuracy']:.2f}"
            )
            state["step"] = done
            if done % grpo.checkpoint_every == 0 or done == max_steps:
                checkpoint(done)
    finally:
        if background is not None:
            background.close()
    progress.close()
    manager.mark_complete()
    engine.close()
    return manager.checkpoints()[-1]


def _read_samples(path: Path) -> list[dict[str, Any]]:
    """The sampled completions a run logged, one JSON object a line."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
