"""Pass rates, answer histograms and the difficulty verdicts."""

import pytest
from pydantic import ValidationError

from magistral_kedro.curation.difficulty import (
    PassRate,
    PassRateBounds,
    difficulty_verdict,
    pass_rate_of,
    sample_pass_rates,
)
from magistral_kedro.generation import SamplingConfig
from magistral_kedro.generation.base import Sample
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tasks import Problem


def answer(value: str) -> str:
    return f"<think>\nthinking\n</think>\nSo the answer is $\\boxed{{{value}}}$."


class ScriptedGenerator:
    """A generator whose completions are given per prompt (its token ids, cycled), to test the
    bookkeeping."""

    def __init__(self, scripts: dict[str, list[str]]):
        self.scripts = scripts
        self.calls: list[int] = []

    def generate(self, prompts, n, sampling, seed):
        self.calls.append(len(prompts))
        return [
            [
                Sample(
                    i,
                    [1] * 5,
                    [0.0] * 5,
                    self.scripts[tuple(p)][j % len(self.scripts[tuple(p)])],
                    "stop",
                )
                for j in range(n)
            ]
            for i, p in enumerate(prompts)
        ]


def math(problem_id: str, answer_tex: str) -> Problem:
    return Problem(
        id=problem_id,
        kind="math",
        language="en",
        difficulty=1,
        prompt=f"question {problem_id}",
        answer=answer_tex,
        source="t",
    )


def test_histogram_majority_and_correctness():
    completions = [answer("4"), answer("4"), answer("4.0"), answer("5"), "no box at all"]
    rate = pass_rate_of("p", completions, [True, True, True, False, False])
    assert rate.answers == {"4": 2, "4.0": 1, "5": 1, "": 1}
    assert (rate.majority_answer, rate.majority_count, rate.majority_correct) == ("4", 2, True)
    assert rate.pass_rate == pytest.approx(0.6)
    assert PassRate.from_record({**rate.__dict__, "pass_rate": 0.6}) == rate


def test_sampling_batches_across_problems_and_grades_with_the_reward():
    problems = [
        math("easy", "2"),
        math("hard", "\\frac{1}{3}"),
        math("wrongref", "7"),
        math("mixed", "10"),
    ]
    scripts = {
        (0,): [answer("2")],
        (1,): [answer("3"), "<think>x</think> no answer"],
        (2,): [answer("8")] * 3 + [answer("9")],
        (3,): [answer("10"), answer("10.0"), answer("11"), answer("12")],
    }
    generator = ScriptedGenerator(scripts)
    rates, seconds = sample_pass_rates(
        generator,
        problems,
        [[k] for k in range(len(problems))],  # prompts as token ids
        n_samples=4,
        sampling=SamplingConfig(),
        reward=RewardConfig(),
        seed=0,
        chunk_size=3,
    )
    assert generator.calls == [3, 1]  # problems batched 3 at a time
    assert [r.n_correct for r in rates] == [4, 0, 0, 2]  # "10.0" == "10" by the verifier
    assert rates[2].majority_answer == "8" and rates[2].majority_count == 3
    assert not rates[2].majority_correct
    assert set(seconds) == {"sampling", "verifying"}

    paper = PassRateBounds(low=0.0, high=1.0, suspect_share=0.5)
    verdicts = [difficulty_verdict(r, paper) for r in rates]
    assert verdicts == ["too_easy", "too_hard", "suspect_reference", None]
    # Without the wrong-reference check (stage 1), the same record is just too hard.
    assert difficulty_verdict(rates[2], PassRateBounds()) == "too_hard"
    # Re-thresholding the same records: keep everything but the unsolved.
    assert [difficulty_verdict(r, PassRateBounds(low=0.0, high=None)) for r in rates] == [
        None,
        "too_hard",
        "too_hard",
        None,
    ]


def test_a_split_vote_is_no_majority():
    rate = pass_rate_of("p", [answer("8")] * 2 + [answer("9")] * 2, [False] * 4)
    assert difficulty_verdict(rate, PassRateBounds(suspect_share=0.5)) == "too_hard"


def test_bounds_are_checked():
    with pytest.raises(ValidationError, match="low < high"):
        PassRateBounds(low=0.9, high=0.1)
    with pytest.raises(ValidationError):
        PassRateBounds(suspect_share=0.3)
