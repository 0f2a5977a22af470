"""Per-token log-probabilities and entropies from a model's logits, in bounded memory.

What the trainer computes for the loss (and what every generator must return for the tokens it
samples, so that the importance ratio of an on-policy step is 1). Training takes them through
the model's own head chunk by chunk where it can (:mod:`magistral_kedro.training.chunked_head`,
no [tokens, vocab] logits at all); the functions of logits here serve every other model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from magistral_kedro.training.chunked_head import head_logprobs

#: Elements of one float32 temporary of the log-softmax ([positions, vocabulary]): 2^28 is
#: 1 GiB. Positions are taken this many elements at a time (16k positions of a 151k vocabulary
#: would need 9 GiB per temporary).
SOFTMAX_ELEMENTS = 2**28


class _PickedLogprobs(torch.autograd.Function):
    """log softmax(logits / T)[target] [N] of rows of logits [N, V], and (no gradient) each
    row's entropy [N] or an empty tensor, a chunk of rows at a time in float32.

    Backward recomputes each chunk's softmax and writes its gradient, (one-hot(target) -
    softmax) / T, straight into one [N, V] gradient in the logits' dtype. Autograd over chunk
    slices would instead add a zero-filled [N, V] gradient per chunk (on a GPU, 30% of a
    Qwen2.5-0.5B GRPO step went to those zeros, their sum and the gather's)."""

    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        targets: torch.Tensor,
        temperature: float,
        entropy: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        picked = logits.new_empty(logits.shape[0], dtype=torch.float32)
        entropies = torch.empty_like(picked) if entropy else picked.new_empty(0)
        for chunk in _chunks(logits):
            logprobs = torch.log_softmax(_scaled(logits[chunk], temperature), dim=-1)
            picked[chunk] = logprobs.gather(-1, targets[chunk, None])[:, 0]
            if entropy:
                entropies[chunk] = -(logprobs.exp() * logprobs).sum(-1)
        ctx.save_for_backward(logits, targets)
        ctx.temperature = temperature
        ctx.mark_non_differentiable(entropies)
        return picked, entropies

    @staticmethod
    def backward(
        ctx: Any, grad_picked: torch.Tensor, _: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        logits, targets = ctx.saved_tensors
        temperature: float = ctx.temperature
        grad = torch.empty_like(logits)
        for chunk in _chunks(logits):
            upstream = grad_picked[chunk, None]  # [n, 1]
            softmax = torch.softmax(_scaled(logits[chunk], temperature), dim=-1)
            chunk_grad = softmax.mul_(-upstream).scatter_add_(-1, targets[chunk, None], upstream)
            grad[chunk] = chunk_grad.div_(temperature) if temperature != 1.0 else chunk_grad
        return grad, None, None, None


def _chunks(logits: torch.Tensor) -> list[slice]:
    """Row slices of [N, V] logits, each of at most :data:`SOFTMAX_ELEMENTS` elements."""
    size = max(1, SOFTMAX_ELEMENTS // logits.shape[1])
    return [slice(i, i + size) for i in range(0, logits.shape[0], size)]


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """float32 logits / temperature (a division by 1 would copy [n, V] for nothing)."""
    scaled = logits.float()
    return scaled / temperature if temperature != 1.0 else scaled


def _shifted(logits: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of [B * T, V] logits (a view) and the token each row predicts (the next one)."""
    batch, length, vocab = logits.shape
    targets = torch.nn.functional.pad(input_ids[:, 1:].to(logits.device), (0, 1))  # [B, T]
    return logits.reshape(batch * length, vocab), targets.reshape(-1)


def _unshift(values: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """[B * T] values of next-token predictions -> [B, T] indexed by the predicted token."""
    return torch.nn.functional.pad(values.view(batch, length)[:, :-1], (1, 0))


def token_logprobs_and_entropy(
    logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0, entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each token under the (temperature-scaled) logits of the position
    before it, and the entropy of the distribution it was drawn from, in chunks of positions
    (:data:`SOFTMAX_ELEMENTS`, see :class:`_PickedLogprobs`).

    Args:
        logits: [B, T, V] model outputs.
        input_ids: [B, T] tokens.
        temperature: the logits are divided by it (the sampler's temperature).
        entropy: False skips the entropy (an empty tensor is returned in its place).

    Returns:
        ([B, T] float32 where entry t is log p(input_ids[t] | input_ids[:t]), entry 0 (no
        context) 0; [B, T] entropies aligned the same way, no gradient).
    """
    rows, targets = _shifted(logits, input_ids)
    picked, entropies = _PickedLogprobs.apply(rows, targets, temperature, entropy)
    shape = logits.shape[:2]
    if not entropy:
        return _unshift(picked, *shape), entropies
    return _unshift(picked, *shape), _unshift(entropies, *shape)


def token_logprobs(
    logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """[B, T] log-probability of each token (see :func:`token_logprobs_and_entropy`)."""
    return token_logprobs_and_entropy(logits, input_ids, temperature, entropy=False)[0]


def completion_logprobs(
    forward: Callable[..., object],
    batch: dict[str, torch.Tensor],
    temperature: float = 1.0,
    entropy: bool = False,
    head: torch.nn.Linear | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (and entropies) of a collated batch's tokens, its model's head and log-softmax
    run only from the first completion token of any row on: the prompt columns every row
    shares predict nothing the loss reads (a third of a short example's positions).

    Args:
        forward: the model (or engine) call; it must take ``logits_to_keep`` (transformers'
            causal LMs do).
        batch: ``input_ids``, ``attention_mask`` and ``loss_mask`` [B, T], as
            :func:`~magistral_kedro.training.batching.collate_causal_lm` makes them.
        temperature, entropy: as in :func:`token_logprobs_and_entropy`.
        head: the model's output projection
            (:func:`~magistral_kedro.training.chunked_head.chunkable_head`): the projection and
            log-softmax then run chunk by chunk, never holding [B, T, V] logits. None: the
            model's whole logits, as it returns them.

    Returns:
        [B, T] tensors as :func:`token_logprobs_and_entropy` returns them, 0 before the window.
    """
    input_ids = batch["input_ids"]
    width = input_ids.shape[1]
    # The first column any row has a completion token in; 0 (every column) when none has one.
    first = int(batch["loss_mask"].any(dim=0).to(torch.uint8).argmax())
    keep = width - max(first - 1, 0)  # position first - 1 predicts token first
    inputs = {"input_ids": input_ids, "attention_mask": batch["attention_mask"]}
    window = input_ids[:, width - keep :]
    if head is None:
        logits = forward(**inputs, logits_to_keep=keep).logits  # type: ignore[attr-defined]
        picked, entropies = token_logprobs_and_entropy(logits, window, temperature, entropy)
    else:
        targets = torch.nn.functional.pad(window[:, 1:], (0, 1))  # [B, keep] the next tokens
        with head_logprobs(head, targets, temperature, entropy) as box:
            # The head returned the window's log-probs [B, keep] in place of its logits.
            chosen = forward(**inputs, logits_to_keep=keep).logits  # type: ignore[attr-defined]
        picked = _unshift(chosen.reshape(-1), *window.shape)
        entropies = (
            _unshift(box["entropy"].reshape(-1), *window.shape) if entropy else box["entropy"]
        )
    left = (width - keep, 0)
    padded = torch.nn.functional.pad(picked, left)
    return padded, torch.nn.functional.pad(entropies, left) if entropy else entropies
