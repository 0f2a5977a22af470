"""SFT nodes: initialise the model, build examples, train, and measure what was learned."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import pandas as pd
from transformers import PreTrainedTokenizerBase

from magistral_kedro.generation import SamplingConfig, TransformersGenerator
from magistral_kedro.models import Checkpoint, build_prompt, build_tiny_model, load_checkpoint
from magistral_kedro.params import ModelParams, PromptParams, SFTParams
from magistral_kedro.rewards import check_format, extract_boxed, normalize_answer
from magistral_kedro.tasks.prompts import resolve_system_prompt
from magistral_kedro.tracking import as_metrics_dataset, log_checkpoint, log_step_metrics
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


def _prompts(
    problems: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, prompt: PromptParams
) -> list[str]:
    system_prompt = resolve_system_prompt(prompt.system_prompt)
    return [build_prompt(tokenizer, text, system_prompt) for text in problems["prompt"]]


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
            _prompts(usable, tokenizer, prompt),
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
        log_metrics=log_step_metrics,
        log_checkpoint=lambda path, step: log_checkpoint(path, step, "sft"),
    )
    return Checkpoint(model=model, tokenizer=base_model.tokenizer)


def evaluate_generation(
    checkpoint: Checkpoint,
    evaluation: pd.DataFrame,
    prompt: PromptParams,
    sft: SFTParams,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Decode eval prompts and measure format rate and exact-answer accuracy, per language too.

    Exact match compares the last ``\\boxed{}`` with the reference after light normalisation; the
    rewards library's SymPy-based ``math_equal`` is the stricter judge used by the eval pipeline.
    """
    problems = evaluation[(evaluation["kind"] == "math")].head(sft.eval_problems)
    if problems.empty:
        logger.warning("no math problem in the eval set: generation metrics skipped")
        return pd.DataFrame(), {}
    sampling: SamplingConfig = sft.eval_sampling
    generator = TransformersGenerator(checkpoint.model, checkpoint.tokenizer)
    samples = generator.generate(
        _prompts(problems, checkpoint.tokenizer, prompt), n=1, sampling=sampling, seed=seed
    )
    rows = []
    for (_, problem), (sample,) in zip(problems.iterrows(), samples, strict=True):
        fmt = check_format(sample.text, "math")
        predicted = extract_boxed(sample.text.partition("</think>")[2]) if fmt.ok else None
        correct = predicted is not None and normalize_answer(predicted) == normalize_answer(
            problem["answer"]
        )
        rows.append(
            {
                "id": problem["id"],
                "language": problem["language"],
                "difficulty": problem["difficulty"],
                "answer": problem["answer"],
                "completion": sample.text,
                "predicted": predicted,
                "format_ok": fmt.ok,
                "format_reason": fmt.reason,
                "exact_match": correct,
                "completion_tokens": len(sample.token_ids),
                "truncated": sample.finish_reason == "length",
            }
        )
    table = pd.DataFrame(rows)
    metrics = {
        "sft_eval/format_rate": table["format_ok"].mean(),
        "sft_eval/exact_match": table["exact_match"].mean(),
        "sft_eval/truncated_fraction": table["truncated"].mean(),
        "sft_eval/mean_completion_tokens": table["completion_tokens"].mean(),
    }
    for column, prefix in (("language", "lang"), ("difficulty", "level")):
        for key, group in table.groupby(column):
            metrics[f"sft_eval/exact_match/{prefix}_{key}"] = group["exact_match"].mean()
    logger.info(
        "sft eval on %d problems: format rate %.3f, exact match %.3f",
        len(table),
        metrics["sft_eval/format_rate"],
        metrics["sft_eval/exact_match"],
    )
    return table, as_metrics_dataset(metrics)
