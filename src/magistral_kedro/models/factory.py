"""Build the tiny embedded model, and save / load any causal LM as a Hugging Face directory."""

from __future__ import annotations

import os
import shutil
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


@dataclass(frozen=True)
class CheckpointRef:
    """A Hugging Face checkpoint directory on disk, not loaded.

    What the model datasets hand to nodes and what the training loops return: a node loads
    the weights only if it uses them (a node that only runs after another loads nothing, and
    vLLM reads the directory itself), in ``dtype``, the configured one.
    """

    path: Path
    dtype: str = "float32"

    def load(self) -> Checkpoint:
        """Model and tokenizer, the model in ``dtype``."""
        return load_checkpoint(self.path, self.dtype)

    def load_tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer alone (cheap: no weights are read)."""
        return load_tokenizer(self.path)


@dataclass(frozen=True)
class AbsentCheckpoint(CheckpointRef):
    """A checkpoint nothing has saved yet, ``path`` where it will be: reading it raises
    ``reason``. A node handed a model it does not use (``rl.init`` picks one of two;
    ``eval.checkpoint`` replaces this run's RL model) runs without it."""

    reason: str = ""

    def load(self) -> Checkpoint:
        raise FileNotFoundError(self.reason)

    def load_tokenizer(self) -> PreTrainedTokenizerBase:
        raise FileNotFoundError(self.reason)


#: A model as nodes receive it: loaded (in memory) or on disk.
ModelSource = Checkpoint | CheckpointRef


def load_model(source: ModelSource) -> Checkpoint:
    """``source`` loaded (a :class:`Checkpoint` is returned as it is)."""
    return source.load() if isinstance(source, CheckpointRef) else source


def tokenizer_of(source: ModelSource) -> PreTrainedTokenizerBase:
    """The tokenizer of ``source``, without loading weights from disk."""
    return source.load_tokenizer() if isinstance(source, CheckpointRef) else source.tokenizer


def dtype_name(source: ModelSource) -> str:
    """The dtype ``source`` is (or will be) loaded in, e.g. ``"bfloat16"``."""
    if isinstance(source, CheckpointRef):
        return source.dtype
    return str(source.model.dtype).removeprefix("torch.")


def save_model(source: ModelSource, path: str | Path) -> None:
    """Write ``source`` as a Hugging Face directory at ``path``; a directory on disk is linked
    file by file (no copy: checkpoint files are never modified in place), copied where links
    cannot be made (another filesystem)."""
    if isinstance(source, Checkpoint):
        save_checkpoint(source, path)
        return
    link_tree(source.path, path)


def link_tree(source: str | Path, target: str | Path) -> None:
    """The files of ``source`` in ``target`` (created or merged into), each hard-linked, copied
    where links cannot be made (another filesystem)."""

    def link_or_copy(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
            return dst
        except OSError:
            return shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy, dirs_exist_ok=True)


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


def save_checkpoint(checkpoint: Checkpoint, path: str | Path, every_rank: bool = False) -> None:
    """Write model (safetensors) and tokenizer into ``path``, a standard HF directory.

    Once torch.distributed is up, ``save_pretrained`` writes the model on rank 0 alone: right
    for a directory all ranks share. ``every_rank``: this rank writes too (a copy of its own).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model = checkpoint.model
    if every_rank:  # transformers asks this method whether the rank writes
        keep = lambda is_main_process: is_main_process  # noqa: E731
        model.should_save_on_this_rank = keep  # type: ignore[method-assign]
    try:
        model.save_pretrained(path)
    finally:
        if every_rank:
            del model.should_save_on_this_rank
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
    return Checkpoint(model=model, tokenizer=load_tokenizer(path))


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer of a checkpoint directory, with a pad token and left padding (generation
    pads prompts on the left)."""
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:  # many base models ship without one; padding needs it
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer
