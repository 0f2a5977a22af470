"""Answers graded by the Magistral reward: build prompts, sample through any generator, grade
every completion (one row each), and the in-pipeline evaluation of a model."""

from __future__ import annotations

import logging
from dataclasses import replace

import pandas as pd
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from magistral_kedro.evaluation.metrics import summarise
from magistral_kedro.generation import (
    GenerationConfig,
    Generator,
    Sample,
    SamplingConfig,
    encode_prompts,
    open_generator,
)
from magistral_kedro.models import ModelSource, build_prompt, tokenizer_of
from magistral_kedro.rewards import RewardConfig, final_answer, score_batch
from magistral_kedro.tasks.frames import frame_to_problems
from magistral_kedro.tasks.prompts import resolve_system_prompt
from magistral_kedro.tasks.schema import Problem

logger = logging.getLogger(__name__)


def build_prompts(
    problems: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, system_prompt: str | None
) -> list[str]:
    """The model input of each problem: chat template, system prompt (``"magistral"``, ``"none"``
    or literal text; see :func:`resolve_system_prompt`), problem text."""
    resolved = resolve_system_prompt(system_prompt)
    return [build_prompt(tokenizer, text, resolved) for text in problems["prompt"]]


def grade_samples(
    generator: Generator,
    tokenizer: PreTrainedTokenizerBase,
    problems: pd.DataFrame,
    system_prompt: str | None,
    sampling: SamplingConfig,
    reward: RewardConfig,
    seed: int,
    k: int,
    temperature: float,
    greedy: bool,
) -> pd.DataFrame:
    """Answer every problem greedily (if ``greedy``) and ``k`` times at ``temperature``, grade
    each answer with the Magistral reward; one row per completion (see
    :mod:`magistral_kedro.evaluation.metrics` for the columns).

    Problems go to the generator ``sampling.batch_size`` at a time (chunk ``c`` of a decoding
    run sampled with the run's seed + ``c``), each chunk graded as it comes, with a progress
    bar over the completions."""
    prompts = encode_prompts(tokenizer, build_prompts(problems, tokenizer, system_prompt))
    typed = frame_to_problems(problems)
    runs = []
    if greedy:
        runs.append(("greedy", 1, replace(sampling, temperature=0.0), seed))
    if k > 0:
        runs.append(("sampled", k, replace(sampling, temperature=temperature), seed + 1))
    size = max(1, sampling.batch_size)
    rows: list[dict[str, object]] = []
    total = len(prompts) * sum(n for _, n, _, _ in runs)
    with tqdm(total=total, desc="evaluation", unit="sample", leave=False) as bar:
        for decoding, n, config, run_seed in runs:
            for chunk, start in enumerate(range(0, len(prompts), size)):
                part = typed[start : start + size]
                groups = generator.generate(
                    prompts[start : start + size], n=n, sampling=config, seed=run_seed + chunk
                )
                rows += _graded(part, groups, decoding, reward, seed)
                bar.update(n * len(part))
    return pd.DataFrame(rows)


def _graded(
    problems: list[Problem],
    groups: list[list[Sample]],
    decoding: str,
    reward: RewardConfig,
    seed: int,
) -> list[dict[str, object]]:
    """One row per completion of ``groups`` (one group per problem), graded by the reward."""
    flat = [(i, j, s) for i, group in enumerate(groups) for j, s in enumerate(group)]
    graded = score_batch(
        [s.text for _, _, s in flat],
        [problems[i] for i, _, _ in flat],
        [len(s.token_ids) for _, _, s in flat],
        reward,
        seed=seed,
    )
    rows: list[dict[str, object]] = []
    for (i, j, sample), verdict in zip(flat, graded, strict=True):
        problem = problems[i]
        rows.append(
            {
                "problem_id": problem.id,
                "kind": problem.kind,
                "language": problem.language,
                "difficulty": problem.difficulty,
                "reference_answer": problem.answer,
                "decoding": decoding,
                "sample": j,
                "completion": sample.text,
                "answer": final_answer(sample.text) if problem.kind == "math" else "",
                "completion_tokens": len(sample.token_ids),
                "truncated": sample.finish_reason == "length",
                "format_ok": verdict.format > 0,
                "correct": verdict.correct > 0,
                "language_ok": verdict.language > 0,
                "length_penalty": verdict.length,
                "reward": verdict.total,
                "format_reason": verdict.reason,
            }
        )
    return rows


def evaluate_generation(
    checkpoint: ModelSource,
    evaluation: pd.DataFrame,
    system_prompt: str | None,
    n_problems: int,
    sampling: SamplingConfig,
    reward: RewardConfig,
    generation: GenerationConfig,
    seed: int,
    prefix: str,
    k: int = 0,
    temperature: float = 1.0,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Greedy answers to the first ``n_problems`` math eval problems (and ``k`` sampled ones at
    ``temperature`` when ``k > 0``), graded by the Magistral reward: format rate, accuracy
    (SymPy-backed ``math_equal``), language consistency, per language and level; sampled
    accuracy is pass@1 averaged over the k samples (what RL optimises). Metrics are named
    ``<prefix>/<metric>``; the table has one row per problem (its greedy answer)."""
    problems = evaluation[evaluation["kind"] == "math"].head(n_problems)
    if problems.empty:
        logger.warning("no math problem in the eval set: generation metrics skipped")
        return pd.DataFrame(), {}
    with open_generator(checkpoint, generation, seed) as generator:
        tokenizer = tokenizer_of(checkpoint)
        samples = grade_samples(
            generator,
            tokenizer,
            problems,
            system_prompt,
            sampling,
            reward,
            seed,
            k,
            temperature,
            True,
        )
    greedy = samples[samples["decoding"] == "greedy"].reset_index(drop=True)
    table = greedy.rename(columns={"problem_id": "id", "reference_answer": "answer_reference"})
    on_greedy = summarise(greedy)
    metrics = {
        f"{prefix}/{name}": on_greedy[key]
        for name, key in (
            ("format_rate", "format_rate"),
            ("accuracy", "greedy_accuracy"),
            ("language_rate", "language_rate"),
            ("mean_reward", "mean_reward"),
            ("truncated_fraction", "truncated_fraction"),
            ("mean_completion_tokens", "mean_completion_tokens"),
        )
    }
    if k > 0:
        sampled = samples[samples["decoding"] == "sampled"]
        summary = summarise(sampled)
        table["sampled_accuracy"] = list(
            sampled.groupby("problem_id", sort=False)["correct"].mean()
        )
        metrics[f"{prefix}/sampled_accuracy"] = summary["pass_at_1"]
        metrics[f"{prefix}/sampled_mean_reward"] = summary["mean_reward"]
        metrics[f"{prefix}/pass_at_k"] = summary["pass_at_k"]
        metrics[f"{prefix}/maj_at_k"] = summary["maj_at_k"]
    for column, label in (("language", "lang"), ("difficulty", "level")):
        for key, group in greedy.groupby(column):
            metrics[f"{prefix}/accuracy/{label}_{key}"] = group["correct"].mean()
    logger.info(
        "%s on %d problems: format rate %.3f, accuracy %.3f, language rate %.3f",
        prefix,
        len(table),
        metrics[f"{prefix}/format_rate"],
        metrics[f"{prefix}/accuracy"],
        metrics[f"{prefix}/language_rate"],
    )
    return table, metrics
