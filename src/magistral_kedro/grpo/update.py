"""The update of one GRPO step: minibatches of the kept completions, one optimiser step each.

Advantages are normalised over each minibatch (MAGISTRAL.md section 1, item 2), across ranks
(``grpo.normalise_minibatch_advantages``, on by default; off only for the ablation).
Each minibatch is cut into microbatches by greedy collation (section 3); every microbatch's loss
is divided by the minibatch's token count over every rank, so the summed gradients are those of
the token-normalised loss however the batch is cut or spread.

The trainer's own log-probs of the sampled tokens before the update (pi_trainer_old) measure the
generator/trainer mismatch, logged every step, and, with truncated importance sampling on, are
the ratio's old policy while ``min(pi_trainer_old / pi_generator, C)`` weights each token. With
one minibatch they come from the update's own forward pass; with several, from a forward pass
before the first update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from magistral_kedro.grpo.batch import StepBatch
from magistral_kedro.grpo.config import GRPOConfig
from magistral_kedro.grpo.core import (
    magistral_loss,
    mismatch_stats,
    normalise_advantages,
    truncated_importance_weights,
)
from magistral_kedro.grpo.rollouts import Rollout
from magistral_kedro.training import distributed
from magistral_kedro.training.batching import collate_causal_lm, greedy_collate
from magistral_kedro.training.engine import TrainEngine
from magistral_kedro.training.logprobs import completion_logprobs


@dataclass(frozen=True)
class Minibatch:
    """One optimiser step's completions on this rank."""

    sequences: list[list[int]]  # prompt + completion tokens
    prompt_lengths: list[int]
    generator_logprobs: list[list[float]]  # of each completion token, as sampled
    advantages: torch.Tensor  # [B], normalised over the minibatch on every rank
    #: the trainer's log-probs of each completion token before the step's first update; None:
    #: those of this minibatch's own forward pass (the first update of the step)
    trainer_logprobs: list[list[float]] | None = None


def _per_token(
    values: Sequence[list[float]], rows: list[int], prompt_lengths: list[int], like: torch.Tensor
) -> torch.Tensor:
    """[B, T] holding each row's completion-token values at their positions, 0 elsewhere."""
    out = torch.zeros_like(like)
    for row, i in enumerate(rows):
        start = prompt_lengths[i]
        out[row, start : start + len(values[i])] = torch.tensor(values[i])
    return out


def trainer_logprobs(
    engine: TrainEngine,
    sequences: list[list[int]],
    prompt_lengths: list[int],
    pad_id: int,
    grpo: GRPOConfig,
) -> list[list[float]]:
    """The trainer's log-probs of each completion token under its current weights (no
    gradient)."""
    out: list[list[float]] = [[] for _ in sequences]
    microbatches = greedy_collate([len(s) for s in sequences], grpo.max_tokens_per_microbatch)
    idle = distributed.all_reduce_max(len(microbatches)) - len(microbatches)
    with torch.no_grad():
        for group in microbatches:
            batch = collate_causal_lm(
                [sequences[i] for i in group], [prompt_lengths[i] for i in group], pad_id
            )
            logprobs, _ = completion_logprobs(engine.forward, batch, grpo.temperature)
            for row, i in enumerate(group):
                out[i] = logprobs[row, prompt_lengths[i] : len(sequences[i])].tolist()
        for _ in range(idle):
            engine.idle_pass(pad_id, backward=False)
    return out


def minibatch_loss(
    engine: TrainEngine, minibatch: Minibatch, pad_id: int, grpo: GRPOConfig, tis: bool
) -> dict[str, float]:
    """Backward over one minibatch, cut into microbatches; the denominator is its token count
    over every rank. ``tis``: truncated importance sampling (see the module docstring).
    Returns token-weighted statistics of the whole minibatch (all ranks). Raises
    FloatingPointError on every rank, before the optimiser step, when the loss of any rank is
    not finite."""
    sequences, prompt_lengths = minibatch.sequences, minibatch.prompt_lengths
    local_tokens = sum(len(s) - p for s, p in zip(sequences, prompt_lengths, strict=True))
    total_tokens = distributed.loss_denominator(local_tokens)
    sums: dict[str, float] = {}
    microbatches = greedy_collate([len(s) for s in sequences], grpo.max_tokens_per_microbatch)
    # Every rank runs as many backwards as the busiest (each one reduces gradients across
    # ranks); asked before the first, since a rank's collectives must come in the same order.
    idle = distributed.all_reduce_max(len(microbatches)) - len(microbatches)
    for group in microbatches:
        batch = collate_causal_lm(
            [sequences[i] for i in group], [prompt_lengths[i] for i in group], pad_id
        )
        # Scaled by the sampler's temperature, as generated.
        logprobs, entropy = completion_logprobs(engine.forward, batch, grpo.temperature, True)
        mask = batch["loss_mask"].to(logprobs.device)
        generated = _per_token(minibatch.generator_logprobs, group, prompt_lengths, mask)
        before = (
            logprobs.detach()
            if minibatch.trainer_logprobs is None
            else _per_token(minibatch.trainer_logprobs, group, prompt_lengths, mask)
        )
        weights = truncated_importance_weights(before, generated, grpo.tis_cap) if tis else None
        loss, stats = magistral_loss(
            logprobs,
            before if tis else generated,
            minibatch.advantages[group].to(mask.device),
            mask,
            grpo.eps_low,
            grpo.eps_high,
            total_tokens=total_tokens,
            weights=weights,
            max_log_ratio=grpo.max_log_ratio,
        )
        engine.backward(loss)  # a non-finite loss is caught below, on every rank, before any step
        stats |= mismatch_stats(before, generated, mask, grpo.tis_cap)
        stats["policy/entropy"] = float((entropy * mask).sum() / mask.sum().clamp(min=1))
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + value * float(mask.sum())
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * total_tokens
    for _ in range(idle):
        engine.idle_pass(pad_id, backward=True)
    everyone = distributed.all_gather_objects((sums, local_tokens))
    tokens = sum(n for _, n in everyone)
    keys = dict.fromkeys(key for s, _ in everyone for key in s)  # a rank may have had no rows
    stats = {key: sum(s.get(key, 0.0) for s, _ in everyone) / tokens for key in keys}
    if not math.isfinite(stats.get("loss", 0.0)):  # every rank sees it: every rank stops
        raise FloatingPointError(f"GRPO loss is {stats['loss']}")
    return stats


