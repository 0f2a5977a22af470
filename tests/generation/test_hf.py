"""The transformers backend returns log-probs equal to the trainer's (the GRPO ratio's premise)."""

import pytest
import torch

from magistral_kedro.generation import SamplingConfig, TransformersGenerator
from magistral_kedro.models import build_prompt
from magistral_kedro.training.batching import token_logprobs


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
