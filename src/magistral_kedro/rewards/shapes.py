"""Vectors and sets in their other notations, read into one form before comparison.

* **Vectors**: ``\\langle 1, 2 \\rangle``, a one-column or one-row matrix, a scalar times a
  matrix (``2\\begin{pmatrix}1\\\\2\\end{pmatrix}``) and unit vectors (``3\\mathbf{i} +
  4\\hat{j}``) are the tuple ``(1, 2)``...; order always matters.
* **Sets of reals**: inequalities (``-1 < x \\le 3``, ``x \\neq 1``, ``x < 2`` or ``x > 5``),
  set-builder forms (``\\{x \\mid x < 2\\}``, ``\\{x \\in \\mathbb{R} : x \\ge 0\\}``),
  ``\\setminus``, and the real line (``\\mathbb{R}``, ``(-\\infty, \\infty)``, "all real
  numbers") are the SymPy sets they describe, compared exactly.
"""

from __future__ import annotations

import re
from typing import Any

from magistral_kedro.rewards.answers import normalize_answer, parse_answer
from magistral_kedro.rewards.lists import _top_level_split

_MATRIX = re.compile(r"\\begin\{[pbvBV]?matrix\}(.*?)\\end\{[pbvBV]?matrix\}", re.DOTALL)
_UNIT = re.compile(
    r"\\(?:mathbf|hat|vec|boldsymbol|bm|overrightarrow)\s*\{?\s*(?:\\(?:hat|mathbf)\s*\{?\s*)?"
    r"([ijk])\s*\}?\s*\}?"
)


def _matrix_as_tuple(body: str) -> list[str] | None:
    rows = [row for row in re.split(r"\\\\", body) if row.strip()]
    cells = [[cell.strip() for cell in row.split("&")] for row in rows]
    if len(rows) == 1:
        return cells[0]
    return [row[0] for row in cells] if all(len(row) == 1 for row in cells) else None


def _unit_vector(text: str) -> list[str] | None:
    """``3\\mathbf{i} - \\hat{j} + 2\\vec{k}`` -> ``['3', '-1', '2']``."""
    if not _UNIT.search(text):
        return None
    marked = _UNIT.sub(lambda m: f"@{m[1]}", text.replace(" ", ""))
    terms = re.findall(r"([+-]?[^+\-@]*)@([ijk])", marked)
    if re.sub(r"[+-]?[^+\-@]*@[ijk]", "", marked).strip() or len({t[1] for t in terms}) != len(
        terms
    ):
        return None
    size = 3 if any(axis == "k" for _, axis in terms) else 2
    coefficients = ["0"] * size
    for coefficient, axis in terms:
        value = coefficient.lstrip("+") or "1"
        coefficients["ijk".index(axis)] = "-1" if value == "-" else f"({value})"
    return coefficients


_VECTOR_NAME = re.compile(
    r"^\s*(?:\\(?:vec|mathbf|overrightarrow|bm|boldsymbol|hat)\s*\{?\s*\w+\s*\}?|[A-Za-z])\s*=(?!=)"
)
_FACTOR = re.compile(r"[-+]?[\w\\{}^/. ]*")


def _cells(body: str, scaled: bool) -> list[str] | None:
    """The entries of ``\\langle..\\rangle``, a one-row or one-column matrix, ``[a, b, c]``
    (three entries or more: never an interval), or ``(a, b)`` behind a scalar factor."""
    from magistral_kedro.rewards.lists import outer

    angled = re.fullmatch(r"\\langle(.*)\\rangle", body, flags=re.DOTALL)
    if angled:
        return [cell.strip() for cell in _top_level_split(angled[1], ",")]
    matrix = _MATRIX.fullmatch(body)
    if matrix:
        return _matrix_as_tuple(matrix[1])
    square = outer(body, ("[", "]"))
    entries = None if square is None else _top_level_split(square, ",")
    if entries is not None and len(entries) > 2:
        return [cell.strip() for cell in entries]
    parenthesised = outer(body) if scaled else None
    entries = None if parenthesised is None else _top_level_split(parenthesised, ",")
    return [cell.strip() for cell in entries] if entries and len(entries) > 1 else None


def as_tuple(text: str) -> str | None:
    """A vector in any of the module's notations as ``(a, b, ...)``, a scalar factor multiplied
    in and a leading name (``\\vec{v} =``) dropped; None when ``text`` is not one (or already
    is a plain tuple)."""
    text = re.sub(r"\\\\(?=[a-zA-Z])", r"\\", text.strip().strip("$").strip())  # "\\left" typed
    text = re.sub(r"\\(?:left|right)(?![a-z])", "", text)
    text = _VECTOR_NAME.sub("", text).strip()
    start = re.search(r"\\langle|\\begin\{|[(\[]", text)
    if start is None:
        coefficients = _unit_vector(text)
        return None if coefficients is None else "(" + ", ".join(coefficients) + ")"
    factor = re.sub(r"\\cdot\s*$", "", text[: start.start()]).strip()
    if factor and factor != "-" and not (_FACTOR.fullmatch(factor) and re.search(r"\w", factor)):
        return None
    cells = _cells(text[start.start() :].strip(), scaled=bool(factor))
    if cells is None:
        return None
    factor = "-1" if factor == "-" else factor
    return "(" + ", ".join(f"{factor} \\cdot ({c})" if factor else c for c in cells) + ")"


