"""Decoding at fixed shapes (the GPU path, CUDA graphs) draws what the other loop draws, with
the log-probs of a forward pass, and no step waits for the device (a graph could not hold it)."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from magistral_kedro.generation import SamplingConfig, encode_prompts, hf
from magistral_kedro.generation.graphs import FixedSteps, graphable
from magistral_kedro.models import build_prompt, build_tiny_model
from magistral_kedro.training.engine import EngineConfig, OptimConfig, create_engine
from magistral_kedro.training.logprobs import token_logprobs
from tests.support.models import MICRO_MODEL

#: Operators whose result the host must read from the device: a CUDA graph cannot hold them.
_HOST_READS = {"_local_scalar_dense", "is_nonzero", "nonzero", "item", "equal"}


class _HostReads(TorchDispatchMode):
    """Records every operator that reads a result back to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in _HOST_READS:
            self.seen.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _model(tokenizer, attention: str):
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0).eval()
    model.config._attn_implementation = attention
    return model


def _uneven_prompts(tokenizer, math_problems):
    """Six prompts of six lengths (left padding differs per row)."""
    prompts = encode_prompts(
        tokenizer, [build_prompt(tokenizer, p.prompt, None) for p in math_problems[:6]]
    )
    return [p[: 5 + 3 * i] for i, p in enumerate(prompts)]


