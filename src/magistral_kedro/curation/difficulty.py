"""Difficulty filtering by pass rate over G samples of a model (docs/recipe.md, section 4).

Sampling and thresholding are separate steps: :func:`sample_pass_rates` records, per problem, how
many of the G samples were right and a histogram of the answers given; :func:`difficulty_verdict`
turns a record into a keep / drop decision. The records are kept, so the filter can be
re-thresholded without sampling again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Annotated, Any

from pydantic import Field, model_validator
from tqdm.auto import tqdm

from magistral_kedro.config import config
from magistral_kedro.evaluation.metrics import majority_vote
from magistral_kedro.generation.base import Generator, SamplingConfig
from magistral_kedro.rewards.format import final_answer
from magistral_kedro.rewards.score import RewardConfig, score_batch
from magistral_kedro.tasks.schema import Problem
from magistral_kedro.training import distributed

#: Verdicts of :func:`difficulty_verdict`; ``None`` keeps the problem.
VERDICTS = ("suspect_reference", "too_hard", "too_easy")


@config
class PassRateBounds:
    """Keep a problem whose pass rate is strictly between ``low`` and ``high`` (``None``: no bound);
    with ``suspect_share`` set, first drop problems where more than that share of the samples agree
    on one answer that is not the reference's (0.5: a majority; the reference is likely wrong)."""

    low: Annotated[float, Field(ge=0, le=1)] | None = 0.0
    high: Annotated[float, Field(ge=0, le=1)] | None = 1.0
    suspect_share: Annotated[float, Field(ge=0.5, lt=1)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> PassRateBounds:
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(
                f"pass-rate bounds need low < high, got low={self.low} high={self.high}"
            )
        return self


@dataclass(frozen=True)
class PassRate:
    """What G samples of one problem gave: how many were right, and which answers were given
    (normalised; ``""`` for a sample without a final answer)."""

    problem_id: str
    n_samples: int
    n_correct: int
    answers: dict[str, int]
    majority_answer: str
    majority_count: int
    majority_correct: bool

    @property
    def pass_rate(self) -> float:
        return self.n_correct / self.n_samples

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PassRate:
        """A record as saved in a pass-rates table (extra columns ignored)."""
        return cls(**{f.name: record[f.name] for f in fields(cls)})


def pass_rate_of(problem_id: str, completions: Sequence[str], correct: Sequence[bool]) -> PassRate:
    """One problem's record from its samples and their verdicts."""
    answers = [final_answer(text) for text in completions]
    histogram = Counter(answers)
    majority, majority_correct = majority_vote(answers, correct)
    return PassRate(
        problem_id=problem_id,
        n_samples=len(completions),
        n_correct=sum(bool(ok) for ok in correct),
        answers=dict(histogram.most_common()),
        majority_answer=majority,
        majority_count=histogram[majority] if majority else 0,
        majority_correct=majority_correct,
    )


def sample_pass_rates(
    generator: Generator,
    problems: Sequence[Problem],
    prompts: Sequence[list[int]],
    n_samples: int,
    sampling: SamplingConfig,
    reward: RewardConfig,
    seed: int,
    chunk_size: int = 64,
) -> tuple[list[PassRate], dict[str, float]]:
    """``n_samples`` completions per problem, graded by the reward's verifier.

    Problems are sampled ``chunk_size`` at a time (the generator batches across them; chunk ``c``
    with ``seed + c``). Across data-parallel ranks each rank samples every ``world_size``-th
    chunk and every rank returns all the records, the same as one process. Returns the records
    and the seconds this rank spent ``sampling`` and ``verifying``.
    """
    done: dict[int, list[PassRate]] = {}
    seconds = {"sampling": 0.0, "verifying": 0.0}
    starts = range(0, len(problems), chunk_size)
    mine = distributed.my_chunks(len(starts))
    quiet = not distributed.is_main()
    for chunk in tqdm(mine, desc="pass rates", unit="chunk", leave=False, disable=quiet):
        start = starts[chunk]
        part = list(problems[start : start + chunk_size])
        began = time.perf_counter()
        groups = generator.generate(
            prompts[start : start + chunk_size], n_samples, sampling, seed + chunk
        )
        seconds["sampling"] += time.perf_counter() - began
        began = time.perf_counter()
        flat = [s for group in groups for s in group]
        verdicts = score_batch(
            [s.text for s in flat],
            [p for p in part for _ in range(n_samples)],
            [len(s.token_ids) for s in flat],
            reward,
            seed=seed,
        )
        seconds["verifying"] += time.perf_counter() - began
        done[chunk] = [
            pass_rate_of(
                problem.id,
                [s.text for s in group],
                [v.correct > 0 for v in verdicts[i * n_samples : (i + 1) * n_samples]],
            )
            for i, (problem, group) in enumerate(zip(part, groups, strict=True))
        ]
    rates = [rate for part in distributed.gather_chunks(done, len(starts)) for rate in part]
    return rates, seconds


def difficulty_verdict(rate: PassRate, bounds: PassRateBounds) -> str | None:
    """``None`` (keep) or the first of :data:`VERDICTS` that applies."""
    share = rate.majority_count / rate.n_samples
    if (
        bounds.suspect_share is not None
        and share > bounds.suspect_share
        and not rate.majority_correct
    ):
        return "suspect_reference"
    if bounds.low is not None and rate.pass_rate <= bounds.low:
        return "too_hard"
    if bounds.high is not None and rate.pass_rate >= bounds.high:
        return "too_easy"
    return None
