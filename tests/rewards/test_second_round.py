"""math_equal, second round: answers a policy could farm and forms a competition judge accepts.

Each category holds (prediction, reference, expected) on both sides. Hedging is also checked
through ``score_batch``, the GRPO reward: a hedged right answer earns no correctness reward.
"""

import time

import pytest

from magistral_kedro.rewards import RewardConfig, math_equal, score_batch
from magistral_kedro.rewards.math import math_equal_in_process
from magistral_kedro.tasks import Problem

SECOND_ROUND = {
    "hedging": [
        ("5 \\text{ or } 6", "5", False),
        ("6 \\text{ or maybe } 5", "5", False),
        ("5, \\text{ actually } 6", "6", False),
        ("5? \\text{ no, } 6", "6", False),
        ("4 \\text{ or } 5", "5", False),
        ("5, 6", "5", False),
        ("\\frac{1}{2} \\text{ or } \\frac{1}{3}", "\\frac{1}{2}", False),
        ("x = 3 \\text{ or } x = 4", "3", False),
        ("3 \\lor 4", "3", False),
        ("12 \\text{ (or } 13)", "12", False),
        ("7 \\; (8?)", "7", False),
        ("\\frac{1}{2}, \\text{i.e. } 0.5", "\\frac{1}{2}", True),
        ("3:4 \\text{ or } 4:3", "3:4", False),
        ("1, 2", "(1, 2)", True),
        ("\\frac{3}{4} \\text{ or } 0.75", "\\frac{3}{4}", True),
        ("-3 \\text{ or } 3", "\\pm 3", True),
        ("(1, 2) \\text{ or } (2, 1)", "(1, 2)", False),
        ("5", "5", True),
        ("x = 3", "3", True),
        ("2 \\text{ or } 3", "2, 3", True),
        ("3 \\text{ or } 2", "2, 3", True),
        ("x = 2 \\text{ or } x = -2", "\\pm 2", True),
        ("2 \\text{ and } -2", "\\pm 2", True),
        ("1, 2", "\\{1, 2\\}", True),
        ("2 \\text{ or } 4", "2, 3", False),
    ],
    "numeral systems": [
        ("14", "XIV", True),
        ("XIV", "XIV", True),
        ("xiv", "XIV", True),
        ("1994", "MCMXCIV", True),
        ("XVI", "XIV", False),
        ("16", "XIV", False),
        ("IVX", "XIV", False),
        ("11", "1011_2", False),
        ("1011", "1011_2", True),
        ("1011_{2}", "1011_2", True),
        ("13_8", "1011_2", True),
        ("B_{16}", "1011_2", True),
        ("1101_2", "1011_2", False),
        ("1011_3", "1011_2", False),
        ("123_5", "123_4", False),
        ("27", "123_4", False),
        ("11", "(1011)_2", False),
        ("11_{10}", "(1011)_2", True),
        ("2A_{16}", "42", True),
        ("2B_{16}", "42", False),
        ("MMXXV", "MMXXIV", False),
        ("IV", "VI", False),
        ("DC", "CD", True),
        ("2024", "\\text{MMXXIV}", True),
        ("IIII", "IV", False),
        ("100", "C", False),
        ("12_{(3)}", "5", True),
        ("x_{16}", "33", False),
    ],
    "named components": [
        ("x = 1, y = 2", "(1, 2)", True),
        ("x = 2, y = 1", "(1, 2)", False),
        ("a = 3, b = -1", "(3, -1)", True),
        ("a = -1, b = 3", "(3, -1)", False),
        ("y = 2, x = 1", "(x, y) = (1, 2)", True),
        ("y = 1, x = 2", "(x, y) = (1, 2)", False),
        ("b = 5, a = 4", "a = 4, b = 5", True),
        ("b = 4, a = 5", "a = 4, b = 5", False),
        ("x = 1, y = 2, z = 3", "(1, 2, 3)", True),
        ("x = 1, y = 3, z = 2", "(1, 2, 3)", False),
        ("x = 1, y = 2", "(1, 2, 3)", False),
        ("(1, 2)", "x = 1, y = 2", True),
        ("(2, 1)", "x = 1, y = 2", False),
        ("c = 4, b = 3, a = 2", "(a, b, c) = (2, 3, 4)", True),
        ("n = 3 \\text{ and } m = 5", "(m, n) = (3, 5)", False),
        ("(y, x) = (2, 1)", "(x, y) = (1, 2)", True),
        ("x = \\frac{1}{2}, y = \\frac{3}{2}", "\\left(\\frac12, \\frac32\\right)", True),
    ],
    "ordered forms": [
        ("1:2:3", "1:2:3", True),
        ("3:2:1", "1:2:3", False),
        ("2:4:6", "1:2:3", True),
        ("2:3:4", "1:2:3", False),
        ("1:3:2", "1:2:3", False),
        ("4:3", "3:4", False),
        ("\\begin{pmatrix} 1 \\\\ 2 \\\\ 3 \\end{pmatrix}", "(1, 2, 3)", True),
        ("\\begin{pmatrix} 3 \\\\ 2 \\\\ 1 \\end{pmatrix}", "(1, 2, 3)", False),
        ("\\langle 1, 2, 3 \\rangle", "(1, 2, 3)", True),
        ("\\langle 2, 1, 3 \\rangle", "(1, 2, 3)", False),
        (
            "2\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
            "\\begin{pmatrix} 2 \\\\ 4 \\end{pmatrix}",
            True,
        ),
        (
            "2\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}",
            "\\begin{pmatrix} 2 \\\\ 4 \\end{pmatrix}",
            False,
        ),
        ("3\\mathbf{i} + 4\\mathbf{j}", "(3, 4)", True),
        ("4\\mathbf{i} + 3\\mathbf{j}", "(3, 4)", False),
        (
            "\\hat{i} - 2\\hat{j} + 5\\hat{k}",
            "\\begin{pmatrix} 1 \\\\ -2 \\\\ 5 \\end{pmatrix}",
            True,
        ),
        (
            "\\hat{i} + 5\\hat{j} - 2\\hat{k}",
            "\\begin{pmatrix} 1 \\\\ -2 \\\\ 5 \\end{pmatrix}",
            False,
        ),
        (
            "\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}",
            "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
            False,
        ),
        ("(3, 1)", "(1, 3)", False),
        ("5:3:2:1", "10:6:2:4", False),
        ("[1, 2, 3]", "(1, 2, 3)", True),
        ("[3, 2, 1]", "(1, 2, 3)", False),
        ("\\left\\langle 1, 2 \\right\\rangle", "(1, 2)", True),
        ("\\frac{1}{3}(1, 2, 2)", "\\left(\\frac13, \\frac23, \\frac23\\right)", True),
        ("\\frac{1}{3}(2, 1, 2)", "\\left(\\frac13, \\frac23, \\frac23\\right)", False),
        ("\\vec{v} = \\langle 1, 2 \\rangle", "(1, 2)", True),
        ("\\mathbf{v} = \\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}", "(1, 2)", False),
        ("\\sqrt{3}:\\sqrt{2}:1", "1:\\sqrt{2}:\\sqrt{3}", False),
        (
            "-\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
            "\\begin{pmatrix} -1 \\\\ -2 \\end{pmatrix}",
            True,
        ),
        ("2\\mathbf{j} - \\mathbf{k}", "\\begin{pmatrix} 2 \\\\ 0 \\\\ -1 \\end{pmatrix}", False),
        ("2\\mathbf{i} - \\mathbf{k}", "\\begin{pmatrix} 2 \\\\ 0 \\\\ -1 \\end{pmatrix}", True),
    ],
    "angles in functions": [
        ("\\sin 30^\\circ", "\\frac{1}{2}", True),
        ("\\sin(30^{\\circ})", "\\frac{1}{2}", True),
        ("\\cos 60°", "\\frac{1}{2}", True),
        ("\\tan 45^\\circ", "1", True),
        ("\\frac{1}{2}", "\\sin 30^\\circ", True),
        ("\\cos 70^\\circ", "\\sin 20^\\circ", True),
        ("\\cos 20^\\circ", "\\sin 20^\\circ", False),
        ("\\sin 30", "\\frac{1}{2}", False),
        ("\\sin 60^\\circ", "\\frac{1}{2}", False),
        ("2\\sin 15^\\circ \\cos 15^\\circ", "\\frac{1}{2}", True),
        ("\\sin 30^\\circ", "\\sin 30", False),
        ("\\tan 45", "\\tan 45^\\circ", False),
        ("\\cos(120^\\circ)", "-\\frac{1}{2}", True),
        ("\\cos(120^\\circ)", "\\frac{1}{2}", False),
    ],
    "scale words": [
        ("3 \\text{ million}", "3000000", True),
        ("3 \\text{ million}", "3", False),
        ("3 million", "3000000", True),
        ("3 million", "3", False),
        ("2.5 \\text{ billion}", "2500000000", True),
        ("2.5 \\text{ billion}", "2.5", False),
        ("5 \\text{ thousand}", "5000", True),
        ("5 \\text{ thousand}", "5", False),
        ("5000", "5 \\text{ thousand}", True),
        ("5", "5 \\text{ thousand}", False),
        ("\\$1.2 \\text{ million}", "1200000", True),
        ("12 \\text{ million dollars}", "12000000", True),
        ("4 \\text{ billion}", "4 \\times 10^9", True),
        ("1.5 \\text{ million}", "150000", False),
    ],
    "plus-minus": [
        ("\\frac{1+\\sqrt{5}}{2}, \\frac{1-\\sqrt{5}}{2}", "\\frac{1 \\pm \\sqrt{5}}{2}", True),
        ("\\frac{1-\\sqrt{5}}{2}, \\frac{1+\\sqrt{5}}{2}", "\\frac{1 \\pm \\sqrt{5}}{2}", True),
        ("\\frac{1+\\sqrt{5}}{2}", "\\frac{1 \\pm \\sqrt{5}}{2}", False),
        ("\\frac{1+\\sqrt{5}}{2}, \\frac{-1-\\sqrt{5}}{2}", "\\frac{1 \\pm \\sqrt{5}}{2}", False),
        ("\\frac{-3 \\pm \\sqrt{17}}{4}", "\\frac{-3 \\pm \\sqrt{17}}{4}", True),
        ("\\frac{3 \\pm \\sqrt{17}}{4}", "\\frac{-3 \\pm \\sqrt{17}}{4}", False),
        ("3 + 2\\sqrt{2}, 3 - 2\\sqrt{2}", "(1 \\pm \\sqrt{2})^2", True),
        ("3 + 2\\sqrt{2}", "(1 \\pm \\sqrt{2})^2", False),
        ("\\frac{1 \\pm \\sqrt{5}}{2}", "\\frac{1+\\sqrt{5}}{2}, \\frac{1-\\sqrt{5}}{2}", True),
        ("x = \\frac{2 \\pm \\sqrt{2}}{2}", "1 \\pm \\frac{\\sqrt{2}}{2}", True),
        ("2^{\\pm 1}", "2, \\frac{1}{2}", True),
        ("2^{\\pm 1}", "2, -\\frac{1}{2}", False),
        ("\\sqrt{2 \\pm \\sqrt{3}}", "\\frac{\\sqrt{6} \\pm \\sqrt{2}}{2}", True),
        (
            "\\frac{1 \\pm i\\sqrt{3}}{2}",
            "\\frac{1 + i\\sqrt{3}}{2}, \\frac{1 - i\\sqrt{3}}{2}",
            True,
        ),
        ("1 \\pm 2", "3", False),
        ("2 \\pm \\sqrt{3}", "2 + \\sqrt{3}, 2 + \\sqrt{3}", False),
    ],
    "sets and intervals": [
        ("x < 2", "(-\\infty, 2)", True),
        ("x \\le 2", "(-\\infty, 2)", False),
        ("\\{x \\mid x < 2\\}", "(-\\infty, 2)", True),
        ("\\{x : x > 2\\}", "(-\\infty, 2)", False),
        ("-1 < x \\le 3", "(-1, 3]", True),
        ("-1 \\le x < 3", "(-1, 3]", False),
        ("\\mathbb{R} \\setminus \\{1\\}", "(-\\infty, 1) \\cup (1, \\infty)", True),
        ("\\mathbb{R} \\setminus \\{2\\}", "(-\\infty, 1) \\cup (1, \\infty)", False),
        ("x \\neq 1", "(-\\infty, 1) \\cup (1, \\infty)", True),
        ("\\mathbb{R}", "(-\\infty, \\infty)", True),
        ("\\text{all real numbers}", "(-\\infty, \\infty)", True),
        ("(-\\infty, \\infty)", "\\mathbb{R}", True),
        ("\\mathbb{R}", "(0, \\infty)", False),
        ("\\text{all real numbers}", "(0, \\infty)", False),
        ("x < 2 \\text{ or } x > 5", "(-\\infty, 2) \\cup (5, \\infty)", True),
        ("x < 2 \\text{ or } x \\ge 5", "(-\\infty, 2) \\cup (5, \\infty)", False),
        ("\\{x \\in \\mathbb{R} : x \\geq 0\\}", "[0, \\infty)", True),
        ("\\{x \\in \\mathbb{R} : x > 0\\}", "[0, \\infty)", False),
        ("\\{x \\mid x > 2\\}", "\\{x \\mid x < 2\\}", False),
        ("\\mathbb{R} - \\{1\\}", "(-\\infty, 1) \\cup (1, \\infty)", True),
        ("\\mathbb{R} \\backslash \\{1\\}", "(-\\infty, 1) \\cup (1, \\infty)", True),
        ("x \\in \\mathbb{R}, x \\neq 1", "(-\\infty, 1) \\cup (1, \\infty)", True),
        ("x \\in \\mathbb{R}, x \\neq 2", "(-\\infty, 1) \\cup (1, \\infty)", False),
        ("\\{x \\mid x \\ge 2\\}", "[2, \\infty)", True),
        ("3 \\leq x", "[3, \\infty)", True),
        ("|x| \\le 2", "[-2, 2]", True),
        ("|x| < 2", "[-2, 2]", False),
        ("\\mathbb{R} \\setminus [0, 1]", "(-\\infty, 0) \\cup (1, \\infty)", True),
    ],
    "words and text": [
        ("five", "5", True),
        ("six", "5", False),
        ("twenty-one", "21", True),
        ("twenty-two", "21", False),
        ("one hundred twenty", "120", True),
        ("one hundred two", "120", False),
        ("\\text{seven}", "7", True),
        ("\\text{no solution}", "\\text{no solution}", True),
        ("\\text{none}", "\\text{no solution}", True),
        ("\\emptyset", "\\text{no solution}", True),
        ("\\text{No real solutions}", "\\text{no solution}", True),
        ("0", "\\text{no solution}", False),
        ("\\text{solution}", "\\text{no solution}", False),
        ("\\text{Even}", "\\text{even}", True),
        ("\\text{odd}", "\\text{even}", False),
        ("\\text{neither}", "\\text{even}", False),
        ("\\text{infinitely many}", "\\text{no solution}", False),
        ("\\text{ten}", "\\text{net}", False),
        ("\\text{DNE}", "\\text{does not exist}", True),
        ("\\text{DNE}", "\\text{no solution}", False),
        ("\\text{two thirds}", "\\frac{2}{3}", True),
        ("\\text{two thirds}", "\\frac{1}{3}", False),
        ("three quarters", "0.75", True),
        ("\\text{three million}", "3000000", True),
        ("\\text{eleven}", "11", True),
        ("\\text{a square}", "\\text{square}", True),
        ("\\text{none}", "0", False),
        ("negative four", "-4", True),
        ("four", "-4", False),
    ],
    "exact values of any size": [
        ("4^{2^{99}}", "2^{2^{100}}", True),
        ("4^{2^{99}}", "2^{2^{99}}", False),
        ("100^{5 \\cdot 10^{9}}", "10^{10^{10}}", True),
        ("100^{10^{10}}", "10^{10^{10}}", False),
        ("2^{2^{2^{2^{2}}}}", "2^{65536}", True),
        ("2^{2^{2^{2^{2}}}}", "2^{65537}", False),
        ("(2^{10})^{10^{12}}", "1024^{10^{12}}", True),
        ("(2^{10})^{10^{12}}", "1025^{10^{12}}", False),
        ("3^{3^{3^{3}}}", "27^{3^{26}}", True),
        ("3^{3^{3^{3}}}", "27^{3^{25}}", False),
        ("8^{4^{20}}", "2^{3 \\cdot 4^{20}}", True),
        ("2^{10^{10}} \\cdot 2^{10^{10}}", "2^{2 \\cdot 10^{10}}", True),
        ("3 \\cdot 2^{10^{10}}", "2^{10^{10}}", False),
        ("10^{100^{100}}", "10^{10^{200}}", True),
        ("10^{100^{100}}", "10^{10^{199}}", False),
        ("\\frac{1}{2^{2^{100}}}", "4^{-2^{99}}", True),
        ("\\frac{1}{2^{2^{100}}}", "4^{-2^{100}}", False),
        ("\\dfrac{4^{2^{99}}}{2^{2^{100}}}", "1", True),
        ("\\frac{10^{10^{10}}}{10}", "10^{10^{10}-1}", True),
        ("(10^{10^{1000}})^{10^{10^{5}}}", "10^{10^{1000} \\cdot 10^{10^{5}}}", True),
        ("(10^{10^{1000}})^{10^{10^{5}}}", "10^{10^{1001} \\cdot 10^{10^{5}}}", False),
    ],
}