def _seeded(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_fixed_shapes_draw_what_the_other_loop_draws(
    tokenizer, math_problems, monkeypatch, attention
):
    """Same seed, same draws: the tokens of the loop that drops stopped rows (kept here, so
    that both draw one number per row per step), log-probs within float rounding, and every
    log-prob equal to a forward pass, past the first attention window (128 positions)."""
    model = _model(tokenizer, attention)
    assert graphable(model)
    prompts = _uneven_prompts(tokenizer, math_problems)
    ends = list(range(3, model.config.vocab_size, 97))
    sampling = SamplingConfig(max_new_tokens=300, temperature=1.0)
    monkeypatch.setattr(hf, "_COMPACT_SHARE", 2.0)
    pad = tokenizer.pad_token_id
    other = hf.decode(model, prompts, sampling, pad, ends, _seeded(0))
    rows = hf.decode(model, prompts, sampling, pad, ends, _seeded(0), fixed_shapes=True)
    assert [r.tokens for r in rows] == [r.tokens for r in other]
    assert [r.stopped for r in rows] == [r.stopped for r in other]
    assert len({len(r.tokens) for r in rows}) >= 4
    assert max(len(p) + len(r.tokens) for p, r in zip(prompts, rows, strict=True)) > 128
    for prompt, row, theirs in zip(prompts, rows, other, strict=True):
        torch.testing.assert_close(row.logprobs, theirs.logprobs, atol=1e-5, rtol=1e-5)
        ids = torch.tensor([prompt + row.tokens])
        with torch.no_grad():
            expected = token_logprobs(model(ids).logits, ids)[0, len(prompt) :]
        torch.testing.assert_close(torch.tensor(row.logprobs), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("limit", [1, 3])
def test_prompts_longer_than_the_first_window_and_one_token_answers(
    tokenizer, math_problems, monkeypatch, limit
):
    """A prompt of 200 tokens starts past the first window (128), the cache holds only
    ``limit`` more: the draws and log-probs are still the other loop's."""
    model = _model(tokenizer, "sdpa")
    short = _uneven_prompts(tokenizer, math_problems)[:2]
    prompts = [*short, (short[1] * 20)[:200]]
    sampling = SamplingConfig(max_new_tokens=limit, temperature=1.0)
    monkeypatch.setattr(hf, "_COMPACT_SHARE", 2.0)
    pad = tokenizer.pad_token_id
    other = hf.decode(model, prompts, sampling, pad, [0], _seeded(3))
    rows = hf.decode(model, prompts, sampling, pad, [0], _seeded(3), fixed_shapes=True)
    assert [r.tokens for r in rows] == [r.tokens for r in other]
    assert all(len(r.tokens) == limit for r in rows)
    for row, theirs in zip(rows, other, strict=True):
        torch.testing.assert_close(row.logprobs, theirs.logprobs, atol=1e-5, rtol=1e-5)


def test_a_decoding_step_never_reads_the_device_from_the_host(tokenizer, math_problems):
    """What a CUDA graph replays must not stop for a value on the host. The watch itself is
    shown to see such reads: transformers' own mask from a 2D attention mask makes them."""
    model = _model(tokenizer, "sdpa")
    batch = hf.left_padded(_uneven_prompts(tokenizer, math_problems), 0, model.device)
    real = batch["attention_mask"].bool()
    steps = FixedSteps(model, batch, limit=8, graphs=False)
    with torch.no_grad():
        steps.prompts(batch["input_ids"])
        token = torch.ones(len(real), dtype=torch.long)
        with _HostReads() as watch:
            for slot in range(real.shape[1], real.shape[1] + 3):
                steps.step(token, slot)
        assert watch.seen == []
        with _HostReads() as watch:
            model(**batch, logits_to_keep=1)
        assert watch.seen, "the watch sees a host read"


def test_sliding_windows_other_attention_kernels_and_hooks_decode_the_other_way(tokenizer):
    from transformers import MistralConfig, MistralForCausalLM

    sliding = MistralForCausalLM(
        MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, sliding_window=4)
    )  # fmt: skip
    assert not graphable(sliding)
    assert not graphable(_model(tokenizer, "flex_attention"))
    hooked = _model(tokenizer, "sdpa")  # as DeepSpeed ZeRO-3 hooks every module
    hooked.model.layers[0].mlp.register_forward_pre_hook(lambda module, args: None)
    assert not graphable(hooked)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_replays_decode_as_the_steps_run_one_by_one(tokenizer, math_problems):
    model = _model(tokenizer, "sdpa").cuda()
    prompts = _uneven_prompts(tokenizer, math_problems)
    sampling = SamplingConfig(max_new_tokens=300, temperature=1.0)
    ends = list(range(3, model.config.vocab_size, 97))
    results = []
    for graphs in (False, True):
        generator = torch.Generator("cuda").manual_seed(0)
        results.append(
            hf.decode(
                model,
                prompts,
                sampling,
                tokenizer.pad_token_id,
                ends,
                generator,
                fixed_shapes=True,
                graphs=graphs,
            )
        )
    eager, replayed = results
    assert [r.tokens for r in replayed] == [r.tokens for r in eager]
    for a, b in zip(replayed, eager, strict=True):
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_a_deepspeed_model_is_graphed_but_under_zero_3(tokenizer):
    """DeepSpeed hooks the root of every engine's model (its step bookkeeping, which the graph
    path does not run); ZeRO-3 hooks every module to gather parameters, which a graph cannot
    hold."""
    optim = OptimConfig(lr=1e-4, warmup_steps=0, max_steps=1)
    for stage, expected in ((2, True), (3, False)):
        model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
        config = EngineConfig(backend="deepspeed", zero_stage=stage, optim=optim)
        with create_engine(model, config) as engine, engine.full_weights() as whole:
            assert graphable(whole) is expected, stage


def test_the_roots_hooks_are_not_run(tokenizer, math_problems):
    """What a replay could not run is not run at capture either: DeepSpeed's root hook times
    each forward and, from its third step on, synchronises the device inside it."""
    model = _model(tokenizer, "sdpa")
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    assert graphable(model)
    sampling = SamplingConfig(max_new_tokens=6, temperature=1.0)
    prompts = _uneven_prompts(tokenizer, math_problems)
    hf.decode(model, prompts, sampling, 0, [1], _seeded(0), fixed_shapes=True)
    assert calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_a_zero_2_engine_that_has_stepped_decodes_from_graphs(tokenizer, math_problems):
    """GRPO's own generator on a GPU: the engine's model after optimiser steps (when DeepSpeed's
    throughput timer starts synchronising), its samples' log-probs those of a forward pass."""
    from magistral_kedro.generation import TransformersGenerator

    prompts = _uneven_prompts(tokenizer, math_problems)
    optim = OptimConfig(lr=1e-3, warmup_steps=0, max_steps=4)
    config = EngineConfig(backend="deepspeed", zero_stage=2, optim=optim)
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    with create_engine(model, config) as engine, torch.random.fork_rng():
        ids = torch.tensor([prompts[-1]], device="cuda")
        for _ in range(4):
            engine.backward(engine.forward(input_ids=ids).logits.float().logsumexp(-1).mean())
            engine.step()
        generator = TransformersGenerator(engine.model, tokenizer)
        assert generator.graphs
        sampling = SamplingConfig(max_new_tokens=40, temperature=1.0)
        groups = generator.generate(prompts, 2, sampling, seed=0)
        for prompt, group in zip(prompts, groups, strict=True):
            for sample in group:
                full = torch.tensor([prompt + sample.token_ids], device="cuda")
                with torch.no_grad():
                    logits = engine.model(full).logits
                expected = token_logprobs(logits, full)[0, len(prompt) :].cpu()
                torch.testing.assert_close(
                    torch.tensor(sample.logprobs), expected, atol=1e-4, rtol=1e-4
                )
