"""What every transformers decoding loop shares: the batch's left padding, the stop tokens, one
draw per row with its log-prob, a cache that holds attention keys and values only, and the
decoded rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase, TopPLogitsWarper
from transformers.cache_utils import DynamicLayer
from transformers.generation import utils as generation_utils

from magistral_kedro.generation.base import SamplingConfig

# transformers internals the loops rely on, each read here alone (known on 5.20 to 5.24):
# ``generation.utils.ALL_CACHE_NAMES``, ``PreTrainedModel._supports_default_dynamic_cache``,
# ``PretrainedConfig._attn_implementation``.

#: The models' keyword for a cache object: ``cache`` since transformers 5.21, before that
#: ``past_key_values`` (the vLLM extra pins 5.20).
CACHE_KEYWORD = "cache" if "cache" in generation_utils.ALL_CACHE_NAMES else "past_key_values"


def attention_implementation(model: PreTrainedModel) -> str:
    """The attention kernel the model runs (``sdpa``, ``eager``, ``flash_attention_2``...)."""
    return str(model.config._attn_implementation)


def attention_cache(model: PreTrainedModel) -> DynamicCache:
    """The model's default cache. Raises ValueError for a model whose cache holds anything but
    attention keys and values (state-space and hybrid models: the loops neither feed nor
    compact such a state as their own generation does): sample those with vLLM."""
    supports = getattr(model, "_supports_default_dynamic_cache", None)
    cache = DynamicCache(config=model.config) if supports and supports() else None
    layers = cache.layers if cache is not None else []
    others = sorted(
        {type(layer).__name__ for layer in layers if not isinstance(layer, DynamicLayer)}
    )
    if cache is None or others:
        raise ValueError(
            f"the transformers backend decodes attention models only; {type(model).__name__}'s "
            f"cache holds {', '.join(others) or 'no dynamic cache'}: set generation.backend: vllm"
        )
    return cache


def stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Where a completion ends: the tokenizer's EOS and every end token the checkpoint's
    generation config names (an instruct model's end of turn and end of text, say), as vLLM
    stops. Stopping shapes no probability, so the checkpoint's word counts here."""
    shipped = model.generation_config.eos_token_id
    extra = [shipped] if isinstance(shipped, int) else list(shipped or [])
    eos = tokenizer.eos_token_id
    assert isinstance(eos, int), "the tokenizer needs an EOS token"
    return list(dict.fromkeys([eos, *extra]))


def left_padded(
    prompts: Sequence[list[int]], pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """``input_ids`` [B, T] and ``attention_mask`` [B, T] of prompts padded on the left."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, tokens in enumerate(prompts):
        input_ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
        attention_mask[row, width - len(tokens) :] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


def categorical(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of ``weights`` [B, V] (non-negative, unnormalised) from ``generator``
    (on the weights' device): token ids [B].

    One uniform number per row against the cumulative weights (in float64: a float32 sum
    over a large vocabulary is off by more than the rarest tokens' weights)."""
    cumulative = weights.cumsum(-1, dtype=torch.float64)  # [B, V]
    total = cumulative[:, -1:]
    uniform = torch.rand(
        total.shape, dtype=torch.float64, device=weights.device, generator=generator
    )
    uniform = uniform * total
    # below the total, so that the token found always has weight (rounding could reach it)
    uniform = torch.minimum(uniform, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cumulative, uniform, right=True)[:, 0]


def draw_tokens(
    logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next tokens [B] for ``logits`` [B, V], drawn from ``generator``, and their log-probs
    [B], which are of the temperature-scaled distribution before top-p (what the trainer
    computes); greedy decoding (temperature 0) takes the argmax and the log-probs of the
    unscaled logits."""
    if sampling.temperature == 0:
        token = logits.argmax(-1)
        return token, torch.log_softmax(logits, -1).gather(-1, token[:, None])[:, 0]
    scaled = logits / sampling.temperature
    logprobs = torch.log_softmax(scaled, -1)
    if sampling.top_p < 1:
        weights = torch.softmax(TopPLogitsWarper(sampling.top_p)(None, scaled), -1)
    else:
        weights = logprobs.exp()
    token = categorical(weights, generator)
    return token, logprobs.gather(-1, token[:, None])[:, 0]


@dataclass(frozen=True)
class Decoded:
    """One row's completion: tokens up to and with its stop token, their log-probs, whether it
    stopped (else it ran out of new tokens), and the policy versions of its first and last
    tokens when weights may change between steps."""

    tokens: list[int]
    logprobs: list[float]
    stopped: bool
    versions: tuple[int, int] | None


def decoded_rows(
    tokens: torch.Tensor,
    logprobs: torch.Tensor,
    lengths: torch.Tensor,
    ends: list[int],
    versions: list[int] | None = None,
) -> list[Decoded]:
    """Rows of a decoding loop's tokens [B, limit] and log-probs [B, limit], each cut at its
    length [B] (``limit`` where it never stopped); ``versions``: the policy version of each
    step, when weights may change between steps."""
    limit = tokens.shape[1]
    return [
        Decoded(
            row_tokens[:n],
            row_logprobs[:n],
            stopped=n < limit or row_tokens[n - 1] in ends,
            versions=(versions[0], versions[n - 1]) if versions else None,
        )
        for row_tokens, row_logprobs, n in zip(
            tokens.tolist(), logprobs.tolist(), lengths.tolist(), strict=True
        )
    ]