_REALS = re.compile(
    r"\\mathbb\{?R\}?|\\R(?![a-z])|\\Bbb\{?R\}?|\(-\\infty,\\infty\)|"
    r"(?:the)?(?:set of)?allreal(?:numbers|s)|(?:the)?realnumbers|\\text\{?allrealnumbers\}?",
    re.IGNORECASE,
)
_IN_REALS = re.compile(r"(?:[a-zA-Z]\\in)?(?:" + _REALS.pattern + ")?", re.IGNORECASE)
_BUILDER = re.compile(r"\\\{(.*?)(?:\\mid|\||:)(.*)\\\}", re.DOTALL)
_INEQUALITY = re.compile(r"<|>|\\[lg]eq?(?:slant)?(?![a-z])|\\neq?(?![a-z])|≤|≥|≠")


def _condition_set(condition: str) -> Any:
    """The set of reals where a one-variable condition holds, or None."""
    import sympy

    pieces = _top_level_split(condition, r"\s*(?:\bor\b|\\lor|\\vee|\\cup)\s*")
    sets = []
    for piece in pieces:
        clauses = _top_level_split(piece, r"\s*(?:\band\b|\\land|\\wedge|,)\s*")
        clauses = [c for c in clauses if not _IN_REALS.fullmatch(normalize_answer(c))]
        parsed = [parse_answer(clause.strip(), normalise=True) for clause in clauses]
        if not all(parsed) or not all(isinstance(p[0], sympy.Basic) for p in parsed):
            return None
        relations = [p[0] for p in parsed]
        if not all(isinstance(r, sympy.core.relational.Relational | sympy.And) for r in relations):
            return None
        symbols = set().union(*(r.free_symbols for r in relations))
        if len(symbols) != 1 or any(r.atoms(sympy.core.function.AppliedUndef) for r in relations):
            return None
        symbol = symbols.pop()
        sets.append(sympy.Intersection(*(r.as_set() for r in relations)).subs(symbol, symbol))
    return sympy.Union(*sets)


def real_set(text: str) -> tuple[Any, bool] | None:
    """(the SymPy set ``text`` describes, whether it used one of this module's notations), or
    None when ``text`` is no set of reals."""
    import sympy

    raw = re.sub(r"\\(?:text|mathrm|mbox)\s*\{([^{}]*)\}", r" \1 ", text).replace("$", " ")
    plain = re.sub(r"^[a-zA-Z]\\in", "", normalize_answer(raw))
    plain = plain.replace("\\backslash", "\\setminus")
    plain = re.sub(r"^((?:" + _REALS.pattern + r"))-(?=\\\{|\[|\()", r"\1\\setminus", plain)
    if "\\setminus" in plain:
        left, _, right = plain.partition("\\setminus")
        sets = real_set(left), real_set(right)
        if sets[0] is None or sets[1] is None:
            return None
        return sympy.Complement(sets[0][0], sets[1][0]), True
    if _REALS.fullmatch(plain):
        return sympy.Reals, True
    builder = _BUILDER.fullmatch(plain)
    condition = None
    if builder and re.fullmatch(r"[a-zA-Z](?:\\in(?:" + _REALS.pattern + "))?", builder[1]):
        condition = builder[2]
    elif _INEQUALITY.search(raw):
        condition = re.sub(r"^\s*[a-zA-Z]\s*\\in", "", raw)
    if condition is not None:
        found = _condition_set(condition)
        return None if found is None else (found, True)
    return _written_set(plain)


def _written_set(plain: str) -> tuple[Any, bool] | None:
    """An interval, union or listed set as math-verify reads it (the usual notation)."""
    import sympy

    if not re.fullmatch(r"[(\[].*[)\]]|\\\{.*\\\}|.*\\cup.*", plain):
        return None  # no interval, union or set: not worth a parse
    parsed = parse_answer(plain, normalise=False)
    return (parsed[0], False) if parsed and isinstance(parsed[0], sympy.Set) else None


def set_verdict(pred: str, gold: str) -> bool | None:
    """Whether two sets of reals are equal, when at least one is written in another notation."""
    import sympy

    gold_set, pred_set = real_set(gold), real_set(pred)
    if gold_set is None or pred_set is None or not (gold_set[1] or pred_set[1]):
        return None
    difference = sympy.SymmetricDifference(gold_set[0], pred_set[0])
    return (
        bool(difference.simplify() == sympy.EmptySet)
        if difference.is_empty is None
        else bool(difference.is_empty)
    )
