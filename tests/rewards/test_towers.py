"""Towers too large to write out: decided exactly by ``rewards.towers``, never by SymPy."""

import math
import random
from fractions import Fraction

import pytest

from magistral_kedro.rewards import math_equal
from magistral_kedro.rewards.towers import tower_value, tower_verdict

# Products of towers of different roots (and integers times towers): SymPy would write
# 2^{10^{10}} out, ten billion bits, and run past any time limit.
MIXED_PRODUCTS = [
    ("3 \\cdot 2^{10^{10}}", "2^{10^{10}} \\cdot 3", True),
    ("3 \\cdot 2^{10^{10}}", "2^{10^{10}}", False),
    ("6^{10^{10}}", "2^{10^{10}} \\cdot 3^{10^{10}}", True),
    ("6^{10^{10}}", "2^{10^{10}} \\cdot 3^{10^{10}+1}", None),  # a sum in an exponent
    ("12^{10^{10}}", "4^{10^{10}} \\times 3^{10^{10}}", True),
    ("12^{10^{10}}", "4^{10^{10}} \\times 3^{10^{9}}", False),
    ("\\frac{6^{10^{10}}}{3^{10^{10}}}", "2^{10^{10}}", True),
    ("\\frac{2^{10^{10}}}{3}", "\\frac{4^{5 \\cdot 10^{9}}}{3}", True),
    ("\\frac{2^{10^{10}}}{3}", "\\frac{2^{10^{10}}}{5}", False),
    ("6 \\cdot 2^{10^{10}-1}", "3 \\cdot 2^{10^{10}}", None),
    ("6 \\cdot 2^{9999999999}", "3 \\cdot 2^{10^{10}}", True),
    ("0 \\cdot 2^{10^{10}}", "0", True),
    ("2^{3^{100}} \\cdot 3^{2^{100}}", "3^{2^{100}} \\cdot 2^{3^{100}}", True),
    ("2^{2^{2^{100}}} \\cdot 2^{2^{2^{100}}}", "2^{2^{2^{100}+1}}", None),
    ("2^{2^{2^{100}}} \\cdot 2^{2^{2^{100}}}", "2^{2 \\cdot 2^{2^{100}}}", True),
    ("2^{2^{2^{100}}} \\cdot 2^{2^{2^{100}}}", "2^{2^{2^{100}}}", False),
]


@pytest.mark.parametrize(("pred", "gold", "expected"), MIXED_PRODUCTS)
def test_products_of_different_roots_are_decided_exactly(pred, gold, expected):
    assert tower_verdict(pred, gold) is expected


def test_a_value_has_one_form_whatever_the_writing():
    assert tower_value("100^{5 \\cdot 10^{9}}") == tower_value("10^{10^{10}}")
    assert tower_value("4^{2^{99}}") == tower_value("2^{2^{100}}")
    assert tower_value("2^{20}") == 1 << 20  # small values stay integers
    assert tower_value("\\frac{1}{3}") is None  # small fractions are SymPy's


def test_zero_to_a_negative_power_is_no_value():
    for undefined in ("0^{-1}", "0^{-2^{100}}", "\\frac{1}{0}", "0^{0}"):
        assert tower_value(undefined) is None, undefined
    assert math_equal("0^{-1}", "0") is False


def test_a_tower_too_large_to_compare_is_left_to_the_general_comparison():
    """Forms whose comparison would take long (every prime of 10 carries the next level) or
    recurse past Python's stack are not built; those of a big computed base are not factored."""
    assert tower_value("^".join(["10"] * 25)) is None
    assert tower_verdict("^".join(["2"] * 230), "^".join(["2"] * 230)) is None
    mersenne = "2305843009213693951"  # 2^61 - 1
    assert tower_value(f"\\frac{{2^{{2^{{100}}}}}}{{{mersenne}^{{250}}}}") is None


def test_a_value_reached_two_ways_is_never_unequal_to_itself():
    twice = "2^{2^{1048575}} \\cdot 2^{2^{1048575}}"  # an exponent sum just past MAX_BITS
    assert tower_verdict(twice, "2^{2^{1048576}}") is not False
    assert tower_verdict(twice, "4^{2^{1048575}}") is not False


def test_a_base_that_trial_division_leaves_composite_is_no_error():
    base = 131101 * 1073741939 * (131101 * 1073741939 + 2)
    assert tower_verdict("2^{2^{100}}", f"{base} \\cdot 2^{{2^{{100}}}}") is not True


def test_a_huge_base_that_cannot_be_factored_is_left_to_the_general_comparison():
    semiprime = (2**127 - 1) * (2**89 - 1)  # two large primes: no quick factoring
    assert tower_value(f"{semiprime}^{{10^{{10}}}}") is None


def test_a_commuted_product_of_towers_is_right_within_the_time_limit():
    assert math_equal("3 \\cdot 2^{10^{10}}", "2^{10^{10}} \\cdot 3", timeout_s=5) is True


class _TooLarge(Exception):
    pass


def _random_tower(rng: random.Random, depth: int) -> tuple[str, Fraction]:
    """A random tower of small integers and its exact value; _TooLarge past 8000 bits at any
    step, where an integer may be too long to factor (then the general comparison decides)."""
    if depth == 0 or rng.random() < 0.3:
        n = rng.choice([0, 1, 2, 3, 4, 6, 8, 9, 12, 27, 100, 1024])
        return str(n), Fraction(n)
    (a, x), (b, y) = _random_tower(rng, depth - 1), _random_tower(rng, depth - 1)
    kind = rng.choice(["power", "power", "product", "fraction"])
    if kind == "power":
        if y.denominator != 1 or (x == 0 and y <= 0) or abs(y) * _bits(x) > 8000:
            raise _TooLarge
        text, value = f"{{{a}}}^{{{b}}}", x ** int(y)
    elif kind == "product":
        text, value = f"{a} \\cdot {b}", x * y
    elif y == 0:
        raise _TooLarge
    else:
        text, value = f"\\frac{{{a}}}{{{b}}}", x / y
    if _bits(value) > 8000:
        raise _TooLarge
    return text, value


def _bits(value: Fraction) -> int:
    return value.numerator.bit_length() + value.denominator.bit_length()


def _exact(value) -> Fraction:
    if isinstance(value, int):
        return Fraction(value)
    return math.prod((Fraction(p) ** k for p, k in value.factors), start=Fraction(1))


def test_every_form_is_the_exact_value_and_every_integer_has_one():
    rng, checked = random.Random(0), 0
    for _ in range(3000):
        try:
            text, exact = _random_tower(rng, 4)
        except _TooLarge:
            continue
        value = tower_value(text)
        if exact.denominator == 1:
            assert value is not None, text
        if value is not None:
            assert _exact(value) == exact, text
            checked += 1
    assert checked > 1000
