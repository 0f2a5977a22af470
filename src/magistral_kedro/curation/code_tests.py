"""Code problems' tests checked against their accepted solutions (docs/recipe.md, section 4).

Every accepted solution runs on every test in the rewards sandbox. A test on which the solutions
disagree (or one of them fails) is dropped; where they all agree with each other but not with the
stored output, the stored output is replaced. A problem left with fewer than ``min_tests`` tests
gets new ones from its input generator when it has one (inputs from the generator, outputs from the
agreeing solutions), else it is flagged. Every change is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field
from tqdm.auto import tqdm

from magistral_kedro.config import config
from magistral_kedro.rewards.code import LANGUAGE_ALIASES, run_code
from magistral_kedro.rewards.pool import shared_pool
from magistral_kedro.tasks.schema import Problem, TestCase


@config
class CodeTestConfig:
    """Limits of the solution runs and how many tests a problem should have."""

    min_tests: Annotated[int, Field(ge=1)] = 20
    time_limit_s: Annotated[float, Field(gt=0)] = 4.0
    memory_mb: Annotated[int, Field(gt=0)] = 300
    compile_timeout_s: Annotated[float, Field(gt=0)] = 10.0


@dataclass(frozen=True)
class TestChange:
    """One change to a problem's tests."""

    __test__ = False  # not a pytest class
    problem_id: str
    test_index: int  # in the stored tests (dropped / fixed), or in the new list (added)
    action: Literal["dropped", "fixed", "added"]
    old_output: str | None
    new_output: str | None
    detail: str = ""


@dataclass(frozen=True)
class CodeRepair:
    """A problem after the check: its tests repaired, the changes, and what is still wrong."""

    problem: Problem
    changes: list[TestChange] = field(default_factory=list)
    flag: Literal["", "unverified", "too_few_tests", "no_valid_tests"] = ""
    detail: str = ""


def _language(name: str) -> str | None:
    # Several accepted programs of a language are stored as python, python_2, ...
    return LANGUAGE_ALIASES.get(name.rsplit("_", 1)[0].lower())


def _outputs(problem: Problem, inputs: Sequence[str], cfg: CodeTestConfig) -> dict[str, list]:
    """Per solution, what it printed on each input (``None`` where it failed, with no output)."""
    solutions = {name: code for name, code in (problem.solutions or {}).items() if _language(name)}
    outputs: dict[str, list] = {}
    for name, code in solutions.items():
        result = run_code(
            code,
            _language(name) or name,
            [{"input": i, "output": ""} for i in inputs],
            time_limit_s=cfg.time_limit_s,
            memory_mb=cfg.memory_mb,
            compile_timeout_s=cfg.compile_timeout_s,
            max_tests=len(inputs),
            stop_on_failure=False,
        )
        runs = result.tests + [None] * (len(inputs) - len(result.tests))  # compile error: none ran
        outputs[name] = [
            t.stdout if t is not None and t.status in ("pass", "wrong_answer") else None
            for t in runs
        ]
    return outputs


def _agreed(outputs: dict[str, list], index: int) -> tuple[str | None, str]:
    """The output every solution printed on test ``index``, or None and why not."""
    printed = {name: out[index] for name, out in outputs.items()}
    failed = sorted(name for name, text in printed.items() if text is None)
    if failed:
        return None, f"failed: {', '.join(failed)}"
    distinct = {tuple(str(text).split()) for text in printed.values()}
    if len(distinct) > 1:
        return None, "solutions disagree: " + "; ".join(
            f"{n}={str(t)[:40]!r}" for n, t in printed.items()
        )
    return next(iter(printed.values())), ""


def _new_inputs(problem: Problem, count: int, seed: int, cfg: CodeTestConfig) -> list[str]:
    """``count`` inputs from the problem's generator, run in the sandbox, seeds from ``seed``."""
    result = run_code(
        problem.input_generator or "",
        "python",
        [{"input": str(seed + i), "output": ""} for i in range(count)],
        time_limit_s=cfg.time_limit_s,
        memory_mb=cfg.memory_mb,
        max_tests=count,
        stop_on_failure=False,
    )
    return [t.stdout for t in result.tests if t.status in ("pass", "wrong_answer") and t.stdout]


def repair_code_problem(problem: Problem, cfg: CodeTestConfig, seed: int) -> CodeRepair:
    """Check ``problem``'s tests against its solutions; fix, drop and add tests as above."""
    if not problem.solutions or not any(_language(name) for name in problem.solutions):
        return CodeRepair(problem, flag="unverified", detail="no runnable accepted solution")
    stored = list(problem.tests or [])
    outputs = _outputs(problem, [t.input for t in stored], cfg)
    kept: list[TestCase] = []
    changes: list[TestChange] = []
    for index, test in enumerate(stored):
        agreed, why = _agreed(outputs, index)
        if agreed is None:
            changes.append(TestChange(problem.id, index, "dropped", test.output, None, why))
        elif agreed.split() != test.output.split():
            changes.append(TestChange(problem.id, index, "fixed", test.output, agreed))
            kept.append(TestCase(input=test.input, output=agreed))
        else:
            kept.append(test)
    missing = cfg.min_tests - len(kept)
    if missing > 0 and problem.input_generator:
        seen = {t.input for t in kept}
        fresh = [
            i for i in dict.fromkeys(_new_inputs(problem, 2 * missing, seed, cfg)) if i not in seen
        ]
        new_outputs = _outputs(problem, fresh, cfg)
        for index, text in enumerate(fresh):
            agreed, _ = _agreed(new_outputs, index)
            if agreed is not None and len(kept) < cfg.min_tests:
                changes.append(TestChange(problem.id, len(kept), "added", None, agreed))
                kept.append(TestCase(input=text, output=agreed))
    repaired = problem.model_copy(update={"tests": kept})
    if not kept:
        return CodeRepair(repaired, changes, "no_valid_tests", "no test survived the check")
    if len(kept) < cfg.min_tests:
        why = f"{len(kept)} tests < {cfg.min_tests}" + (
            "" if problem.input_generator else ", no input generator"
        )
        return CodeRepair(repaired, changes, "too_few_tests", why)
    return CodeRepair(repaired, changes)


def repair_code_problems(
    problems: Sequence[Problem], cfg: CodeTestConfig, seed: int, n_workers: int = 2
) -> list[CodeRepair]:
    """:func:`repair_code_problem` for each problem, in the rewards' worker pool, order kept.
    A problem whose check crashes or overruns its time is flagged ``unverified``, never lost."""

    def budget(p: Problem) -> float:
        runs = len(p.solutions or {}) * (2 * len(p.tests or []) + 2 * cfg.min_tests + 1)
        return (
            30.0
            + len(p.solutions or {}) * cfg.compile_timeout_s * 2
            + runs * (cfg.time_limit_s + 1)
        )

    with tqdm(total=len(problems), desc="code tests", unit="problem", leave=False) as bar:
        outcomes = shared_pool(n_workers).map(
            repair_code_problem,
            [(p, cfg, seed + i) for i, p in enumerate(problems)],
            timeout_s=[budget(p) for p in problems],
            on_done=bar.update,
        )
    return [
        o.value
        if o.ok
        else CodeRepair(p, flag="unverified", detail=f"check failed: {o.error[:200]}")
        for p, o in zip(problems, outcomes, strict=True)
    ]
