"""A step's completions across ranks: each rank's rollout gathered into one batch, and the
step's reward and completion statistics.

Only a few numbers per completion cross ranks (rewards, sizes), never tokens: advantages are
relative to the whole batch and the metrics describe it all, while each rank trains on its own
rows. Groups never straddle ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from magistral_kedro.grpo.core import group_advantages
from magistral_kedro.grpo.rollouts import Rollout
from magistral_kedro.training import distributed


@dataclass(frozen=True)
class Completion:
    """What every rank learns of one completion."""

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
    """Every rank's completions of one step, in rank order, where this rank's rows are, and
    their group-relative advantages (advantage 0 in non-diverse groups, which are dropped,
    ``keep`` False, unless ``grpo.drop_non_diverse_groups`` is off; normalised per minibatch by
    the update)."""

    completions: list[Completion]
    rows_of_rank: list[range]
    advantages: torch.Tensor  # [N] float64, r - mean(group)
    keep: torch.Tensor  # [N] bool

    @property
    def kept(self) -> int:
        """How many completions are trained on."""
        return int(self.keep.sum())


def _completions(rollout: Rollout) -> list[Completion]:
    samples = [s for group in rollout.groups for s in group]
    return [
        Completion(
            b.total,
            b.format,
            b.correct,
            b.length,
            b.language,
            len(s.token_ids),
            s.finish_reason == "length",
            s.policy_versions[0] if s.policy_versions is not None else math.nan,
        )
        for s, b in zip(samples, rollout.rewards, strict=True)
    ]


def gather_step(rollout: Rollout, drop_non_diverse: bool = True) -> StepBatch:
    """Every rank's completions of the step and their advantages (a collective: every rank
    calls it); ``drop_non_diverse``: see :func:`group_advantages`."""
    group_ids = [g for g, group in enumerate(rollout.groups) for _ in group]
    everyone = distributed.all_gather_objects(
        (len(rollout.groups), group_ids, _completions(rollout))
    )
    completions: list[Completion] = []
    groups: list[int] = []
    rows_of_rank: list[range] = []
    n_groups = 0
    for count, ids, theirs in everyone:
        rows_of_rank.append(range(len(completions), len(completions) + len(theirs)))
        groups += [n_groups + g for g in ids]
        completions += theirs
        n_groups += count
    rewards = torch.tensor([c.total for c in completions])
    advantages, keep = group_advantages(rewards, torch.tensor(groups), drop_non_diverse)
    return StepBatch(completions, rows_of_rank, advantages, keep)


def step_metrics(batch: StepBatch, version: int) -> dict[str, float]:
    """The step's reward and completion statistics over every rank's completions; ``version``
    is the trainer's policy version (optimiser updates so far)."""
    rows = batch.completions
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
