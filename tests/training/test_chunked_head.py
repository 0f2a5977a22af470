"""The chunked output projection: the values and gradients of the plain head and log-softmax,
in float32 and bf16, with a temperature, through a tied head, and under DeepSpeed ZeRO-3."""

import dataclasses

import pytest
import torch

from magistral_kedro.models import build_tiny_model
from magistral_kedro.training import chunked_head
from magistral_kedro.training.batching import collate_causal_lm
from magistral_kedro.training.chunked_head import LinearLogprobs, chunkable_head, head_logprobs
from magistral_kedro.training.engine import EngineConfig, OptimConfig, create_engine
from magistral_kedro.training.logprobs import completion_logprobs
from tests.support.models import MICRO_MODEL


def _plain(hidden, weight, targets, temperature, _entropy):
    """Whole logits [N, V] -> float32 log-softmax: picked log-probs [N], entropies [N]."""
    logprobs = torch.log_softmax((hidden @ weight.T).float() / temperature, -1)
    entropy = -(logprobs.exp() * logprobs).sum(-1)
    return logprobs.gather(-1, targets[:, None])[:, 0], entropy.detach()


def _both(dtype, temperature, monkeypatch):
    """Chunked (4 positions of 50) and plain values and gradients of one random head."""
    monkeypatch.setattr(chunked_head, "HEAD_CHUNK_ELEMENTS", 4 * 50)
    torch.manual_seed(0)
    hidden = torch.randn(11, 16).to(dtype).requires_grad_()
    weight = torch.randn(50, 16).to(dtype).requires_grad_()
    targets = torch.randint(0, 50, (11,))
    upstream = torch.randn(11)
    results = []
    for compute in (LinearLogprobs.apply, _plain):
        picked, entropy = compute(hidden, weight, targets, temperature, True)
        (picked * upstream).sum().backward()
        results.append((picked.detach(), entropy, hidden.grad, weight.grad))
        hidden.grad = weight.grad = None
    return results


def test_float32_values_and_gradients_equal_the_whole_logits(monkeypatch):
    chunked, plain = _both(torch.float32, 0.7, monkeypatch)
    assert chunked[0].dtype == torch.float32 and not chunked[1].requires_grad
    for mine, whole in zip(chunked, plain, strict=True):
        torch.testing.assert_close(mine, whole, rtol=1e-5, atol=1e-5)


def test_bf16_values_and_gradients_are_the_plain_bf16_head_s_rounded(monkeypatch):
    """bf16 inputs (a GPU's): the chunk is projected in bf16, like the head, then taken to
    float32; gradients come back in bf16, the weight's summed over chunks in float32."""
    chunked, plain = _both(torch.bfloat16, 1.3, monkeypatch)
    assert chunked[2].dtype == chunked[3].dtype == torch.bfloat16
    for mine, whole in zip(chunked, plain, strict=True):
        torch.testing.assert_close(mine.float(), whole.float(), rtol=2e-2, atol=2e-2)


def test_no_gradient_is_computed_for_a_frozen_weight(monkeypatch):
    monkeypatch.setattr(chunked_head, "HEAD_CHUNK_ELEMENTS", 3 * 20)
    hidden = torch.randn(5, 8, requires_grad=True)
    weight = torch.randn(20, 8)
    picked, entropy = LinearLogprobs.apply(hidden, weight, torch.arange(5), 1.0, False)
    picked.sum().backward()
    assert hidden.grad is not None and weight.grad is None and entropy.numel() == 0


def _batch():
    return collate_causal_lm([[5, 6, 7, 8, 9, 10], [5, 6, 7, 8, 9, 11, 12, 13]], [3, 5], 0)


