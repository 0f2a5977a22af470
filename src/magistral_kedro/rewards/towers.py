"""Exact comparison of towers of powers too large to write out (``10^{10^{10}}``, ``4^{2^{99}}``).

SymPy would evaluate ``10^{10^{10}}`` digit by digit and run out of memory or time; a size guard
would refuse it. Here a value built from integers with ``^``, products and fractions is kept as
an integer while it is a small one (at most :data:`MAX_BITS` bits) and otherwise by its prime
factorisation ``p1^E1 * p2^E2 ...``, each exponent an integer or itself such a factorisation.
Every value has exactly one of these forms (unique factorisation), so two values are equal
exactly when their forms are; deciding never needs more than a few megabits. Bases are factored
outright up to 64 bits and by trial division above; one with a large composite factor is left
to the general comparison.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Union

#: Integers up to this many bits are computed outright (a few milliseconds).
MAX_BITS = 1 << 20
#: The bound for a size estimated in floating point (``_log2_size``): room for its rounding;
#: the exact ``bit_length`` of what is then computed decides.
_ESTIMATED_BITS = MAX_BITS + 64
#: Bases above 64 bits are factored by trial division up to this bound, and only up to
#: _MAX_FACTOR_BITS bits; what is left must be a prime of at most _MAX_PRIME_BITS bits (a
#: primality test of a longer number, or SymPy's full factoring, can take minutes).
_TRIAL_LIMIT = 1 << 16
_MAX_FACTOR_BITS = 8192
_MAX_PRIME_BITS = 1024
#: A form of more parts (counted down every exponent) or more levels is not built: comparing
#: two forms costs up to their parts, and recursion their levels.
_MAX_PARTS = 10_000
_MAX_LEVELS = 16
_TOKEN = re.compile(r"\s*(\d+|\^|\(|\)|\{|\}|-|\\[dt]?frac|\\cdot|\\times|\*)")


@dataclass(frozen=True)
class Factored:
    """A positive rational as primes and exponents (sorted by prime, no zero exponent): never
    an integer of at most MAX_BITS bits, which is always an ``int``. An exponent is an int
    (negative in a denominator) or a Factored integer."""

    factors: tuple[tuple[int, Value], ...]
    parts: int = field(default=1, compare=False)
    levels: int = field(default=1, compare=False)


Value = Union[int, Factored]  # noqa: UP007 - a recursive alias needs the old spelling


class _Unsupported(Exception):
    """The text is no tower of integers, or a step would need more than this exact form."""


def _unsupported(why: str) -> Value:
    raise _Unsupported(why)


def _log2_size(exponent: int, base: int) -> float:
    """log2(base ** |exponent|) for base >= 1; infinite past 2**64 bits."""
    return math.inf if exponent.bit_length() > 64 else abs(exponent) * math.log2(base)


@cache
def _trial_primes() -> tuple[int, ...]:
    from sympy import primerange

    return tuple(primerange(2, _TRIAL_LIMIT))


def _factor(n: int) -> dict[int, Value]:
    """The prime factorisation of ``n >= 2``."""
    from sympy import factorint, isprime

    if n.bit_length() > _MAX_FACTOR_BITS:
        raise _Unsupported("a base too long to factor")
    found: dict[int, Value] = {}
    for p in _trial_primes():
        if n.bit_length() <= 64:  # factorint finishes it at once
            break
        while n % p == 0:
            n //= p
            found[p] = found.get(p, 0) + 1  # type: ignore[operator]
    if n.bit_length() <= 64:
        return found | {int(p): int(k) for p, k in factorint(n).items()}
    if n.bit_length() > _MAX_PRIME_BITS or not isprime(n):
        raise _Unsupported("a base with a large composite factor")
    return found | {n: 1}


def _factors(value: Value) -> dict[int, Value]:
    if isinstance(value, Factored):
        return dict(value.factors)
    if value < 1:
        raise _Unsupported("zero or a negative number in a tower")
    return {} if value == 1 else _factor(value)


def _is_integer(value: Value) -> bool:
    return isinstance(value, int) or all(not isinstance(k, int) or k > 0 for _, k in value.factors)


def _normal(factors: dict[int, Value]) -> Value:
    """The one form of the value ``factors`` writes: an int when it is a small integer."""
    kept = tuple(sorted((p, k) for p, k in factors.items() if k != 0))
    exponents = {p: k for p, k in kept if isinstance(k, int)}
    if len(exponents) == len(kept) and all(k > 0 for k in exponents.values()):
        bits = sum(_log2_size(k, p) for p, k in exponents.items())
        if bits <= _ESTIMATED_BITS:
            value = math.prod(p**k for p, k in exponents.items())
            if value.bit_length() <= MAX_BITS:
                return value
    towers = [k for _, k in kept if isinstance(k, Factored)]
    parts = len(kept) + sum(k.parts for k in towers)
    levels = 1 + max((k.levels for k in towers), default=0)
    if parts > _MAX_PARTS or levels > _MAX_LEVELS:
        raise _Unsupported("a form too large to compare")
    return Factored(kept, parts, levels)


def _add(a: Value, b: Value) -> Value:
    """The sum of two exponents, where this form can write it."""
    if isinstance(a, int) and isinstance(b, int):
        if abs(a + b).bit_length() > MAX_BITS:  # its one form would be Factored: not computable
            raise _Unsupported("an exponent sum too large to write out")
        return a + b
    if a == b:
        return _multiply(2, a)  # p^E * p^E = p^(2E)
    raise _Unsupported("a sum of different towers")


def _multiply(a: Value, b: Value) -> Value:
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() <= MAX_BITS:
        return a * b
    if a == 0 or b == 0:
        return 0
    merged = _factors(a)
    for prime, exponent in _factors(b).items():
        merged[prime] = _add(merged[prime], exponent) if prime in merged else exponent
    return _normal(merged)


def _reciprocal(value: Value) -> Value:
    factors = _factors(value)
    if not all(isinstance(k, int) for k in factors.values()):
        raise _Unsupported("the reciprocal of a tower of towers")
    return _normal({p: -k for p, k in factors.items()})  # type: ignore[operator]


def _small_power(base: int, exponent: int) -> int | None:
    """``base ** exponent`` when it has at most MAX_BITS bits (computing at most a few megabits)."""
    if _log2_size(exponent, abs(base)) > _ESTIMATED_BITS:
        return None
    value = base**exponent
    return value if value.bit_length() <= MAX_BITS else None


def _power(base: Value, exponent: Value) -> Value:
    if not _is_integer(exponent):
        raise _Unsupported("a fractional exponent")
    if base == 0 and (exponent == 0 or (isinstance(exponent, int) and exponent < 0)):
        raise _Unsupported("0^0 or 0 to a negative power")
    if exponent == 0:
        return 1
    if isinstance(base, int) and base in (0, 1):
        return base
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        value = _small_power(base, exponent)
        if value is not None:
            return value
    if isinstance(exponent, int) and exponent < 0:
        base, exponent = _reciprocal(base), -exponent
    return _normal({p: _multiply(k, exponent) for p, k in _factors(base).items()})


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
    sums of towers, or is a small fraction: those are SymPy's)."""
    if len(text) > 500:
        return None
    try:
        value = _Parser(text).parse()
    except (_Unsupported, RecursionError, OverflowError):
        return None
    return None if _small_fraction(value) else value


def _small_fraction(value: Value) -> bool:
    """A Factored with a numerator and a denominator of at most a few megabits each."""
    if isinstance(value, int) or not all(isinstance(k, int) for _, k in value.factors):
        return False
    sizes = [(k > 0, _log2_size(k, p)) for p, k in value.factors]  # type: ignore[arg-type, operator]
    numerator = sum(size for positive, size in sizes if positive)
    denominator = sum(size for positive, size in sizes if not positive)
    return 0 < denominator <= _ESTIMATED_BITS and numerator <= _ESTIMATED_BITS


def tower_verdict(pred: str, gold: str) -> bool | None:
    """Whether two towers are equal, decided exactly; None unless both sides are towers (or
    integers) and at least one writes a power."""
    if "^" not in pred + gold:
        return None
    gold_value, pred_value = tower_value(gold), tower_value(pred)
    if gold_value is None or pred_value is None:
        return None
    return gold_value == pred_value
