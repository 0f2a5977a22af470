"""The functions that make GRPO Magistral's: the advantages, the loss, and the correction of the
generator/trainer mismatch (truncated importance sampling).

Pure tensor functions; the batch (``batch.py``) decides which rows form a minibatch.

Glossary (the paper's terms): a *group* is the completions sampled for one prompt; a group is
*non-diverse* when all its rewards are equal (no signal: dropped); *clip-higher* is an upper
clip ``eps_high`` above the lower ``eps_low``; the *generator* samples (vLLM, or the trained
model), the *trainer* computes the loss."""

from __future__ import annotations

import math

import torch

EPS = 1e-8


def group_advantages(
    rewards: torch.Tensor, group_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-relative advantages (docs/recipe.md, section 1): ``r - mean(group)``, no division by
    the group's std.

    Args:
        rewards: [N] total reward of each completion.
        group_index: [N] integer id of the prompt (group) each completion answers.

    Returns:
        (centred [N] float64, diverse [N] bool): ``diverse`` is False for every member of a
        group whose rewards are all equal (no signal), whose advantage is then exactly 0.
    """
    if rewards.shape != group_index.shape or rewards.dim() != 1:
        raise ValueError(
            f"rewards and group_index must be 1-D of one length, got {tuple(rewards.shape)} "
            f"and {tuple(group_index.shape)}"
        )
    rewards = rewards.double()
    groups, inverse = torch.unique(group_index, return_inverse=True)
    count = torch.zeros(len(groups), dtype=rewards.dtype).index_add_(
        0, inverse, torch.ones_like(rewards)
    )
    total = torch.zeros(len(groups), dtype=rewards.dtype).index_add_(0, inverse, rewards)
    centred = rewards - (total / count)[inverse]
    high = torch.full((len(groups),), -torch.inf, dtype=rewards.dtype).scatter_reduce(
        0, inverse, rewards, "amax"
    )
    low = torch.full((len(groups),), torch.inf, dtype=rewards.dtype).scatter_reduce(
        0, inverse, rewards, "amin"
    )
    diverse = (high - low > 1e-12)[inverse]
    return torch.where(diverse, centred, torch.zeros_like(centred)), diverse


def _normalised(advantages: torch.Tensor) -> torch.Tensor:
    """[M] -> [M] float32: ``(A - mean(A)) / (std(A) + 1e-8)``, population std."""
    std = advantages.std(correction=0) if advantages.numel() > 1 else advantages.new_tensor(0.0)
    return ((advantages - advantages.mean()) / (std + EPS)).float()


def magistral_advantages(
    rewards: torch.Tensor,
    group_index: torch.Tensor,
    minibatch: torch.Tensor,
    normalise: bool = True,
) -> torch.Tensor:
    """The advantages the loss uses, the only place they are computed: group-relative
    (:func:`group_advantages`), then normalised over each minibatch (docs/recipe.md, section 1).

    Args:
        rewards: [N] total reward of each completion of the step (every rank's).
        group_index: [N] the group (prompt) each completion answers.
        minibatch: [N] the minibatch each completion is trained in; -1 for those not trained
            (their group dropped).
        normalise: ``(A - mean) / (std + eps)`` over each minibatch's rows; False keeps
            ``r - mean(group)`` as it is (an ablation).

    Returns:
        [N] float32; 0 for the rows not trained.
    """
    if minibatch.shape != rewards.shape:
        raise ValueError(f"minibatch must be [N], got {tuple(minibatch.shape)}")
    centred, _ = group_advantages(rewards, group_index)
    if not normalise:
        return torch.where(minibatch >= 0, centred, 0.0).float()
    advantages = torch.zeros_like(centred, dtype=torch.float32)
    for m in torch.unique(minibatch[minibatch >= 0]).tolist():
        rows = minibatch == m
        advantages[rows] = _normalised(centred[rows])
    return advantages


def rejection_sampling_advantages(correct: torch.Tensor, minibatch: torch.Tensor) -> torch.Tensor:
    """Rejection-sampling fine-tuning's advantages: 1 for a trained completion whose answer is
    right, else 0. With them :func:`magistral_loss` at ratio 1 is the token-mean negative
    log-likelihood of the right completions, SFT on them.

    Args:
        correct: [N] bool, the answer of each completion is right.
        minibatch: [N] as in :func:`magistral_advantages`, -1 for rows not trained.

    Returns:
        [N] float32.
    """
    if correct.shape != minibatch.shape:
        raise ValueError(f"correct and minibatch must be [N], got {tuple(correct.shape)}")
    return (correct & (minibatch >= 0)).float()


def magistral_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float,
    eps_high: float,
    total_tokens: float | None = None,
    weights: torch.Tensor | None = None,
    max_log_ratio: float = 20.0,
    stats_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate to minimise, normalised by the optimiser step's token count.

    Args:
        logprobs: [B, T] log-probs of the completion tokens under the policy being trained.
        old_logprobs: [B, T] the old policy's log-probs of the same tokens (the generator's, or
            the trainer's before the update when ``weights`` correct for the generator).
        advantages: [B] one advantage per sequence, shared by all its tokens.
        mask: [B, T] 1 for completion tokens that count, 0 for padding and prompt.
        eps_low: lower clip (ratio >= 1 - eps_low), 0.2 in the paper.
        eps_high: upper clip (ratio <= 1 + eps_high), 0.26-0.28 in the paper ("clip-higher").
        total_tokens: the denominator, i.e. every kept completion token of the whole optimiser
            step (across microbatches; across ranks see
            :func:`~magistral_kedro.training.distributed.loss_denominator`); default ``mask.sum()``.
        weights: [B, T] per-token importance weights (truncated importance sampling, see
            :func:`truncated_importance_weights`), or None.
        max_log_ratio: the log-ratio is clamped to +-this before ``exp``: one wild token
            cannot make the loss infinite.
        stats_mask: [B, T] the tokens the statistics are over (default ``mask``).

    Returns:
        (loss, stats): ``-sum(w * min(rho A, clip(rho) A) * mask) / total_tokens`` (no KL, no
        entropy term), and token-level statistics for logging: clip fractions at each bound,
        mean ratio and the approximate KL to the old policy (``mean(rho - 1 - log rho)``), over
        ``stats_mask``.
    """
    mask = mask.to(logprobs.dtype)
    denominator = float(total_tokens) if total_tokens is not None else float(mask.sum())
    if denominator <= 0:
        raise ValueError(f"total_tokens must be positive, got {denominator}")
    log_ratio = (logprobs - old_logprobs).clamp(-max_log_ratio, max_log_ratio)
    ratio = torch.exp(log_ratio)
    adv = advantages.to(logprobs.dtype).unsqueeze(-1)  # [B, 1]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    objective = torch.minimum(unclipped, clipped)
    if weights is not None:
        objective = objective * weights
    loss = -(objective * mask).sum() / denominator
    with torch.no_grad():
        counted = mask if stats_mask is None else stats_mask.to(logprobs.dtype)
        n = counted.sum().clamp(min=1)
        # A token is clipped when the clipped term is the one min() picked and it differs.
        at_high = (ratio > 1.0 + eps_high) & (adv > 0)
        at_low = (ratio < 1.0 - eps_low) & (adv < 0)
        stats = {
            "clip/high_frac": float((at_high * counted).sum() / n),
            "clip/low_frac": float((at_low * counted).sum() / n),
            "policy/mean_ratio": float((ratio * counted).sum() / n),
            "policy/approx_kl": float(((ratio - 1 - log_ratio) * counted).sum() / n),
        }
    return loss, stats


def truncated_importance_weights(
    trainer_logprobs: torch.Tensor, generator_logprobs: torch.Tensor, cap: float
) -> torch.Tensor:
    """Per-token weights ``min(pi_trainer / pi_generator, cap)`` of tokens the generator drew
    (truncated importance sampling): they correct the expectation for the difference between
    the generator's distribution (vLLM kernels, bf16, staleness) and the trainer's.

    Args:
        trainer_logprobs: [B, T] the trainer's log-probs of the tokens, before the update.
        generator_logprobs: [B, T] the generator's log-probs of the same tokens.
        cap: the largest weight (C).

    Returns:
        [B, T] weights in (0, cap], no gradient.
    """
    log_ratio = (trainer_logprobs - generator_logprobs).detach()
    return torch.exp(log_ratio.clamp(max=math.log(cap)))


def mismatch_stats(
    trainer_logprobs: torch.Tensor,
    generator_logprobs: torch.Tensor,
    mask: torch.Tensor,
    cap: float,
) -> dict[str, float]:
    """How far the generator's log-probs are from the trainer's, over the masked tokens: mean
    ``|delta|``, an estimate of KL(generator || trainer) (``mean(r - 1 - log r)``, r = pi_trainer
    / pi_generator, unbiased for samples of the generator) and the share of tokens whose ratio
    is beyond ``cap``."""
    with torch.no_grad():
        delta = (trainer_logprobs - generator_logprobs).double() * mask
        ratio = torch.exp(delta.clamp(-20, 20))
        n = mask.sum().clamp(min=1)
        return {
            "mismatch/abs_logprob_diff": float(delta.abs().sum() / n),
            "mismatch/kl": float(((ratio - 1 - delta) * mask).sum() / n),
            "mismatch/beyond_cap_frac": float(((ratio > cap) * mask).sum() / n),
        }
