"""The update of one GRPO step: minibatches of the kept completions, one optimiser step each.

The batch (:func:`~magistral_kedro.grpo.batch.make_batch`) says which rows form each minibatch
and holds their advantages. Each minibatch is cut into microbatches by greedy collation
(docs/recipe.md, section 3); every microbatch's loss
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

import torch

from magistral_kedro.grpo.batch import StepBatch, padded_rows
from magistral_kedro.grpo.config import GRPOConfig
from magistral_kedro.grpo.core import (
    magistral_loss,
    mismatch_stats,
    truncated_importance_weights,
)
from magistral_kedro.training import distributed
from magistral_kedro.training.batching import greedy_collate
from magistral_kedro.training.chunked_head import chunkable_head
from magistral_kedro.training.engine import TrainEngine
from magistral_kedro.training.logprobs import completion_logprobs


@dataclass(frozen=True)
class Minibatch:
    """One optimiser step's rows on this rank, right-padded [b, T]."""

    input_ids: torch.Tensor  # [b, T] prompt + completion tokens
    lengths: torch.Tensor  # [b] tokens of each row
    loss_mask: torch.Tensor  # [b, T] 1 on completion tokens
    generator_logprobs: torch.Tensor  # [b, T] of each completion token, as sampled
    advantages: torch.Tensor  # [b], as the batch made them (make_batch)
    #: [b, T] the trainer's log-probs of each completion token before the step's first update;
    #: None: those of this minibatch's own forward pass (the first update of the step)
    trainer_logprobs: torch.Tensor | None = None
    #: [b] bool, the rows whose tokens the policy's statistics are over (StepBatch.measured);
    #: None: every row
    measured: torch.Tensor | None = None

    @classmethod
    def of_sequences(
        cls,
        prompts: Sequence[list[int]],
        completions: Sequence[list[int]],
        generator_logprobs: Sequence[list[float]],
        advantages: torch.Tensor,
        pad_id: int = 0,
    ) -> Minibatch:
        """A minibatch of token lists (benchmarks, tests): the completions' log-probs as
        sampled, one advantage per row [b]."""
        input_ids, lengths, loss_mask, logprobs = padded_rows(
            prompts, completions, generator_logprobs, pad_id
        )
        return cls(input_ids, lengths, loss_mask, logprobs, advantages)

    def rows(self, rows: list[int]) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask`` and ``loss_mask`` of ``rows``, cut to the longest."""
        width = int(self.lengths[rows].max())
        attention = torch.arange(width)[None, :] < self.lengths[rows, None]
        return {
            "input_ids": self.input_ids[rows, :width],
            "attention_mask": attention.long(),
            "loss_mask": self.loss_mask[rows, :width],
        }


def _microbatches(lengths: torch.Tensor, grpo: GRPOConfig) -> tuple[list[list[int]], int]:
    """This rank's microbatches (greedy collation) and how many idle passes it then owes: every
    rank runs as many forwards as the busiest (each backward reduces gradients across ranks),
    asked before the first, since a rank's collectives must come in the same order."""
    microbatches = greedy_collate(lengths.tolist(), grpo.max_tokens_per_microbatch)
    return microbatches, distributed.all_reduce_max(len(microbatches)) - len(microbatches)


def trainer_logprobs(
    engine: TrainEngine, minibatch: Minibatch, grpo: GRPOConfig, pad_id: int
) -> torch.Tensor:
    """[b, T] the trainer's log-probs of each completion token under its current weights (no
    gradient), 0 elsewhere."""
    out = torch.zeros_like(minibatch.loss_mask)
    microbatches, idle = _microbatches(minibatch.lengths, grpo)
    head = chunkable_head(engine.model)
    with torch.no_grad():
        for rows in microbatches:
            batch = minibatch.rows(rows)
            logprobs, _ = completion_logprobs(engine.forward, batch, grpo.temperature, head=head)
            mask = batch["loss_mask"]
            out[rows, : mask.shape[1]] = torch.where(mask > 0, logprobs.cpu(), 0.0)
        for _ in range(idle):
            engine.idle_pass(pad_id, backward=False)
    return out


