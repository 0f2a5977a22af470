from magistral_kedro.tasks.schema import Problem, validate_rows

GOOD = {
    "id": "p1",
    "kind": "math",
    "language": "en",
    "difficulty": 1,
    "prompt": "What is 1 + 1?",
    "answer": "2",
    "source": "test",
}


def test_valid_rows_pass_and_nan_cells_count_as_missing():
    rows = [GOOD, {**GOOD, "id": "p2", "tests": float("nan")}]
    valid, rejects = validate_rows(rows)
    assert [p.id for p in valid] == ["p1", "p2"]
    assert rejects == []


def test_every_invalid_row_is_reported_with_its_field_and_position():
    rows = [
        GOOD,
        {**GOOD, "id": "no-answer", "answer": None},
        {**GOOD, "id": "bad-lang", "language": "english"},
        {**GOOD, "id": "code-no-tests", "kind": "code"},
        {**GOOD, "id": "typo", "promt": "x"},
        {**GOOD, "id": "neg", "difficulty": -1},
    ]
    valid, rejects = validate_rows(rows)
    assert [p.id for p in valid] == ["p1"]
    reasons = {r["id"]: r["reject_reason"] for r in rejects}
    assert [r["row_index"] for r in rejects] == [1, 2, 3, 4, 5]
    assert "answer" in reasons["no-answer"]
    assert "language" in reasons["bad-lang"] and "'english'" in reasons["bad-lang"]
    assert "tests" in reasons["code-no-tests"]
    assert "promt" in reasons["typo"]
    assert "difficulty" in reasons["neg"]


def test_problem_round_trips_through_a_dict():
    problem = Problem.model_validate(GOOD)
    assert Problem.model_validate(problem.model_dump()) == problem
