"""Math answers: extraction from ``\\boxed{}``, normalisation, and equivalence.

``math_equal`` decides in three layers, cheapest first:

1. rule-based normalisation (spacing, ``\\dfrac``, ``\\left``, units in ``\\text{}``, thousands
   separators, ``x =`` prefixes...) and string equality;
2. math-verify (SymPy underneath) on both sides: numbers, fractions, expressions equal after
   simplification, equations, tuples, intervals, sets, matrices;
3. a guard against math-verify's float tolerance: two exact numbers must be exactly equal
   (``1/2004!`` is not ``1/2006!``), and a constraint like ``x + z = 1`` is not the number ``1``.

Parsing runs in a worker process under a hard wall-clock limit (never SIGALRM, which fails outside
the main thread) and an address-space limit, so ``10^{10^{10^{10}}}``, deep nesting or megabytes of
malformed LaTeX return False instead of hanging or crashing the caller.
"""

from __future__ import annotations

import logging
import re
from typing import Any

logger = logging.getLogger(__name__)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
#: Longer answers are not parsed (no real final answer is this long)...
MAX_ANSWER_CHARS = 2000
#: ...nor longer texts (whole responses whose answer math-verify looks for).
MAX_TEXT_CHARS = 100_000
#: math_equal's default wall-clock limit per comparison.
DEFAULT_TIMEOUT_S = 5.0


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
    r"dollars?|cents?|units?|degrees?|meters?|inches|inch|feet|foot|ft|miles?|mph|"
    r"sq\s*units|square\s*units|cubic\s*units|points?|people|students?|apples?)"
)


def normalize_answer(answer: str) -> str:
    """Remove what never changes an answer's value; equivalence beyond this is SymPy's job.

    Drops ``$``, spaces, ``\\!``/``\\,``/``\\;``/``\\quad``, ``\\left``/``\\right``, unit words in
    ``\\text{}``, a trailing period, thousands separators (``1,000``, ``1\\,000``), ``^\\circ``
    and a leading ``x =``; turns ``\\dfrac``/``\\tfrac`` into ``\\frac``, shorthand ``\\frac34`` and
    ``\\sqrt3`` into braced forms, ``bmatrix`` into ``pmatrix``, ``\\%`` into ``%``.
    """
    text = answer.strip()
    text = text.split("\\approx")[0].replace("\\$", "")
    text = re.sub(r"\\\\(?=[a-zA-Z])", r"\\", text)  # "\\dfrac" typed with an escaped backslash
    text = text.replace("$", "").replace("\\(", "").replace("\\)", "").strip()
    # Thousands separators, only in a plain number: "1,000", "1{,}000", "1\\,000", "1 000".
    if re.fullmatch(r"-?\d{1,3}((,|\{,\}|\\,| )\d{3})+(\.\d+)?", text):
        text = re.sub(r"\{,\}|\\,|[, ]", "", text)
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", text)
    text = re.sub(r"\\sqrt(\d+|[a-zA-Z])", r"\\sqrt{\1}", text)
    text = re.sub(r"\b[bBvV]?matrix\b", "pmatrix", text)
    text = re.sub(r"\\text\{\s*" + _UNIT_WORDS + r"\s*\}", "", text)
    text = re.sub(r"(?<=[\d}])\s*\\(?:text|mbox)\{[^{}]*\}\s*$", "", text)  # 17 \text{ words}
    text = re.sub(r"\\(?:mbox|mathrm|textbf|text)\{([^{}]*)\}", r"\1", text)
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


def _is_prose(text: str) -> bool:
    """A whole response or sentence (math-verify finds the answer in it), not a bare answer."""
    return (
        len(text) > 200
        or any(mark in text.replace("\\$", "") for mark in ("$", "\\(", "\\["))
        or re.search(r"[A-Za-z]{3,}[ ,.:;]+[A-Za-z]{2,}", re.sub(r"\\[a-zA-Z]+", "", text))
        is not None
    )


def _as_latex(answer: str) -> str:
    """Wrap a bare answer in ``$...$``: bare text is otherwise parsed as a Python expression."""
    if "$" in answer or "\\boxed" in answer or "\\(" in answer or "\\[" in answer:
        return answer
    return f"${answer}$"


