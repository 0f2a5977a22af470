import pandas as pd

from magistral_kedro.pipelines.curation import create_pipeline
from magistral_kedro.pipelines.curation.nodes import (
    deduplicate,
    merge_sources,
    normalise_text,
    validate_problems,
)
from magistral_kedro.pipelines.frames import frame_to_problems
from tests.pipelines.conftest import MICRO, run


def test_validate_reports_every_bad_row(user_problems):
    valid, rejects = validate_problems(user_problems)
    assert list(valid["id"]) == ["u1", "u3"]
    assert list(rejects["id"]) == ["u2"]
    assert "answer" in rejects.loc[0, "reject_reason"] and rejects.loc[0, "stage"] == "validate"


def test_deduplicate_exact_and_normalised():
    rows = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "prompt": ["What is 1+1?", "What is 1+1?", "what is 1 + 1 ?", "What is 2+2?"],
        }
    )
    unique, duplicates = deduplicate(rows)
    assert list(unique["id"]) == ["a", "d"]
    assert dict(zip(duplicates["id"], duplicates["reject_reason"], strict=True)) == {
        "b": "exact duplicate of a",
        "c": "normalised-text duplicate of a",
    }
    assert normalise_text("Héllo,  WORLD!") == normalise_text("héllo world")


def test_user_rows_get_a_source():
    merged = merge_sources(
        pd.DataFrame({"id": ["e"], "source": ["embedded/math"]}), pd.DataFrame({"id": ["u"]})
    )
    assert list(merged["source"]) == ["embedded/math", "user"]


def test_curation_pipeline_on_micro_parameters(user_problems):
    out = run(create_pipeline(), {**MICRO, "user_problems": user_problems})
    raw, train, evaluation = out["raw_problems"], out["train_problems"], out["eval_problems"]
    rejects = out["curation_rejects"]
    # Nothing is lost: every raw row is in train, eval or the rejects.
    assert len(raw) == len(train) + len(evaluation) + len(rejects)
    assert len(evaluation) == 30
    assert not set(train["id"]) & set(evaluation["id"])
    assert {"u2", "u3"} <= set(rejects["id"])
    assert set(rejects["stage"]) == {"validate", "deduplicate"}
    # The curated tables still match the schema, both kinds present.
    assert {p.kind for p in frame_to_problems(pd.concat([train, evaluation]))} == {"math", "code"}
    report = out["curation_report"]
    assert report["raw"].sum() == len(raw) and report["train"].sum() == len(train)
    assert out["curation_metrics"]["curation/train"]["value"] == len(train)
    tokenizer = out["tokenizer"]
    assert tokenizer.tokenize("<think>")[0] == "<think>"


def test_same_seed_same_split(user_problems):
    first = run(create_pipeline(), {**MICRO, "user_problems": user_problems})
    second = run(create_pipeline(), {**MICRO, "user_problems": user_problems})
    pd.testing.assert_frame_equal(first["eval_problems"], second["eval_problems"])
