"""Which math problems a rule-based verifier can grade; real MATH-500 and GSM8K as a check."""

import json
from collections import Counter

import pytest

from magistral_kedro.curation.verifiability import text_reason, verifiability_reasons
from magistral_kedro.tasks import Problem
from tests.support.paths import SHARED_DATA


def problem(prompt: str, answer: str | None, kind: str = "math", **extra) -> Problem:
    if kind == "code":
        extra.setdefault("tests", [{"input": "", "output": "1"}])
    return Problem(
        id="p",
        kind=kind,
        language="en",
        difficulty=0,
        prompt=prompt,
        answer=answer,
        source="t",
        **extra,
    )


@pytest.mark.parametrize(
    ("prompt", "answer", "reason"),
    [
        ("Prove that $\\sqrt{2}$ is irrational.", "\\text{QED}", "proof"),
        ("Let $n$ be odd. Show that $n^2$ is odd.", "1", "proof"),
        ("Montrer que la somme est paire.", "0", "proof"),
        ("Which of the following is prime? (A) 4 (B) 6 (C) 7", "C", "multiple_choice"),
        ("Pick one:\n(A) 1\n(B) 2\n(C) 3\n(D) 4", "2", "multiple_choice"),
        ("What is $1+1$?", "\\text{(B)}", None),  # a text answer alone: the parse check decides
        ("(a) Find $x$. (b) Find $y$.", "3", "multi_part"),
        ("Solve $x^2 = 4$.", "2 \\text{ or } -2", "not_single_answer"),
        ("Solve for both.", "x = 1; y = 2", "not_single_answer"),
        ("Solve for both.", "x = 1, y = 2 = z", "not_single_answer"),
        # Not proofs, not several answers: a sentence that says "show that", a set, an interval.
        ("His report card needs to show that he got 80. What did he get?", "80", None),
        ("Find all roots of $x^2 - 1$.", "\\{-1, 1\\}", None),
        ("For which x is $x^2 < 1$?", "(-1, 1)", None),
    ],
)
def test_text_rules(prompt, answer, reason):
    assert text_reason(problem(prompt, answer)) == reason


def test_unparseable_answers_are_found_in_the_worker_pool_and_code_is_left_alone():
    problems = [
        problem("What is half of 3?", "\\frac{3}{2}"),
        problem("Name it.", "\\frac{3}{"),  # broken LaTeX
        problem("What is it?", "\\text{the red one}"),  # words, no value
        problem("Write a program.", None, kind="code"),
    ]
    assert verifiability_reasons(problems) == [
        None,
        "unparseable_answer",
        "unparseable_answer",
        None,
    ]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="public data sets absent (SHARED_DATA)")
def test_real_benchmarks_are_almost_all_verifiable():
    """MATH-500 and GSM8K test are curated sets of single-answer problems: a filter that drops
    more than a handful of them is too eager. MATH-500's two multiple-choice items (answers
    `\\text{(C)}` / `\\text{(E)}`, options listed in the statement) are the ones to drop."""
    counts = {}
    for name in ("math500", "gsm8k_test"):
        rows = [json.loads(line) for line in (SHARED_DATA / f"{name}.jsonl").open()]
        problems = [problem(r["problem"], str(r["answer"])) for r in rows]
        counts[name] = Counter(verifiability_reasons(problems))
    assert counts["math500"] == Counter({None: 498, "multiple_choice": 2})
    assert counts["gsm8k_test"] == Counter({None: 1319})
