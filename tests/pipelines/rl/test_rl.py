from magistral_kedro.params import ModelEvalParams, RLParams
from magistral_kedro.pipelines.rl import create_pipeline as rl
from magistral_kedro.pipelines.sft import create_pipeline as sft
from tests.params import merge
from tests.pipelines.conftest import MICRO, RAW, SFT_EVAL, curated, filtered, run, sft_params


def test_rl_pipeline_on_micro_parameters(problem_sources, tmp_path):
    """curation -> sft -> difficulty stage 1 with the SFT model -> rl on the RL set."""
    data = {
        k: v
        for k, v in curated(problem_sources).items()
        if k in ("tokenizer", "train_problems", "eval_problems")
    }
    sft_inputs = {"params:sft": sft_params(str(tmp_path / "sft")), "params:sft_eval": SFT_EVAL}
    trained = run(sft(), {**MICRO, **sft_inputs, **data})
    stage1 = filtered(data, trained["sft_model"])
    rates = stage1["difficulty_stage1.pass_rates"]
    assert len(rates) == 24 and set(rates["n_samples"]) == {4}  # micro: 24 problems x 4
    rl_problems = stage1["rl_problems"]
    assert set(rates["problem_id"]) | set(rl_problems.loc[rl_problems["kind"] == "code", "id"]) >= (
        set(rl_problems["id"])
    )
    rl_params = RLParams.model_validate(
        merge(RAW["rl"], {"engine": {"backend": "torch"}, "checkpoint_dir": str(tmp_path / "rl")})
    )
    inputs = {
        **MICRO,
        "params:rl": rl_params,
        "params:rl_eval": ModelEvalParams.model_validate(RAW["rl_eval"]),
        "sft_model": trained["sft_model"],
        "base_model": trained["base_model"],
        "rl_problems": rl_problems,
        "eval_problems": data["eval_problems"],
    }
    out = run(rl(), inputs)
    samples = out["rl_samples"]
    assert sorted(samples["step"].unique()) == [1, 2, 3, 4]
    assert {"completion", "total", "format", "correct", "reason"} <= set(samples.columns)
    assert len(out["rl_eval_samples"]) == 8 * (1 + 2)  # greedy + k = 2 sampled, per problem
    assert "rl_eval/greedy_accuracy" in out["rl_eval_metrics"]
    assert sorted(p.name for p in (tmp_path / "rl").glob("step_*")) == [
        "step_000002",
        "step_000004",
    ]
