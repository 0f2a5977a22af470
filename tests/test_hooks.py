"""Project hooks that depend on dataset names: rank 0 alone writes, namespaced datasets included."""

import json
import os

import mlflow
from kedro.io import DataCatalog, MemoryDataset

from magistral_kedro import hooks
from magistral_kedro.pipelines.curation import create_pipeline as curation
from magistral_kedro.pipelines.rl import create_pipeline as rl
from magistral_kedro.pipelines.sft import create_pipeline as sft
from tests.support.params import raw_catalog
from tests.support.paths import PROJECT_ROOT


def test_ranks_after_the_first_write_nothing_namespaced_outputs_included(monkeypatch):
    catalog = DataCatalog.from_config(raw_catalog())
    pipeline = curation() + sft() + rl()
    written = {"difficulty_stage1.pass_rates", "difficulty_stage2.suspects", "sft_eval_samples"}
    assert written <= pipeline.all_outputs()
    assert all(not isinstance(catalog.get(name), MemoryDataset) for name in written)
    monkeypatch.setattr(hooks.distributed, "is_main", lambda: False)
    hooks.RankZeroWritesHook().before_pipeline_run(pipeline=pipeline, catalog=catalog)
    for name in pipeline.all_outputs():
        assert isinstance(catalog.get(name), MemoryDataset), name


def test_system_metrics_are_switched_on_unless_the_user_said_no(monkeypatch):
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    hooks.SystemMetricsHook().after_context_created()
    assert os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] == "true"
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    hooks.SystemMetricsHook().after_context_created()
    assert os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] == "false"


def test_the_problem_sets_a_run_reads_are_its_inputs_once_each(tmp_path, math_problems):
    """Lineage: train / eval / RL sets loaded by a run are MLflow inputs, with their file, the
    digest of their content and what the run used them for; other datasets are not."""
    from magistral_kedro.tasks.frames import problems_to_frame

    catalog = DataCatalog.from_config(raw_catalog())
    hook = hooks.DatasetInputsHook()
    hook.after_catalog_created(catalog=catalog)
    train, evaluation = (
        problems_to_frame(math_problems[:20]),
        problems_to_frame(math_problems[20:30]),
    )
    hook.after_dataset_loaded(dataset_name="train_problems", data=train)  # no run: nothing
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment("lineage")
        with mlflow.start_run() as run:
            for name, data in [
                ("train_problems", train),
                ("eval_problems", evaluation),
                ("train_problems", train),  # read again by another node
                ("curated_problems", train),
            ]:
                hook.after_dataset_loaded(dataset_name=name, data=data)
        inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    finally:
        mlflow.set_tracking_uri("")
    logged = {
        i.dataset.name: (i.dataset.digest, json.loads(i.dataset.source)["uri"], i.tags[0].value)
        for i in inputs
    }
    assert len(inputs) == 2
    assert logged == {
        "train_problems": (
            mlflow.data.from_pandas(train).digest,
            str((PROJECT_ROOT / "data/05_model_input/train_problems.jsonl").resolve()),
            "training",
        ),
        "eval_problems": (
            mlflow.data.from_pandas(evaluation).digest,
            str((PROJECT_ROOT / "data/05_model_input/eval_problems.jsonl").resolve()),
            "evaluation",
        ),
    }
