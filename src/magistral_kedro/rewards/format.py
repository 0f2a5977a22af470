"""The format check: a completion earns any reward only if it is well formed.

Rules (docs/recipe.md, section 2): the completion starts with ``<think>`` (whitespace before it is
no content and is allowed: chat templates often emit a newline; any text before it is not), holds
exactly one ``<think>`` and exactly one ``</think>``; after ``</think>``, a math answer holds a
``\\boxed{}`` and a code answer holds a fenced code block with a language tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from magistral_kedro.rewards.answers import extract_boxed, normalize_answer

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
#: A fenced code block with a language tag: the tag is group 1, the code group 2.
FENCED_CODE = re.compile(r"```([A-Za-z0-9_+#-]+)[^\n]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class FormatResult:
    """Whether the completion is well formed, and if not, why."""

    ok: bool
    reason: str = ""


def split_thoughts(completion: str) -> tuple[str, str]:
    """(thoughts, answer): the text inside ``<think>...</think>`` and the text after it.

    Assumes a well-formed completion; on others, returns ("", completion).
    """
    if THINK_CLOSE not in completion:
        return "", completion
    head, _, answer = completion.partition(THINK_CLOSE)
    return head.replace(THINK_OPEN, "", 1).strip(), answer.strip()


def check_format(completion: str, kind: Literal["math", "code"]) -> FormatResult:
    """Check the Magistral format rules for a ``kind`` problem."""
    if not completion.lstrip().startswith(THINK_OPEN):
        return FormatResult(False, "does not start with <think>")
    opened, closed = completion.count(THINK_OPEN), completion.count(THINK_CLOSE)
    if opened != 1:
        return FormatResult(False, f"expected exactly one <think>, found {opened}")
    if closed != 1:
        return FormatResult(False, f"expected exactly one </think>, found {closed}")
    _, answer = split_thoughts(completion)
    if kind == "math" and extract_boxed(answer) is None:
        return FormatResult(False, "no \\boxed{} answer after </think>")
    if kind == "code" and not FENCED_CODE.search(answer):
        return FormatResult(False, "no fenced code block with a language tag after </think>")
    return FormatResult(True)


def final_answer(completion: str) -> str:
    """The normalised last ``\\boxed{}`` after ``</think>`` (or anywhere if there is no
    ``</think>``); ``""`` when there is none. What majority votes and answer histograms count."""
    _, summary = split_thoughts(completion)
    boxed = extract_boxed(summary or completion)
    return normalize_answer(boxed) if boxed else ""
