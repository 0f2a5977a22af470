"""Math answers as written: the last ``\\boxed{}``, normalisation, and math-verify's reading.

:func:`normalize_answer` removes what never changes an answer's value (spacing, ``\\dfrac``,
``\\left``, units in ``\\text{}`` on either side, thousands separators, ``x =`` prefixes, ``∞``,
repeating decimals...); :func:`parse_answer` is math-verify's (SymPy's) reading of a bare answer or
of a whole response. Parsing has no limit of its own: ``rewards.math`` runs it in a worker process
under a CPU-time and a memory limit.
"""

from __future__ import annotations

import logging
import re
from functools import cache
from typing import Any

from magistral_kedro.rewards.decimals import expand_repeating
from magistral_kedro.rewards.forms import degrees_in_functions, expand_scale_words

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
#: Longer answers are not parsed (no real final answer is this long).
MAX_ANSWER_CHARS = 2000


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces handled.

    Returns None when there is no box or its braces never close.
    """
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for pos in range(start, len(text)):
            char = text[pos]
            escaped = text[pos - 1] == "\\"
            if char == "{" and not escaped:
                depth += 1
            elif char == "}" and not escaped:
                depth -= 1
                if depth == 0:
                    return text[start:pos].strip()
    return None


_UNIT_WORDS = (
    r"(?:cm|mm|km|m|kg|g|mg|s|sec|seconds?|minutes?|min|hours?|h|days?|weeks?|years?|"
    r"dollars?|cents?|units?|degrees?|meters?|metres?|centimeters?|inches|inch|feet|foot|ft|"
    r"miles?|mph|km/h|m/s|sq\s*units|square\s*units|cubic\s*units|points?|people|students?|"
    r"apples?)"
)
#: Unit words that may follow a number bare ("72 degrees"): no single letters, which are variables.
_BARE_UNITS = (
    r"(?:cm|mm|km|kg|mg|sec|seconds?|minutes?|min|hours?|days?|weeks?|years?|dollars?|cents?|"
    r"units?|degrees?|meters?|metres?|centimeters?|inches|inch|feet|foot|ft|miles?|mph|"
    r"square\s+units|cubic\s+units)"
)
_POWER = r"(?:\^\s*\{?\s*[23]\s*\}?|[²³])?"  # cm^2, cm^{3}, cm²
_TEXT_COMMAND = r"\\(?:text|mbox|textbf|textit|mathrm)"  # \text and its look-alikes
_TEXT = _TEXT_COMMAND + r"\s*\{"
_SPACING = r"(?:\s|~|\\[,;:! ])*"


def _sign_of_infinity(match: re.Match[str]) -> str:
    return "-" if match[1].lower() == "negative" else ""


def _strip_units(text: str) -> str:
    """``\\text{5 cm}`` -> ``5``; ``12\\text{ cm}^2``, ``7\\,\\mathrm{m}``, ``72 degrees`` -> the
    number: a unit never changes the value a judge compares."""
    after_number = r"(?<=[\d}])\s*"
    unit_like = r"(?:" + _UNIT_WORDS + r"|[A-Za-z]{2}[A-Za-z\s./]*)"
    celsius = r"(?:\\(?:text|mathrm)\s*\{\s*[CF]\s*\}|[CF](?![A-Za-z]))"  # 25^\circ C, 25°F
    patterns = (
        (r"(?:\^\s*\{?\s*\\circ\s*\}?|°)\s*" + celsius, ""),
        (_TEXT + r"\s*([-+]?\d[\d.,]*)" + _SPACING + unit_like + _POWER + r"\s*\}", r"\1"),
        (_TEXT + _SPACING + _UNIT_WORDS + r"\s*\}\s*" + _POWER, ""),
        # 17 \text{ words}; \mathrm only for words (\mathrm{e} is a number).
        (after_number + r"\\(?:text|mbox|textbf|textit)\{[^{}]*\}\s*" + _POWER + r"\s*$", ""),
        (
            after_number + r"\\mathrm\{" + _SPACING + r"[A-Za-z]{2}[^{}]*\}\s*" + _POWER + r"\s*$",
            "",
        ),
        (r"(?<=[\d}])\s+" + _BARE_UNITS + r"\s*" + _POWER + r"\s*$", ""),
    )
    for pattern, replacement in patterns:
        text = re.sub(pattern, replacement, text)
    return text


def normalize_answer(answer: str) -> str:
    """Remove what never changes an answer's value; equivalence beyond this is SymPy's job.

    Drops ``$``, spaces, ``\\!``/``\\,``/``\\;``/``\\quad``, ``\\left``/``\\right``, units (in
    ``\\text{}`` on either side of the number, or a bare unit word), a trailing period, thousands
    separators (``1,000``, ``1\\,000``), ``^\\circ`` and a leading ``x =``; turns
    ``\\dfrac``/``\\tfrac`` into ``\\frac``, shorthand ``\\frac34`` and ``\\sqrt3`` into braced
    forms, ``bmatrix`` into ``pmatrix``, ``\\%`` into ``%``, ``∞``, ``+\\infty`` and
    ``infinity`` into ``\\infty``, and repeating decimals (``0.\\overline{3}``) into fractions.
    """
    text = answer.strip()
    if len(text) > MAX_ANSWER_CHARS:  # no real answer is this long; keep the rules linear-time
        return re.sub(r"\s+", "", text)
    text = text.split("\\approx")[0].replace("\\$", "")
    text = re.sub(r"\\\\(?=[a-zA-Z])", r"\\", text)  # "\\dfrac" typed with an escaped backslash
    text = text.replace("$", "").replace("\\(", "").replace("\\)", "").strip()
    text = text.replace("∞", "\\infty ").replace("−", "-")
    # Thousands separators, only in a plain number: "1,000", "1{,}000", "1\\,000", "1 000".
    if re.fullmatch(r"-?\d{1,3}((,|\{,\}|\\,| )\d{3})+(\.\d+)?", text):
        text = re.sub(r"\{,\}|\\,|[, ]", "", text)
    text = degrees_in_functions(expand_scale_words(expand_repeating(text)))
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", text)
    text = re.sub(r"\\sqrt(\d+|[a-zA-Z])", r"\\sqrt{\1}", text)
    text = re.sub(r"\b[bBvV]?matrix\b", "pmatrix", text)
    text = _strip_units(text)
    text = re.sub(_TEXT_COMMAND + r"\{([^{}]*)\}", r"\1", text)
    signed = r"(?<![A-Za-z])(negative|positive)\s*(?=infinity)"
    text = re.sub(signed, _sign_of_infinity, text, flags=re.IGNORECASE)
    text = re.sub(
        r"(?<![A-Za-z\\])(?:infinity|infty)(?![A-Za-z])|\\infin(?![a-z])",
        r"\\infty",
        text,
        flags=re.I,
    )
    text = re.sub(r"(^|[(\[,{])\s*\+\s*(?=\\infty)", r"\1", text)  # +\infty is \infty
    text = re.sub(r"\^\s*\{?\\circ\}?|°", "", text)
    text = re.sub(r"\\left|\\right|\\!|\\,|\\;|\\:|\\quad|\\qquad|~", "", text)
    text = re.sub(r"\\?%$", "", text)  # 50\% is graded as 50, the paper's convention
    text = re.sub(r"\s+", "", text)
    text = re.sub(r"^[a-zA-Z]=(?=[^=]+$)", "", text)  # x=3 -> 3 (one variable, one equation)
    return text.rstrip(".")


_MATH_DELIMITERS = re.compile(r"^\s*(\$\$|\$|\\\(|\\\[)(.*?)(\$\$|\$|\\\)|\\\])\s*$", re.DOTALL)


def _unwrap(text: str) -> str:
    """``$x$``, ``$$x$$``, ``\\(x\\)``, ``\\[x\\]`` -> ``x`` (a bare answer in math mode)."""
    match = _MATH_DELIMITERS.match(text)
    return match[2] if match and "$" not in match[2] else text


_UNIT_TEXT = re.compile(_TEXT + r"\s*[^{}\s]*(\s+[^{}\s]+)?\s*\}")


def _is_prose(text: str) -> bool:
    """A whole response or sentence (math-verify finds the answer in it), not a bare answer
    (one or two words in ``\\text{}``, like ``square units``, do not make prose)."""
    formula = re.sub(r"\\[a-zA-Z]+", "", _UNIT_TEXT.sub(" ", text))
    return (
        len(text) > 200
        or any(mark in text.replace("\\$", "") for mark in ("$", "\\(", "\\["))
        or re.search(r"[A-Za-z]{3,}[ ,.:;]+[A-Za-z]{2,}", formula) is not None
    )


def is_bare_answer(text: str) -> bool:
    """Whether ``text`` is a bare answer (``3``, ``$\\frac12$``, ``12 \\text{square units}``), not
    a whole response or sentence."""
    return not _is_prose(_unwrap(text))


def _as_latex(answer: str) -> str:
    """Wrap a bare answer in ``$...$``: bare text is otherwise parsed as a Python expression."""
    if "$" in answer or "\\boxed" in answer or "\\(" in answer or "\\[" in answer:
        return answer
    return f"${answer}$"


class _KnownNoise(logging.Filter):
    """math-verify warns once per process that its own timeout is off: ours is the worker's
    deadline, so with a pool of replaceable workers the line would fill the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


