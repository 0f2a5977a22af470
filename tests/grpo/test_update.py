"""One GRPO update on hand-made batches: its direction, per-minibatch normalisation, and the
correction of a generator whose log-probs are not the trainer's (truncated importance sampling).
"""

import dataclasses

import pytest
import torch

from magistral_kedro.generation import Sample, SamplingConfig
from magistral_kedro.grpo import update as update_module
from magistral_kedro.grpo.batch import make_batch
from magistral_kedro.grpo.config import GRPOConfig
from magistral_kedro.grpo.core import truncated_importance_weights
from magistral_kedro.grpo.curriculum import StepPlan
from magistral_kedro.grpo.rollouts import Rollout
from magistral_kedro.grpo.update import update
from magistral_kedro.models import build_prompt, build_tiny_model
from magistral_kedro.rewards import RewardBreakdown
from magistral_kedro.training.engine import EngineConfig, OptimConfig, create_engine
from magistral_kedro.training.logprobs import token_logprobs
from tests.support.models import MICRO_MODEL

GRPO = GRPOConfig(group_size=2, max_tokens_per_microbatch=4096)


def _logprob_sums(model, prompt, completions):
    """Sum of each completion's token log-probs under ``model``, [K]."""
    sums = []
    with torch.no_grad():
        for tokens in completions:
            ids = torch.tensor([prompt + tokens])
            sums.append(float(token_logprobs(model(ids).logits, ids)[0, len(prompt) :].sum()))
    return torch.tensor(sums)


def _rollout(model, prompt, completions, rewards, shift=(0.0, 0.0)):
    """One group of two completions of ``prompt`` with the given total rewards; the generator's
    log-probs are the model's own, plus ``shift`` (one per completion) to fake a mismatch."""
    samples = []
    with torch.no_grad():
        for tokens, delta in zip(completions, shift, strict=True):
            ids = torch.tensor([prompt + tokens])
            own = token_logprobs(model(ids).logits, ids)[0, len(prompt) :]
            samples.append(Sample(0, tokens, (own + delta).tolist(), "text", "length"))
    verdicts = [RewardBreakdown(0.1, r - 0.1, 0.0, 0.0, r) for r in rewards]
    plan = StepPlan(step=0, stage=0, problem_indices=[0], sampling=SamplingConfig(), seed=0)
    return Rollout(plan, [samples], verdicts, 0.0, 0.0)


@pytest.fixture()
def setup(tokenizer, math_problems):
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    prompt = tokenizer(
        build_prompt(tokenizer, math_problems[0].prompt, None), add_special_tokens=False
    ).input_ids
    completions = [[11, 12, 13, 14, 15], [21, 22, 23]]
    engine = create_engine(
        model, EngineConfig(backend="torch", optim=OptimConfig(lr=1e-2, warmup_steps=0))
    )
    return engine, prompt, completions


def _update(engine, rollout, prompt, grpo=GRPO, tis=False):
    grpo = dataclasses.replace(grpo, tis="on" if tis else "off")
    return update(engine, make_batch(rollout, [prompt], 0, grpo, seed=0), grpo)


@pytest.mark.parametrize("rewards", [(1.1, 0.1), (0.1, 1.1)])
def test_an_update_raises_the_better_completion_and_lowers_the_worse(setup, rewards):
    engine, prompt, completions = setup
    before = _logprob_sums(engine.model, prompt, completions)
    rollout = _rollout(engine.model, prompt, completions, list(rewards))
    metrics, tokens = _update(engine, rollout, prompt)
    moved = _logprob_sums(engine.model, prompt, completions) - before
    better, worse = (0, 1) if rewards[0] > rewards[1] else (1, 0)
    assert moved[better] > 0 > moved[worse]
    assert tokens == 2 * len(prompt) + 8 and "train/grad_norm" in metrics


def test_an_exact_generator_has_no_mismatch_and_weights_of_one(setup):
    engine, prompt, completions = setup
    metrics, _ = _update(
        engine, _rollout(engine.model, prompt, completions, [1.1, 0.1]), prompt, tis=True
    )
    assert metrics["mismatch/abs_logprob_diff"] < 1e-5
    assert metrics["mismatch/kl"] < 1e-8 and metrics["mismatch/beyond_cap_frac"] == 0.0
    assert metrics["policy/mean_ratio"] == pytest.approx(1.0, abs=1e-6)
    own = torch.randn(3, 4)
    assert torch.equal(truncated_importance_weights(own, own, cap=2.0), torch.ones(3, 4))


