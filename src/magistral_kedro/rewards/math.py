"""Math answer equivalence: whether a predicted answer equals the reference, as a judge decides.

``math_equal`` decides in three layers, cheapest first:

1. rule-based normalisation (``rewards.answers``: spacing, ``\\dfrac``, ``\\left``, units in
   ``\\text{}`` on either side, thousands separators, ``x =`` prefixes, ``∞``, repeating
   decimals...) and string equality;
2. math-verify (SymPy underneath) on both sides: numbers, fractions, expressions equal after
   simplification, equations, tuples, intervals, sets, matrices; ``i`` is the imaginary unit
   when it is the only symbol on both sides;
3. the judge's rules where math-verify's float tolerance would say yes too easily: a decimal is
   the exact number it writes unless a precision is in play (``rewards.decimals``), two exact
   numbers must be exactly equal (``1/2004!`` is not ``1/2006!``), and a constraint like
   ``x + z = 1`` is not the number ``1``.

Parsing runs in a worker process under a CPU-time limit (never SIGALRM, which fails outside the
main thread; CPU time, so that a busy host slows a comparison without failing it), a wall-clock
backstop and an address-space limit, so ``10^{10^{10^{10}}}``, deep nesting or megabytes of
malformed LaTeX return False instead of hanging or crashing the caller.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from magistral_kedro.rewards.answers import (
    extract_boxed,
    is_bare_answer,
    load_math_verify,
    normalize_answer,
    parse_answer,
)
from magistral_kedro.rewards.decimals import (
    Precision,
    decimal_places,
    decimal_value,
    half_unit,
    is_rounded,
    rationalise,
    within,
)
from magistral_kedro.rewards.forms import plain_words
from magistral_kedro.rewards.lists import tuple_names
from magistral_kedro.rewards.pool import in_worker, shared_pool
from magistral_kedro.rewards.rules import shape_verdict

logger = logging.getLogger(__name__)

#: Longer texts are not compared (whole responses whose answer math-verify looks for).
MAX_TEXT_CHARS = 100_000
#: math_equal's default limit per comparison, in CPU seconds of its worker (``rewards.pool``).
DEFAULT_TIMEOUT_S = 5.0


def _nonzero(difference: Any) -> bool:
    """Whether an exact number is not zero. Evaluation to 30 certain digits decides at once (it
    also separates ``1/2004!`` from ``1/2006!``); an expression it cannot tell from zero within
    100 digits is zero. ``simplify`` would take seconds on nested radicals."""
    import sympy
    from sympy.core.evalf import PrecisionExhausted

    try:
        return bool(difference.evalf(30, strict=True) != 0)
    except PrecisionExhausted:
        return False
    except (TypeError, ValueError, ArithmeticError):
        return bool(sympy.simplify(difference) != 0)


def _parts_different(gold: Any, pred: Any) -> bool | None:
    """:func:`_exactly_different` for tuples, sets, intervals and matrices; None for others."""
    import sympy

    if isinstance(gold, sympy.MatrixBase) and isinstance(pred, sympy.MatrixBase):
        pairs = zip(gold, pred, strict=False)
        return gold.shape == pred.shape and any(_exactly_different(g, p) for g, p in pairs)
    if isinstance(gold, sympy.FiniteSet) and isinstance(pred, sympy.FiniteSet):
        return any(all(_exactly_different(g, p) for p in pred.args) for g in gold.args)
    if type(gold) is type(pred) and isinstance(gold, sympy.Tuple | sympy.Interval):
        pairs = zip(gold.args, pred.args, strict=False)
        return len(gold.args) == len(pred.args) and any(_exactly_different(g, p) for g, p in pairs)
    return None


def _exactly_different(gold: Any, pred: Any) -> bool:
    """True when two exact values differ anywhere, in tuples, sets, intervals and matrices too
    (math-verify compares numbers with a float tolerance)."""
    import sympy

    parts = _parts_different(gold, pred)
    if parts is not None:
        return parts
    if not (isinstance(gold, sympy.Expr) and isinstance(pred, sympy.Expr)):
        return False
    if not (gold.is_number and pred.is_number) or gold == pred:
        return False
    if gold.has(sympy.Float) or pred.has(sympy.Float):
        return False  # a decimal under a stated precision: the tolerance is the point
    if not (gold.is_finite and pred.is_finite):
        return True  # oo, -oo, zoo: equal only when identical
    return _nonzero(gold - pred)


def _names_a_value(lhs: Any) -> bool:
    """``x``, ``f(x)``, ``|AB|``, ``(p, q)``, or a ratio or product of names (``V_1:V_2``,
    ``\\frac{NO}{BO}``): the left side of an equation that names the value on its right."""
    import sympy

    if isinstance(lhs, sympy.Tuple | tuple):
        return all(_names_a_value(item) for item in lhs)
    if isinstance(lhs, sympy.Pow):
        return bool(lhs.exp == -1) and _names_a_value(lhs.base)
    if isinstance(lhs, sympy.Mul):
        return all(_names_a_value(factor) for factor in lhs.args)
    return isinstance(
        lhs, sympy.Symbol | sympy.Abs | sympy.Function | sympy.core.function.AppliedUndef
    )


def _constraint_vs_value(gold: Any, pred: Any) -> bool:
    """True when one side is an equation between expressions (``x + z = 1``), the other a value."""
    import sympy

    def constraint(expr: Any) -> bool:
        return isinstance(expr, sympy.Equality) and not _names_a_value(expr.lhs)

    return constraint(gold) != constraint(pred) and not (
        isinstance(gold, sympy.Equality) and isinstance(pred, sympy.Equality)
    )


def _symbols(expr: Any) -> set[Any]:
    return set(getattr(expr, "free_symbols", set()))


def _comparable(gold: Any, pred: Any) -> tuple[Any, Any]:
    """The parsed reference and prediction as a judge reads them: an equation that names the
    value (``A:B = 7:32``, ``z = 3+4i``) is that value when the prediction is a value; ``i`` is
    the imaginary unit when it is the only symbol on both sides (math-verify keeps it a symbol,
    so ``i(3-4i)`` would not equal ``4+3i``)."""
    import sympy

    pred_is_value = isinstance(pred, sympy.Basic) and not isinstance(
        pred, sympy.core.relational.Relational
    )
    if pred_is_value and isinstance(gold, sympy.Equality) and _names_a_value(gold.lhs):
        gold = gold.rhs
    symbols = _symbols(gold) | _symbols(pred)
    if symbols and {symbol.name for symbol in symbols} == {"i"}:
        unit = dict.fromkeys(symbols, sympy.I)
        gold, pred = (x.xreplace(unit) if hasattr(x, "xreplace") else x for x in (gold, pred))
    return gold, pred


def _real_number(value: Any) -> bool:
    import sympy

    return isinstance(value, sympy.Expr) and bool(value.is_number) and value.is_real is True


def _complex_verdict(
    gold: Any, pred: Any, gold_text: str, precision: Precision | None
) -> bool | None:
    """A complex decimal reference (``0.5+0.866i``), part by part: a rounded decimal part states
    the precision of the reference's longest decimal, any other part must be exact (an
    irrational one too, decimal coefficient or not: ``0.5\\sqrt{3}`` is sqrt(3)/2)."""
    import sympy

    places = [len(match[1]) for match in re.finditer(r"\d*\.(\d+)", gold_text)]
    if not places or not (gold.is_number and pred.is_number) or sympy.im(gold) == 0:
        return None
    tolerance = half_unit(max(places))
    answer = rationalise(pred)
    for gold_part, pred_part in (
        (sympy.re(gold), sympy.re(answer)),
        (sympy.im(gold), sympy.im(answer)),
    ):
        exact = rationalise(gold_part)
        if gold_part.has(sympy.Float) and is_rounded(abs(exact), precision):
            if not within(pred_part, exact, tolerance):
                return False
        elif _nonzero(exact - pred_part):
            return False
    return True


def _decimal_verdict(
    gold: Any, pred: Any, gold_text: str, pred_text: str, precision: Precision | None
) -> bool | None:
    """The verdict of the decimal rule (``rewards.decimals``) when a precision is in play between
    two numbers: the reference is a rounded decimal (real, or complex part by part), or the
    problem asks to round and the prediction is a decimal. None otherwise: then a decimal is the
    exact number it writes."""
    import sympy

    if isinstance(gold, sympy.Expr) and isinstance(pred, sympy.Expr) and gold.has(sympy.Float):
        verdict = _complex_verdict(gold, pred, gold_text, precision)
        if verdict is not None:
            return verdict
    if not (_real_number(gold) and _real_number(pred)):
        return None
    pred_places = decimal_places(pred_text)
    answer = decimal_value(pred_text) if pred_places is not None else rationalise(pred)
    gold_places = decimal_places(gold_text)
    if gold_places is not None:
        written = decimal_value(gold_text)
        if is_rounded(written, precision):
            return within(answer, written, half_unit(gold_places))
    if precision is None or pred_places is None or gold.has(sympy.Float):
        return None
    tolerance = precision.tolerance(gold, pred_places)
    return None if tolerance is None else within(answer, gold, tolerance)


def _equivalent(
    gold: str, pred: str, normalise: bool, texts: tuple[str, str], precision: Precision | None
) -> bool:
    """One reading of both sides (normalised or as given), compared as a judge would."""
    gold_parsed, pred_parsed = parse_answer(gold, normalise), parse_answer(pred, normalise)
    if not (gold_parsed and pred_parsed):
        return False
    gold_value, pred_value = _comparable(gold_parsed[0], pred_parsed[0])
    verdict = _decimal_verdict(gold_value, pred_value, *texts, precision)
    if verdict is not None:
        return verdict
    gold_value, pred_value = rationalise(gold_value), rationalise(pred_value)
    return (
        bool(load_math_verify().verify([gold_value], [pred_value], timeout_seconds=None))
        and not _exactly_different(gold_value, pred_value)
        and not _constraint_vs_value(gold_value, pred_value)
    )


#: How deep the shape rules may compare parts of parts (a tuple of lists of ``\\pm``...).
_MAX_DEPTH = 3
#: A text this short is one answer in words, not a response to search for the answer.
_MAX_SHORT_TEXT = 60


def _shape_verdict(
    bare_pred: str, gold: str, precision: Precision | None, depth: int, problem: str | None
) -> bool | None:
    """``rewards.rules``' verdict on the answer's shape, parts compared one level down."""
    if depth >= _MAX_DEPTH:
        return None

    def equal(part: str, gold_part: str) -> bool:
        return _judge(part, gold_part, precision, depth + 1, None)

    try:
        names = tuple_names(problem) if problem else None
        return shape_verdict(bare_pred, gold, equal, names)
    except Exception as error:  # malformed LaTeX, recursion: the general comparison decides
        logger.debug("shape rules on (%r, %r) failed: %r", bare_pred[:80], gold[:80], error)
        return None


def math_equal_in_process(
    pred: str, gold: str, precision: Precision | None = None, problem: str | None = None
) -> bool:
    """:func:`math_equal` without the process boundary: call only where a time limit already
    holds (inside a sandboxed worker)."""
    return _judge(pred, gold, precision, 0, problem)


def _judge(
    pred: str, gold: str, precision: Precision | None, depth: int, problem: str | None
) -> bool:
    if len(pred) > MAX_TEXT_CHARS or len(gold) > MAX_TEXT_CHARS:
        return False
    if pred.strip() == gold.strip():
        return bool(gold.strip())
    boxed = extract_boxed(pred)
    bare_pred = boxed if boxed is not None else pred
    bare = is_bare_answer(bare_pred)
    # A few words are one answer ("no real solutions", "one hundred two"), not a response.
    short = bare or (len(bare_pred) <= _MAX_SHORT_TEXT and plain_words(bare_pred) is not None)
    gold_boxes = gold.count("\\boxed")
    rule_gold = extract_boxed(gold) if gold_boxes == 1 else gold
    verdict = None
    if short and rule_gold is not None and gold_boxes <= 1:
        verdict = _shape_verdict(bare_pred, rule_gold, precision, depth, problem)
    if verdict is not None:
        return verdict
    gold_text = normalize_answer(gold)
    pred_text = normalize_answer(bare_pred) if bare else ""
    if bare and pred_text == gold_text:
        return bool(gold_text)
    # Both as given (math-verify reads whole responses, several boxes, "percent"...), then the
    # normalised reference against the normalised last box (shorthand LaTeX, units, bmatrix...).
    for pred_source, normalise in ((pred, False), (bare_pred, True)):
        texts = (gold_text, pred_text if pred_source is bare_pred else "")
        try:
            if _equivalent(gold, pred_source, normalise, texts, precision):
                return True
        except Exception as error:  # malformed LaTeX, recursion, memory: a "no", never a crash
            logger.debug("math_equal(%r, %r) failed: %r", pred[:80], gold[:80], error)
    return False


def math_equal(
    pred: str,
    gold: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    precision: Precision | None = None,
    problem: str | None = None,
) -> bool:
    """Whether the predicted answer ``pred`` equals the reference ``gold``.

    ``pred`` may be a bare answer or a text whose last ``\\boxed{}`` holds it. ``precision`` is
    what the problem asks for (:func:`~magistral_kedro.rewards.decimals.requested_precision`):
    with it, a correctly rounded decimal answers an exact reference; without it, an exact
    reference needs an exact answer (``rewards.decimals`` states the rule). ``problem`` is the
    problem's text: the names of the tuple it asks for (``the ordered pair (a, b)``) match an
    answer's named components (``b = 2, a = 1``) to a reference that names none. Never raises;
    a comparison that exceeds ``timeout_s`` CPU seconds (or its memory limit) counts as not
    equal.
    """
    if len(pred) > MAX_TEXT_CHARS or len(gold) > MAX_TEXT_CHARS:
        return False
    if in_worker():  # already inside a sandboxed worker with its own limits
        return math_equal_in_process(pred, gold, precision, problem)
    arguments = (pred, gold, precision, problem)
    outcome = shared_pool().run(math_equal_in_process, arguments, timeout_s=timeout_s)
    return bool(outcome.value) if outcome.ok else False
