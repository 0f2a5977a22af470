"""The judge's rules for answer shapes math-verify misreads, decided before it is asked.

Each rule owns one kind of answer (``rewards.towers``: huge exact values; ``rewards.forms``:
numerals, number words and text; ``rewards.lists``: alternatives, ``\\pm``, named components,
ratios; ``rewards.shapes``: vectors and sets). :func:`shape_verdict` returns the first rule's
verdict, or None when no rule applies (then the general comparison decides).
"""

from __future__ import annotations

import re
from typing import Any

from magistral_kedro.rewards.answers import normalize_answer, parse_answer
from magistral_kedro.rewards.forms import (
    based_number,
    fraction_from_words,
    number_from_words,
    plain_words,
    roman_value,
    says_empty,
)
from magistral_kedro.rewards.lists import (
    Compare,
    _top_level_split,
    hedge_verdict,
    named_verdict,
    plus_minus_verdict,
    ratio_terms,
)
from magistral_kedro.rewards.shapes import as_tuple, set_verdict
from magistral_kedro.rewards.towers import tower_verdict

_TEXT = re.compile(r"\\(?:text|mathrm|mbox|textbf|textit)\s*\{([^{}]*)\}")


def _bare(text: str) -> str:
    return normalize_answer(_TEXT.sub(r"\1", text))


def _integer(text: str) -> int | None:
    return int(text) if re.fullmatch(r"-?\d{1,200}", text) else None


def _roman_verdict(pred_text: str, roman: int) -> bool | None:
    value = roman_value(pred_text)
    if value is None and re.fullmatch(r"[IVXLCDMivxlcdm]+", pred_text):
        return False  # Roman letters that are no standard numeral (IVX, IIII)
    value = _integer(pred_text) if value is None else value
    return None if value is None else value == roman


def numeral_verdict(pred: str, gold: str) -> bool | None:
    """Roman numerals (when the reference is one) and base subscripts, by value."""
    gold_text, pred_text = _bare(gold), _bare(pred)
    roman = roman_value(gold_text)
    if roman is not None:
        return _roman_verdict(pred_text, roman)
    gold_based, pred_based = based_number(gold_text), based_number(pred_text)
    if gold_based is not None:
        if pred_based is not None:
            return pred_based[0] == gold_based[0]
        return _unmarked_verdict(pred_text, *gold_based)
    value = _integer(gold_text)
    return None if pred_based is None or value is None else value == pred_based[0]


def _unmarked_verdict(pred_text: str, value: int, base: int) -> bool | None:
    """A number with no subscript against one in ``base``: read in that base (the problem asked
    for it); digits that base has not (``27`` for ``123_4``) are no answer in it."""
    if not re.fullmatch(r"[0-9A-Za-z]{1,200}", pred_text):
        return None
    try:
        return int(pred_text, base) == value
    except ValueError:
        return False


def _number(words: str | None) -> str | None:
    """The number a phrase names (``twenty-one``, ``two thirds``) as LaTeX, or None."""
    if not words:
        return None
    whole = number_from_words(words)
    return str(whole) if whole is not None else fraction_from_words(words)


def words_verdict(pred: str, gold: str, equal: Compare) -> bool | None:
    """Number words as numbers; "no solution" and its kin as one answer; other text answers
    word by word."""
    if says_empty(gold) or says_empty(pred):
        return says_empty(gold) and says_empty(pred)
    gold_words, pred_words = plain_words(gold), plain_words(pred)
    numbers = [_number(words) for words in (pred_words, gold_words)]
    if any(number is not None for number in numbers):
        pred_number, gold_number = (
            number if number is not None else text
            for number, text in zip(numbers, (pred, gold), strict=True)
        )
        return equal(pred_number, gold_number)
    if gold_words and pred_words and len(gold_words) > 1 and gold_words == pred_words:
        return True
    return None


def _exact_zero(value: Any) -> bool:
    import sympy

    return bool(value == 0) or bool(sympy.nsimplify(value) == 0)


def ratio_verdict(pred: str, gold: str) -> bool | None:
    """Two ratios of the same length are equal when proportional term by term, in order."""
    import sympy

    pred_terms, gold_terms = ratio_terms(pred), ratio_terms(gold)
    if pred_terms is None or gold_terms is None:
        return None
    if len(pred_terms) != len(gold_terms):
        return False  # both three terms or more: a missing or extra term
    values = []
    for term in pred_terms + gold_terms:
        parsed = parse_answer(term, normalise=True)
        if not parsed or not isinstance(parsed[0], sympy.Expr):
            return None
        values.append(parsed[0])
    p, g = values[: len(pred_terms)], values[len(pred_terms) :]
    if any(_exact_zero(value) for value in values):
        return None
    return all(_exact_zero(sympy.expand(p[i] * g[0] - g[i] * p[0])) for i in range(1, len(p)))


def shape_verdict(
    pred: str, gold: str, equal: Compare, names: list[str] | None = None
) -> bool | None:
    """The first rule that applies to this pair's shape; None when none does. ``equal`` compares
    two parts (the full comparison, one level down); ``names`` are the components the problem
    names (:func:`~magistral_kedro.rewards.lists.tuple_names`)."""
    for verdict in (
        lambda: tower_verdict(_bare(pred), _bare(gold)),
        lambda: words_verdict(pred, gold, equal),
        lambda: numeral_verdict(pred, gold),
        lambda: named_verdict(pred, gold, equal, names),
        lambda: hedge_verdict(pred, gold, equal),
        lambda: plus_minus_verdict(pred, gold, equal),
        lambda: ratio_verdict(pred, gold),
        lambda: _vector_verdict(pred, gold, equal),
        lambda: set_verdict(pred, gold),
    ):
        found = verdict()
        if found is not None:
            return found
    return None


def _entries(text: str) -> list[str] | None:
    inner = re.fullmatch(r"\s*\((.*)\)\s*", text, flags=re.DOTALL)
    return None if inner is None else [e.strip() for e in _top_level_split(inner[1], ",")]


def _vector_verdict(pred: str, gold: str, equal: Compare) -> bool | None:
    """Vectors in any notation, entry by entry in order (never as intervals)."""
    pred_tuple, gold_tuple = as_tuple(pred), as_tuple(gold)
    if pred_tuple is None and gold_tuple is None:
        return None
    pred_entries = _entries(pred_tuple or _bare(pred))
    gold_entries = _entries(gold_tuple or _bare(gold))
    if pred_entries is None or gold_entries is None:
        return None
    return len(pred_entries) == len(gold_entries) and all(
        equal(p, g) for p, g in zip(pred_entries, gold_entries, strict=True)
    )
