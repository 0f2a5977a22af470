"""Supervised fine-tuning on reference completions, loss on completion tokens only.

Each optimiser step takes ``batch_size`` examples (a seeded permutation per epoch, so the data
position is a function of the step and resume needs no iterator state), cuts them into microbatches
under a token budget with :func:`greedy_collate`, and divides the summed token loss by the step's
completion-token count. Across data-parallel ranks each rank takes every ``world_size``-th example
of the step, and the denominator is the step's count over every rank
(:func:`~magistral_kedro.training.distributed.loss_denominator`): the ranks' averaged gradients
are those of one process on the whole step, at a ``world_size``-th of the work each.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import torch
from pydantic import Field
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from magistral_kedro.config import config
from magistral_kedro.models.factory import CheckpointRef, ModelSource, dtype_name, load_model
from magistral_kedro.training import distributed
from magistral_kedro.training.batching import collate_causal_lm, greedy_collate
from magistral_kedro.training.chunked_head import chunkable_head
from magistral_kedro.training.engine import EngineConfig, TrainEngine, create_engine
from magistral_kedro.training.logprobs import completion_logprobs
from magistral_kedro.training.run import TrainingRun

if TYPE_CHECKING:
    from magistral_kedro.tracking import Tracker

Positive = Annotated[int, Field(gt=0)]


@config
class SFTConfig:
    """Knobs of the SFT loop (the optimiser's live in :class:`OptimConfig`)."""

    batch_size: Positive = 32
    max_tokens_per_microbatch: Positive = 4096
    max_length: Positive = 256
    eval_every: Positive = 200
    eval_size: Annotated[int, Field(ge=0)] = 256
    checkpoint_every: Positive = 200
    keep_checkpoints: Positive = 2


@dataclass(frozen=True)
class SFTExample:
    """One tokenised example: prompt then completion (ending with EOS)."""

    input_ids: list[int]
    prompt_length: int


def tokenize_examples(
    prompts: Sequence[str],
    completions: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
) -> tuple[list[SFTExample], int]:
    """Tokenise prompt/completion pairs; returns the examples and how many were too long.

    Over-long examples are left out (and counted) rather than cut: a cut trace teaches the model
    to stop mid-thought.
    """
    if not prompts:  # the tokenizer fails on an empty batch
        return [], 0
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(
        [c + tokenizer.eos_token for c in completions], add_special_tokens=False
    )["input_ids"]
    examples, too_long = [], 0
    for p, c in zip(prompt_ids, completion_ids, strict=True):
        if len(p) + len(c) > max_length:
            too_long += 1
            continue
        examples.append(SFTExample(input_ids=list(p) + list(c), prompt_length=len(p)))
    return examples, too_long


def batch_indices(n_examples: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Indices of the examples of optimiser step ``step``: a fresh seeded permutation per epoch."""
    out: list[int] = []
    start = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n_examples)
        order = np.random.default_rng([seed, epoch]).permutation(n_examples)
        take = min(batch_size - len(out), n_examples - offset)
        out.extend(int(i) for i in order[offset : offset + take])
    return out


def _microbatches(
    examples: Sequence[SFTExample], max_tokens: int, pad_token_id: int
) -> tuple[list[dict[str, torch.Tensor]], int, int]:
    """Collated microbatches, the number of completion tokens, and the padded token count."""
    lengths = [len(e.input_ids) for e in examples]
    batches = []
    padded = 0
    for group in greedy_collate(lengths, max_tokens):
        batch = collate_causal_lm(
            [examples[i].input_ids for i in group],
            [examples[i].prompt_length for i in group],
            pad_token_id,
        )
        padded += batch["input_ids"].numel()
        batches.append(batch)
    n_tokens = int(sum(b["loss_mask"].sum().item() for b in batches))
    return batches, n_tokens, padded


def summed_token_nll(
    forward: Callable[..., object],
    batch: dict[str, torch.Tensor],
    head: torch.nn.Linear | None = None,
) -> torch.Tensor:
    """Sum over completion tokens of -log p(token); ``forward`` is the model (or engine) call,
    ``head`` its output projection for the chunked path (see :func:`completion_logprobs`)."""
    logprobs, _ = completion_logprobs(forward, batch, head=head)
    return -(logprobs * batch["loss_mask"].to(logprobs.device)).sum()


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module,
    examples: Sequence[SFTExample],
    max_tokens: int,
    pad_token_id: int,
) -> float:
    """Mean per-token negative log-likelihood of the completions of ``examples``."""
    was_training = model.training
    model.eval()
    batches, n_tokens, _ = _microbatches(examples, max_tokens, pad_token_id)
    device = next(model.parameters()).device
    head = chunkable_head(model)
    total = sum(
        float(summed_token_nll(model, {k: v.to(device) for k, v in b.items()}, head))
        for b in batches
    )
    model.train(was_training)
    return total / max(1, n_tokens)


def _sft_step(
    engine: TrainEngine,
    train: Sequence[SFTExample],
    loop: SFTConfig,
    step: int,
    seed: int,
    pad_id: int,
) -> dict[str, float]:
    """One optimiser step on this rank's share of step ``step``'s examples: the summed token
    loss over the step's completion tokens (every rank's), microbatch by microbatch. Returns
    the step's metrics over every rank; raises FloatingPointError on every rank, before the
    update, when the loss is not finite."""
    began = time.perf_counter()
    indices = batch_indices(len(train), loop.batch_size, step, seed)
    share = [train[i] for i in indices[distributed.rank() :: distributed.world_size()]]
    batches, n_tokens, padded = _microbatches(share, loop.max_tokens_per_microbatch, pad_id)
    denominator = distributed.loss_denominator(n_tokens)
    # Every rank runs as many backwards as the busiest (each one reduces gradients across ranks).
    idle = distributed.all_reduce_max(len(batches)) - len(batches)
    loss_sum = 0.0
    head = chunkable_head(engine.model)
    for batch in batches:
        loss = summed_token_nll(engine.forward, batch, head) / denominator
        engine.backward(loss)
        loss_sum += float(loss.detach())
    for _ in range(idle):
        engine.idle_pass(pad_id, backward=True)
    real = sum(len(e.input_ids) for e in share)
    ranks = distributed.all_gather_objects((loss_sum, padded, real))
    # Each rank divided by global tokens / world_size: the ranks' mean is the step's loss.
    loss_sum = sum(r[0] for r in ranks) / len(ranks)
    if not math.isfinite(loss_sum):
        raise FloatingPointError(f"loss is {loss_sum}")
    stats = engine.step()
    elapsed = time.perf_counter() - began
    padded, real = sum(r[1] for r in ranks), sum(r[2] for r in ranks)
    return {
        "sft/loss": loss_sum,
        "sft/lr": stats["lr"],
        "sft/grad_norm": stats["grad_norm"],
        "sft/tokens_per_s": padded / elapsed,
        "sft/padding_fraction": 1.0 - real / padded,
    }


def train_sft(
    start: ModelSource,
    train: Sequence[SFTExample],
    evaluation: Sequence[SFTExample],
    *,
    engine_config: EngineConfig,
    loop: SFTConfig,
    checkpoint_dir: str | Path,
    seed: int,
    fingerprint: str = "",
    tracker: Tracker | None = None,
) -> CheckpointRef:
    """Train ``start`` on ``train`` for ``engine_config.optim.max_steps`` optimiser steps.

    ``seed`` fixes the data order (and, with the model's initialisation, the whole run). Resumes
    from the latest checkpoint in ``checkpoint_dir`` when an unfinished run with the same
    ``fingerprint`` left one; returns at once, loading nothing, when a finished one did (see
    :class:`TrainingRun`). A model in memory is consumed (under ZeRO-3 it is partitioned in
    place). Returns the trained model: the Hugging Face directory of the last checkpoint (whole
    weights, ZeRO-3 shards gathered), to be loaded in ``start``'s dtype.
    """
    if not train:
        raise ValueError("SFT needs at least one training example; the training set is empty")
    max_steps = engine_config.optim.max_steps
    eval_set = list(evaluation[: loop.eval_size])
    run = TrainingRun("sft", checkpoint_dir, loop.keep_checkpoints, fingerprint, tracker)
    finished = run.finished()
    if finished is not None:
        return CheckpointRef(finished, dtype_name(start))
    loaded = load_model(start)
    model, tokenizer = loaded.model, loaded.tokenizer
    pad_id = tokenizer.pad_token_id
    assert pad_id is not None, "the tokenizer needs a pad token"

    torch.manual_seed(seed)
    model.train()
    with create_engine(model, engine_config) as engine:
        first = run.begin(engine)["step"]
        progress = tqdm(
            total=max_steps,
            initial=first,
            desc="sft",
            unit="step",
            leave=False,
            disable=not distributed.is_main(),
        )
        for step in range(first, max_steps):
            try:
                metrics = _sft_step(engine, train, loop, step, seed, pad_id)
            except FloatingPointError as error:
                raise run.stop(error, step + 1) from error
            done = step + 1
            if eval_set and (done % loop.eval_every == 0 or done == max_steps):
                metrics["sft/eval_loss"] = evaluate_loss(
                    engine.model, eval_set, loop.max_tokens_per_microbatch, pad_id
                )
            run.log(metrics, done)
            progress.update(1)
            progress.set_postfix(loss=f"{metrics['sft/loss']:.3f}")
            if done % loop.checkpoint_every == 0 or done == max_steps:
                run.save(done, engine, tokenizer, {"max_steps": max_steps})
        progress.close()
    return CheckpointRef(run.end(), dtype_name(start))
