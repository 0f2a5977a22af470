"""Answers with several parts: alternatives, lists of roots, ``\\pm``, named components, ratios.

* **Hedging**: one answer that offers several distinct values ("A or maybe B", "A, actually B",
  "A? no, B") for a reference with one value is wrong, whichever value is right. A list is no
  hedge when the reference has several values (roots, a set, ``\\pm``).
* **Plus-minus** anywhere in an expression (``\\frac{1 \\pm \\sqrt5}{2}``, ``(1 \\pm \\sqrt2)^2``)
  stands for the two values with ``+`` and with ``-`` (``\\mp`` the other way); they compare as a
  set with the roots written out.
* **Named components** (``x = 1, y = 2``) against a tuple: by name where the reference names
  them (``(x, y) = (1, 2)``, ``y = 2, x = 1``), by position otherwise.
* **Ratios** of any length keep their order; a common factor does not matter (``2:4:6`` is
  ``1:2:3``, ``3:2:1`` is not).
"""

from __future__ import annotations

import re
from collections.abc import Callable

Compare = Callable[[str, str], bool]

_OPEN, _CLOSE = "([{", ")]}"
_HEDGE_WORDS = (
    r"or|maybe|perhaps|possibly|probably|actually|no|wait|rather|alternatively|either|else|"
    r"otherwise|correction|sorry|oops|i\s+mean|not\s+sure"
)
_JOIN_WORDS = r"and|i\.\s*e\.?|that\s+is|which\s+is|namely"
_TEXT = re.compile(r"\\(?:text|mathrm|mbox|textbf|textit)\s*\{([^{}]*)\}")


def _plain(text: str) -> str:
    """``\\text{ or }`` -> `` or ``; ``$``, ``\\quad`` and math delimiters dropped."""
    text = re.sub(r"(?<=\d)(?:\{,\}|,)\s*\\[!,]\s*(?=\d{3})", ",", _TEXT.sub(r" \1 ", text))
    text = re.sub(r"\$|\\[()\[\]]|\\q?quad|\\[,;:!]|\\(?:left|right|[bB]igg?)(?![a-z])", " ", text)
    return re.sub(r"\\(?:lor|vee)(?![a-z])", " or ", text)


def _top_level_split(text: str, separators: str) -> list[str]:
    """Split at ``separators`` (a regex) outside brackets; a comma inside a number written with
    thousands separators (``1,000``) does not split."""
    parts, depth, start, pos = [], 0, 0, 0
    pattern = re.compile(separators, re.IGNORECASE)
    while pos < len(text):
        char = text[pos]
        if (char in _OPEN and text[pos - 1 : pos] != "\\") or text.startswith("\\{", pos):
            depth += 1
        elif (char in _CLOSE and text[pos - 1 : pos] != "\\") or text.startswith("\\}", pos):
            depth = max(depth - 1, 0)
        elif depth == 0:
            match = pattern.match(text, pos)
            thousands = (
                char == ","
                and text[pos - 1 : pos].isdigit()
                and re.match(r",\d{3}(?!\d)", text[pos:])
            )
            if match and match.end() > pos and not thousands:
                parts.append(text[start:pos])
                start = pos = match.end()
                continue
        pos += 1
    parts.append(text[start:])
    return parts


def _clean(part: str) -> str:
    part = part.strip(" ,;:?!.")
    while part.count("(") < part.count(")") and part.endswith(")"):
        part = part[:-1].strip()
    while part.count("(") > part.count(")") and part.startswith("("):
        part = part[1:].strip()
    return part


def outer(text: str, brackets: tuple[str, str] = ("(", ")")) -> str | None:
    """The inside of ``text`` when one pair of ``brackets`` encloses all of it, else None."""
    text = text.strip()
    opening, closing = brackets
    if not (text.startswith(opening) and text.endswith(closing)):
        return None
    inner = text[len(opening) : len(text) - len(closing)]
    depth = 0
    for pos, char in enumerate(inner):
        if char in _OPEN and inner[pos - 1 : pos] != "\\":
            depth += 1
        elif char in _CLOSE and inner[pos - 1 : pos] != "\\":
            depth -= 1
            if depth < 0:
                return None
    return inner if depth == 0 else None


