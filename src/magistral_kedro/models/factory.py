"""Build the tiny embedded model, and save / load any causal LM as a Hugging Face directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch
from pydantic import Field
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from magistral_kedro.config import config

Positive = Annotated[int, Field(gt=0)]


@config
class TinyModelConfig:
    """Shape of the embedded default: a Llama-architecture model of ~0.3 to a few M parameters."""

    hidden_size: Positive = 128
    num_layers: Positive = 4
    num_heads: Positive = 4
    intermediate_size: Positive = 512
    max_position_embeddings: Positive = 512
    tie_word_embeddings: bool = True


@dataclass
class Checkpoint:
    """A causal LM and its tokenizer: what a Hugging Face checkpoint directory holds."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase, config: TinyModelConfig, seed: int
) -> PreTrainedModel:
    """A randomly initialised Llama sized by ``config``, its vocabulary taken from ``tokenizer``."""
    if config.hidden_size % config.num_heads:
        raise ValueError(
            f"hidden_size ({config.hidden_size}) must be divisible by num_heads "
            f"({config.num_heads})"
        )
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> None:
    """Write model (safetensors) and tokenizer into ``path``, a standard HF directory."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    checkpoint.model.save_pretrained(path)
    checkpoint.tokenizer.save_pretrained(path)


def load_checkpoint(path: str | Path, dtype: str = "float32") -> Checkpoint:
    """Load a local HF checkpoint directory (the tiny model's, or a real one such as Qwen2.5).

    Raises:
        FileNotFoundError: if ``path`` is not a directory with a ``config.json``.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no Hugging Face checkpoint at {str(path)!r}: expected a directory with config.json"
        )
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # many base models ship without one; padding needs it
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return Checkpoint(model=model, tokenizer=tokenizer)
