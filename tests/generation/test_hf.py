"""The transformers backend returns log-probs equal to the trainer's (the GRPO ratio's premise)."""

import copy

import pytest
import torch

from magistral_kedro.generation import SamplingConfig, TransformersGenerator
from magistral_kedro.models import build_prompt, build_tiny_model
from magistral_kedro.training.batching import token_logprobs
from tests.conftest import MICRO_MODEL


def _prompts(tokenizer, math_problems, n=3):
    return [build_prompt(tokenizer, p.prompt, None) for p in math_problems[:n]]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_match_a_forward_pass(micro_checkpoint, math_problems, temperature):
    tok, model = micro_checkpoint.tokenizer, micro_checkpoint.model
    prompts = _prompts(tok, math_problems)
    sampling = SamplingConfig(max_new_tokens=12, temperature=temperature, batch_size=4)
    samples = TransformersGenerator(model, tok).generate(prompts, n=2, sampling=sampling, seed=0)
    assert [len(s) for s in samples] == [2, 2, 2]
    for prompt, group in zip(prompts, samples, strict=True):
        prompt_ids = tok(prompt, add_special_tokens=False).input_ids
        for sample in group:
            ids = torch.tensor([prompt_ids + sample.token_ids])
            with torch.no_grad():
                logits = model(ids).logits / temperature
            expected = token_logprobs(logits, ids)[0, len(prompt_ids) :]
            torch.testing.assert_close(
                torch.tensor(sample.logprobs), expected, atol=1e-4, rtol=1e-4
            )


def test_sampling_is_reproducible_from_the_seed(micro_checkpoint, math_problems):
    gen = TransformersGenerator(micro_checkpoint.model, micro_checkpoint.tokenizer)
    prompts = _prompts(micro_checkpoint.tokenizer, math_problems)
    sampling = SamplingConfig(max_new_tokens=10, temperature=1.0)
    first = gen.generate(prompts, n=2, sampling=sampling, seed=1)
    assert first == gen.generate(prompts, n=2, sampling=sampling, seed=1)
    assert first != gen.generate(prompts, n=2, sampling=sampling, seed=2)


def test_greedy_is_the_argmax_and_leaves_the_global_rng_alone(micro_checkpoint, math_problems):
    gen = TransformersGenerator(micro_checkpoint.model, micro_checkpoint.tokenizer)
    prompts = _prompts(micro_checkpoint.tokenizer, math_problems, 2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    (a,), (b,) = gen.generate(
        prompts, n=1, sampling=SamplingConfig(max_new_tokens=8, temperature=0), seed=0
    )
    assert torch.equal(torch.get_rng_state(), state)
    for sample in (a, b):
        assert sample.finish_reason in ("stop", "length")
        assert len(sample.token_ids) == len(sample.logprobs) <= 8


def test_weights_loaded_between_decoding_steps_take_over_mid_sequence(tokenizer, math_problems):
    """Asynchronous RL's premise: new weights arrive after step 3, the sequences continue, and
    each sample records the versions that produced its first and last tokens."""
    old = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    new = build_tiny_model(tokenizer, MICRO_MODEL, seed=1)
    policy = copy.deepcopy(old)
    calls = {"n": 0}

    def between_steps() -> int:
        calls["n"] += 1
        ran = 0 if calls["n"] <= 3 else 1
        if calls["n"] == 3:  # after the third token: swap in place, keep the KV cache
            policy.load_state_dict(new.state_dict())
        return ran

    prompts = _prompts(tokenizer, math_problems, 1)
    sampling = SamplingConfig(max_new_tokens=8, temperature=1.0)
    ((sample,),) = TransformersGenerator(policy, tokenizer, between_steps).generate(
        prompts, n=1, sampling=sampling, seed=0
    )
    assert len(sample.token_ids) > 3, "seed 0's sample must outlive the swap"
    assert sample.policy_versions == (0, 1)
    prompt_ids = tokenizer(prompts[0], add_special_tokens=False).input_ids
    tok_ids = torch.tensor([prompt_ids + sample.token_ids])
    with torch.no_grad():
        before = token_logprobs(old(tok_ids).logits, tok_ids)[0, len(prompt_ids) :]
        after = token_logprobs(new(tok_ids).logits, tok_ids)[0, len(prompt_ids) :]
    got = torch.tensor(sample.logprobs)
    torch.testing.assert_close(got[:3], before[:3], atol=1e-4, rtol=1e-4)  # the old weights'
    assert not torch.allclose(got[3:], before[3 : len(got)], atol=1e-3)  # then the new weights'
    assert not torch.allclose(got[3:], after[3 : len(got)], atol=1e-3)  # on the old KV cache
