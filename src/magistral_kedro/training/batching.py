"""Length-aware microbatching (docs/recipe.md, section 3, "greedy collation") and padding."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def greedy_collate(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Group sequences into microbatches under a padded-token budget.

    Sequences are sorted longest first; each goes into the first microbatch where it fits, a
    microbatch costing ``len(members) * longest_member`` tokens once padded. A sequence longer than
    the budget gets a microbatch of its own. The paper reports ~19% less padding than fixed batches.

    Args:
        lengths: token count of each sequence, shape [N].
        max_tokens: padded-token budget of one microbatch.

    Returns:
        Microbatches as lists of indices into ``lengths``; every index appears exactly once.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for index in order:
        for batch in batches:
            longest = lengths[batch[0]]  # members arrive longest first
            if (len(batch) + 1) * longest <= max_tokens:
                batch.append(index)
                break
        else:
            batches.append([index])
    return batches


def collate_causal_lm(
    sequences: Sequence[Sequence[int]], prompt_lengths: Sequence[int], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """Right-pad token sequences into tensors for a completion-only causal-LM loss.

    Args:
        sequences: B token-id lists (prompt followed by completion).
        prompt_lengths: B prompt lengths; prompt tokens get no loss.
        pad_token_id: id written into the padding.

    Returns:
        ``input_ids`` [B, T], ``attention_mask`` [B, T] and ``loss_mask`` [B, T], where
        ``loss_mask[b, t]`` is 1 when token t of row b is a completion token to predict.
    """
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    loss_mask = torch.zeros((len(sequences), width), dtype=torch.float32)
    for row, (tokens, n_prompt) in enumerate(zip(sequences, prompt_lengths, strict=True)):
        input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        attention_mask[row, : len(tokens)] = 1
        loss_mask[row, n_prompt : len(tokens)] = 1.0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "loss_mask": loss_mask}
