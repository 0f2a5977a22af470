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
    docstring). Returns token-weighted statistics of the whole minibatch (all ranks). Raises
    FloatingPointError on every rank, before the optimiser step, when the loss of any rank is
    not finite."""
    local_tokens = int(minibatch.loss_mask.sum())
    total_tokens = distributed.loss_denominator(local_tokens)
    sums: dict[str, float] = {}
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
        generator = minibatch.generator_logprobs[rows, :width].to(mask.device)
        before = (
            logprobs.detach()
            if minibatch.trainer_logprobs is None
            else minibatch.trainer_logprobs[rows, :width].to(mask.device)
        )
        tis = grpo.tis == "on"
        weights = truncated_importance_weights(before, generator, grpo.tis_cap) if tis else None
        loss, stats = magistral_loss(
            logprobs,
            before if tis else generator,
            minibatch.advantages[rows].to(mask.device),
            mask,
            grpo.eps_low,
            grpo.eps_high,
            total_tokens=total_tokens,
            weights=weights,
            max_log_ratio=grpo.max_log_ratio,
        )
        engine.backward(loss)  # a non-finite loss is caught below, on every rank, before any step
        stats |= mismatch_stats(before, generator, mask, grpo.tis_cap)
        stats["policy/entropy"] = float((entropy * mask).sum() / mask.sum().clamp(min=1))
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + value * float(mask.sum())
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * total_tokens
    for _ in range(idle):
        engine.idle_pass(pad_id, backward=True)
    return _token_weighted(sums, local_tokens)


def _token_weighted(sums: dict[str, float], local_tokens: int) -> dict[str, float]:
    """Every rank's token-weighted sums over every rank's tokens; raises FloatingPointError on
    every rank when the loss is not finite."""
    everyone = distributed.all_gather_objects((sums, local_tokens))
    tokens = sum(n for _, n in everyone)
    keys = dict.fromkeys(key for s, _ in everyone for key in s)  # a rank may have had no rows
    stats = {key: sum(s.get(key, 0.0) for s, _ in everyone) / tokens for key in keys}
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
    )


def update(engine: TrainEngine, batch: StepBatch, grpo: GRPOConfig) -> tuple[dict[str, float], int]:
    """Train on this rank's rows of ``batch``, one optimiser step per minibatch. Returns the
    loss, mismatch and engine statistics (of the last minibatch), and the number of tokens
    trained on here."""
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
        metrics.update(minibatch_loss(engine, minibatch, grpo, batch.pad_id))
        metrics.update({f"train/{k}": v for k, v in engine.step().items()})
        trained_tokens += int(minibatch.lengths.sum())
    return metrics, trained_tokens
