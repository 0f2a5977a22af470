"""What a GRPO step samples: the curriculum stage in force and the step's draw of problems.

A step's plan is a pure function of (seed, step, stage, rank), so a resumed run draws what the
killed one would have, and every rank agrees on the stage of every step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from magistral_kedro.generation import SamplingConfig
from magistral_kedro.grpo.config import GRPOConfig, Stage
from magistral_kedro.tasks.schema import Problem


@dataclass(frozen=True)
class StepPlan:
    """What one step samples on this rank: what the trainer hands the rollouts."""

    step: int
    stage: int  # index of the curriculum stage it is drawn for
    problem_indices: list[int]  # the problem of each group
    sampling: SamplingConfig
    seed: int


def stage_index(stages: Sequence[Stage], step: int, current: int, last_reward: float) -> int:
    """The stage in force at ``step``: a later stage starts at its ``start_step`` or once the
    last step's mean reward reaches its ``min_reward``; stages never go back."""
    index = current
    for i in range(current + 1, len(stages)):
        start, threshold = stages[i].start_step, stages[i].min_reward
        if (start is not None and start <= step) or (
            threshold is not None and last_reward >= threshold
        ):
            index = i
    return index


def draw_problems(problems: Sequence[Problem], stage: Stage, seed: int, step: int) -> list[int]:
    """``stage.n_prompts`` problems of the stage's difficulty, drawn with (seed, step)."""
    low, high = stage.difficulty
    eligible = [i for i, p in enumerate(problems) if low <= p.difficulty <= high]
    if not eligible:
        raise ValueError(f"no training problem has a difficulty in {stage.difficulty}")
    rng = np.random.default_rng([seed, step])
    size = min(stage.n_prompts, len(eligible))
    return [eligible[int(i)] for i in rng.choice(len(eligible), size=size, replace=False)]


@dataclass(frozen=True)
class Curriculum:
    """The stages and the problems they draw from, for one rank of ``world``; ``sampling``:
    how every step samples (its ``max_new_tokens`` is each stage's ``l_max``)."""

    stages: Sequence[Stage]
    problems: Sequence[Problem]
    sampling: SamplingConfig
    seed: int
    rank: int = 0
    world: int = 1

    def plan(self, step: int, stage: int) -> StepPlan:
        """Step ``step``'s plan on this rank at stage index ``stage`` (whole groups per rank)."""
        sampling = dataclasses.replace(self.sampling, max_new_tokens=self.stages[stage].l_max)
        problems = draw_problems(self.problems, self.stages[stage], self.seed, step)
        seed = self.seed * 1_000_003 + step + 7_919 * self.rank
        return StepPlan(step, stage, problems[self.rank :: self.world], sampling, seed)


def sampling_of(grpo: GRPOConfig) -> SamplingConfig:
    """How GRPO samples: its temperature, top-p and generation batch size."""
    return SamplingConfig(
        temperature=grpo.temperature, top_p=grpo.top_p, batch_size=grpo.generation_batch_size
    )
