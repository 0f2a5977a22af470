"""The transformers backend returns log-probs equal to the trainer's (the GRPO ratio's premise)."""

import copy

import pytest
import torch

from magistral_kedro.generation import SamplingConfig, TransformersGenerator, encode_prompts
from magistral_kedro.generation.hf import decode
from magistral_kedro.models import build_prompt, build_tiny_model
from magistral_kedro.training.logprobs import token_logprobs
from tests.support.models import MICRO_MODEL


def _prompts(tokenizer, math_problems, n=3):
    """The first ``n`` problems' prompts, as token ids."""
    return encode_prompts(
        tokenizer, [build_prompt(tokenizer, p.prompt, None) for p in math_problems[:n]]
    )


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_match_a_forward_pass(micro_checkpoint, math_problems, temperature):
    tok, model = micro_checkpoint.tokenizer, micro_checkpoint.model
    prompts = _prompts(tok, math_problems)
    sampling = SamplingConfig(max_new_tokens=12, temperature=temperature, batch_size=4)
    samples = TransformersGenerator(model, tok).generate(prompts, n=2, sampling=sampling, seed=0)
    assert [len(s) for s in samples] == [2, 2, 2]
    for prompt_ids, group in zip(prompts, samples, strict=True):
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
    model = micro_checkpoint.model
    gen = TransformersGenerator(model, micro_checkpoint.tokenizer)
    prompts = _prompts(micro_checkpoint.tokenizer, math_problems, 2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    (a,), (b,) = gen.generate(
        prompts, n=1, sampling=SamplingConfig(max_new_tokens=8, temperature=0), seed=0
    )
    assert torch.equal(torch.get_rng_state(), state)
    for prompt_ids, sample in zip(prompts, (a, b), strict=True):
        assert len(sample.token_ids) == len(sample.logprobs) <= 8
        ids = list(prompt_ids)  # decode by hand: each next token is the argmax of a forward
        for token in sample.token_ids:
            with torch.no_grad():
                assert token == int(model(torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(token)


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
    prompt_ids = prompts[0]
    tok_ids = torch.tensor([prompt_ids + sample.token_ids])
    with torch.no_grad():
        before = token_logprobs(old(tok_ids).logits, tok_ids)[0, len(prompt_ids) :]
        after = token_logprobs(new(tok_ids).logits, tok_ids)[0, len(prompt_ids) :]
    got = torch.tensor(sample.logprobs)
    torch.testing.assert_close(got[:3], before[:3], atol=1e-4, rtol=1e-4)  # the old weights'
    assert not torch.allclose(got[3:], before[3 : len(got)], atol=1e-3)  # then the new weights'
    assert not torch.allclose(got[3:], after[3 : len(got)], atol=1e-3)  # on the old KV cache


def _chi_square_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Tokens expected at least 5 times each are compared one by one, the rest pooled with the
    least likely of those."""
    from scipy.stats import chisquare

    expected = probs * counts.sum()
    common = torch.nonzero(expected >= 5).squeeze(-1)
    rare = torch.ones_like(probs, dtype=torch.bool)
    rare[common] = False
    observed = counts[common].double()
    observed[expected[common].argmin()] += counts[rare].sum()
    pooled = expected[common].clone()
    pooled[expected[common].argmin()] += expected[rare].sum()
    return float(chisquare(observed.numpy(), pooled.numpy()).pvalue)


def _first_tokens(model, tok, prompt, temperature, top_p, n=4000):
    """The first tokens of ``n`` samples, counted [V], and the log-probs they were returned with."""
    sampling = SamplingConfig(max_new_tokens=1, temperature=temperature, top_p=top_p,
                              batch_size=1000)  # fmt: skip
    (group,) = TransformersGenerator(model, tok).generate([prompt], n=n, sampling=sampling, seed=0)
    first = torch.tensor([s.token_ids[0] for s in group])
    return torch.bincount(first, minlength=model.config.vocab_size), first, group


def test_samples_follow_the_model_not_the_checkpoints_generation_config(
    micro_checkpoint, math_problems
):
    """The sampled tokens' frequencies match exp(log-prob) of the model (chi-square over many
    draws of the first token), although the checkpoint ships a repetition penalty and bans
    repeated tokens: nothing but temperature sampling may shape what the trainer scores."""
    tok, model = micro_checkpoint.tokenizer, micro_checkpoint.model
    model.generation_config.repetition_penalty = 1.3
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.top_k = 5
    (prompt,) = _prompts(tok, math_problems, 1)
    counts, _, _ = _first_tokens(model, tok, prompt, temperature=1.0, top_p=1.0)
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([prompt])).logits[0, -1].double(), -1)
    assert _chi_square_pvalue(counts, probs) > 1e-3
    assert model.generation_config.repetition_penalty == 1.3  # the checkpoint's own, kept


def test_top_p_samples_the_nucleus_and_returns_untruncated_logprobs(
    micro_checkpoint, math_problems
):
    """With top-p 0.5 at temperature 0.7 only the smallest set of likeliest tokens holding half
    the mass is drawn, in proportion to its probabilities; each log-prob is of the scaled
    distribution before truncation (what the trainer computes)."""
    tok, model = micro_checkpoint.tokenizer, micro_checkpoint.model
    (prompt,) = _prompts(tok, math_problems, 1)
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0, -1].double()
    probs = torch.softmax(logits / 0.7, -1)
    ranked = probs.sort(descending=True)
    size = int((ranked.values.cumsum(0) < 0.5).sum()) + 1  # the nucleus: cross 0.5, stop
    nucleus = torch.zeros_like(probs)
    nucleus[ranked.indices[:size]] = probs[ranked.indices[:size]]
    counts, first, group = _first_tokens(model, tok, prompt, temperature=0.7, top_p=0.5)
    assert size > 3, "the check needs a nucleus of several tokens"
    assert counts[nucleus == 0].sum() == 0
    assert _chi_square_pvalue(counts, nucleus / nucleus.sum()) > 1e-3
    returned = torch.tensor([s.logprobs[0] for s in group], dtype=torch.float64)
    torch.testing.assert_close(returned, probs.log()[first], atol=1e-4, rtol=1e-4)


def test_rows_that_stop_early_leave_the_batch_and_the_rest_decode_on(
    micro_checkpoint, math_problems
):
    """Many stop tokens make the rows of one batch stop at many different steps (the loop
    drops stopped rows from the batch and its KV cache): each completion ends at its first stop
    token, and every log-prob still equals a forward pass over the whole sequence."""
    tok, model = micro_checkpoint.tokenizer, micro_checkpoint.model
    model.generation_config.eos_token_id = list(range(3, model.config.vocab_size, 12))
    ends = set(model.generation_config.eos_token_id) | {tok.eos_token_id}
    prompts = _prompts(tok, math_problems, 4)
    sampling = SamplingConfig(max_new_tokens=40, temperature=1.0, batch_size=64)
    groups = TransformersGenerator(model, tok).generate(prompts, n=16, sampling=sampling, seed=0)
    lengths = [len(s.token_ids) for g in groups for s in g]
    assert len(set(lengths)) >= 8 and max(lengths) > 3 * min(lengths)
    for prompt_ids, group in zip(prompts, groups, strict=True):
        for sample in group:
            stops = [t in ends for t in sample.token_ids]
            assert sample.finish_reason == ("stop" if stops[-1] else "length")
            assert not any(stops[:-1])
            ids = torch.tensor([prompt_ids + sample.token_ids])
            with torch.no_grad():
                expected = token_logprobs(model(ids).logits, ids)[0, len(prompt_ids) :]
            torch.testing.assert_close(
                torch.tensor(sample.logprobs), expected, atol=1e-4, rtol=1e-4
            )


def test_sliding_window_attention_decodes_as_a_forward_pass():
    """Sliding-window layers (Mistral's) keep their own cache layer; rows still stop at many
    steps and every log-prob equals a forward pass over the whole sequence."""
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
        eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = MistralForCausalLM(config).eval()
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8]] * 8
    sampling = SamplingConfig(max_new_tokens=12, temperature=1.0)
    rows = decode(
        model, prompts, sampling, 0, list(range(0, 64, 5)), torch.Generator().manual_seed(0)
    )
    assert len({len(r.tokens) for r in rows}) >= 4
    for prompt, row in zip(prompts, rows, strict=True):
        ids = torch.tensor([prompt + row.tokens])
        with torch.no_grad():
            expected = token_logprobs(model(ids).logits, ids)[0, len(prompt) :]
        torch.testing.assert_close(torch.tensor(row.logprobs), expected, atol=1e-4, rtol=1e-4)


def test_a_model_without_an_attention_kv_cache_is_refused_by_name():
    """A state-space model's cache (Mamba's) is not what the loop feeds and compacts: the
    backend says so and names the way out, rather than sampling from the wrong distribution."""
    from transformers import MambaConfig, MambaForCausalLM

    model = MambaForCausalLM(
        MambaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, state_size=4)
    ).eval()
    sampling = SamplingConfig(max_new_tokens=4, temperature=1.0)
    with pytest.raises(ValueError, match=r"MambaForCausalLM.*LinearAttentionLayer.*vllm"):
        decode(model, [[1, 2, 3]], sampling, 0, [0], torch.Generator())


def test_a_prompt_repeated_in_the_batch_is_run_through_once(micro_checkpoint, math_problems):
    """The n completions of one prompt share its forward pass: the prompts' pass takes each
    prompt once, and every completion decodes on from its own copy of the cache."""
    tok, model = micro_checkpoint.tokenizer, micro_checkpoint.model
    rows: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: rows.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    sampling = SamplingConfig(max_new_tokens=6, temperature=1.0, batch_size=12)
    prompts = _prompts(tok, math_problems)
    try:
        groups = TransformersGenerator(model, tok).generate(prompts, 4, sampling, seed=0)
    finally:
        hook.remove()
    assert rows[0] == 3 and rows[1] == 12
    assert len({tuple(s.token_ids) for g in groups for s in g}) > 3  # the copies decode apart
