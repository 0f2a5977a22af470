"""Math answers: extraction from ``\\boxed{}`` and light normalisation."""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces handled.

    Returns None when there is no box or its braces never close.
    """
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for pos in range(start, len(text)):
            char = text[pos]
            if char == "\\":  # an escaped brace \{ or \} does not count
                continue
            if char == "{" and text[pos - 1] != "\\":
                depth += 1
            elif char == "}" and text[pos - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return text[start:pos].strip()
    return None


def normalize_answer(answer: str) -> str:
    """Remove what never changes an answer's value: spaces, ``$``, ``\\!``, ``\\left``/``\\right``,
    and ``\\dfrac``/``\\tfrac`` spellings. Equivalence beyond this is the math verifier's job.
    """
    text = answer.strip().strip("$")
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = re.sub(r"\\left|\\right|\\!|\\,|\\;|\s+", "", text)
    return text
