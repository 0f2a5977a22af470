"""The eval pipeline: benchmarks from sources, a checkpoint from anywhere, the run comparison."""

import json

import mlflow
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from magistral_kedro.evaluation import LOGGED
from magistral_kedro.models import CheckpointRef, save_checkpoint
from magistral_kedro.params import EvalParams, ModelEvalParams
from magistral_kedro.pipelines.eval import create_pipeline
from magistral_kedro.pipelines.eval.nodes import (
    COMPARED,
    collect_benchmarks,
    compare_runs,
    evaluate_model,
    log_model,
    resolve_checkpoint,
)
from magistral_kedro.pipelines.templates import SHARED_PARAMETERS as SHARED
from magistral_kedro.registry import problem_set
from tests.support.params import merge
from tests.support.pipelines import MICRO, RAW, SOURCE_MAPPINGS, load_sources, run


def eval_params(**overrides) -> EvalParams:
    return EvalParams.model_validate(merge(RAW["eval"], overrides))


@pytest.fixture()
def heldout(math_problems):
    from magistral_kedro.tasks.frames import problems_to_frame

    return problems_to_frame(math_problems[:6])


def test_benchmarks_from_sources_with_rejects_and_an_empty_file_left_out(heldout):
    sources = load_sources()
    sources["empty"] = []
    mappings = {**SOURCE_MAPPINGS, "empty": SOURCE_MAPPINGS["gsm8k_style"]}
    benchmarks, rejects = collect_benchmarks(heldout, sources, eval_params(benchmarks=mappings))
    assert set(benchmarks) == {"heldout", "math_style", "gsm8k_style", "code_style"}
    assert len(benchmarks["gsm8k_style"]) == 3  # the row without "####" is a reject
    assert any(r.startswith("no_answer") for r in rejects["reject_reason"])
    with pytest.raises(ValueError, match=r"\['math_style'\] have no column mapping"):
        collect_benchmarks(heldout, {"math_style": []}, eval_params())


def test_checkpoints_are_resolved_or_refused_with_the_reason(micro_checkpoint, tmp_path):
    assert resolve_checkpoint(micro_checkpoint, eval_params()) is micro_checkpoint
    save_checkpoint(micro_checkpoint, tmp_path / "ckpt")
    rl_model = CheckpointRef(tmp_path / "rl_model", dtype="bfloat16")  # only orders the node
    resolved = resolve_checkpoint(rl_model, eval_params(checkpoint=str(tmp_path / "ckpt")))
    assert resolved == CheckpointRef(tmp_path / "ckpt", dtype="bfloat16")  # the configured dtype
    loaded = resolved.load()
    assert loaded.model.config.hidden_size == micro_checkpoint.model.config.hidden_size
    with pytest.raises(ValidationError, match=r"eval.checkpoint=.*not a local checkpoint"):
        eval_params(checkpoint=str(tmp_path / "nowhere"))
    with pytest.raises(ValidationError, match="runs:/<run_id>/<artifact path>"):
        eval_params(checkpoint="runs:/abc")
    with pytest.raises(ValidationError, match="models:/<name>/<version or latest>"):
        eval_params(checkpoint="models:/")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with pytest.raises(ValueError, match="could not be fetched from MLflow"):
            resolve_checkpoint(rl_model, eval_params(checkpoint="runs:/0123456789abcdef/ckpt"))
    finally:
        mlflow.set_tracking_uri("")


def test_the_pipeline_grades_every_sample_and_names_metrics_per_benchmark(
    heldout, micro_checkpoint
):
    params = eval_params(
        max_problems=3,
        k=2,
        sampling={"max_new_tokens": 8, "batch_size": 8},
        benchmarks={"gsm8k_style": SOURCE_MAPPINGS["gsm8k_style"]},
    )
    inputs = {
        **MICRO,
        "params:eval": params,
        "eval_problems": heldout,
        "eval_sources": {"gsm8k_style": load_sources()["gsm8k_style"]},
        "rl_model": micro_checkpoint,
    }
    out = run(create_pipeline(), inputs)
    samples = out["eval_samples"]
    # 3 problems each of 2 benchmarks x (1 greedy + 2 sampled)
    assert len(samples) == 2 * 3 * 3
    assert set(samples["decoding"]) == {"greedy", "sampled"}
    summary = out["eval_summary"]
    assert set(summary["benchmark"]) == {"heldout", "gsm8k_style"}
    metrics = out["eval_metrics"]
    assert {"eval/heldout/pass_at_1", "eval/gsm8k_style/maj_at_k"} <= set(metrics)
    assert any(key.startswith("eval/heldout/language_") for key in metrics)
    assert any(key.startswith("eval/heldout/difficulty_") for key in metrics)
    assert out["eval_comparison"].empty  # no MLflow run in a test