def alternatives(text: str) -> list[str]:
    """The values an answer offers, in order: ``5 \\text{ or maybe } 6`` -> ``['5', '6']``,
    ``x = 2, y = 3`` -> two parts, ``\\{1, 2\\}`` -> ``['1', '2']``, ``(1, 2)`` -> one part."""
    text = _plain(text).strip()
    text = outer(text, ("\\{", "\\}")) or outer(text, ("{", "}")) or text
    hedged = r"\(\s*(?=(?:" + _HEDGE_WORDS + r")(?![A-Za-z]))"
    text = re.sub(hedged, " ", text, flags=re.IGNORECASE)  # 12 (or 13): the bracket is no tuple
    text = re.sub(r"\(([^()]*)\?\s*\)", r", \1", text)  # 7 (8?): a second guess
    words = (
        r"\s*(?:[,;?]\s*)?(?<![A-Za-z\\])(?:" + _HEDGE_WORDS + "|" + _JOIN_WORDS + r")(?![A-Za-z])"
    )
    separators = words + r"[\s,;?]*|\s*[,;?]\s*"
    parts = [_clean(part) for part in _top_level_split(text, separators)]
    return [part for part in parts if part]


def is_single_value(gold: str) -> bool:
    """Whether a reference is one value (a number, an expression, a tuple, an interval, a
    ratio), not a list, a set, a union or a ``\\pm`` of several."""
    if re.search(r"\\[pm]m(?![a-z])|±|∓|\\cup|\\\{|pmatrix|\\\\", gold):
        return False
    return len(alternatives(gold)) == 1


def _components(gold: str) -> int:
    """How many entries a bracketed reference has (``(1, 2)``: 2), else 1."""
    plain = _plain(gold).strip()
    inner = outer(plain) or outer(plain, ("[", "]"))
    return 1 if inner is None else len(_top_level_split(inner, ","))


def hedge_verdict(pred: str, gold: str, equal: Compare) -> bool | None:
    """False when ``pred`` offers several distinct values for the single value ``gold``; the
    verdict on the value when it says one value several ways (``\\frac12``, i.e. ``0.5``);
    None when ``pred`` offers one value, or the entries of a tuple without its brackets."""
    if not is_single_value(gold):
        return None
    parts = alternatives(pred)
    if len(parts) < 2:
        return None
    scalars = not any(outer(part) or outer(part, ("[", "]")) for part in parts)
    if scalars and len(parts) == _components(gold) > 1:
        return None  # 1, 2 for (1, 2): the tuple's entries, compared as a tuple
    if any(not equal(part, parts[0]) for part in parts[1:]):
        return False
    return equal(parts[0], gold)


def _signs(text: str) -> list[str]:
    """``\\pm``/``\\mp`` written out: both sign choices (linked, as a formula means them)."""
    marks = r"\\pm(?![a-z])|±|\\mp(?![a-z])|∓"
    if not re.search(marks, text):
        return [text]
    plus = re.sub(r"\\mp(?![a-z])|∓", "-", re.sub(r"\\pm(?![a-z])|±", "+", text))
    minus = re.sub(r"\\mp(?![a-z])|∓", "+", re.sub(r"\\pm(?![a-z])|±", "-", text))
    return [plus, minus]


def plus_minus_verdict(pred: str, gold: str, equal: Compare) -> bool | None:
    """Both sides as sets of values, ``\\pm`` written out; None when neither has a ``\\pm``."""
    if not any(re.search(r"\\[pm]m(?![a-z])|±|∓", side) for side in (pred, gold)):
        return None
    values = [
        [value for part in alternatives(side) for value in _signs(_named_value(part))]
        for side in (pred, gold)
    ]
    if not all(values) or max(map(len, values)) > 16:
        return None
    pred_values, gold_values = values
    return all(any(equal(p, g) for p in pred_values) for g in gold_values) and all(
        any(equal(p, g) for g in gold_values) for p in pred_values
    )


