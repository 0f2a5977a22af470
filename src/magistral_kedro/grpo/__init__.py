"""Magistral's GRPO (docs/recipe.md): advantages, the clipped loss, the loop.

Plain torch, no Kedro. The loss in a few lines (``core.py``)::

    A     = r - mean(r of its group)                  # no division by the group's std
    keep  = groups whose rewards are not all equal    # dropped before anything is counted
    A     = (A - mean(A_kept)) / (std(A_kept) + eps)  # normalised over the minibatch
    rho_t = exp(logp_t - logp_old_t)                  # old: the generator's own log-probs
                                                      # (or the trainer's, with TIS weights)
    loss  = -sum_t min(rho_t A, clip(rho_t, 1 - eps_low, 1 + eps_high) A) / total kept tokens

The loop (``loop.py``) reads as the algorithm, one module a stage: ``curriculum.py`` (what a
step samples: its :class:`~magistral_kedro.grpo.curriculum.StepPlan`), ``rollouts.py`` (who
generates, and verification: a ``Rollout``), ``batch.py`` (the step across ranks: a
``StepBatch`` with its advantages), ``update.py`` (minibatches and the optimiser steps);
``config.py`` holds the settings.
"""

from magistral_kedro.grpo.config import GRPOConfig, Stage
from magistral_kedro.grpo.core import magistral_advantages, magistral_loss
from magistral_kedro.training.batching import greedy_collate

__all__ = [
    "GRPOConfig",
    "Stage",
    "greedy_collate",
    "magistral_advantages",
    "magistral_loss",
]