def minibatches(
    batch: StepBatch, n_minibatches: int, seed: int, step: int
) -> list[list[list[int]]]:
    """The kept rows in one seeded permutation of the whole batch, cut into ``n_minibatches``
    per rank: ``result[rank][c]`` are rank ``rank``'s local rows of minibatch ``c``."""
    order = np.random.default_rng([seed, step, 1]).permutation(np.flatnonzero(batch.keep))
    return [
        [
            [int(k) for k in chunk]
            for chunk in np.array_split(
                [int(k) - rows.start for k in order if int(k) in rows], n_minibatches
            )
        ]
        for rows in batch.rows_of_rank
    ]


def _minibatch_advantages(
    batch: StepBatch, chunks_of_rank: list[list[list[int]]], c: int, normalise: bool = True
) -> torch.Tensor:
    """This rank's advantages of minibatch ``c``, normalised over the minibatch's rows on every
    rank (taken in row order); without ``normalise``, ``r - mean(group)`` as they are."""
    mine = batch.rows_of_rank[distributed.rank()]
    here = [mine.start + k for k in chunks_of_rank[distributed.rank()][c]]
    if not normalise:
        return batch.advantages[here].float()
    rows = sorted(
        r.start + k
        for r, chunks in zip(batch.rows_of_rank, chunks_of_rank, strict=True)
        for k in chunks[c]
    )
    normalised = dict(zip(rows, normalise_advantages(batch.advantages[rows]).tolist(), strict=True))
    return torch.tensor([normalised[row] for row in here])


def update(
    engine: TrainEngine,
    rollout: Rollout,
    batch: StepBatch,
    prompt_ids: Sequence[list[int]],
    grpo: GRPOConfig,
    seed: int,
    step: int,
    pad_id: int,
    tis: bool,
) -> tuple[dict[str, float], int]:
    """Train on this rank's kept rows of ``batch`` (``rollout`` holds their tokens), one
    optimiser step per minibatch. Returns the loss, mismatch and engine statistics (of the
    last minibatch), and the number of tokens trained on here."""
    flat = rollout.completions()
    sequences = [prompt_ids[i] + s.token_ids for i, s in flat]
    prompt_lengths = [len(prompt_ids[i]) for i, _ in flat]
    chunks_of_rank = minibatches(batch, grpo.n_minibatches, seed, step)
    before: dict[int, list[float]] | None = None
    if grpo.n_minibatches > 1:  # later minibatches train on weights the first one moved
        kept = sorted(k for chunk in chunks_of_rank[distributed.rank()] for k in chunk)
        values = trainer_logprobs(
            engine, [sequences[k] for k in kept], [prompt_lengths[k] for k in kept], pad_id, grpo
        )
        before = dict(zip(kept, values, strict=True))
    metrics: dict[str, float] = {}
    trained_tokens = 0
    for c in range(grpo.n_minibatches):
        if all(len(chunks[c]) == 0 for chunks in chunks_of_rank):
            continue
        rows = chunks_of_rank[distributed.rank()][c]
        minibatch = Minibatch(
            [sequences[k] for k in rows],
            [prompt_lengths[k] for k in rows],
            [flat[k][1].logprobs for k in rows],
            _minibatch_advantages(batch, chunks_of_rank, c, grpo.normalise_minibatch_advantages),
            None if before is None else [before[k] for k in rows],
        )
        metrics.update(minibatch_loss(engine, minibatch, pad_id, grpo, tis))
        metrics.update({f"train/{k}": v for k, v in engine.step().items()})
        trained_tokens += sum(len(s) for s in minibatch.sequences)
    return metrics, trained_tokens