def test_the_comparison_labels_models_across_runs(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment("compare")
        with mlflow.start_run():  # an older run: RL from the base model
            mlflow.log_params({"rl.init": "base"})
            mlflow.log_metrics({"rl_eval/greedy_accuracy": 0.1, "rl_eval/pass_at_1": 0.05})
        with mlflow.start_run():
            mlflow.log_params({"rl.init": "sft", "eval.checkpoint": "None"})
            # Logged twice at step 0: the later value counts.
            mlflow.log_metric("sft_eval/greedy_accuracy", 0.1, timestamp=1000)
            mlflow.log_metrics(
                {
                    "sft_eval/greedy_accuracy": 0.7,
                    "rl_eval/greedy_accuracy": 0.72,
                    "sft_eval/pass_at_1": 0.55,
                    "sft_eval/accuracy": 0.0,  # an old name: not read
                }
            )
            summary = pd.DataFrame(
                [
                    {
                        "benchmark": "heldout",
                        "slice": "all",
                        "pass_at_1": 0.6,
                        "greedy_accuracy": 0.73,
                    }
                ]
            )
            table = compare_runs(summary, eval_params())
    finally:
        mlflow.set_tracking_uri("")
    labels = list(zip(table["model"], table["evaluated_by"], strict=True))
    assert labels == [
        ("SFT", "sft_eval"),
        ("SFT+RL", "rl_eval"),
        ("SFT+RL", "eval"),
        ("RL", "rl_eval"),
    ]
    assert table.iloc[0]["greedy_accuracy"] == 0.7 and table.iloc[0]["pass_at_1"] == 0.55
    assert table.iloc[2]["pass_at_1"] == 0.6 and table.iloc[3]["pass_at_1"] == 0.05
    assert list(table.columns[-6:]) == list(COMPARED)
    assert json.dumps(table.astype(str).to_dict())  # plain values, CSV-able


def test_the_sft_and_rl_evaluations_are_one_template_under_two_namespaces():
    """What `kedro run --namespaces sft_eval` runs: the template's node on the SFT model with
    the sft_eval section; rl_eval the same on the RL model. Their outputs keep their names."""
    from magistral_kedro.pipelines.rl import create_pipeline as rl
    from magistral_kedro.pipelines.sft import create_pipeline as sft

    shared = {f"params:{name}" for name in ("prompt", "reward", "generation", "seed")}
    for pipeline, namespace, model in (
        (sft(), "sft_eval", "sft_model"),
        (rl(), "rl_eval", "rl_model"),
    ):
        node, logged = pipeline.only_nodes_with_namespaces([namespace]).nodes
        assert node.name == f"{namespace}.evaluate_model" and node.func is evaluate_model
        assert set(node.inputs) == {model, "eval_problems", f"params:{namespace}"} | shared
        assert node.outputs == [f"{namespace}_samples", f"{namespace}_metrics"]
        assert logged.name == f"{namespace}.log_model" and logged.func is log_model
        assert set(logged.inputs) == {
            model,
            f"{namespace}_metrics",
            "eval_problems",
            f"params:{namespace}",
            "params:prompt",
        }
        assert logged.outputs == [f"{namespace}_logged_model"]


@pytest.mark.parametrize("namespace", ["sft_eval", "rl_eval"])
def test_kedro_rejects_a_bad_evaluation_value_naming_the_section_and_key(namespace):
    from kedro.validation.exceptions import ParameterValidationError
    from kedro.validation.parameter_validator import ParameterValidator

    from magistral_kedro.pipelines.rl import create_pipeline as rl
    from magistral_kedro.pipelines.sft import create_pipeline as sft

    validator = ParameterValidator({"sft": sft(), "rl": rl()})
    with pytest.raises(ParameterValidationError) as error:
        validator.validate_raw_params(merge(RAW, {namespace: {"k": -1}}))
    assert f"Parameter '{namespace}'" in str(error.value) and "\nk\n" in str(error.value)
    with pytest.raises(ParameterValidationError, match="metrics_prefix"):
        validator.validate_raw_params(merge(RAW, {namespace: {"metrics_prefix": "eval"}}))
    assert isinstance(validator.validate_raw_params(RAW)[namespace], ModelEvalParams)


def test_the_evaluation_names_its_metrics_by_its_section(micro_checkpoint, heldout):
    settings = ModelEvalParams.model_validate(
        merge(RAW["rl_eval"], {"max_problems": 2, "k": 1, "sampling": {"max_new_tokens": 4}})
    )
    samples, metrics = evaluate_model(
        micro_checkpoint, heldout, settings, *(MICRO[f"params:{p}"] for p in SHARED)
    )
    assert len(samples) == 2 * (1 + 1)  # one row per completion: greedy + k = 1 sampled
    assert set(samples["decoding"]) == {"greedy", "sampled"}
    # The eval pipeline's names, under the section's prefix; slices as eval/<benchmark>/...
    assert set(metrics) >= {f"rl_eval/{m}" for m in LOGGED}
    assert (
        metrics["rl_eval/greedy_accuracy"]
        == samples.query("decoding == 'greedy'")["correct"].mean()
    )
    assert any(key.startswith("rl_eval/language_") for key in metrics)
    assert not {"rl_eval/accuracy", "rl_eval/sampled_accuracy"} & set(metrics)
    assert all(key.startswith("rl_eval/") for key in metrics)


def test_the_evaluated_model_is_registered_with_its_metrics_and_resolves_back(
    micro_checkpoint, heldout, tmp_path
):
    """The template's second node: the model as an MLflow model (transformers flavour),
    registered; its metrics in the run, linked to it and to the eval set (and no other metric of
    the run); `eval.checkpoint=models:/<name>/latest` gives back the same weights."""
    settings = ModelEvalParams.model_validate(
        merge(RAW["rl_eval"], {"registered_model": "magistral-rl"})
    )
    metrics = {"rl_eval/greedy_accuracy": 0.25, "rl_eval/language_fr/pass_at_1": 0.5}
    prompt = MICRO["params:prompt"]
    assert log_model(micro_checkpoint, metrics, heldout, settings, prompt) == {}  # no run
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment("registry")
        with mlflow.start_run() as run:
            mlflow.log_metric("curation/rows", 10.0)  # step 0 too, but not the model's
            logged = log_model(micro_checkpoint, metrics, heldout, settings, prompt)
        client = mlflow.MlflowClient()
        version = client.get_model_version("magistral-rl", logged["version"])
        assert version.run_id == run.info.run_id and logged["version"] == "1"
        model = mlflow.get_logged_model(logged["model_id"])
        assert model.source_run_id == run.info.run_id
        assert {m.key: m.value for m in model.metrics} == metrics
        digest = problem_set(heldout, "eval_problems").digest
        assert {(m.dataset_name, m.dataset_digest) for m in model.metrics} == {
            ("eval_problems", digest)
        }
        (used,) = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
        assert (used.dataset.name, used.dataset.digest) == ("eval_problems", digest)
        assert mlflow.get_run(run.info.run_id).data.metrics["rl_eval/greedy_accuracy"] == 0.25

        rl_model = CheckpointRef(tmp_path / "rl_model")  # only orders the node
        latest = eval_params(checkpoint="models:/magistral-rl/latest")
        resolved = resolve_checkpoint(rl_model, latest).load()
        for name, tensor in micro_checkpoint.model.state_dict().items():
            assert torch.equal(resolved.model.state_dict()[name], tensor), name
        assert resolved.tokenizer.get_vocab() == micro_checkpoint.tokenizer.get_vocab()
        assert resolved.tokenizer.chat_template == micro_checkpoint.tokenizer.chat_template
        pipeline = mlflow.transformers.load_model("models:/magistral-rl/1")
        assert pipeline.model.config.hidden_size == micro_checkpoint.model.config.hidden_size
        (answer,) = mlflow.pyfunc.load_model("models:/magistral-rl/latest").predict(
            ["2 + 2 = ?"], params={"max_new_tokens": 4}
        )
        assert isinstance(answer, str) and "2 + 2" not in answer  # the completion alone

        without = ModelEvalParams.model_validate(merge(RAW["rl_eval"], {"registered_model": None}))
        with mlflow.start_run() as other:
            assert log_model(micro_checkpoint, metrics, heldout, without, prompt) == {}
        assert mlflow.get_run(other.info.run_id).data.metrics == metrics
        assert len(client.search_model_versions("name='magistral-rl'")) == 1
        with pytest.raises(ValueError, match="could not be fetched from MLflow"):
            resolve_checkpoint(rl_model, eval_params(checkpoint="models:/nothing/latest"))
    finally:
        mlflow.set_tracking_uri("")