def test_a_perturbed_generator_is_measured_and_its_weights_capped(setup):
    engine, prompt, completions = setup
    # The generator gave the first completion's tokens e^-1.5 of the trainer's probability:
    # ratio e^1.5 = 4.5 > the cap 2. The second completion is exact.
    rollout = _rollout(engine.model, prompt, completions, [1.1, 0.1], shift=(-1.5, 0.0))
    metrics, _ = _update(engine, rollout, prompt, tis=True)
    share = 5 / 8  # the first completion's tokens among all
    assert metrics["mismatch/abs_logprob_diff"] == pytest.approx(1.5 * share, rel=1e-4)
    assert metrics["mismatch/beyond_cap_frac"] == pytest.approx(share)
    expected_kl = (torch.exp(torch.tensor(1.5)) - 1 - 1.5) * share
    assert metrics["mismatch/kl"] == pytest.approx(float(expected_kl), rel=1e-4)
    trainer = torch.zeros(2, 3)
    generator = torch.tensor([[-1.5, 0.0, -0.5], [0.5, 0.0, 0.0]])
    weights = truncated_importance_weights(trainer, generator, cap=2.0)
    torch.testing.assert_close(
        weights, torch.tensor([[2.0, 1.0, 1.6487], [0.6065, 1.0, 1.0]]), atol=1e-4, rtol=0
    )


def test_advantages_are_normalised_over_each_minibatch(tokenizer, math_problems, monkeypatch):
    """Two minibatches of one group each: each is normalised on its own (mean 0, std 1), so a
    group of rewards (1.1, 0.1) and a group of (0.2, 0.1) push as hard as each other."""
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    prompt = tokenizer(
        build_prompt(tokenizer, math_problems[0].prompt, None), add_special_tokens=False
    ).input_ids
    first = _rollout(model, prompt, [[11, 12], [13, 14]], [1.1, 0.1])
    second = _rollout(model, prompt, [[21, 22], [23, 24]], [0.2, 0.1])
    samples = first.groups + second.groups
    rollout = Rollout(
        dataclasses.replace(first.plan, problem_indices=[0, 0]),
        samples,
        first.rewards + second.rewards,
        0.0,
        0.0,
    )
    seen = []

    def spy(engine, minibatch, *args):
        seen.append(minibatch.advantages.tolist())
        return real(engine, minibatch, *args)

    real = update_module.minibatch_loss
    monkeypatch.setattr(update_module, "minibatch_loss", spy)
    engine = create_engine(model, EngineConfig(backend="torch", optim=OptimConfig(lr=1e-3)))
    grpo = dataclasses.replace(GRPO, n_minibatches=2)
    metrics, _ = update(engine, make_batch(rollout, [prompt], 0, grpo, seed=0), grpo)
    assert len(seen) == 2
    for advantages in seen:
        assert sorted(advantages) == pytest.approx([-1.0, 1.0], abs=1e-6)
    assert "mismatch/abs_logprob_diff" in metrics  # measured before the first update


def _spy_advantages(monkeypatch):
    seen = []
    real = update_module.minibatch_loss

    def spy(engine, minibatch, *args):
        seen.append(minibatch.advantages.tolist())
        return real(engine, minibatch, *args)

    monkeypatch.setattr(update_module, "minibatch_loss", spy)
    return seen


def test_the_ablation_switches_change_what_the_update_sees(setup, monkeypatch):
    """Without normalisation the update trains on r - mean(group); keeping non-diverse groups
    puts their completions (advantage 0) in the minibatch, where they move the normalisation
    and count in the loss's tokens."""
    engine, prompt, completions = setup
    seen = _spy_advantages(monkeypatch)
    rollout = _rollout(engine.model, prompt, completions, (1.1, 0.1))
    _update(
        engine, rollout, prompt, dataclasses.replace(GRPO, normalise_minibatch_advantages=False)
    )
    assert sorted(seen[-1]) == pytest.approx([-0.5, 0.5])
    _update(engine, rollout, prompt)
    assert sorted(seen[-1]) == pytest.approx([-1.0, 1.0], abs=1e-6)

    first = _rollout(engine.model, prompt, completions, (1.1, 0.1))
    flat = _rollout(engine.model, prompt, completions, (0.1, 0.1))
    plan = dataclasses.replace(first.plan, problem_indices=[0, 0])
    both = Rollout(plan, first.groups + flat.groups, first.rewards + flat.rewards, 0.0, 0.0)
    keep = dataclasses.replace(GRPO, drop_non_diverse_groups=False)
    batch = make_batch(both, [prompt], 0, keep, seed=0)
    assert batch.kept == 4
    update(engine, batch, keep)
    # (0.5, -0.5, 0, 0): mean 0, population std sqrt(0.125)
    scaled = 0.5 / 0.125**0.5
    assert sorted(seen[-1]) == pytest.approx([-scaled, 0.0, 0.0, scaled], abs=1e-5)
    update(engine, make_batch(both, [prompt], 0, GRPO, seed=0), GRPO)
    assert sorted(seen[-1]) == pytest.approx([-1.0, 1.0], abs=1e-6)


