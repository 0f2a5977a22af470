"""A GRPO step's batch: every rank's rollout made into what the update trains on.

Only a few numbers per completion cross ranks (rewards, sizes), never tokens: advantages are
relative to the whole step and the metrics describe it all, while each rank trains on its own
rows. Groups never straddle ranks. Rows are numbered over the whole step in rank order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from magistral_kedro.grpo.config import GRPOConfig
from magistral_kedro.grpo.core import (
    group_advantages,
    magistral_advantages,
    rejection_sampling_advantages,
)
from magistral_kedro.grpo.rollouts import Rollout
from magistral_kedro.training import distributed
from magistral_kedro.training.batching import collate_causal_lm


@dataclass(frozen=True)
class CompletionStats:
    """What every rank learns of one completion: its reward's parts and its size."""

    total: float
    format: float
    correct: float
    length: float
    language: float
    n_tokens: int
    truncated: bool
    first_version: float  # policy version of its first token (async), else NaN


@dataclass(frozen=True)
class StepBatch:
    """One GRPO step's batch.

    Over the whole step (every rank's rows, rank order): ``stats``, ``group_ids``, ``minibatch``
    (the minibatch each row trains in, -1 where its group was dropped), ``advantages`` and
    ``measured``: the trained rows of groups whose rewards differ, the tokens the policy's
    statistics (entropy, clip shares) are over, so that they describe the same tokens whichever
    rows the rules train on (keeping all-equal groups adds rows, not measured ones).
    This rank's rows as right-padded tensors ``[n, T]``, prompt then completion; they are rows
    ``local_rows`` of the step. ``order``: the step's trained rows in their seeded training
    order."""

    stats: list[CompletionStats]  # [N]
    group_ids: torch.Tensor  # [N] long
    minibatch: torch.Tensor  # [N] long, -1: not trained
    advantages: torch.Tensor  # [N] float32, 0 where not trained
    measured: torch.Tensor  # [N] bool
    order: list[int]  # trained rows of the step, in training order
    local_rows: range
    input_ids: torch.Tensor  # [n, T] long, padded with pad_id
    lengths: torch.Tensor  # [n] long, prompt + completion tokens
    loss_mask: torch.Tensor  # [n, T] float32, 1 on completion tokens
    generator_logprobs: torch.Tensor  # [n, T] float32, the sampled tokens' (0 elsewhere)
    pad_id: int

    @property
    def kept(self) -> int:
        """How many completions of the step are trained on."""
        return int((self.minibatch >= 0).sum())

    def minibatch_rows(self, index: int) -> list[int]:
        """This rank's rows (0 to n) of minibatch ``index``, in training order."""
        start = self.local_rows.start
        mine = [row for row in self.order if row in self.local_rows]
        return [row - start for row in mine if int(self.minibatch[row]) == index]


def _stats(rollout: Rollout) -> list[CompletionStats]:
    return [
        CompletionStats(
            r.total,
            r.format,
            r.correct,
            r.length,
            r.language,
            len(s.token_ids),
            s.finish_reason == "length",
            s.policy_versions[0] if s.policy_versions is not None else math.nan,
        )
        for (_, s), r in zip(rollout.completions(), rollout.rewards, strict=True)
    ]