def _parse(answer: str, normalise: bool) -> list[Any]:
    """math-verify's parse of a whole text (it finds the answer in it), or of a bare answer put in
    ``$...$`` (bare text is otherwise read as a Python expression), normalised or as given.

    A bare answer that math-verify reads only in part (it stops at LaTeX it does not know, so
    ``1 - \\frac{1}{\\mathrm{e}}`` would read as ``1``) gives nothing rather than a wrong value.
    """
    from math_verify import parse

    answer = _unwrap(answer)
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


def _exactly_different(gold: Any, pred: Any) -> bool:
    """True when two exact numbers differ (math-verify compares numbers with a float tolerance)."""
    import sympy

    if not (isinstance(gold, sympy.Expr) and isinstance(pred, sympy.Expr)):
        return False
    if not (gold.is_number and pred.is_number):
        return False
    if gold.has(sympy.Float) or pred.has(sympy.Float):
        return False  # a decimal on either side: the tolerance is the point
    return bool(sympy.simplify(gold - pred) != 0)


def _constraint_vs_value(gold: Any, pred: Any) -> bool:
    """True when one side is an equation between expressions (``x + z = 1``), the other a value."""
    import sympy

    def named(lhs: Any) -> bool:  # x, f(x), |AB|, (p, q): a name for the value on the right
        if isinstance(lhs, sympy.Tuple | tuple):
            return all(named(item) for item in lhs)
        return isinstance(
            lhs, sympy.Symbol | sympy.Abs | sympy.Function | sympy.core.function.AppliedUndef
        )

    def constraint(expr: Any) -> bool:
        return isinstance(expr, sympy.Equality) and not named(expr.lhs)

    return constraint(gold) != constraint(pred) and not (
        isinstance(gold, sympy.Equality) and isinstance(pred, sympy.Equality)
    )


def answer_parses(answer: str) -> bool:
    """Whether the verifier reads ``answer`` as a value at all (math-verify gives back only the
    raw string for what it cannot read, e.g. ``\\frac{3}{``): a reference it cannot read can
    never be matched. Unbounded like the parser: call inside a worker with limits."""
    try:
        parsed = _parse(answer, normalise=True) if answer.strip() else []
        return any(not isinstance(value, str) for value in parsed)
    except Exception:  # malformed LaTeX, recursion: unreadable
        return False


def math_equal_in_process(pred: str, gold: str) -> bool:
    """:func:`math_equal` without the process boundary: call only where a time limit already
    holds (inside a sandboxed worker)."""
    if len(pred) > MAX_TEXT_CHARS or len(gold) > MAX_TEXT_CHARS:
        return False
    if pred.strip() == gold.strip():
        return bool(gold.strip())
    boxed = extract_boxed(pred)
    bare_pred = boxed if boxed is not None else pred
    if not _is_prose(_unwrap(bare_pred)) and normalize_answer(bare_pred) == normalize_answer(gold):
        return bool(normalize_answer(gold))
    from math_verify import verify

    # Both as given (math-verify reads whole responses, several boxes, "percent"...), then the
    # normalised reference against the normalised last box (shorthand LaTeX, units, bmatrix...).
    for pred_text, normalise in ((pred, False), (bare_pred, True)):
        try:
            gold_parsed, pred_parsed = _parse(gold, normalise), _parse(pred_text, normalise)
            if (
                gold_parsed
                and pred_parsed
                and verify(gold_parsed, pred_parsed, timeout_seconds=None)
                and not _exactly_different(gold_parsed[0], pred_parsed[0])
                and not _constraint_vs_value(gold_parsed[0], pred_parsed[0])
            ):
                return True
        except Exception as error:  # malformed LaTeX, recursion, memory: a "no", never a crash
            logger.debug("math_equal(%r, %r) failed: %r", pred[:80], gold[:80], error)
    return False


def math_equal(pred: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether the predicted answer ``pred`` equals the reference ``gold``.

    ``pred`` may be a bare answer or a text whose last ``\\boxed{}`` holds it. Never raises; a
    comparison that exceeds ``timeout_s`` (or its memory limit) counts as not equal.
    """
    if len(pred) > MAX_TEXT_CHARS or len(gold) > MAX_TEXT_CHARS:
        return False
    from magistral_kedro.rewards.pool import in_worker, shared_pool

    if in_worker():  # already inside a sandboxed worker with its own limits
        return math_equal_in_process(pred, gold)
    outcome = shared_pool().run(math_equal_in_process, (pred, gold), timeout_s=timeout_s)
    return bool(outcome.value) if outcome.ok else False
