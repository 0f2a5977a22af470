"""Which math problems a rule-based verifier can grade (docs/recipe.md, section 4).

RL needs one checkable final answer: proofs, multiple-choice and multi-part questions, and answers
that are several values or that the verifier cannot read are dropped, each with a reason code.
The text rules are cheap and run first; the parse check runs in the rewards' worker pool, because
references from outside are untrusted LaTeX.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from magistral_kedro.rewards.answers import answer_parses
from magistral_kedro.rewards.pool import shared_pool
from magistral_kedro.tasks.schema import Problem

#: Reason codes, in the order the checks run.
REASONS = (
    "no_answer",
    "proof",
    "multiple_choice",
    "multi_part",
    "not_single_answer",
    "unparseable_answer",
)

# An instruction to prove, at the start of a sentence ("... needs to show that he ..." is not one).
_PROOF = re.compile(
    r"(?:^|[.:;!?]\s+|\n)\s*(?:prove|show that|demonstrate that|justify"
    r"|montrer que|démontrer|demuestre|dimostrare|beweisen sie|zeigen sie)\b|证明|докажите",
    re.IGNORECASE,
)
_CHOICE_QUESTION = re.compile(r"which of the following|choose the (correct|best)", re.IGNORECASE)
_OPTION = re.compile(r"(?:^|\s)\(?([A-E])[).:]\s", re.MULTILINE)
_PART = re.compile(r"(?:^|\s)\((?:[a-d]|i{1,3}|iv)\)\s", re.MULTILINE)
_SEVERAL = re.compile(r"\\text\{\s*(?:or|and)\s*\}|\s(?:or|and)\s|;|\\quad|\n")


def text_reason(problem: Problem) -> str | None:
    """The first reason code of :data:`REASONS` that the statement or answer alone gives."""
    answer = (problem.answer or "").strip()
    if not answer:
        return "no_answer"
    if _PROOF.search(problem.prompt):
        return "proof"
    letters = {m[1] for m in _OPTION.finditer(problem.prompt)}
    if (
        _CHOICE_QUESTION.search(problem.prompt)
        or len(letters) >= 3
        or re.fullmatch(r"\(?[A-E]\)?", answer)
    ):
        return "multiple_choice"
    if len(_PART.findall(problem.prompt)) >= 2:
        return "multi_part"
    if _SEVERAL.search(answer) or answer.count("=") > 1 or answer.count("\\boxed") > 1:
        return "not_single_answer"
    return None


def verifiability_reasons(
    problems: Sequence[Problem], n_workers: int = 2, timeout_s: float = 5.0
) -> list[str | None]:
    """One reason code per problem (``None``: keep). Only math problems are checked here."""
    reasons = [text_reason(p) if p.kind == "math" else None for p in problems]
    to_parse = [
        i
        for i, (p, r) in enumerate(zip(problems, reasons, strict=True))
        if p.kind == "math" and r is None
    ]
    # each distinct answer once: generated sets repeat answers (20,000 problems, 340 answers)
    answers = list(dict.fromkeys(problems[i].answer for i in to_parse))
    outcomes = shared_pool(n_workers).map(
        answer_parses, [(answer,) for answer in answers], timeout_s=timeout_s
    )
    parses = {a: o.ok and bool(o.value) for a, o in zip(answers, outcomes, strict=True)}
    for i in to_parse:
        if not parses[problems[i].answer]:
            reasons[i] = "unparseable_answer"
    return reasons