@pytest.mark.parametrize("tied", [True, False])
def test_completion_logprobs_through_the_chunked_head_equal_the_model_s_logits(
    tokenizer, monkeypatch, tied
):
    """Every parameter's gradient, the tied embedding's (the head's weight) included."""
    monkeypatch.setattr(chunked_head, "HEAD_CHUNK_ELEMENTS", 3 * len(tokenizer))
    model = build_tiny_model(
        tokenizer, dataclasses.replace(MICRO_MODEL, tie_word_embeddings=tied), 0
    )
    head = chunkable_head(model)
    assert head is model.lm_head
    assert (head.weight is model.model.embed_tokens.weight) is tied
    batch = _batch()
    results = []
    for chosen in (head, None):
        got, entropy = completion_logprobs(model, batch, 0.7, True, head=chosen)
        (got * batch["loss_mask"]).sum().backward()
        results.append((got.detach(), entropy, [p.grad.clone() for p in model.parameters()]))
        model.zero_grad(set_to_none=True)
    (got, entropy, grads), (want, want_entropy, want_grads) = results
    mask = batch["loss_mask"].bool()
    torch.testing.assert_close(got[mask], want[mask])
    torch.testing.assert_close(entropy[mask], want_entropy[mask])
    for mine, whole in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(mine, whole)
    assert "forward" not in vars(head)  # the head is itself again


def test_heads_the_chunked_path_cannot_stand_in_for_are_refused(tokenizer):
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    assert chunkable_head(torch.nn.Linear(2, 2)) is None  # no config: a foreign model
    model.config.model_type = "gemma2"  # soft-caps its logits after the head
    assert chunkable_head(model) is None
    targets = torch.zeros(1, 3, dtype=torch.long)
    message = r"hidden states \(1, 4, 32\) for targets \(1, 3\)"
    with (
        head_logprobs(model.lm_head, targets, 1.0, False),
        pytest.raises(ValueError, match=message),
    ):
        model.lm_head(torch.zeros(1, 4, 32))


def _zero3_step(tokenizer, chunked):
    """One optimiser step of a ZeRO-3 engine (one gloo process) on the batch's summed
    log-probs; the untied model's weights afterwards."""
    config = dataclasses.replace(MICRO_MODEL, tie_word_embeddings=False)
    model = build_tiny_model(tokenizer, config, seed=0)
    start = model.lm_head.weight.detach().clone()
    optim = OptimConfig(lr=1e-2, warmup_steps=0, grad_clip=0.0)
    engine = create_engine(model, EngineConfig(backend="deepspeed", zero_stage=3, optim=optim))
    with engine:
        assert engine.model.lm_head.weight.numel() == 0  # partitioned (gathered per use)
        head = chunkable_head(engine.model) if chunked else None
        batch = _batch()
        got, _ = completion_logprobs(engine.forward, batch, 0.7, True, head=head)
        engine.backward(-(got * batch["loss_mask"].to(got.device)).sum())
        engine.step()
        with engine.full_weights() as whole:
            return start, {k: v.detach().clone() for k, v in whole.state_dict().items()}


def test_zero3_reduces_the_chunked_head_s_gradient(tokenizer):
    """Under ZeRO-3 the head's weight is partitioned: the model calls the head module itself,
    so ZeRO gathers it for the chunked forward and backward and takes its gradient; one step
    moves every weight as the plain head does."""
    (start, chunked), (_, plain) = _zero3_step(tokenizer, True), _zero3_step(tokenizer, False)
    assert not torch.allclose(plain["lm_head.weight"], start)
    for name, value in plain.items():
        torch.testing.assert_close(chunked[name], value, msg=name)


def test_under_autocast_the_chunk_is_projected_in_bf16_like_the_head(tokenizer, monkeypatch):
    """The torch backend's bf16 (autocast over float32 weights): the chunked log-probs are
    those of the head's bf16 logits, and the float32 weight gets a float32 gradient."""
    monkeypatch.setattr(chunked_head, "HEAD_CHUNK_ELEMENTS", 3 * len(tokenizer))
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    batch = _batch()
    results = []
    for chosen in (model.lm_head, None):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, _ = completion_logprobs(model, batch, 1.0, False, head=chosen)
        (got * batch["loss_mask"]).sum().backward()
        results.append((got.detach(), model.lm_head.weight.grad))
        model.zero_grad(set_to_none=True)
    (got, grad), (want, want_grad) = results
    mask = batch["loss_mask"].bool()
    torch.testing.assert_close(got[mask], want[mask], rtol=0, atol=1e-6)
    assert grad.dtype == torch.float32
    # bf16 rounding of the sums, chunk by chunk here, whole there: 1% of the largest entry
    torch.testing.assert_close(grad, want_grad, rtol=2e-2, atol=1e-2 * float(want_grad.abs().max()))
