"""The generation interface shared by every backend."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol, runtime_checkable

import torch
from pydantic import Field
from transformers import PreTrainedTokenizerBase

from magistral_kedro.config import config


@config
class SamplingConfig:
    """How to sample. ``temperature == 0`` means greedy decoding.

    The log-probs a backend returns are of the temperature-scaled distribution *before* any top-p
    truncation, i.e. exactly what the trainer computes; top-p < 1 biases the importance ratio and
    is left at 1.0 by default for that reason.
    """

    max_new_tokens: Annotated[int, Field(gt=0)] = 128
    temperature: Annotated[float, Field(ge=0)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    batch_size: Annotated[int, Field(gt=0)] = 64


@dataclass(frozen=True)
class Sample:
    """One completion: its tokens (EOS included when emitted), their log-probs, and its text.

    ``policy_versions`` is (version of its first token, version of its last) when the weights may
    change mid-generation (asynchronous RL); None when one policy produced it all.
    """

    prompt_index: int
    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: Literal["stop", "length"]
    policy_versions: tuple[int, int] | None = None


class Generator(Protocol):
    """Anything that turns prompts into ``n`` sampled completions each.

    Prompts are token ids, encoded once by the caller (:func:`encode_prompts`): the engine then
    continues exactly the tokens the trainer scores, whatever special tokens its own tokenizer
    would add to a string (a second BOS after a chat template's, say)."""

    def generate(
        self, prompts: Sequence[list[int]], n: int, sampling: SamplingConfig, seed: int
    ) -> list[list[Sample]]:
        """``n`` samples for each prompt, in prompt order: result[i][j] is sample j of prompt i."""
        ...


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]) -> list[list[int]]:
    """Prompt texts (chat template applied: special tokens already written) as token ids."""
    if not prompts:
        return []
    ids: list[list[int]] = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    return ids


@runtime_checkable
class WeightSyncedGenerator(Generator, Protocol):
    """A generator holding its own copy of the weights (vLLM): the trainer pushes each update."""

    def mirror(self, source: Callable[[], Iterable[Sequence[tuple[str, torch.Tensor]]]]) -> None:
        """Take the weights ``source()`` reads now (buckets of whole tensors with state-dict
        names, tied weights under each name), in place, no restart; keep ``source`` to read
        them again whenever the generator has let go of its copy (vLLM's sleep level 2)."""
        ...
