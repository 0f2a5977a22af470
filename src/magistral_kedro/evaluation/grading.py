"""Answers graded by the Magistral reward: build prompts, sample through any generator, grade
every completion (one row each), and the in-pipeline evaluation of a model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import pandas as pd
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from magistral_kedro.evaluation.metrics import named_metrics, summary_table
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
from magistral_kedro.training import distributed

logger = logging.getLogger(__name__)


def build_prompts(
    problems: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, system_prompt: str | None
) -> list[str]:
    """The model input of each problem: chat template, system prompt (``"magistral"``, ``"none"``
    or literal text; see :func:`resolve_system_prompt`), problem text."""
    resolved = resolve_system_prompt(system_prompt)
    return [build_prompt(tokenizer, text, resolved) for text in problems["prompt"]]


@dataclass(frozen=True)
class _Chunk:
    """One generator call of :func:`grade_samples`: ``n`` samples of each of its ``problems``."""

    decoding: str  # "greedy" or "sampled"
    n: int
    sampling: SamplingConfig
    seed: int
    problems: slice  # of the problems' rows


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
    bar over the completions. Across data-parallel ranks each rank does every
    ``world_size``-th chunk and every rank returns all the rows, the same as one process."""
    prompts = encode_prompts(tokenizer, build_prompts(problems, tokenizer, system_prompt))
    typed = frame_to_problems(problems)
    runs = []
    if greedy:
        runs.append(("greedy", 1, replace(sampling, temperature=0.0), seed))
    if k > 0:
        runs.append(("sampled", k, replace(sampling, temperature=temperature), seed + 1))
    size = max(1, sampling.batch_size)
    chunks = [
        _Chunk(decoding, n, config, run_seed + chunk, slice(start, start + size))
        for decoding, n, config, run_seed in runs
        for chunk, start in enumerate(range(0, len(prompts), size))
    ]
    mine = distributed.my_chunks(len(chunks))
    done: dict[int, list[dict[str, object]]] = {}
    total = sum(chunks[i].n * len(typed[chunks[i].problems]) for i in mine)
    quiet = not distributed.is_main()
    with tqdm(total=total, desc="evaluation", unit="sample", leave=False, disable=quiet) as bar:
        for i in mine:
            chunk = chunks[i]
            part = typed[chunk.problems]
            groups = generator.generate(
                prompts[chunk.problems], n=chunk.n, sampling=chunk.sampling, seed=chunk.seed
            )
            done[i] = _graded(part, groups, chunk.decoding, reward, seed)
            bar.update(chunk.n * len(part))
    rows = [row for part in distributed.gather_chunks(done, len(chunks)) for row in part]
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
                "answer_correct": verdict.answer_correct,
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
    """A greedy answer to each of the first ``n_problems`` math eval problems (and ``k``
    sampled ones at ``temperature`` when ``k > 0``), graded by the Magistral reward.

    Returns one row per completion (the columns of :func:`grade_samples`, ``benchmark`` =
    ``heldout``) and the metrics of :func:`~magistral_kedro.evaluation.metrics.summarise`
    under the eval pipeline's names: ``<prefix>/greedy_accuracy``, ``<prefix>/pass_at_1`` (over
    the k samples: what RL optimises), ``pass_at_k``, ``maj_at_k``, ``format_rate``... and per
    slice, ``<prefix>/language_fr/<metric>``, ``<prefix>/difficulty_3/<metric>``."""
    problems = evaluation[evaluation["kind"] == "math"].head(n_problems)
    if problems.empty:
        logger.warning("no math problem in the eval set: generation metrics skipped")
        return pd.DataFrame(), {}
    with open_generator(checkpoint, generation, seed) as generator:
        samples = grade_samples(
            generator,
            tokenizer_of(checkpoint),
            problems,
            system_prompt,
            sampling,
            reward,
            seed,
            k,
            temperature,
            True,
        )
    samples = samples.assign(benchmark="heldout")
    metrics = named_metrics(summary_table(samples), prefix)
    logger.info(
        "%s on %d problems: greedy accuracy %.3f, pass@1 %.3f, format rate %.3f",
        prefix,
        len(problems),
        metrics[f"{prefix}/greedy_accuracy"],
        metrics.get(f"{prefix}/pass_at_1", float("nan")),
        metrics[f"{prefix}/format_rate"],
    )
    return samples, metrics