def padded_rows(
    prompts: Sequence[list[int]],
    completions: Sequence[list[int]],
    logprobs: Sequence[list[float]],
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of prompt then completion tokens, right-padded to the longest
    (:func:`~magistral_kedro.training.batching.collate_causal_lm`): input_ids [n, T], lengths
    [n], loss_mask [n, T] (1 on completion tokens) and the completion tokens' ``logprobs`` at
    their positions [n, T] (0 elsewhere)."""
    batch = collate_causal_lm(
        [p + c for p, c in zip(prompts, completions, strict=True)],
        [len(p) for p in prompts],
        pad_id,
    )
    input_ids, loss_mask = batch["input_ids"], batch["loss_mask"]
    per_token = torch.zeros_like(loss_mask)
    for row, prompt in enumerate(prompts):
        per_token[row, len(prompt) : len(prompt) + len(logprobs[row])] = torch.tensor(logprobs[row])
    lengths = batch["attention_mask"].sum(-1)
    return input_ids, lengths, loss_mask, per_token


def _minibatches(
    keep: torch.Tensor, rows_of_rank: list[range], n_minibatches: int, seed: int, step: int
) -> tuple[torch.Tensor, list[int]]:
    """The kept rows in one seeded permutation of the step, each rank's cut into
    ``n_minibatches`` consecutive chunks: (minibatch of each row [N], -1 if not kept; the
    permutation)."""
    order = np.random.default_rng([seed, step, 1]).permutation(np.flatnonzero(keep.numpy()))
    minibatch = torch.full(keep.shape, -1, dtype=torch.long)
    for rows in rows_of_rank:
        mine = [int(k) for k in order if int(k) in rows]
        for index, chunk in enumerate(np.array_split(mine, n_minibatches)):
            minibatch[torch.as_tensor(chunk, dtype=torch.long)] = index
    return minibatch, [int(k) for k in order]


def _kept(stats: list[CompletionStats], diverse: torch.Tensor, grpo: GRPOConfig) -> torch.Tensor:
    """[N] bool, the rows trained on: for rejection-sampling fine-tuning the right answers; for
    GRPO the members of groups whose rewards differ (``diverse``; all, if
    ``drop_non_diverse_groups`` is off)."""
    if grpo.objective == "rs_ft":
        return torch.tensor([s.correct > 0 for s in stats])
    return diverse if grpo.drop_non_diverse_groups else torch.ones_like(diverse)


def make_batch(
    rollout: Rollout,
    prompt_ids: Sequence[list[int]],
    pad_id: int,
    grpo: GRPOConfig,
    seed: int,
) -> StepBatch:
    """The step's batch (a collective: every rank calls it): every rank's rewards gathered,
    the rows to train on kept (:func:`_kept`), dealt into ``grpo.n_minibatches`` minibatches
    with (seed, step), and their advantages."""
    group_ids = [g for g, group in enumerate(rollout.groups) for _ in group]
    everyone = distributed.all_gather_objects((len(rollout.groups), group_ids, _stats(rollout)))
    stats: list[CompletionStats] = []
    groups: list[int] = []
    rows_of_rank: list[range] = []
    n_groups = 0
    for count, ids, of_rank in everyone:
        rows_of_rank.append(range(len(stats), len(stats) + len(of_rank)))
        groups += [n_groups + g for g in ids]
        stats += of_rank
        n_groups += count
    rewards, group_index = torch.tensor([s.total for s in stats]), torch.tensor(groups)
    _, diverse = group_advantages(rewards, group_index)
    keep = _kept(stats, diverse, grpo)
    minibatch, order = _minibatches(keep, rows_of_rank, grpo.n_minibatches, seed, rollout.plan.step)
    if grpo.objective == "rs_ft":
        advantages = rejection_sampling_advantages(keep, minibatch)
    else:
        advantages = magistral_advantages(
            rewards, group_index, minibatch, grpo.normalise_minibatch_advantages
        )
    flat = rollout.completions()
    input_ids, lengths, loss_mask, logprobs = padded_rows(
        [prompt_ids[i] for i, _ in flat],
        [s.token_ids for _, s in flat],
        [s.logprobs for _, s in flat],
        pad_id,
    )
    local_rows = rows_of_rank[distributed.rank()]
    return StepBatch(
        stats, group_index, minibatch, advantages, keep & diverse, order, local_rows,
        input_ids, lengths, loss_mask, logprobs, pad_id,
    )  # fmt: skip


def step_metrics(batch: StepBatch, version: int) -> dict[str, float]:
    """The step's reward and completion statistics over every rank's completions; ``version``
    is the trainer's policy version (GRPO steps that updated its weights so far)."""
    rows = batch.stats
    totals = np.array([c.total for c in rows])
    corrects = np.array([c.correct for c in rows])
    n_tokens = np.array([c.n_tokens for c in rows], dtype=float)
    metrics = {
        "reward/total": float(totals.mean()),
        "reward/format": float(np.mean([c.format for c in rows])),
        "reward/correct": float(corrects.mean()),
        "reward/length": float(np.mean([c.length for c in rows])),
        "reward/language": float(np.mean([c.language for c in rows])),
        "accuracy": float((corrects > 0).mean()),
        "groups/dropped_frac": 1.0 - batch.kept / len(rows),
        "completion/mean_tokens": float(n_tokens.mean()),
        "completion/max_tokens": float(n_tokens.max()),
        "completion/truncated_frac": float(np.mean([c.truncated for c in rows])),
    }
    first_version = np.array([c.first_version for c in rows])
    if not np.isnan(first_version).all():  # asynchronous: how old the generating weights were
        staleness = version - first_version
        metrics["async/staleness_mean"] = float(np.nanmean(staleness))
        metrics["async/staleness_max"] = float(np.nanmax(staleness))
    return metrics
