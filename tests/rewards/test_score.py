"""The reward (docs/recipe.md, section 2) on hand-computed cases, and score_batch's guarantees."""

import pytest

from magistral_kedro.rewards import RewardConfig, length_penalty, score, score_batch
from magistral_kedro.tasks import Problem, generate_code_problems

CFG = RewardConfig()
FR = Problem(
    id="fr",
    kind="math",
    language="fr",
    difficulty=1,
    source="test",
    prompt="Marie a 12 pommes. Elle en reçoit 7 de plus. Combien de pommes a Marie ?",
    answer="19",
)
CODE = generate_code_problems(1, seed=0)[0]


def test_paper_defaults():
    assert (CFG.format_reward, CFG.correct_reward, CFG.length_penalty, CFG.language_reward) == (
        0.1,
        0.9,
        0.1,
        0.1,
    )


def test_correct_same_language_answer_gets_everything():
    completion = (
        "<think>\nMarie commence avec 12 pommes et en reçoit 7, donc on additionne.\n"
        "</think>\nMarie a donc $\\boxed{19}$ pommes."
    )
    result = score(completion, FR, CFG, n_tokens=40)
    assert result.total == pytest.approx(1.1)
    assert (result.format, result.correct, result.length, result.language) == (0.1, 0.9, 0.0, 0.1)


def test_wrong_answer_keeps_format_and_language():
    completion = (
        "<think>\nMarie commence avec 12 pommes et en reçoit 7, donc on additionne.\n"
        "</think>\nMarie a donc $\\boxed{18}$ pommes."
    )
    assert score(completion, FR, CFG, n_tokens=40).total == pytest.approx(0.2)


def test_thinking_in_another_language_loses_the_language_reward():
    completion = (
        "<think>\nMarie starts with twelve apples and receives seven more, so we add.\n"
        "</think>\nMarie a donc $\\boxed{19}$ pommes."
    )
    result = score(completion, FR, CFG, n_tokens=40)
    assert result.language == 0.0 and result.total == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        ("Marie a $\\boxed{19}$ pommes.", "<think>"),
        ("<think>on additionne</think> Marie a 19 pommes.", "boxed"),
        ("<think>a</think><think>b</think> $\\boxed{19}$", "one <think>"),
    ],
)
def test_bad_format_scores_zero_whatever_else(completion, reason):
    result = score(completion, FR, CFG, n_tokens=10)
    assert result.total == 0.0 and result.correct == 0.0 and reason in result.reason


@pytest.mark.parametrize(
    ("completion", "right"),
    [
        ("Marie a $\\boxed{19}$ pommes.", True),  # no <think>: the whole text is the answer
        ("<think>12 + 7 = 18</think> $\\boxed{18}$ <think>", False),  # two <think>, wrong
        ("<think>on trouve \\boxed{19}</think> Marie a 19 pommes.", False),  # box in thoughts
        ("<think>12 + 7</think><think>19</think> $\\boxed{19}$", True),
        ("Marie a 19 pommes.", False),  # no box: nothing to grade
    ],
)
def test_answer_correct_ignores_the_format_but_not_the_answer(completion, right):
    result = score(completion, FR, CFG, n_tokens=10)
    assert result.total == 0.0 and result.answer_correct is right


def test_answer_correct_follows_the_reward_on_a_well_formed_answer():
    right = "<think>12 + 7</think> $\\boxed{19}$"
    assert score(right, FR, CFG, n_tokens=10).answer_correct is True
    assert score(right.replace("19", "20"), FR, CFG, n_tokens=10).answer_correct is False


def test_length_penalty_ramp():
    cfg = RewardConfig(l_max=100, l_cache=20)
    assert length_penalty(80, cfg) == 0.0
    assert length_penalty(90, cfg) == pytest.approx(-0.05)
    assert length_penalty(100, cfg) == pytest.approx(-0.1)
    assert length_penalty(101, cfg) == pytest.approx(-0.1)
    completion = "<think>\nMarie commence avec 12 et en reçoit 7.\n</think>\nMarie a $\\boxed{19}$."
    assert score(completion, FR, cfg, n_tokens=90).length == pytest.approx(-0.05)


def test_code_is_run_against_the_tests():
    good = f"<think>\nplan\n</think>\n```python\n{CODE.solutions['python']}\n```"
    bad = "<think>\nplan\n</think>\n```python\nprint(0)\n```"
    assert score(good, CODE, CFG, n_tokens=50).correct == 0.9
    assert score(bad, CODE, CFG, n_tokens=50).correct == 0.0


