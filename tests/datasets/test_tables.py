"""A table on disk that is also an MLflow table of the run."""

import mlflow
import pandas as pd

from magistral_kedro.datasets import MlflowTableDataset

JSONL = {
    "type": "pandas.JSONDataset",
    "load_args": {"lines": True, "orient": "records"},
    "save_args": {"lines": True, "orient": "records", "force_ascii": False},
}


def test_the_rows_go_to_disk_and_to_the_run_as_a_table(tmp_path):
    rows = pd.DataFrame(
        {
            "problem_id": ["a", "b", "c"],
            "completion": ["<think>x</think> \\boxed{1}", "déjà 2", "3"],
            "correct": [True, False, True],
            "reward": [1.0, 0.1, 0.9],
        }
    )
    dataset = MlflowTableDataset(
        {**JSONL, "filepath": str(tmp_path / "samples.jsonl")}, artifact_file="eval/samples.json"
    )
    dataset.save(rows)  # no run: the file alone
    pd.testing.assert_frame_equal(dataset.load(), rows)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment("tables")
        with mlflow.start_run() as run:
            dataset.save(rows)
            MlflowTableDataset(
                {**JSONL, "filepath": str(tmp_path / "head.jsonl")},
                artifact_file="eval/head.json",
                max_rows=2,
            ).save(rows)
        table = mlflow.load_table("eval/samples.json", run_ids=[run.info.run_id])
        head = mlflow.load_table("eval/head.json", run_ids=[run.info.run_id])
        tags = mlflow.get_run(run.info.run_id).data.tags["mlflow.loggedArtifacts"]
    finally:
        mlflow.set_tracking_uri("")
    pd.testing.assert_frame_equal(table, rows)
    assert list(head["problem_id"]) == ["a", "b"]
    assert '"path": "eval/samples.json", "type": "table"' in tags  # the UI shows it as a table
    assert dataset.exists()
