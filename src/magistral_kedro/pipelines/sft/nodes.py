"""SFT nodes: initialise the model, build examples, train (the evaluation is the eval
pipeline's template, :func:`magistral_kedro.pipelines.eval.pipeline.evaluation_of`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from transformers import PreTrainedTokenizerBase

from magistral_kedro.evaluation import build_prompts
from magistral_kedro.models import (
    Checkpoint,
    CheckpointRef,
    ModelSource,
    build_tiny_model,
    dtype_name,
    tokenizer_of,
)
from magistral_kedro.params import ModelParams, PromptParams, SFTParams
from magistral_kedro.tracking import (
    MlflowTracker,
    as_metrics_dataset,
)
from magistral_kedro.training import distributed
from magistral_kedro.training.fingerprint import data_digest, fingerprint, weights_digest
from magistral_kedro.training.sft import SFTExample, tokenize_examples, train_sft

logger = logging.getLogger(__name__)


def initialise_model(
    tokenizer: PreTrainedTokenizerBase, model: ModelParams, seed: int
) -> ModelSource:
    """The starting checkpoint: a local HF checkpoint if ``model.name_or_path`` is set (its own
    tokenizer then replaces the trained one; its files are linked, not loaded), else the tiny
    model on the curated tokenizer."""
    if model.name_or_path is not None:
        logger.info("starting from the checkpoint %s", model.name_or_path)
        return CheckpointRef(Path(model.name_or_path), model.dtype)
    tiny = build_tiny_model(tokenizer, model.tiny, seed)
    n_params = sum(p.numel() for p in tiny.parameters())
    logger.info("built the tiny model: %.2fM parameters", n_params / 1e6)
    return Checkpoint(model=tiny, tokenizer=tokenizer)


def build_sft_examples(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    base_model: ModelSource,
    prompt: PromptParams,
    sft: SFTParams,
) -> tuple[dict[str, list[SFTExample]], dict[str, Any]]:
    """Tokenised (prompt, reference) pairs of the chosen kinds: ``train``, and ``validation``
    (whose loss SFT logs as it goes, ``sft/eval_loss``; the held-out split stays unseen), and
    counts of what was left out."""
    tokenizer = tokenizer_of(base_model)
    splits: dict[str, list[SFTExample]] = {}
    stats: dict[str, float] = {}
    for name, frame in (("train", train), ("validation", validation)):
        usable = frame[frame["kind"].isin(sft.kinds) & frame["reference"].notna()]
        examples, too_long = tokenize_examples(
            build_prompts(usable, tokenizer, prompt.system_prompt),
            list(usable["reference"]),
            tokenizer,
            sft.loop.max_length,
        )
        splits[name] = examples
        stats[f"sft/data/{name}_examples"] = len(examples)
        stats[f"sft/data/{name}_without_reference_or_kind"] = len(frame) - len(usable)
        stats[f"sft/data/{name}_too_long"] = too_long
        if too_long:
            logger.warning(
                "%d %s examples are longer than sft.loop.max_length=%d tokens and are left out",
                too_long,
                name,
                sft.loop.max_length,
            )
    return splits, as_metrics_dataset(stats)


def train_sft_model(
    base_model: ModelSource, examples: dict[str, list[SFTExample]], sft: SFTParams, seed: int
) -> CheckpointRef:
    """Fine-tune on the examples; per-step metrics and checkpoints go to MLflow as they happen.
    A finished run with the same settings, examples and starting weights (and dtype) is reused
    as it is; the validation examples only measure it."""
    run = distributed.same_on_every_rank(
        lambda: fingerprint(
            sft.engine,
            sft.loop,
            seed,
            data_digest(examples["train"]),
            weights_digest(base_model),
            dtype_name(base_model),
        ),
        "sft's inputs (settings, examples, start weights)",
    )
    return train_sft(
        base_model,
        examples["train"],
        examples["validation"],
        engine_config=sft.engine,
        loop=sft.loop,
        checkpoint_dir=sft.checkpoint_dir,
        seed=seed,
        fingerprint=run,
        tracker=MlflowTracker.for_training(
            "sft",
            sft.engine.optim.max_steps,
            sft.loop.checkpoint_every,
            sft.keep_checkpoint_artifacts,
        ),
    )
