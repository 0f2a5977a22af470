"""The public GRPO functions on hand-computed cases."""

import math

import pytest
import torch

from magistral_kedro.grpo import greedy_collate, magistral_advantages, magistral_loss
from magistral_kedro.grpo.core import group_advantages, rejection_sampling_advantages
from magistral_kedro.training.distributed import loss_denominator


def _one_minibatch(rewards, groups):
    """Every row of a diverse group in minibatch 0, the others not trained (-1)."""
    _, diverse = group_advantages(rewards, groups)
    return torch.where(diverse, 0, -1)


def test_advantages_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.5, 0.5, 0.5, 1.1, 0.1])
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    minibatch = _one_minibatch(rewards, groups)
    assert (minibatch >= 0).tolist() == [True, True, True, False, False, False, True, True]
    advantages = magistral_advantages(rewards, groups, minibatch)
    # r - group mean: 1/3, -2/3, 1/3 | dropped | 0.5, -0.5; mean 0, population std sqrt(0.2333)
    std = math.sqrt((1 / 9 + 4 / 9 + 1 / 9 + 0.25 + 0.25) / 5)
    expected = [1 / 3 / std, -2 / 3 / std, 1 / 3 / std, 0, 0, 0, 0.5 / std, -0.5 / std]
    torch.testing.assert_close(advantages, torch.tensor(expected), atol=1e-5, rtol=1e-5)


def test_each_minibatch_is_normalised_on_its_own():
    """Rewards (1.1, 0.1) and (0.2, 0.1) push as hard as each other in their own minibatches,
    and differently when normalised together; without normalisation, r - mean(group)."""
    rewards = torch.tensor([1.1, 0.1, 0.2, 0.1])
    groups = torch.tensor([0, 0, 1, 1])
    apart = magistral_advantages(rewards, groups, torch.tensor([0, 0, 1, 1]))
    torch.testing.assert_close(apart, torch.tensor([1.0, -1.0, 1.0, -1.0]), atol=1e-6, rtol=0)
    together = magistral_advantages(rewards, groups, torch.tensor([0, 0, 0, 0]))
    assert together[0] > 1.0 > together[2] > 0
    raw = magistral_advantages(rewards, groups, torch.tensor([0, 0, 1, -1]), normalise=False)
    torch.testing.assert_close(raw, torch.tensor([0.5, -0.5, 0.05, 0.0]))


def test_dropped_groups_do_not_move_the_normalisation():
    rewards = torch.tensor([1.0, 0.0, 7.0, 7.0])
    groups = torch.tensor([0, 0, 1, 1])
    alone = magistral_advantages(rewards[:2], groups[:2], torch.tensor([0, 0]))
    with_dropped = magistral_advantages(rewards, groups, _one_minibatch(rewards, groups))
    torch.testing.assert_close(with_dropped[:2], alone)
    assert with_dropped[2:].tolist() == [0.0, 0.0]


def test_all_groups_dropped_gives_nothing_to_learn():
    rewards, groups = torch.ones(6), torch.tensor([0, 0, 1, 1, 2, 2])
    minibatch = _one_minibatch(rewards, groups)
    assert not (minibatch >= 0).any()
    assert torch.all(magistral_advantages(rewards, groups, minibatch) == 0)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(torch.ones(3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="minibatch must be"):
        magistral_advantages(torch.ones(3), torch.zeros(3, dtype=torch.long), torch.zeros(2))


def _tokens(ratios, advantage):
    """One sequence whose tokens have the given ratios (old log-prob 0)."""
    logprobs = torch.log(torch.tensor([ratios]))
    return (
        logprobs,
        torch.zeros_like(logprobs),
        torch.tensor([advantage]),
        torch.ones_like(logprobs),
    )


@pytest.mark.parametrize(
    ("ratios", "advantage", "objective", "high", "low"),
    [
        ([1.0, 1.0], 2.0, [2.0, 2.0], 0.0, 0.0),  # on-policy: rho A
        ([1.5, 1.1], 2.0, [1.28 * 2, 1.1 * 2], 0.5, 0.0),  # clipped at 1 + eps_high
        ([0.5, 0.9], -2.0, [0.8 * -2, 0.9 * -2], 0.0, 0.5),  # clipped at 1 - eps_low
        ([1.5, 0.5], -2.0, [1.5 * -2, 0.8 * -2], 0.0, 0.5),  # min() keeps the worse of the two
        ([0.5, 1.5], 2.0, [0.5 * 2, 1.28 * 2], 0.5, 0.0),
    ],
)
def test_clipped_objective_hand_computed(ratios, advantage, objective, high, low):
    loss, stats = magistral_loss(*_tokens(ratios, advantage), eps_low=0.2, eps_high=0.28)
    assert float(loss) == pytest.approx(-sum(objective) / 2, rel=1e-5)
    assert stats["clip/high_frac"] == pytest.approx(high)
    assert stats["clip/low_frac"] == pytest.approx(low)
    assert stats["policy/mean_ratio"] == pytest.approx(sum(ratios) / 2, rel=1e-5)


def test_padding_does_not_count_and_total_tokens_is_the_denominator():
    logprobs, old, adv, mask = _tokens([1.0, 1.0, 1.0], 1.0)
    mask[0, 2] = 0
    loss, _ = magistral_loss(logprobs, old, adv, mask, 0.2, 0.28)
    assert float(loss) == pytest.approx(-1.0)
    loss, _ = magistral_loss(logprobs, old, adv, mask, 0.2, 0.28, total_tokens=8)
    assert float(loss) == pytest.approx(-2 / 8)


def test_microbatches_with_the_global_denominator_equal_one_batch():
    """Long and short answers weigh by their tokens, however the step is cut."""
    torch.manual_seed(0)
    logits = torch.randn(4, 6, requires_grad=True)
    old = torch.randn(4, 6).detach()
    adv = torch.tensor([1.0, -0.5, 2.0, -1.0])
    mask = torch.tensor(
        [[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]]
    )
    whole, _ = magistral_loss(logits, old, adv, mask, 0.2, 0.28)
    whole.backward()
    grad_whole = logits.grad.clone()
    logits.grad = None
    total = int(mask.sum())
    parts = [
        magistral_loss(
            logits[rows], old[rows], adv[rows], mask[rows], 0.2, 0.28, total_tokens=total
        )[0]
        for rows in ([0, 2], [1, 3])
    ]
    for part in parts:
        part.backward()
    assert float(sum(parts).detach()) == pytest.approx(float(whole.detach()), rel=1e-6)
    torch.testing.assert_close(logits.grad, grad_whole)


def test_greedy_collate_is_public_here():
    assert greedy_collate([5, 1, 4], max_tokens=8) == [[0], [2, 1]]


def test_single_process_denominator_is_the_local_count():
    assert loss_denominator(123) == 123.0


def test_keeping_non_diverse_groups_keeps_them_with_advantage_zero():
    """The ablation switch: every completion is trained; the all-equal group's advantage is 0,
    the diverse group's r - mean(group) as with dropping."""
    rewards = torch.tensor([1.0, 0.0, 7.0, 7.0])
    groups = torch.tensor([0, 0, 1, 1])
    centred, diverse = group_advantages(rewards, groups)
    assert diverse.tolist() == [True, True, False, False]
    assert centred.tolist() == [0.5, -0.5, 0.0, 0.0]
    every_row = torch.zeros(4, dtype=torch.long)
    kept = magistral_advantages(rewards, groups, every_row, normalise=False)
    assert kept.tolist() == [0.5, -0.5, 0.0, 0.0]


def test_rejection_sampling_is_sft_on_the_right_answers():
    """Advantage 1 on the trained right answers, 0 elsewhere; at ratio 1 the loss's gradient
    is that of the token-mean negative log-likelihood of those answers."""
    correct = torch.tensor([True, False, True, True])
    minibatch = torch.tensor([0, -1, 0, -1])
    advantages = rejection_sampling_advantages(correct, minibatch)
    assert advantages.tolist() == [1.0, 0.0, 1.0, 0.0]
    logits = torch.randn(4, 5, requires_grad=True)
    logprobs = torch.nn.functional.logsigmoid(logits)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    kept = mask * advantages[:, None]
    loss, _ = magistral_loss(
        logprobs, logprobs.detach(), advantages, kept, 0.2, 0.28, total_tokens=float(kept.sum())
    )
    (grad,) = torch.autograd.grad(loss, logits, retain_graph=True)
    nll = -(logprobs * kept).sum() / kept.sum()
    (expected,) = torch.autograd.grad(nll, logits)
    assert torch.allclose(grad, expected) and grad.abs().sum() > 0
    with pytest.raises(ValueError, match="minibatch"):
        rejection_sampling_advantages(correct, minibatch[:2])