@cache
def load_math_verify() -> Any:
    """The math_verify module, its known warning filtered once (at the loggers that emit it)."""
    import math_verify

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_KnownNoise())
    return math_verify


def parse_answer(answer: str, normalise: bool) -> list[Any]:
    """math-verify's parse of a whole text (it finds the answer in it), or of a bare answer put in
    ``$...$`` (bare text is otherwise read as a Python expression), normalised or as given.

    Repeating decimals become fractions either way (math-verify would read ``0.\\overline{3}``
    as 0). A bare answer that math-verify reads only in part (it stops at LaTeX it does not
    know, so ``1 - \\frac{1}{\\mathrm{e}}`` would read as ``1``) gives nothing rather than a
    wrong value.
    """
    parse = load_math_verify().parse
    answer = degrees_in_functions(expand_scale_words(expand_repeating(_unwrap(answer))))
    if _is_prose(answer):
        return list(parse(answer, parsing_timeout=None))
    if len(answer) > MAX_ANSWER_CHARS:
        return []
    text = normalize_answer(answer) if normalise else answer.strip()
    parsed = list(parse(_as_latex(text), parsing_timeout=None))
    squeezed = re.sub(r"\s", "", text)
    read = re.sub(r"\s", "", str(parsed[-1])) if parsed else ""
    if read and squeezed.startswith(read) and len(read) < 0.8 * len(squeezed):
        return []  # stopped early: the rest of the answer was not read
    return parsed


def answer_parses(answer: str) -> bool:
    """Whether the verifier reads ``answer`` as a value at all (math-verify gives back only the
    raw string for what it cannot read, e.g. ``\\frac{3}{``): a reference it cannot read can
    never be matched. Unbounded like the parser: call inside a worker with limits."""
    try:
        parsed = parse_answer(answer, normalise=True) if answer.strip() else []
        return any(not isinstance(value, str) for value in parsed)
    except Exception:  # malformed LaTeX, recursion: unreadable
        return False
