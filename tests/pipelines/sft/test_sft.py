import torch

from magistral_kedro.models import build_tiny_model
from magistral_kedro.pipelines.sft import create_pipeline as sft
from tests.support.pipelines import MICRO, SFT_EVAL, curated, run, sft_params


def test_sft_pipeline_on_micro_parameters(problem_sources, tmp_path):
    data = curated(problem_sources)
    inputs = {
        **MICRO,
        "params:sft": sft_params(str(tmp_path / "state")),
        "params:sft_eval": SFT_EVAL,
        **{k: data[k] for k in ("tokenizer", "train_problems", "eval_problems")},
        "validation_problems": data["validation_problems"],
    }
    out = run(sft(), inputs)
    data = out["sft_data_metrics"]
    assert data["sft/data/train_examples"]["value"] > 100
    # source rows and code problems carry no reference / are not in sft.kinds: counted, not lost
    assert data["sft/data/train_without_reference_or_kind"]["value"] > 0
    samples = out["sft_eval_samples"]
    assert len(samples) == 6 * (1 + 2)  # one row per completion: greedy + k = 2 sampled
    assert set(samples.columns) >= {
        "completion",
        "format_ok",
        "correct",
        "language_ok",
        "reward",
        "language",
    }
    metrics = out["sft_eval_metrics"]
    sampled = samples[samples["decoding"] == "sampled"]
    assert metrics["sft_eval/format_rate"] == sampled["format_ok"].mean()
    assert metrics["sft_eval/pass_at_1"] == sampled["correct"].mean()
    assert out["sft_eval_logged_model"] == {}  # no MLflow run in a test
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "COMPLETE",
        "step_000003",
        "step_000006",
    ]
    assert (tmp_path / "state" / "step_000006" / "hf" / "config.json").is_file()
    # The node returns the trained model (its last checkpoint), not the one it started from.
    trained = out["sft_model"].load().model.state_dict()
    model = MICRO["params:model"]
    start = build_tiny_model(out["tokenizer"], model.tiny, MICRO["params:seed"]).state_dict()
    assert out["sft_model"].path == tmp_path / "state" / "step_000006" / "hf"
    assert any(not torch.equal(trained[k], start[k]) for k in start)
