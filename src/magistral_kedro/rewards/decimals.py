"""Decimals against exact answers: when a decimal may stand for a value, and to what precision.

The rule a competition judge applies, and ``math_equal`` with it:

* **A decimal is the exact number it writes.** ``0.25`` is 1/4 and ``0.333`` is 333/1000, so an
  exact reference (an integer, a fraction, a root, pi, e...) accepts a decimal only when the decimal
  equals it: ``0.25`` for 1/4 is right; ``0.333333`` for 1/3, ``1.414214`` for sqrt(2),
  ``3.14159`` for pi and ``0.5000001`` for 1/2 are wrong.
* **A rounded decimal reference states its precision.** An answer (decimal or exact) is right
  when it agrees with the reference to the reference's last digit, i.e. within half a unit
  there: ``0.333`` and 1/3 for ``0.33``; sqrt(17) for ``4.123105625617661``; not ``0.3`` for
  ``0.33``. A reference that is a simple fraction (``0.5``, ``2.5``, ``0.25``: denominator at most
  20) is taken for exact unless the problem asks to round: ``0.54`` and 13/25 are not ``0.5``.
  A complex reference is judged part by part (``0.5+0.866i``: 1/2 exactly, 0.866 rounded); a
  part that is not a plain decimal is exact (``0.5\\sqrt{3}`` is sqrt(3)/2).
* **A problem that asks to round or for a decimal** (:func:`requested_precision`) allows a decimal
  answer for an exact reference when it is the reference correctly rounded: to the places the
  problem states ("nearest hundredth": within 0.005), else to the answer's own last digit
  (``0.6667`` for 2/3, not the truncated ``0.6666``).
* **Repeating decimals** written with ``\\overline`` (``0.1\\overline{6}``), ``\\bar``,
  ``\\dot`` or an ellipsis after two periods (``0.1666...``) are the exact fractions they denote
  (:func:`expand_repeating`); ``3.14159...`` is a truncation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

#: A decimal whose lowest-terms denominator is at most this is read as exact (0.25 is 1/4).
SIMPLE_DENOMINATOR = 20
_PLAIN_DECIMAL = re.compile(r"[+-]?(\d*)\.(\d+)")
# Digit runs are bounded: a repeating decimal is short, and int() of thousands of digits raises.
_REPEATING = re.compile(
    r"(?<![\d.])(\d{0,30})\.(\d{0,30})\\(?:overline|bar|dot)\s*(?:\{\s*(\d{1,30})\s*\}|(\d))"
)
_ELLIPSIS = re.compile(r"(?<![\d.])(\d{0,30})\.(\d{1,60})\s*(?:\\[lc]?dots|\.\.\.|…)")
_PARENTHESISED = re.compile(r"([+-]?)(\d{0,30})\.(\d{0,30})\((\d{1,30})\)")
_ENGLISH_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
_WORD_NUMBERS = _ENGLISH_NUMBERS | {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5}
_NUMBER = r"(\d+|one|two|three|four|five|six|一|两|二|三|四|五)"
#: Units to round to, by name (several languages), and the decimal places they stand for.
_UNIT_PLACES = (
    (r"whole number|integer|unit[ée]|entier|entero|intero|ganze zahl|целых|个位|整数", 0),
    (r"tenths?|dixième|décima|decimo|zehntel|десятых|十分位|0\.1(?!\d)", 1),
    (r"hundredths?|centième|centésima|centesimo|hundertstel|сотых|百分位|0\.01(?!\d)", 2),
    (r"thousandths?|millième|milésima|millesimo|tausendstel|тысячных|千分位|0\.001(?!\d)", 3),
)
_PLACES_PHRASES = (
    _NUMBER + r"\s*(?:decimal places?|decimal digits?|digits? after the (?:decimal )?point|"
    r"décimales?|chiffres? après la virgule|decimales|cifre decimali|decimali|"
    r"nachkommastellen?|dezimalstellen?|знак\w* после запятой)",
    r"保留\s*" + _NUMBER + r"\s*位小数",
)
_SIGNIFICANT = (
    _NUMBER + r"\s*(?:significant (?:figures?|digits?)|chiffres significatifs|"
    r"cifras significativas|cifre significative|signifikante(?:n)? (?:stellen|ziffern)|"
    r"значащ\w* цифр\w*|位有效数字)"
)
_ASKS_TO_ROUND = re.compile(
    r"\bround(?:ed)?\b(?:\s+off)?\s+(?:to|your|the|it|all|each|answers?)|\bto the nearest\b|"
    r"\bas a decimal\b|\bin decimal form\b|\bdecimal approximation\b|"
    r"arrondi|forme décimale|valeur approchée|redonde|forma decimal|arrotond|forma decimale|"
    r"\brunde|gerundet|als dezimalzahl|四舍五入|精确到|保留|округл|десятичн|с точностью",
    re.IGNORECASE,
)


def half_unit(places: int) -> Any:
    """Half a unit of the ``places``-th decimal place (SymPy Rational): what a rounding to that
    place may be off by."""
    import sympy

    return sympy.Rational(1, 2) * sympy.Integer(10) ** -places


@dataclass(frozen=True)
class Precision:
    """A problem's request for a rounded answer: ``places`` decimals, or ``significant`` figures,
    or (both None) a decimal correct to its own last digit."""

    places: int | None = None
    significant: int | None = None

    def tolerance(self, reference: Any, answer_places: int | None) -> Any:
        """Half a unit of the last place asked for (SymPy Rational), or None if none is known."""
        places = self.places
        if places is None and self.significant is not None and reference != 0:
            magnitude = math.floor(math.log10(abs(float(reference))))
            places = self.significant - 1 - magnitude
        if places is None:
            places = answer_places
        return None if places is None else half_unit(places)


def _count(word: str) -> int:
    return int(word) if word.isdigit() else _WORD_NUMBERS[word.lower()]


def requested_precision(problem: str) -> Precision | None:
    """What rounding the problem text asks for, or None when it asks for none (then an exact
    reference needs an exact answer). English, French, Spanish, Italian, German, Chinese and
    Russian phrasings: "to the nearest hundredth", "2 decimal places", "3 significant figures",
    "as a decimal", "arrondi au centième", "保留两位小数", "до сотых"..."""
    text = problem.lower()
    for phrase in _PLACES_PHRASES:
        match = re.search(phrase, text)
        if match:
            return Precision(places=_count(match[1]))
    match = re.search(_SIGNIFICANT, text)
    if match:
        return Precision(significant=_count(match[1]))
    if not _ASKS_TO_ROUND.search(text):
        return None
    for names, places in _UNIT_PLACES:
        if re.search(r"(?:nearest|au|à l'|à la|a la|al|all'|auf|до|到)\s*(?:" + names + ")", text):
            return Precision(places=places)
    return Precision()


def decimal_places(answer: str) -> int | None:
    """Digits after the point when ``answer`` (normalised) is one plain decimal number, else None:
    ``"0.50"`` -> 2, ``"3"`` -> None, ``"(0.5, 1)"`` -> None."""
    match = _PLAIN_DECIMAL.fullmatch(answer)
    return len(match[2]) if match else None


def is_rounded(reference: Any, precision: Precision | None) -> bool:
    """Whether a decimal reference stands for a rounded value (then it states a precision) rather
    than an exact one: always when the problem asks to round; otherwise unless it is a simple
    fraction (``0.5``, ``2.5``, ``0.25``, ``0.125``: denominator at most 20 in lowest terms),
    which is far likelier the exact answer than a rounding (``0.33``, ``3.14``, ``0.866``).
    A value that is not rational (``0.5\\sqrt{3}``) is no written decimal: never rounded."""
    import sympy

    exact = rationalise(sympy.sympify(reference))
    if not exact.is_Rational:
        return False
    return precision is not None or exact.q > SIMPLE_DENOMINATOR


def decimal_value(answer: str) -> Any:
    """The exact value of a plain decimal number as written (SymPy Rational): ``"0.1"`` -> 1/10."""
    import sympy

    return sympy.Rational(answer)


def _fraction(whole: str, fixed: str, repeating: str) -> str:
    """``whole.fixed(repeating)(repeating)...`` as ``\\frac{p}{q}`` in lowest terms."""
    numerator = int(fixed + repeating) - (int(fixed) if fixed else 0)
    denominator = 10 ** len(fixed) * (10 ** len(repeating) - 1)
    numerator += int(whole or "0") * denominator
    divisor = math.gcd(numerator, denominator)
    return f"\\frac{{{numerator // divisor}}}{{{denominator // divisor}}}"


def _periodic(match: re.Match[str]) -> str:
    """``0.333...`` or ``0.1666...``: the digits end in at least two copies of a period, which
    the ellipsis repeats; anything else (``3.14159...``) is left as written (a truncation)."""
    whole, digits = match[1], match[2]
    for start in range(len(digits)):
        tail = digits[start:]
        for period in range(1, len(tail) // 2 + 1):
            if tail == tail[:period] * (len(tail) // period) and len(tail) % period == 0:
                return _fraction(whole, digits[:start], tail[:period])
    return match[0]


def expand_repeating(text: str) -> str:
    """Repeating decimals to exact fractions: ``0.1\\overline{6}``, ``0.1\\dot{6}``,
    ``0.1666\\ldots`` and (a whole answer) ``0.1(6)`` -> ``\\frac{1}{6}``."""
    text = _REPEATING.sub(lambda m: _fraction(m[1], m[2], m[3] or m[4]), text)
    text = _ELLIPSIS.sub(_periodic, text)
    whole = _PARENTHESISED.fullmatch(text.strip())  # 0.1(6): only as a whole answer
    return f"{whole[1]}{_fraction(whole[2], whole[3], whole[4])}" if whole else text


def rationalise(expr: Any) -> Any:
    """``expr`` with every SymPy Float replaced by the exact decimal it prints (15 significant
    digits, what the parser kept): a decimal inside a tuple, interval or equation is exact too."""
    import sympy

    if isinstance(expr, sympy.MatrixBase):
        return expr.applyfunc(rationalise)
    if not isinstance(expr, sympy.Basic):
        return expr
    floats = expr.atoms(sympy.Float)
    if not floats:
        return expr
    return expr.xreplace({f: sympy.Rational(str(f)) for f in floats})


def within(answer: Any, reference: Any, tolerance: Any) -> bool:
    """``|answer - reference| <= tolerance``, exactly for rationals, to 30 digits otherwise."""
    import sympy

    difference = sympy.Abs(answer - reference)
    if not difference.is_Rational:
        difference = sympy.N(difference, 30)
    return bool(difference <= tolerance)
