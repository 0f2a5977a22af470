"""The two functions that make GRPO Magistral's: advantages with group dropping, and the loss."""

from __future__ import annotations

import torch

from magistral_kedro.training import distributed

EPS = 1e-8


def magistral_advantages(
    rewards: torch.Tensor, group_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-relative advantages, non-diverse groups dropped, normalised over what is kept.

    Args:
        rewards: [N] total reward of each completion.
        group_index: [N] integer id of the prompt (group) each completion answers.

    Returns:
        (advantages [N], keep [N] bool). ``keep`` is False for every member of a group whose
        rewards are all equal (zero advantage, no signal); their advantage is 0. The kept
        advantages ``r - mean(group)`` are then normalised to zero mean and unit std over the
        kept set (the minibatch), ``(A - mean) / (std + 1e-8)``.
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
    keep = (high - low > 1e-12)[inverse]
    advantages = torch.zeros_like(rewards)
    if keep.any():
        kept = centred[keep]
        std = kept.std(correction=0) if kept.numel() > 1 else kept.new_tensor(0.0)
        advantages[keep] = (kept - kept.mean()) / (std + EPS)
    return advantages.float(), keep


def magistral_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float,
    eps_high: float,
    total_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate to minimise, normalised by the optimiser step's token count.

    Args:
        logprobs: [B, T] log-probs of the completion tokens under the policy being trained.
        old_logprobs: [B, T] the generator's log-probs of the same tokens.
        advantages: [B] one advantage per sequence, shared by all its tokens.
        mask: [B, T] 1 for completion tokens that count, 0 for padding and prompt.
        eps_low: lower clip (ratio >= 1 - eps_low), 0.2 in the paper.
        eps_high: upper clip (ratio <= 1 + eps_high), 0.26-0.28 in the paper ("clip-higher").
        total_tokens: the denominator, i.e. every kept completion token of the whole optimiser
            step (across microbatches; across ranks see :func:`loss_denominator`); default
            ``mask.sum()``.

    Returns:
        (loss, stats): ``-sum(min(rho A, clip(rho) A) * mask) / total_tokens`` (no KL, no entropy
        term), and token-level statistics for logging: clip fractions at each bound, mean ratio
        and the approximate KL to the generator's policy (``mean(rho - 1 - log rho)``).
    """
    mask = mask.to(logprobs.dtype)
    denominator = float(total_tokens) if total_tokens is not None else float(mask.sum())
    if denominator <= 0:
        raise ValueError(f"total_tokens must be positive, got {denominator}")
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    adv = advantages.to(logprobs.dtype).unsqueeze(-1)  # [B, 1]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    objective = torch.minimum(unclipped, clipped)
    loss = -(objective * mask).sum() / denominator
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        # A token is clipped when the clipped term is the one min() picked and it differs.
        at_high = (ratio > 1.0 + eps_high) & (adv > 0)
        at_low = (ratio < 1.0 - eps_low) & (adv < 0)
        stats = {
            "clip/high_frac": float((at_high * mask).sum() / n),
            "clip/low_frac": float((at_low * mask).sum() / n),
            "policy/mean_ratio": float((ratio * mask).sum() / n),
            "policy/approx_kl": float(((ratio - 1 - log_ratio) * mask).sum() / n),
        }
    return loss, stats


def loss_denominator(local_tokens: int) -> float:
    """The token count that makes the step's loss ``sum over all kept tokens / their number``.

    With one process this is ``local_tokens``. Across data-parallel ranks whose gradients are
    averaged (DeepSpeed, DDP), every rank divides by ``global_tokens / world_size``: the average
    of the ranks' gradients is then the gradient of the global token-normalised loss.
    """
    return sum(distributed.all_gather_objects(local_tokens)) / distributed.world_size()