def test_score_batch_keeps_order_and_contains_hostile_answers():
    cfg = RewardConfig(math_timeout_s=1.0, code_time_limit_s=1.0, code_max_tests=2)
    tower = "<think>\nOn calcule.\n</think>\nLa réponse est $\\boxed{10^{10^{10^{10}}}}$."
    good = "<think>\nMarie commence avec 12 et en reçoit 7.\n</think>\nMarie a $\\boxed{19}$."
    looping = "<think>\nplan\n</think>\n```python\nwhile True:\n    pass\n```"
    one = FR.model_copy(update={"answer": "1"})  # unbounded for SymPy: the worker's limits stop it
    results = score_batch([good, tower, looping, good], [FR, one, CODE, FR], [10, 10, 10, 10], cfg)
    assert [r.total > 1.0 for r in results] == [True, False, False, True]
    assert results[1].correct == 0.0
    assert results[2].correct == 0.0 and results[2].format == 0.1


def test_score_batch_checks_lengths():
    with pytest.raises(ValueError, match="one problem"):
        score_batch(["a"], [], [1], CFG)


def test_a_code_only_answer_earns_the_language_reward_from_its_thoughts():
    """The language check covers the prose that exists: a fenced program says nothing about a
    language, so thoughts in the problem's language are enough (issue 15)."""
    fr = CODE.model_copy(update={"prompt": FR.prompt, "language": "fr"})
    code = f"```python\n{CODE.solutions['python']}\n```"
    french = "<think>\nOn lit les nombres puis on calcule la somme demandée.\n</think>\n"
    english = "<think>\nWe read the numbers and then compute the requested sum.\n</think>\n"
    assert score(french + code, fr, CFG, n_tokens=50).language == 0.1
    assert score(english + code, fr, CFG, n_tokens=50).language == 0.0
    # Prose in the answer still counts: it must be in the problem's language too.
    assert score(french + "Here is the program:\n" + code, fr, CFG, n_tokens=50).language == 0.0


def test_no_prose_at_all_earns_no_language_reward():
    completion = "<think>\n12 + 7 = 19\n</think>\n$\\boxed{19}$"
    assert score(completion, FR, CFG, n_tokens=20).language == 0.0


def test_a_bare_math_answer_after_thoughts_in_the_problems_language():
    completion = (
        "<think>\nMarie commence avec 12 pommes et en reçoit 7, donc on additionne.\n"
        "</think>\n$\\boxed{19}$"
    )
    result = score(completion, FR, CFG, n_tokens=40)
    assert result.language == 0.1 and result.total == pytest.approx(1.1)


def test_a_problem_that_is_all_latex_takes_its_declared_language():
    latex = FR.model_copy(update={"prompt": "$\\int_0^1 2x\\,dx + 18$", "answer": "19"})
    french = (
        "<think>\nOn intègre d'abord, puis on ajoute le reste sans se tromper.\n</think>\n"
        "La réponse est $\\boxed{19}$."
    )
    english = (
        "<think>\nWe integrate first, then add the rest without any mistake.\n</think>\n"
        "The answer is $\\boxed{19}$."
    )
    assert score(french, latex, CFG, n_tokens=40).language == 0.1
    assert score(english, latex, CFG, n_tokens=40).language == 0.0


def test_a_well_formed_answer_cut_off_at_l_max_keeps_its_grades_and_the_full_penalty():
    cfg = RewardConfig(l_max=100, l_cache=20)
    completion = "<think>\nMarie commence avec 12 et en reçoit 7.\n</think>\nMarie a $\\boxed{19}$."
    result = score(completion, FR, cfg, n_tokens=100)
    assert (result.format, result.correct, result.length) == (0.1, 0.9, pytest.approx(-0.1))
    cut_in_the_box = "<think>\nMarie commence avec 12 et en reçoit 7.\n</think>\nMarie a $\\boxed{1"
    assert score(cut_in_the_box, FR, cfg, n_tokens=100).total == 0.0


def test_a_problem_that_asks_to_round_accepts_a_rounded_decimal():
    rounding = "Quelle part reste-t-il ? Arrondis au centième."
    third = FR.model_copy(update={"prompt": rounding, "answer": "\\frac{1}{3}"})
    exact = third.model_copy(update={"prompt": "Quelle part reste-t-il ?"})
    completion = "<think>\nIl reste un tiers.\n</think>\nIl reste $\\boxed{0.33}$."
    assert score(completion, third, CFG, n_tokens=20).correct == 0.9
    assert score(completion, exact, CFG, n_tokens=20).correct == 0.0
