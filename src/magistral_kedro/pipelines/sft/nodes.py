"""SFT nodes: initialise the model, build examples, train, and measure what was learned."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import pandas as pd
from transformers import PreTrainedTokenizerBase

from magistral_kedro.models import Checkpoint, build_tiny_model, load_checkpoint
from magistral_kedro.params import ModelParams, PromptParams, SFTParams
from magistral_kedro.pipelines.evaluation import build_prompts, evaluate_generation
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tracking import MlflowTracker, as_metrics_dataset
from magistral_kedro.training.sft import SFTExample, tokenize_examples, train_sft

logger = logging.getLogger(__name__)


def initialise_model(
    tokenizer: PreTrainedTokenizerBase, model: ModelParams, seed: int
) -> Checkpoint:
    """The starting checkpoint: a local HF checkpoint if ``model.name_or_path`` is set (its own
    tokenizer then replaces the trained one), else the tiny model on the curated tokenizer."""
    if model.name_or_path is not None:
        logger.info("loading the starting model from %s", model.name_or_path)
        return load_checkpoint(model.name_or_path, dtype=model.dtype)
    tiny = build_tiny_model(tokenizer, model.tiny, seed)
    n_params = sum(p.numel() for p in tiny.parameters())
    logger.info("built the tiny model: %.2fM parameters", n_params / 1e6)
    return Checkpoint(model=tiny, tokenizer=tokenizer)


def build_sft_examples(
    train: pd.DataFrame,
    evaluation: pd.DataFrame,
    base_model: Checkpoint,
    prompt: PromptParams,
    sft: SFTParams,
) -> tuple[dict[str, list[SFTExample]], dict[str, Any]]:
    """Tokenised (prompt, reference) pairs of the chosen kinds, and counts of what was left out."""
    tokenizer = base_model.tokenizer
    splits: dict[str, list[SFTExample]] = {}
    stats: dict[str, float] = {}
    for name, frame in (("train", train), ("eval", evaluation)):
        usable = frame[frame["kind"].isin(sft.kinds) & frame["reference"].notna()]
        examples, too_long = tokenize_examples(
            build_prompts(usable, tokenizer, prompt),
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


def _fingerprint(*parts: Any) -> str:
    """Identifies a training run's inputs: resume only continues a run with the same one."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_sft_model(
    base_model: Checkpoint, examples: dict[str, list[SFTExample]], sft: SFTParams, seed: int
) -> Checkpoint:
    """Fine-tune on the examples; per-step metrics and checkpoints go to MLflow as they happen."""
    fingerprint = _fingerprint(
        sft.engine, sft.loop, seed, len(examples["train"]), examples["train"][:8]
    )
    model, _ = train_sft(
        base_model.model,
        base_model.tokenizer,
        examples["train"],
        examples["eval"],
        engine_config=sft.engine,
        loop=sft.loop,
        checkpoint_dir=sft.checkpoint_dir,
        seed=seed,
        fingerprint=fingerprint,
        tracker=MlflowTracker("sft"),
    )
    return Checkpoint(model=model, tokenizer=base_model.tokenizer)


def evaluate_sft(
    checkpoint: Checkpoint,
    evaluation: pd.DataFrame,
    prompt: PromptParams,
    sft: SFTParams,
    reward: RewardConfig,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The SFT model on the eval split, graded by the Magistral reward (``sft_eval/...``)."""
    return evaluate_generation(
        checkpoint, evaluation, prompt, sft.eval_problems, sft.eval_sampling, reward, seed,
        prefix="sft_eval", k=sft.eval_k, temperature=sft.eval_temperature,
    )  # fmt: skip
