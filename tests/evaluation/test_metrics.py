"""pass@k, maj@k and the summary table, checked against hand-computed values."""

from math import comb

import pandas as pd
import pytest

from magistral_kedro.evaluation import majority_vote, pass_at_k, summarise, summary_table


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(4, 0, 1) == 0.0 and pass_at_k(4, 4, 4) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 4) == 1.0  # one right answer among 4 samples: pass@4 = 1
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - comb(7, 2) / comb(10, 2))
    with pytest.raises(ValueError, match="0 < k <= n"):
        pass_at_k(2, 1, 3)


def test_majority_vote_breaks_ties_by_first_appearance():
    assert majority_vote(["3", "4", "4", "3"], [False, True, True, False]) == ("3", False)
    assert majority_vote(["4", "3", "3", "4"], [True, False, False, True]) == ("4", True)
    assert majority_vote(["", "", "5"], [False, False, True]) == ("5", True)
    assert majority_vote(["", ""], [False, False]) == ("", False)


def rows(problem, answers, correct, decoding="sampled", **extra):
    return [
        {
            "problem_id": problem,
            "decoding": decoding,
            "answer": a,
            "correct": c,
            "answer_correct": c or a == "2",  # "2": right, but badly formatted
            "format_ok": bool(a),
            "language_ok": True,
            "completion_tokens": 10 * (i + 1),
            "truncated": a == "",
            "reward": 1.0 if c else 0.1,
            "kind": "math",
            **extra,
        }
        for i, (a, c) in enumerate(zip(answers, correct, strict=True))
    ]


def test_summarise_two_problems_by_hand():
    samples = pd.DataFrame(
        rows("p", ["1", "1", "2", ""], [True, True, False, False], language="en")
        + rows("q", ["7", "8", "8", "9"], [True, False, False, False], language="fr")
        + rows("p", ["1"], [True], decoding="greedy", language="en")
        + rows("q", ["8"], [False], decoding="greedy", language="fr")
    )
    out = summarise(samples)
    assert out["problems"] == 2 and out["samples_per_problem"] == 4
    assert out["pass_at_1"] == pytest.approx(3 / 8)
    assert out["pass_at_k"] == 1.0  # both problems solved at least once in 4
    assert out["maj_at_k"] == 0.5  # p votes 1 (right), q votes 8 (wrong)
    assert out["greedy_accuracy"] == 0.5
    assert out["format_rate"] == pytest.approx(7 / 8)
    assert out["answer_accuracy"] == pytest.approx(4 / 8)  # sampled rows, like pass@1
    assert out["max_completion_tokens"] == 40 and out["truncated_fraction"] == pytest.approx(1 / 8)
    table = summary_table(samples.assign(benchmark="b", difficulty=1))
    assert list(table["slice"]) == ["all", "language=en", "language=fr", "difficulty=1"]
    assert table.set_index("slice").loc["language=fr", "pass_at_1"] == pytest.approx(0.25)


def test_code_problems_get_no_majority_vote():
    samples = pd.DataFrame(rows("c", ["", ""], [True, False], kind="code"))
    out = summarise(samples)
    assert "maj_at_k" not in out and out["pass_at_1"] == 0.5
