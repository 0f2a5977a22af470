"""Per-token log-probabilities and entropies from a model's logits, in bounded memory.

What the trainer computes for the loss (and what every generator must return for the tokens it
samples, so that the importance ratio of an on-policy step is 1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Elements of one float32 softmax temporary ([positions, vocabulary]): 2^28 is 1 GiB. A batch
#: of fewer positions is done at once; more are cut into chunks, each recomputed in backward
#: instead of kept (16k positions of a 151k vocabulary would need 9 GiB per temporary).
SOFTMAX_ELEMENTS = 2**28


def _per_position(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float, entropy: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, V], [N] -> log softmax(logits / temperature)[target] [N], float32, and (when
    ``entropy``) the entropy of each row's distribution [N], from the same log-softmax and
    without gradient (else an empty tensor)."""
    scaled = logits.float()
    if temperature != 1.0:  # a division by 1 would still copy [N, V] and back-propagate it
        scaled = scaled / temperature
    logprobs = torch.log_softmax(scaled, dim=-1)
    picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if not entropy:
        return picked, picked.new_empty(0)
    with torch.no_grad():
        return picked, -(logprobs.exp() * logprobs).sum(-1)


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
    before it, and the entropy of the distribution it was drawn from, from one log-softmax; a
    large batch is computed in chunks of positions (:data:`SOFTMAX_ELEMENTS`), each recomputed
    in backward.

    Args:
        logits: [B, T, V] model outputs.
        input_ids: [B, T] tokens.
        temperature: the logits are divided by it (the sampler's temperature).
        entropy: False skips the entropy (an empty tensor is returned in its place).

    Returns:
        ([B, T] where entry t is log p(input_ids[t] | input_ids[:t]), entry 0 (no context) 0;
        [B, T] entropies aligned the same way, no gradient).
    """
    rows, targets = _shifted(logits, input_ids)
    size = max(1, SOFTMAX_ELEMENTS // rows.shape[1])
    chunks = []
    for i in range(0, rows.shape[0], size):
        args = (rows[i : i + size], targets[i : i + size], temperature, entropy)
        if rows.shape[0] <= size or not rows.requires_grad:
            chunks.append(_per_position(*args))
        else:
            chunks.append(
                torch.utils.checkpoint.checkpoint(_per_position, *args, use_reentrant=False)
            )
    picked = _unshift(torch.cat([c[0] for c in chunks]), *logits.shape[:2])
    if not entropy:
        return picked, picked.new_empty(0)
    return picked, _unshift(torch.cat([c[1] for c in chunks]), *logits.shape[:2])


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

    Returns:
        [B, T] tensors as :func:`token_logprobs_and_entropy` returns them, 0 before the window.
    """
    input_ids = batch["input_ids"]
    width = input_ids.shape[1]
    # The first column any row has a completion token in; 0 (every column) when none has one.
    first = int(batch["loss_mask"].any(dim=0).to(torch.uint8).argmax())
    keep = width - max(first - 1, 0)  # position first - 1 predicts token first
    output = forward(
        input_ids=input_ids, attention_mask=batch["attention_mask"], logits_to_keep=keep
    )
    window = input_ids[:, width - keep :]
    logits = output.logits  # type: ignore[attr-defined]  # [B, keep, V]
    picked, entropies = token_logprobs_and_entropy(logits, window, temperature, entropy)
    left = (width - keep, 0)
    padded = torch.nn.functional.pad(picked, left)
    return padded, torch.nn.functional.pad(entropies, left) if entropy else entropies
