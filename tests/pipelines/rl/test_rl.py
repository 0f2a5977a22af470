import pytest
import torch
from kedro.io.core import Version

from magistral_kedro.datasets import HFCheckpointDataset
from magistral_kedro.models import Checkpoint, CheckpointRef, build_tiny_model, save_checkpoint
from magistral_kedro.params import ModelEvalParams, RLParams
from magistral_kedro.pipelines.rl import create_pipeline as rl
from magistral_kedro.pipelines.sft import create_pipeline as sft
from tests.support.params import merge
from tests.support.pipelines import MICRO, RAW, SFT_EVAL, curated, filtered, run, sft_params


def _curated_and_sft(problem_sources, tmp_path):
    """The micro curation's sets and tokenizer, and the sft pipeline's outputs on them."""
    data = {
        k: v
        for k, v in curated(problem_sources).items()
        if k in ("tokenizer", "train_problems", "eval_problems", "validation_problems")
    }
    sft_inputs = {"params:sft": sft_params(str(tmp_path / "sft")), "params:sft_eval": SFT_EVAL}
    return data, run(sft(), {**MICRO, **sft_inputs, **data})


def test_rl_pipeline_on_micro_parameters(problem_sources, tmp_path):
    """curation -> sft -> difficulty stage 1 with the SFT model -> rl on the RL set."""
    data, trained = _curated_and_sft(problem_sources, tmp_path)
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


def _weights(reference):
    return {k: v.clone() for k, v in reference.load().model.state_dict().items()}


def _distance(a, b):
    return sum(float((a[k] - b[k]).double().pow(2).sum()) for k in a) ** 0.5


def test_rl_trains_the_model_it_starts_from(problem_sources, tmp_path, monkeypatch):
    """rl.init picks the start: with no signal (the micro SFT model never answers right) the
    returned model is the start itself, bit for bit; with a signal (a stand-in verifier) it
    moves, and stays near the model it started from, here the untrained base model, which
    needs no SFT model saved."""
    from magistral_kedro.grpo import rollouts
    from tests.support.grpo import parity_reward

    data, trained = _curated_and_sft(problem_sources, tmp_path)
    # The base model as the catalog holds it: SFT trained the in-memory one in place.
    tiny = MICRO["params:model"].tiny
    base = Checkpoint(
        build_tiny_model(data["tokenizer"], tiny, MICRO["params:seed"]), data["tokenizer"]
    )
    save_checkpoint(base, tmp_path / "base")
    base_model = CheckpointRef(tmp_path / "base")
    sft_weights, base_weights = _weights(trained["sft_model"]), _weights(base_model)

    def rl_run(init, directory, sft_model=trained["sft_model"]):
        params = merge(
            RAW["rl"],
            {
                "init": init,
                "engine": {"backend": "torch"},
                "checkpoint_dir": str(tmp_path / directory),
            },
        )
        inputs = {
            **MICRO,
            "params:rl": RLParams.model_validate(params),
            "params:rl_eval": ModelEvalParams.model_validate(RAW["rl_eval"]),
            "sft_model": sft_model,
            "base_model": base_model,
            "rl_problems": data["train_problems"],
            "eval_problems": data["eval_problems"],
        }
        return run(rl().only_nodes("train_rl"), inputs)

    unchanged = _weights(rl_run("sft", "no_signal")["rl_model"])
    assert all(torch.equal(unchanged[k], sft_weights[k]) for k in sft_weights)
    monkeypatch.setattr(rollouts, "score_batch", parity_reward)
    # From the base model, no SFT model is needed: one that was never saved does not stop it.
    never_saved = HFCheckpointDataset(str(tmp_path / "none"), version=Version(None, None)).load()
    with pytest.raises(FileNotFoundError, match="has not run"):
        rl_run("sft", "from_nothing", never_saved)
    moved = _weights(rl_run("base", "from_base", never_saved)["rl_model"])
    assert _distance(moved, base_weights) > 0
    assert _distance(moved, base_weights) < 0.1 * _distance(moved, sft_weights)
