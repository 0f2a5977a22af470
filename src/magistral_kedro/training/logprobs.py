"""Per-token log-probabilities and entropies from a model's logits, in bounded memory.

What the trainer computes for the loss (and what every generator must return for the tokens it
samples, so that the importance ratio of an on-policy step is 1).
"""

from __future__ import annotations

import torch

#: Elements of one float32 softmax temporary ([positions, vocabulary]): 2^28 is 1 GiB. A batch
#: of fewer positions is done at once; more are cut into chunks, each recomputed in backward
#: instead of kept (16k positions of a 151k vocabulary would need 9 GiB per temporary).
SOFTMAX_ELEMENTS = 2**28


def _picked_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float
) -> torch.Tensor:
    """[N, V], [N] -> [N]: log softmax(logits / temperature)[target], in float32."""
    logprobs = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _shifted(logits: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of [B * T, V] logits (a view) and the token each row predicts (the next one)."""
    batch, length, vocab = logits.shape
    targets = torch.nn.functional.pad(input_ids[:, 1:].to(logits.device), (0, 1))  # [B, T]
    return logits.reshape(batch * length, vocab), targets.reshape(-1)


def _unshift(values: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """[B * T] values of next-token predictions -> [B, T] indexed by the predicted token."""
    return torch.nn.functional.pad(values.view(batch, length)[:, :-1], (1, 0))


def token_logprobs(
    logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Log-probability of each token under the (temperature-scaled) logits of the position
    before it; a large batch is computed in chunks of positions (:data:`SOFTMAX_ELEMENTS`).

    Args:
        logits: [B, T, V] model outputs.
        input_ids: [B, T] tokens.
        temperature: the logits are divided by it (the sampler's temperature).

    Returns:
        [B, T] where entry t is log p(input_ids[t] | input_ids[:t]); entry 0 (no context) is 0.
    """
    rows, targets = _shifted(logits, input_ids)
    size = max(1, SOFTMAX_ELEMENTS // rows.shape[1])
    if rows.shape[0] <= size or not rows.requires_grad:
        chunks = [
            _picked_logprobs(rows[i : i + size], targets[i : i + size], temperature)
            for i in range(0, rows.shape[0], size)
        ]
    else:
        chunks = [
            torch.utils.checkpoint.checkpoint(
                _picked_logprobs,
                rows[i : i + size],
                targets[i : i + size],
                temperature,
                use_reentrant=False,
            )
            for i in range(0, rows.shape[0], size)
        ]
    return _unshift(torch.cat(chunks), *logits.shape[:2])


@torch.no_grad()
def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of each next-token distribution, aligned like :func:`token_logprobs`.

    Args:
        logits: [B, T, V] model outputs.
        temperature: the logits are divided by it.

    Returns:
        [B, T] where entry t is the entropy of the distribution that token t was drawn from.
    """
    rows = logits.reshape(-1, logits.shape[-1])
    size = max(1, SOFTMAX_ELEMENTS // rows.shape[1])
    chunks = []
    for start in range(0, rows.shape[0], size):
        logprobs = torch.log_softmax(rows[start : start + size].float() / temperature, -1)
        chunks.append(-(logprobs.exp() * logprobs).sum(-1))
    return _unshift(torch.cat(chunks), *logits.shape[:2])