def minibatch_loss(
    engine: TrainEngine, minibatch: Minibatch, grpo: GRPOConfig, pad_id: int
) -> dict[str, float]:
    """Backward over one minibatch, cut into microbatches; the denominator is its token count
    over every rank. ``grpo.tis == "on"``: truncated importance sampling (see the module
    docstring). Returns token-weighted statistics of the whole minibatch (all ranks): the loss
    and the mismatch over every token trained on, the policy's (entropy, clip shares, ratio)
    over the measured rows' tokens (none measured: absent). Raises FloatingPointError on every
    rank, before the optimiser step, when the loss of any rank is not finite."""
    total_tokens = distributed.loss_denominator(int(minibatch.loss_mask.sum()))
    sums: dict[str, tuple[float, float]] = {}  # key -> (weighted sum, tokens)
    microbatches, idle = _microbatches(minibatch.lengths, grpo)
    head = chunkable_head(engine.model)  # None: the model's whole logits
    for rows in microbatches:
        batch = minibatch.rows(rows)
        # Scaled by the sampler's temperature, as generated.
        logprobs, entropy = completion_logprobs(
            engine.forward, batch, grpo.temperature, True, head=head
        )
        mask = batch["loss_mask"].to(logprobs.device)
        width = mask.shape[1]
        measured = mask
        if minibatch.measured is not None:
            measured = mask * minibatch.measured[rows, None].to(mask.device)
        generator = minibatch.generator_logprobs[rows, :width].to(mask.device)
        before = (
            logprobs.detach()
            if minibatch.trainer_logprobs is None
            else minibatch.trainer_logprobs[rows, :width].to(mask.device)
        )
        tis = grpo.tis == "on"
        weights = truncated_importance_weights(before, generator, grpo.tis_cap) if tis else None
        loss, policy = magistral_loss(
            logprobs,
            before if tis else generator,
            minibatch.advantages[rows].to(mask.device),
            mask,
            grpo.eps_low,
            grpo.eps_high,
            total_tokens=total_tokens,
            weights=weights,
            max_log_ratio=grpo.max_log_ratio,
            stats_mask=measured,
        )
        engine.backward(loss)  # a non-finite loss is caught below, on every rank, before any step
        policy["policy/entropy"] = float((entropy * measured).sum() / measured.sum().clamp(min=1))
        tokens, n_measured = float(mask.sum()), float(measured.sum())
        for key, value in mismatch_stats(before, generator, mask, grpo.tis_cap).items():
            _add(sums, key, value * tokens, tokens)
        for key, value in policy.items():
            _add(sums, key, value * n_measured, n_measured)
        _add(sums, "loss", float(loss.detach()) * total_tokens, tokens)
    for _ in range(idle):
        engine.idle_pass(pad_id, backward=True)
    return _token_weighted(sums)


def _add(sums: dict[str, tuple[float, float]], key: str, value: float, tokens: float) -> None:
    total, weight = sums.get(key, (0.0, 0.0))
    sums[key] = (total + value, weight + tokens)


def _token_weighted(sums: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Every rank's token-weighted means (a key over no token anywhere: absent); raises
    FloatingPointError on every rank when the loss is not finite."""
    everyone = distributed.all_gather_objects(sums)
    keys = dict.fromkeys(key for s in everyone for key in s)  # a rank may have had no rows
    stats = {}
    for key in keys:
        total = sum(s[key][0] for s in everyone if key in s)
        weight = sum(s[key][1] for s in everyone if key in s)
        if weight > 0:
            stats[key] = total / weight
    if not math.isfinite(stats.get("loss", 0.0)):  # every rank sees it: every rank stops
        raise FloatingPointError(f"GRPO loss is {stats['loss']}")
    return stats


def _minibatch(batch: StepBatch, rows: list[int], before: torch.Tensor | None) -> Minibatch:
    start = batch.local_rows.start
    return Minibatch(
        batch.input_ids[rows],
        batch.lengths[rows],
        batch.loss_mask[rows],
        batch.generator_logprobs[rows],
        batch.advantages[[start + row for row in rows]],
        None if before is None else before[rows],
        batch.measured[[start + row for row in rows]],
    )


def update(engine: TrainEngine, batch: StepBatch, grpo: GRPOConfig) -> tuple[dict[str, float], int]:
    """Train on this rank's rows of ``batch``, one optimiser step per minibatch. Returns the
    statistics of the last minibatch (:func:`minibatch_loss`'s, then the engine's), and the
    number of tokens trained on here."""
    before = None
    if grpo.n_minibatches > 1:  # later minibatches train on weights the first one moved
        kept = sorted(row for m in range(grpo.n_minibatches) for row in batch.minibatch_rows(m))
        before = torch.zeros_like(batch.loss_mask)
        before[kept] = trainer_logprobs(engine, _minibatch(batch, kept, None), grpo, batch.pad_id)
    metrics: dict[str, float] = {}
    trained_tokens = 0
    for index in range(grpo.n_minibatches):
        if not bool((batch.minibatch == index).any()):  # no rank has a row of it
            continue
        minibatch = _minibatch(batch, batch.minibatch_rows(index), before)
        metrics = minibatch_loss(engine, minibatch, grpo, batch.pad_id)
        metrics |= {f"train/{k}": v for k, v in engine.step().items()}
        trained_tokens += int(minibatch.lengths.sum())
    return metrics, trained_tokens
