from magistral_kedro.params import RLParams
from magistral_kedro.pipelines.curation import create_pipeline as curation
from magistral_kedro.pipelines.rl import create_pipeline as rl
from magistral_kedro.pipelines.sft import create_pipeline as sft
from tests.params import merge
from tests.pipelines.conftest import MICRO, RAW, run, sft_params


def test_rl_pipeline_on_micro_parameters(user_problems, tmp_path):
    curated = run(curation(), {**MICRO, "user_problems": user_problems})
    data = {k: curated[k] for k in ("tokenizer", "train_problems", "eval_problems")}
    trained = run(sft(), {**MICRO, "params:sft": sft_params(str(tmp_path / "sft")), **data})
    rl_params = RLParams.model_validate(
        merge(RAW["rl"], {"engine": {"backend": "torch"}, "checkpoint_dir": str(tmp_path / "rl")})
    )
    out = run(rl(), {**MICRO, "params:rl": rl_params, "sft_model": trained["sft_model"], **data})
    samples = out["rl_samples"]
    assert sorted(samples["step"].unique()) == [1, 2, 3, 4]
    assert {"completion", "total", "format", "correct", "reason"} <= set(samples.columns)
    assert len(out["rl_eval_samples"]) == 8
    assert "rl_eval/accuracy" in out["rl_eval_metrics"]
    assert sorted(p.name for p in (tmp_path / "rl").glob("step_*")) == [
        "step_000002",
        "step_000004",
    ]
