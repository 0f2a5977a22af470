"""Exact comparison of towers of powers too large to write out (``10^{10^{10}}``, ``4^{2^{99}}``).

SymPy would evaluate ``10^{10^{10}}`` digit by digit and run out of memory; a size guard would
refuse it. Here a value built from positive integers with ``^`` and products is kept as an
integer while it stays small (at most :data:`MAX_BITS` bits) and otherwise as ``r^E``: ``r`` an
integer that is no perfect power and ``E`` an exponent, itself an integer or such a power. That
form is unique for every value above :data:`MAX_BITS` bits (unique factorisation), so two such
values are equal exactly when their forms are; deciding never needs more than a few megabits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Union

#: Integers up to this many bits are computed outright (a few milliseconds).
MAX_BITS = 1 << 20
_TOKEN = re.compile(r"\s*(\d+|\^|\(|\)|\{|\}|-|\\[dt]?frac|\\cdot|\\times|\*)")


@dataclass(frozen=True)
class Power:
    """``root ** exponent`` with ``root`` no perfect power; always more than MAX_BITS bits."""

    root: int
    exponent: Value


Value = Union[int, Power]  # noqa: UP007 - a recursive alias needs the old spelling


class _Unsupported(Exception):
    """The text is no tower of integers, or a step would need more than this exact form."""


def _bits(value: Value) -> float:
    """An upper bound of log2(value), infinite when the exponent is itself a Power."""
    if isinstance(value, int):
        return float(value.bit_length())
    if isinstance(value.exponent, int):
        return value.exponent * value.root.bit_length()
    return float("inf")


def _perfect_power(n: int) -> tuple[int, int]:
    """(r, k) with ``r ** k == n`` and ``r`` no perfect power (n >= 2)."""
    from sympy import perfect_power

    found = perfect_power(n)
    if not found:
        return n, 1
    root, k = int(found[0]), int(found[1])
    inner, j = _perfect_power(root)
    return inner, k * j


def _multiply(a: Value, b: Value) -> Value:
    if isinstance(a, int) and isinstance(b, int):
        if a.bit_length() + b.bit_length() > MAX_BITS:
            raise _Unsupported("product too large")
        return a * b
    first, second = (_as_power(value) for value in (a, b))
    if first is None or second is None:
        return b if a == 1 else a if b == 1 else _unsupported("a product with 0")
    same_root = first.root == second.root
    if same_root and isinstance(first.exponent, int) and isinstance(second.exponent, int):
        return _power(first.root, first.exponent + second.exponent)  # r^E * r^F = r^(E+F)
    raise _Unsupported("a product of towers of different roots")


def _as_power(value: Value) -> Power | None:
    """``value`` as ``r^E`` (an integer too: ``8`` is ``2^3``); None for 0 and 1."""
    if isinstance(value, Power):
        return value
    if value < 2:
        return None
    root, k = _perfect_power(value)
    return Power(root, k)


def _reciprocal(value: Value) -> Value:
    """1/value for a tower (``r^E`` -> ``r^(-E)``); small values are the general comparison's."""
    if isinstance(value, Power) and isinstance(value.exponent, int):
        return Power(value.root, -value.exponent)
    raise _Unsupported("the reciprocal of a small number or of a tower of towers")


def _unsupported(why: str) -> Value:
    raise _Unsupported(why)


def _size(base: int, exponent: int) -> float:
    """log2(base ** exponent) for base >= 2, exponent >= 0; infinite past 2**64 bits."""
    return math.inf if exponent.bit_length() > 64 else exponent * math.log2(base)


def _power(base: Value, exponent: Value) -> Value:
    if isinstance(base, int) and base in (0, 1):
        if base == 0 and exponent == 0:
            raise _Unsupported("0^0")
        return base
    if exponent == 0:
        return 1
    if isinstance(base, int) and isinstance(exponent, int) and exponent < 0:
        if _size(base, -exponent) <= MAX_BITS + 64:
            raise _Unsupported("a small fraction: the general comparison's")
        root, k = _perfect_power(base)
        return Power(root, _multiply(k, exponent))  # 2^{-2^{100}}: a tiny, exact r^(-E)
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and _size(base, exponent) <= MAX_BITS + 64  # at most a few megabits
    ):
        value = base**exponent
        if value.bit_length() <= MAX_BITS:
            return value  # an integer exactly when it has at most MAX_BITS bits
    if isinstance(base, Power):  # (r^E)^F = r^(E*F)
        return Power(base.root, _multiply(base.exponent, exponent))
    root, k = _perfect_power(base)
    return Power(root, _multiply(k, exponent))


class _Parser:
    """``term := atom ('^' term)?`` (right-associative), ``product := term (('\\cdot'|...)
    term)*``, ``atom := integer | '-' term | '\\frac' atom atom | '(' product ')' | '{'
    product '}'``; juxtaposition is no product, a minus only negates an integer."""

    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match:
                if text[pos:].strip():
                    raise _Unsupported(f"unexpected {text[pos : pos + 10]!r}")
                break
            self.tokens.append(match[1])
            pos = match.end()
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise _Unsupported("unexpected end")
        self.pos += 1
        return token

    def product(self) -> Value:
        value = self.term()
        while self._peek() in ("\\cdot", "\\times", "*"):
            self._take()
            value = _multiply(value, self.term())
        return value

    def term(self) -> Value:
        base = self.atom()
        if self._peek() == "^":
            self._take()
            return _power(base, self.term())
        return base

    def atom(self) -> Value:
        token = self._take()
        if token == "-":  # a negative exponent: 2^{-2^{100}}
            value = self.term()
            return -value if isinstance(value, int) else _unsupported("minus a tower")
        if token.endswith("frac"):
            numerator, denominator = self.atom(), self.atom()
            return _multiply(numerator, _reciprocal(denominator))
        if token.isdigit():
            if len(token) > 2000:
                raise _Unsupported("literal too long")
            return int(token)
        closing = {"(": ")", "{": "}"}.get(token)
        if closing is None:
            raise _Unsupported(f"unexpected {token!r}")
        value = self.product()
        if self._take() != closing:
            raise _Unsupported("unbalanced brackets")
        return value

    def parse(self) -> Value:
        value = self.product()
        if self._peek() is not None:
            raise _Unsupported("trailing text")
        return value


def tower_value(text: str) -> Value | None:
    """The exact value of a tower of positive integers (``2^{2^{100}}``, ``(2^{10})^{3}``,
    ``5 \\cdot 10^{9}``, ``\\frac{1}{2^{2^{100}}}``), or None when ``text`` is not one (or needs
    sums of towers, or is a small fraction)."""
    if len(text) > 500:
        return None
    try:
        return _Parser(text).parse()
    except (_Unsupported, RecursionError, OverflowError):
        return None


def tower_verdict(pred: str, gold: str) -> bool | None:
    """Whether two towers are equal, decided exactly; None unless both sides are towers (or
    integers) and at least one writes a power."""
    if "^" not in pred + gold:
        return None
    gold_value, pred_value = tower_value(gold), tower_value(pred)
    if gold_value is None or pred_value is None:
        return None
    return gold_value == pred_value
