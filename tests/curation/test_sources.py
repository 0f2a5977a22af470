"""Sources in their own shapes (fixtures written for these tests) -> problem-schema rows."""

from pathlib import Path

import pytest
from kedro.io import DatasetError

from magistral_kedro.curation.sources import AnswerColumn, SourceMapping, TestsColumn, map_source
from magistral_kedro.datasets import ProblemSourcesDataset
from magistral_kedro.tasks import validate_rows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
MATH_STYLE = SourceMapping(
    kind="math",
    prompt="problem",
    answer=AnswerColumn(column="solution", extract="last_boxed"),
    id="unique_id",
    difficulty="level",
)
GSM8K_STYLE = SourceMapping(
    kind="math", prompt="question", answer=AnswerColumn(column="answer", extract="after_hashes")
)
CODE_STYLE = SourceMapping(
    kind="code",
    prompt="statement",
    tests=TestsColumn(column="tests", input_key="stdin", output_key="stdout"),
    solutions="solutions",
    input_generator="generator",
    id="name",
)


def load(**sources: str) -> dict:
    return ProblemSourcesDataset({k: str(FIXTURES / v) for k, v in sources.items()}).load()


def test_math_style_answers_come_from_the_last_box_and_bad_lines_are_counted():
    rows = load(m="math_style.jsonl")["m"]
    mapped, rejects = map_source("m", rows, MATH_STYLE)
    assert len(mapped) + len(rejects) == len(rows) == 9
    by_id = {row["id"]: row for row in mapped}
    assert by_id["algebra/2"]["answer"] == "\\frac{5}{6}"
    assert by_id["algebra/1"]["difficulty"] == 1 and by_id["algebra/1"]["source_row"] == 0
    assert by_id["algebra/1"]["source"] == "m" and by_id["algebra/1"]["language"] == "en"
    reasons = {r["source_row"]: r["reject_reason"] for r in rejects}
    assert reasons[3].startswith("unreadable: line 4: not JSON")
    assert reasons[4].startswith("unreadable: line 5: a JSON list")
    assert reasons[6].startswith("no_answer")  # "the remainder is 2." has no box
    valid, invalid = validate_rows(mapped)
    assert not invalid and len(valid) == 6


def test_gsm8k_style_answers_follow_the_hashes():
    rows = load(g="gsm8k_style.jsonl")["g"]
    mapped, rejects = map_source("g", rows, GSM8K_STYLE)
    assert [r["answer"] for r in mapped] == ["31", "15", "3,600"]
    assert [r["id"] for r in mapped] == ["g-000000", "g-000001", "g-000002"]
    assert len(rejects) == 1 and rejects[0]["reject_reason"].startswith("no_answer")


def test_code_style_parquet_tests_solutions_and_generator():
    rows = load(c="code_style.parquet")["c"]
    mapped, rejects = map_source("c", rows, CODE_STYLE)
    assert not rejects
    gcd = mapped[0]
    assert gcd["tests"][2] == {"input": "100 75\n", "output": "20\n"}  # (wrong on purpose)
    assert set(gcd["solutions"]) == {"python", "python_2"}
    assert gcd["input_generator"].startswith("def generate")
    assert "input_generator" not in mapped[1]
    valid, invalid = validate_rows(mapped)
    assert len(valid) == 2 and "needs at least one test" in invalid[0]["reject_reason"]


def test_apps_style_io_lists_and_a_missing_column():
    mapping = SourceMapping(
        kind="code", prompt="q", tests=TestsColumn(column="io", layout="io_lists")
    )
    rows = [
        {"q": "echo", "io": '{"inputs": ["1\\n", "2\\n"], "outputs": ["1\\n", "2\\n"]}'},
        {"q": "uneven", "io": {"inputs": ["1\\n"], "outputs": []}},
        {"question": "wrong column"},
    ]
    mapped, rejects = map_source("apps", rows, mapping)
    assert mapped[0]["tests"] == [
        {"input": "1\n", "output": "1\n"},
        {"input": "2\n", "output": "2\n"},
    ]
    assert rejects[0]["reject_reason"].startswith("unreadable_tests")
    assert rejects[1]["reject_reason"].startswith("missing_column: no column ['q', 'io']")


def test_dataset_errors_name_the_source_and_the_path(tmp_path):
    with pytest.raises(DatasetError, match=r"'nowhere'.*missing\.jsonl"):
        ProblemSourcesDataset({"nowhere": str(tmp_path / "missing.jsonl")}).load()
    with pytest.raises(DatasetError, match=r"'csv'.*not one of"):
        ProblemSourcesDataset({"csv": "problems.csv"})
    with pytest.raises(DatasetError, match="read-only"):
        ProblemSourcesDataset({}).save({})
