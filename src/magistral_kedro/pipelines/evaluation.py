"""Shared by pipelines: build prompts, and grade a checkpoint's answers with the reward."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from transformers import PreTrainedTokenizerBase

from magistral_kedro.generation import SamplingConfig, TransformersGenerator
from magistral_kedro.models import Checkpoint, build_prompt
from magistral_kedro.params import PromptParams
from magistral_kedro.pipelines.frames import frame_to_problems
from magistral_kedro.rewards import RewardConfig, score_batch
from magistral_kedro.tasks.prompts import resolve_system_prompt
from magistral_kedro.tracking import as_metrics_dataset

logger = logging.getLogger(__name__)


def build_prompts(
    problems: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, prompt: PromptParams
) -> list[str]:
    """The model input of each problem: chat template, system prompt (if any), problem text."""
    system_prompt = resolve_system_prompt(prompt.system_prompt)
    return [build_prompt(tokenizer, text, system_prompt) for text in problems["prompt"]]


def evaluate_generation(
    checkpoint: Checkpoint,
    evaluation: pd.DataFrame,
    prompt: PromptParams,
    n_problems: int,
    sampling: SamplingConfig,
    reward: RewardConfig,
    seed: int,
    prefix: str,
    k: int = 0,
    temperature: float = 1.0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Decode eval prompts (greedy by default) and grade them with the Magistral reward: format
    rate, accuracy (SymPy-backed ``math_equal``), language consistency; per language and level.
    With ``k > 0``, also ``k`` samples per problem at ``temperature``: sampled accuracy (pass@1
    averaged over the k samples, what RL optimises) and mean reward. Metrics are named
    ``<prefix>/<metric>``."""
    problems = evaluation[evaluation["kind"] == "math"].head(n_problems)
    if problems.empty:
        logger.warning("no math problem in the eval set: generation metrics skipped")
        return pd.DataFrame(), {}
    generator = TransformersGenerator(checkpoint.model, checkpoint.tokenizer)
    prompts = build_prompts(problems, checkpoint.tokenizer, prompt)
    typed = frame_to_problems(problems)
    samples = [group[0] for group in generator.generate(prompts, n=1, sampling=sampling, seed=seed)]
    rewards = score_batch(
        [s.text for s in samples], typed, [len(s.token_ids) for s in samples], reward, seed=seed
    )
    table = problems[["id", "language", "difficulty", "answer"]].reset_index(drop=True)
    table["completion"] = [s.text for s in samples]
    table["completion_tokens"] = [len(s.token_ids) for s in samples]
    table["truncated"] = [s.finish_reason == "length" for s in samples]
    table["format_ok"] = [r.format > 0 for r in rewards]
    table["correct"] = [r.correct > 0 for r in rewards]
    table["language_ok"] = [r.language > 0 for r in rewards]
    table["reward"] = [r.total for r in rewards]
    table["format_reason"] = [r.reason for r in rewards]
    metrics = {
        f"{prefix}/format_rate": table["format_ok"].mean(),
        f"{prefix}/accuracy": table["correct"].mean(),
        f"{prefix}/language_rate": table["language_ok"].mean(),
        f"{prefix}/mean_reward": table["reward"].mean(),
        f"{prefix}/truncated_fraction": table["truncated"].mean(),
        f"{prefix}/mean_completion_tokens": table["completion_tokens"].mean(),
    }
    if k > 0:
        hot = SamplingConfig(
            max_new_tokens=sampling.max_new_tokens,
            temperature=temperature,
            batch_size=sampling.batch_size,
        )
        groups = generator.generate(prompts, n=k, sampling=hot, seed=seed + 1)
        flat = [s for group in groups for s in group]
        sampled = score_batch(
            [s.text for s in flat],
            [p for p in typed for _ in range(k)],
            [len(s.token_ids) for s in flat],
            reward,
            seed=seed,
        )
        table["sampled_accuracy"] = [
            sum(r.correct > 0 for r in sampled[i * k : (i + 1) * k]) / k for i in range(len(typed))
        ]
        metrics[f"{prefix}/sampled_accuracy"] = table["sampled_accuracy"].mean()
        metrics[f"{prefix}/sampled_mean_reward"] = sum(r.total for r in sampled) / len(sampled)
    for column, label in (("language", "lang"), ("difficulty", "level")):
        for key, group in table.groupby(column):
            metrics[f"{prefix}/accuracy/{label}_{key}"] = group["correct"].mean()
    logger.info(
        "%s on %d problems: format rate %.3f, accuracy %.3f, language rate %.3f",
        prefix,
        len(table),
        metrics[f"{prefix}/format_rate"],
        metrics[f"{prefix}/accuracy"],
        metrics[f"{prefix}/language_rate"],
    )
    return table, as_metrics_dataset(metrics)
