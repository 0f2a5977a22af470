"""Per-token log-probabilities and entropies, chunked or whole."""

import torch

from magistral_kedro.models import build_tiny_model
from magistral_kedro.training import logprobs
from magistral_kedro.training.batching import collate_causal_lm
from magistral_kedro.training.logprobs import (
    completion_logprobs,
    token_logprobs,
    token_logprobs_and_entropy,
)
from tests.support.models import MICRO_MODEL


def test_token_logprobs_matches_a_manual_log_softmax():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    got = token_logprobs(logits, ids)
    assert got.shape == (2, 5)
    assert torch.all(got[:, 0] == 0)
    expected = torch.log_softmax(logits[1, 2], -1)[ids[1, 3]]
    torch.testing.assert_close(got[1, 3], expected)


def test_chunked_logprobs_and_entropy_equal_the_whole_softmax_with_gradients(monkeypatch):
    """Chunks of 3 positions (recomputed in backward) give the values and gradients of one
    log-softmax over all positions, temperature included."""
    monkeypatch.setattr(logprobs, "SOFTMAX_ELEMENTS", 3 * 7)  # 3 positions of a 7-token vocabulary
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, requires_grad=True)
    ids = torch.randint(0, 7, (2, 5))
    weights = torch.randn(2, 5)
    got, got_entropy = token_logprobs_and_entropy(logits, ids, temperature=0.7)
    assert not got_entropy.requires_grad
    (got * weights).sum().backward()
    chunked_grad = logits.grad.clone()
    logits.grad = None
    whole = torch.log_softmax(logits[:, :-1] / 0.7, -1).gather(-1, ids[:, 1:, None])[..., 0]
    expected = torch.nn.functional.pad(whole, (1, 0))
    (expected * weights).sum().backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(chunked_grad, logits.grad)
    probs = torch.softmax(logits.detach()[:, :-1] / 0.7, -1)
    entropy = -(probs * probs.log()).sum(-1)
    torch.testing.assert_close(got_entropy[:, 1:], entropy)


def test_bf16_logits_get_float32_log_probs_and_their_gradient(monkeypatch):
    """A bf16 model's logits (what a GPU trains with): log-probs and entropies in float32 of the
    bf16 values, and the gradient equal to float32 autograd's, rounded, chunk by chunk."""
    monkeypatch.setattr(logprobs, "SOFTMAX_ELEMENTS", 4 * 50)
    torch.manual_seed(0)
    logits = (3 * torch.randn(3, 6, 50)).bfloat16().requires_grad_()
    ids = torch.randint(0, 50, (3, 6))
    weights = torch.randn(3, 6)
    got, got_entropy = token_logprobs_and_entropy(logits, ids, temperature=1.0)
    assert got.dtype == torch.float32
    (got * weights).sum().backward()
    wide = logits.detach().float().requires_grad_()
    whole = torch.log_softmax(wide[:, :-1], -1)
    expected = torch.nn.functional.pad(whole.gather(-1, ids[:, 1:, None])[..., 0], (1, 0))
    (expected * weights).sum().backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(logits.grad, wide.grad.bfloat16())
    entropy = -(whole.exp() * whole).sum(-1)
    torch.testing.assert_close(got_entropy[:, 1:], entropy.detach())


def test_completion_logprobs_equal_the_whole_sequences_and_skip_shared_prompt_columns(
    tokenizer,
):
    """Rows with prompts of 3 and 5 tokens: the head runs from column 2 on (the position that
    predicts the first completion token of either row), and every completion token's log-prob,
    entropy and gradient equal those of the logits of every position."""
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    batch = collate_causal_lm([[5, 6, 7, 8, 9, 10], [5, 6, 7, 8, 9, 11, 12, 13]], [3, 5], 0)
    widths = []

    def forward(**kwargs):
        output = model(**kwargs)
        widths.append(output.logits.shape[1])
        return output

    got, got_entropy = completion_logprobs(forward, batch, temperature=0.7, entropy=True)
    (got * batch["loss_mask"]).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    want, want_entropy = token_logprobs_and_entropy(logits, batch["input_ids"], temperature=0.7)
    (want * batch["loss_mask"]).sum().backward()
    mask = batch["loss_mask"].bool()
    assert widths == [8 - 2]
    torch.testing.assert_close(got[mask], want[mask])
    torch.testing.assert_close(got_entropy[mask], want_entropy[mask])
    for mine, whole in zip(grads, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(mine, whole)
