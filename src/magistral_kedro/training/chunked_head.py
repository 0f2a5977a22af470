"""The output projection and the log-softmax together, a chunk of positions at a time.

A causal LM's head turns hidden states [N, H] into logits [N, V]; at a 152k vocabulary the
logits of 65k tokens and their gradient alone take ~37 GiB. :class:`LinearLogprobs` never holds
them: it projects a chunk of positions, keeps each position's log-sum-exp, the picked token's
log-prob and (no gradient) the entropy, and drops the chunk's logits; backward projects each
chunk again and returns the gradients of the hidden states and of the head's weight (the
approach of Liger's fused linear cross-entropy and Apple's cut cross-entropy, with entropy).

:func:`head_logprobs` puts it in place of the head's ``forward`` while the model runs, so the
model still calls its head module itself: DeepSpeed's ZeRO-3 hooks gather the head's
partitioned weight before the call and again before its backward, and reduce its gradient, as
for any other layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

#: Logits elements of one chunk ([positions, vocabulary]): 2^26 is 256 MiB per float32
#: temporary, 441 positions of a 151,936-token vocabulary. Peak memory of the head is a few
#: such temporaries plus a float32 gradient of its weight, whatever the number of tokens.
HEAD_CHUNK_ELEMENTS = 2**26

#: Model types whose forward returns its head's output as the logits, untouched (no soft-capping
#: or scaling after the head, which the chunked path would skip).
PLAIN_HEAD_MODELS = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def _row_chunks(rows: int, vocab: int) -> list[slice]:
    """Slices of ``rows`` positions, each of at most :data:`HEAD_CHUNK_ELEMENTS` logits."""
    size = max(1, HEAD_CHUNK_ELEMENTS // vocab)
    return [slice(i, i + size) for i in range(0, rows, size)]


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The projection's dtype: autocast's where it is on (the torch backend's bf16), else the
    inputs' own."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _scaled_logits(hidden: torch.Tensor, weight: torch.Tensor, temperature: float) -> torch.Tensor:
    """float32 (hidden [n, H] @ weight [V, H]^T) / temperature [n, V], projected in the inputs'
    dtype (as the head would)."""
    logits = (hidden @ weight.T).float()
    return logits / temperature if temperature != 1.0 else logits


class LinearLogprobs(torch.autograd.Function):
    """log softmax(hidden @ weight^T / T)[target] [N] and (no gradient) entropies [N] (or an
    empty tensor), in float32, chunk by chunk of positions (:data:`HEAD_CHUNK_ELEMENTS`).

    Saved for backward: hidden [N, H], weight [V, H], targets [N] and the log-sum-exp [N].
    Backward recomputes each chunk's logits; d(logits) = (one-hot(target) - softmax) * g / T
    gives grad_hidden = d(logits) @ weight and grad_weight = sum over chunks of
    d(logits)^T @ hidden, accumulated in float32."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        temperature: float,
        entropy: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = _compute_dtype(hidden, weight)
        picked = hidden.new_empty(hidden.shape[0], dtype=torch.float32)
        lse = torch.empty_like(picked)
        entropies = torch.empty_like(picked) if entropy else picked.new_empty(0)
        with torch.autocast(hidden.device.type, enabled=False):
            cast = weight.to(dtype)
            for chunk in _row_chunks(hidden.shape[0], weight.shape[0]):
                scaled = _scaled_logits(hidden[chunk].to(dtype), cast, temperature)
                lse[chunk] = torch.logsumexp(scaled, dim=-1)
                picked[chunk] = scaled.gather(-1, targets[chunk, None])[:, 0] - lse[chunk]
                if entropy:  # -sum p log p = lse - sum p * logit
                    probs = (scaled - lse[chunk, None]).exp_()
                    entropies[chunk] = lse[chunk] - probs.mul_(scaled).sum(-1)
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.temperature, ctx.dtype = temperature, dtype
        ctx.mark_non_differentiable(entropies)
        return picked, entropies

    @staticmethod
    def backward(
        ctx: Any, grad_picked: torch.Tensor, _: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None]:
        hidden, weight, targets, lse = ctx.saved_tensors
        temperature: float = ctx.temperature
        dtype: torch.dtype = ctx.dtype
        wants_hidden, wants_weight = ctx.needs_input_grad[:2]
        grad_hidden = torch.empty_like(hidden) if wants_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if wants_weight else None
        with torch.autocast(hidden.device.type, enabled=False):
            cast = weight.to(dtype)
            for chunk in _row_chunks(hidden.shape[0], weight.shape[0]):
                rows = hidden[chunk].to(dtype)
                upstream = grad_picked[chunk, None]  # [n, 1]
                scaled = _scaled_logits(rows, cast, temperature)
                grad = scaled.sub_(lse[chunk, None]).exp_().mul_(-upstream)  # in place
                grad.scatter_add_(-1, targets[chunk, None], upstream)
                grad = (grad / temperature if temperature != 1.0 else grad).to(dtype)
                if grad_hidden is not None:
                    grad_hidden[chunk] = grad @ cast
                if grad_weight is not None:
                    grad_weight += grad.T @ rows
        weight_grad = None if grad_weight is None else grad_weight.to(weight.dtype)
        return grad_hidden, weight_grad, None, None, None


def chunkable_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """``model``'s output projection where :func:`head_logprobs` can stand in for it: a
    bias-free ``torch.nn.Linear`` of a model type in :data:`PLAIN_HEAD_MODELS`; None otherwise
    (the caller then takes the model's whole logits)."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD_MODELS:
        return None
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    return head


@contextlib.contextmanager
def head_logprobs(
    head: torch.nn.Linear, targets: torch.Tensor, temperature: float, entropy: bool
) -> Iterator[dict[str, torch.Tensor]]:
    """A block in which ``head`` called on hidden states [B, K, H] returns the log-probs [B, K]
    (float32) of ``targets`` [B, K] under softmax(logits / temperature), through
    :class:`LinearLogprobs`, and puts their entropies [B, K] (or an empty tensor when
    ``entropy`` is False) in the dict it yields under ``"entropy"``.

    Raises ValueError where the hidden states' positions are not ``targets``'."""
    box: dict[str, torch.Tensor] = {}

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        if hidden.shape[:-1] != targets.shape:
            raise ValueError(
                f"head_logprobs: the head got hidden states {tuple(hidden.shape)} for targets "
                f"{tuple(targets.shape)}"
            )
        rows = hidden.reshape(-1, hidden.shape[-1])
        flat = targets.reshape(-1).to(hidden.device)
        picked, entropies = LinearLogprobs.apply(rows, head.weight, flat, temperature, entropy)
        box["entropy"] = entropies.view(targets.shape) if entropy else entropies
        return picked.view(targets.shape)

    head.forward = forward  # type: ignore[method-assign, assignment]
    try:
        yield box
    finally:
        del head.forward
