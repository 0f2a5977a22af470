"""What a GRPO step samples: the curriculum stage in force and the step's draw of problems.

A step's work is a pure function of (seed, step, stage, rank), so a resumed run draws what the
killed one would have, and every rank agrees on the stage of every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from magistral_kedro.generation import SamplingConfig
from magistral_kedro.grpo.config import GRPOConfig, Stage
from magistral_kedro.tasks.schema import Problem


@dataclass(frozen=True)
class Work:
    """What one step samples on this rank: the trainer's order to the rollouts."""

    step: int
    stage: int  # index of the curriculum stage it is drawn for
    chosen: list[int]  # problem index of each group
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


def draw(problems: Sequence[Problem], stage: Stage, seed: int, step: int) -> list[int]:
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
    """The stages and the problems they draw from, for one rank of ``world``."""

    stages: Sequence[Stage]
    problems: Sequence[Problem]
    grpo: GRPOConfig
    seed: int
    rank: int = 0
    world: int = 1

    def work(self, step: int, stage: int) -> Work:
        """Step ``step``'s work on this rank at stage index ``stage`` (whole groups per rank)."""
        sampling = SamplingConfig(
            max_new_tokens=self.stages[stage].l_max,
            temperature=self.grpo.temperature,
            top_p=self.grpo.top_p,
            batch_size=self.grpo.generation_batch_size,
        )
        chosen = draw(self.problems, self.stages[stage], self.seed, step)[self.rank :: self.world]
        return Work(step, stage, chosen, sampling, self.seed * 1_000_003 + step + 7_919 * self.rank)