def _disagreements(cases):
    return [(p, g, e) for p, g, e in cases if math_equal_in_process(p, g) != e]


@pytest.mark.parametrize("category", list(SECOND_ROUND))
def test_second_round_category(category):
    assert _disagreements(SECOND_ROUND[category]) == []


def test_every_category_has_both_sides():
    for category, cases in SECOND_ROUND.items():
        assert {expected for *_, expected in cases} == {True, False}, category


def test_a_tower_is_decided_within_the_time_limit():
    started = time.monotonic()
    assert math_equal("4^{2^{99}}", "2^{2^{100}}", timeout_s=5) is True
    assert math_equal("10^{10^{10^{10}}}", "10^{10^{10^{10}}} + 1", timeout_s=5) is False
    assert time.monotonic() - started < 15


def _problem(answer: str) -> Problem:
    return Problem(
        id="hedge",
        kind="math",
        language="en",
        difficulty=1,
        source="test",
        prompt="How many apples does Mary have after she gets 7 more than her 12?",
        answer=answer,
    )


def test_a_hedged_right_answer_earns_no_correctness_reward():
    """The GRPO reward: a box that offers two values for one earns format, never correctness,
    whichever value comes first; a list for a reference with several values is no hedge."""
    think = "<think>\nMary has twelve apples and gets seven more, so we add them up.\n</think>\n"
    completions = [
        think + "Mary has $\\boxed{19}$ apples.",
        think + "Mary has $\\boxed{19 \\text{ or } 20}$ apples.",
        think + "Mary has $\\boxed{18, \\text{ actually } 19}$ apples.",
        think + "Mary has $\\boxed{20? \\text{ no, } 19}$ apples.",
        think + "The roots are $\\boxed{2 \\text{ or } -2}$.",
    ]
    problems = [_problem("19")] * 4 + [_problem("\\pm 2")]
    results = score_batch(completions, problems, [50] * 5, RewardConfig(), n_workers=1)
    assert [r.correct for r in results] == [0.9, 0.0, 0.0, 0.0, 0.9]
    assert all(r.format == 0.1 for r in results)


@pytest.mark.parametrize(
    ("pred", "expected"),
    [("b = 2, a = 1", True), ("a = 2, b = 1", False), ("a = 1, b = 2", True)],
)
def test_the_problem_names_the_components(pred, expected):
    """A reference ``(1, 2)`` names nothing; the problem's "ordered pair (a, b)" does."""
    problem = "Find the ordered pair $(a, b)$ such that $a + b = 3$ and $b - a = 1$."
    assert math_equal_in_process(pred, "(1, 2)", problem=problem) is expected
    assert math_equal(pred, "(1, 2)", problem=problem) is expected


def test_without_the_problem_components_go_by_position():
    assert math_equal_in_process("b = 2, a = 1", "(1, 2)") is False
    assert math_equal_in_process("b = 2, a = 1", "(1, 2)", problem="Find f(a, b).") is False