def test_the_policy_statistics_are_over_the_same_tokens_whichever_rows_are_kept(setup):
    """Keeping the all-equal groups (an ablation) adds rows to train on, not to measure: the
    entropy and clip shares are over the diverse groups' tokens in both settings, so the arms
    compare like with like; a step with no diverse group has none to report."""
    from magistral_kedro.grpo.update import _minibatch, minibatch_loss

    engine, prompt, completions = setup
    diverse = _rollout(engine.model, prompt, completions, (1.1, 0.1))
    # A generator far from the trainer on the flat group only: counted, its tokens would move
    # the ratio's statistics.
    flat_completions = [[31, 32], [41, 42, 43, 44, 45, 46, 47]]
    flat = _rollout(engine.model, prompt, flat_completions, (0.1, 0.1), shift=(-1.0, -1.0))
    plan = dataclasses.replace(diverse.plan, problem_indices=[0, 0])
    both = Rollout(plan, diverse.groups + flat.groups, diverse.rewards + flat.rewards, 0.0, 0.0)
    keep = dataclasses.replace(GRPO, drop_non_diverse_groups=False)

    def statistics(rollout, grpo):  # no optimiser step: the same weights every call
        batch = make_batch(rollout, [prompt], 0, grpo, seed=0)
        minibatch = _minibatch(batch, batch.minibatch_rows(0), None)
        return batch, minibatch_loss(engine, minibatch, grpo, 0)

    dropped, recipe = statistics(both, GRPO)
    kept, ablation = statistics(both, keep)
    assert dropped.measured.tolist() == kept.measured.tolist() == [True, True, False, False]
    assert kept.kept == 4 and dropped.kept == 2
    assert ablation["policy/entropy"] == pytest.approx(recipe["policy/entropy"], rel=1e-6)
    for key in ("policy/mean_ratio", "policy/approx_kl", "clip/high_frac", "clip/low_frac"):
        assert ablation[key] == pytest.approx(recipe[key], abs=1e-6), key
    assert ablation["mismatch/kl"] > recipe["mismatch/kl"]  # over every trained token
    _, alone = statistics(flat, keep)
    assert "loss" in alone and "policy/entropy" not in alone and "clip/low_frac" not in alone


def test_tis_weights_the_gradient_by_the_capped_ratio(setup):
    """An exact generator: TIS changes nothing. A generator that gave every token e^-1.5 of
    the trainer's probability (ratio 4.5, capped at 2): with TIS the gradient doubles, each
    token weighted by the cap, the ratio taken against the trainer's own log-probs."""
    from magistral_kedro.grpo.update import Minibatch, minibatch_loss

    engine, prompt, completions = setup
    rollout = _rollout(engine.model, prompt, completions, [1.1, 0.1])
    exact = [s.logprobs for s in rollout.groups[0]]

    def gradient(generator_logprobs, tis):
        engine.model.zero_grad(set_to_none=True)
        minibatch = Minibatch.of_sequences(
            [prompt] * 2, completions, generator_logprobs, torch.tensor([1.0, -1.0])
        )
        minibatch_loss(engine, minibatch, dataclasses.replace(GRPO, tis="on" if tis else "off"), 0)
        return torch.cat([p.grad.flatten() for p in engine.model.parameters()])

    plain = gradient(exact, tis=False)
    torch.testing.assert_close(gradient(exact, tis=True), plain)
    shifted = [[v - 1.5 for v in values] for values in exact]
    torch.testing.assert_close(gradient(shifted, tis=True), 2 * plain, rtol=1e-4, atol=1e-7)


def test_the_update_never_holds_the_whole_logits(setup):
    """The loss and the old log-probs come from the chunked head: the model's output is the
    tokens' log-probs [b, T], never [b, T, V] logits."""
    from magistral_kedro.grpo.update import Minibatch, minibatch_loss, trainer_logprobs

    engine, prompt, completions = setup
    rollout = _rollout(engine.model, prompt, completions, [1.1, 0.1])
    minibatch = Minibatch.of_sequences(
        [prompt] * 2, completions, [s.logprobs for s in rollout.groups[0]], torch.ones(2)
    )
    shapes = []
    forward = engine.forward

    def spy(**batch):
        output = forward(**batch)
        shapes.append(tuple(output.logits.shape))
        return output

    engine.forward = spy
    trainer_logprobs(engine, minibatch, GRPO, 0)
    minibatch_loss(engine, minibatch, GRPO, 0)
    assert len(shapes) == 2 and all(len(shape) == 2 for shape in shapes), shapes


def test_rejection_sampling_fine_tuning_trains_on_every_right_answer_alone(setup):
    """rs_ft keeps the right completions, of all-equal groups too (GRPO drops those), each with
    advantage 1, and leaves out the wrong ones; its update raises the right answers."""
    engine, prompt, completions = setup
    mixed = _rollout(engine.model, prompt, completions, (1.1, 0.1))
    right = _rollout(engine.model, prompt, completions, (1.1, 1.1))
    plan = dataclasses.replace(mixed.plan, problem_indices=[0, 0])
    both = Rollout(plan, mixed.groups + right.groups, mixed.rewards + right.rewards, 0.0, 0.0)
    rs_ft = dataclasses.replace(GRPO, objective="rs_ft", tis="off")
    batch = make_batch(both, [prompt], 0, rs_ft, seed=0)
    assert (batch.minibatch >= 0).tolist() == [True, False, True, True]
    assert batch.advantages.tolist() == [1.0, 0.0, 1.0, 1.0]
    assert make_batch(both, [prompt], 0, GRPO, seed=0).kept == 2
    before = _logprob_sums(engine.model, prompt, completions)
    update(engine, batch, rs_ft)
    assert (_logprob_sums(engine.model, prompt, completions) - before)[0] > 0
