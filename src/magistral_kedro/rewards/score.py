"""The Magistral reward (docs/recipe.md, section 2): format, correctness, length, language.

A badly formatted completion gets 0 and nothing else is graded. Otherwise
``total = format + correct + length + language`` with, by default, 0.1 for the format, 0.9 for
a correct answer, a soft length penalty down to -0.1, and 0.1 when problem, thoughts and answer are
in one language.

The language check covers the prose that exists. LaTeX, code and numbers are stripped first; the
problem's language is the one detected in its text, or its declared ``language`` when the text has
no words (a problem that is all LaTeX); then every part of the completion that still has words
(the thoughts, the answer) must be in that language, and at least one part must have words. So a
code-only answer (a fenced program and no prose after ``</think>``) earns the 0.1 from thoughts in
the problem's language, and a completion with no prose at all earns nothing for language.

Correctness of math follows ``math_equal``'s judge rules: a decimal answers an exact reference only
when equal to it, unless the problem asks to round or for a decimal (``requested_precision``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from magistral_kedro.config import config
from magistral_kedro.rewards.answers import extract_boxed
from magistral_kedro.rewards.code import run_code
from magistral_kedro.rewards.decimals import requested_precision
from magistral_kedro.rewards.format import FENCED_CODE, check_format, split_thoughts
from magistral_kedro.rewards.language import language_of
from magistral_kedro.rewards.math import math_equal
from magistral_kedro.rewards.pool import shared_pool
from magistral_kedro.rewards.sandbox import isolation_mode
from magistral_kedro.tasks.schema import Problem

NonNegative = Annotated[float, Field(ge=0)]


@config
class RewardConfig:
    """Every number of the reward; defaults are the paper's (docs/recipe.md, section 2)."""

    format_reward: NonNegative = 0.1
    correct_reward: NonNegative = 0.9
    length_penalty: NonNegative = 0.1
    #: Maximum completion length l_max and the buffer l_cache before it where the penalty ramps.
    #: 20480 / 4096 give l_max - l_cache = 16k, the first stage of the paper's schedule.
    l_max: Annotated[int, Field(gt=0)] = 20480
    l_cache: Annotated[int, Field(ge=0)] = 4096
    language_reward: NonNegative = 0.1
    math_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    code_time_limit_s: Annotated[float, Field(gt=0)] = 4.0
    code_memory_mb: Annotated[int, Field(gt=0)] = 300
    code_compile_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    code_max_tests: Annotated[int, Field(gt=0)] = 20