_NAMED = re.compile(r"\s*([A-Za-z](?:_\{?\w+\}?)?)\s*=\s*(.+)", re.DOTALL)


def _named_value(part: str) -> str:
    match = _NAMED.fullmatch(part)
    return match[2] if match else part


def _named_components(text: str) -> tuple[list[str] | None, list[str]] | None:
    """(names or None, values) of ``x = 1, y = 2``, ``(x, y) = (1, 2)`` or ``(1, 2)``."""
    plain = _plain(text).strip()
    sides = _top_level_split(plain, r"=")
    tuple_eq = [outer(side) for side in sides] if len(sides) == 2 else [None]
    if all(tuple_eq):
        names = [n.strip() for n in _top_level_split(str(tuple_eq[0]), r",")]
        values = [v.strip() for v in _top_level_split(str(tuple_eq[1]), r",")]
        if len(names) == len(values) and all(_NAMED.fullmatch(f"{n}=0") for n in names):
            return names, values
        return None
    parts = alternatives(plain)
    matches = [_NAMED.fullmatch(part) for part in parts]
    if len(parts) > 1 and all(matches):
        names = [m[1] for m in matches if m]
        return (names, [m[2] for m in matches if m]) if len(set(names)) == len(names) else None
    bracketed = outer(plain)
    if bracketed:
        values = [v.strip() for v in _top_level_split(bracketed, r",")]
        return (None, values) if len(values) > 1 else None
    return None


_NAME = r"[A-Za-z](?:_\{?\w\}?)?"
_NAMED_TUPLE = re.compile(r"(?<![A-Za-z\\])\(\s*(" + _NAME + r"(?:\s*,\s*" + _NAME + r")+)\s*\)")


def tuple_names(problem: str) -> list[str] | None:
    """The names of the tuple a problem asks for (``Find the ordered pair $(a, b)$``: a, b),
    the last one it writes; None when it writes none. ``f(x, y)`` is a function, not a tuple."""
    found = _NAMED_TUPLE.findall(problem[-5000:])
    return [name.strip() for name in found[-1].split(",")] if found else None


def named_verdict(
    pred: str, gold: str, equal: Compare, names: list[str] | None = None
) -> bool | None:
    """Named components against a tuple: by name when both sides name the same components
    (the reference, or else the problem's ``names``), by position otherwise; None unless the
    answer or the reference names its components."""
    pred_parts, gold_parts = _named_components(pred), _named_components(gold)
    if gold_parts is not None and gold_parts[0] is None and names:
        gold_parts = (names, gold_parts[1]) if len(names) == len(gold_parts[1]) else gold_parts
    if (
        pred_parts is None
        or gold_parts is None
        or (pred_parts[0] is None and gold_parts[0] is None)
    ):
        return None
    (pred_names, pred_values), (gold_names, gold_values) = pred_parts, gold_parts
    if len(pred_values) != len(gold_values):
        return False
    if pred_names and gold_names and sorted(pred_names) == sorted(gold_names):
        by_name = dict(zip(pred_names, pred_values, strict=True))
        pred_values = [by_name[name] for name in gold_names]
    return all(equal(p, g) for p, g in zip(pred_values, gold_values, strict=True))


def ratio_terms(text: str) -> list[str] | None:
    """The terms of a ratio of three or more terms ``a:b:c`` (``\\colon`` too), or None (two
    terms are a fraction to math-verify, or a time like ``12:00``)."""
    plain = re.sub(r"\\colon|::?", ":", _plain(text)).strip()
    if ":" not in plain or "=" in plain:
        return None
    terms = [term.strip() for term in _top_level_split(plain, r":")]
    return terms if len(terms) > 2 and all(terms) else None