@dataclass(frozen=True)
class RewardBreakdown:
    """The reward of one completion, by component; ``reason`` says why format failed.

    ``answer_correct`` is not part of the reward: whether the final answer is right whatever the
    format (a math answer's last ``\\boxed{}``, after ``</think>`` when there is one), so an
    evaluation can tell a model that cannot answer from one that cannot keep the format. A code
    answer counts only when well formed."""

    format: float
    correct: float
    length: float
    language: float
    total: float
    reason: str = ""
    answer_correct: bool = False

    @classmethod
    def nothing(cls, reason: str, answer_correct: bool = False) -> RewardBreakdown:
        """Reward 0 in every component, and why."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, reason=reason, answer_correct=answer_correct)


def length_penalty(n_tokens: int, cfg: RewardConfig) -> float:
    """0 up to l_max - l_cache, then linearly down to -length_penalty at l_max, and below it."""
    start = cfg.l_max - cfg.l_cache
    if n_tokens <= start:
        return 0.0
    if n_tokens > cfg.l_max or cfg.l_cache == 0:
        return -cfg.length_penalty
    return -cfg.length_penalty * (n_tokens - start) / cfg.l_cache


def _correct(answer: str, problem: Problem, cfg: RewardConfig, seed: int) -> bool:
    if problem.kind == "math":
        predicted = extract_boxed(answer)
        return predicted is not None and math_equal(
            predicted,
            problem.answer or "",
            timeout_s=cfg.math_timeout_s,
            precision=requested_precision(problem.prompt),
            problem=problem.prompt,
        )
    block = FENCED_CODE.search(answer)
    if block is None or not problem.tests:
        return False
    result = run_code(
        block[2],
        block[1],
        [t.model_dump() for t in problem.tests],
        time_limit_s=cfg.code_time_limit_s,
        memory_mb=cfg.code_memory_mb,
        compile_timeout_s=cfg.code_compile_timeout_s,
        max_tests=cfg.code_max_tests,
        seed=seed,
    )
    return result.passed


def _same_language(problem: Problem, thoughts: str, answer: str) -> bool:
    """The language rule of the module docstring: the prose that exists is in the problem's
    language (detected, or declared when the problem has no words)."""
    expected = language_of(problem.prompt)[0] or problem.language
    detected = [code for code in (language_of(thoughts)[0], language_of(answer)[0]) if code]
    return bool(detected) and all(code == expected for code in detected)


def score(
    completion: str, problem: Problem, cfg: RewardConfig, n_tokens: int, seed: int = 0
) -> RewardBreakdown:
    """Reward one completion of ``problem`` that is ``n_tokens`` tokens long.

    ``seed`` draws the code tests when a problem has more than ``cfg.code_max_tests``.
    """
    fmt = check_format(completion, problem.kind)
    thoughts, answer = split_thoughts(completion)
    if not fmt.ok:
        blind = problem.kind == "math" and _correct(answer, problem, cfg, seed)
        return RewardBreakdown.nothing(fmt.reason, answer_correct=blind)
    correct = cfg.correct_reward if _correct(answer, problem, cfg, seed) else 0.0
    length = length_penalty(n_tokens, cfg)
    language = (
        cfg.language_reward
        if cfg.language_reward and _same_language(problem, thoughts, answer)
        else 0.0
    )
    total = cfg.format_reward + correct + length + language
    return RewardBreakdown(
        cfg.format_reward, correct, length, language, total, answer_correct=correct > 0
    )


def item_timeout_s(problem: Problem, cfg: RewardConfig) -> float:
    """The budget of scoring one completion of ``problem``, in CPU seconds of its worker and its
    sandboxed programs (``rewards.pool``; each program also has its own limits)."""
    if problem.kind == "math":
        return cfg.math_timeout_s + 5.0
    tests = min(cfg.code_max_tests, len(problem.tests or []))
    return cfg.code_compile_timeout_s + tests * (cfg.code_time_limit_s + 1.0) + 5.0


def score_batch(
    completions: Sequence[str],
    problems: Sequence[Problem],
    n_tokens: Sequence[int],
    cfg: RewardConfig,
    *,
    n_workers: int = 2,
    seed: int = 0,
    on_done: Callable[[], object] | None = None,
) -> list[RewardBreakdown]:
    """Score many completions in parallel worker processes, order preserved.

    Each item runs under a CPU-time limit (:func:`item_timeout_s`); an item that hangs or
    crashes its worker gets reward 0 with the reason, and the batch goes on. ``on_done`` is
    called once per scored item (a progress bar's ``update``).
    """
    if not len(completions) == len(problems) == len(n_tokens):
        raise ValueError(
            f"score_batch needs one problem and one token count per completion; got "
            f"{len(completions)} completions, {len(problems)} problems, {len(n_tokens)} counts"
        )
    if any(problem.kind == "code" for problem in problems):
        isolation_mode()  # probed here first, so a missing sandbox is said once, not per worker
    tasks = [
        (c, p, cfg, n, seed + i)
        for i, (c, p, n) in enumerate(zip(completions, problems, n_tokens, strict=True))
    ]
    outcomes = shared_pool(n_workers).map(
        score, tasks, timeout_s=[item_timeout_s(p, cfg) for p in problems], on_done=on_done
    )
    return [o.value if o.ok else RewardBreakdown.nothing(o.error.split("\n")[0]) for o in outcomes]
