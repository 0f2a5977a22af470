"""Typed parameters: the shipped configuration is valid; wrong values name key and value."""

import pytest
from pydantic import ValidationError

from magistral_kedro.params import (
    CurationParams,
    DifficultyStageParams,
    ModelEvalParams,
    ModelParams,
    PromptParams,
    RLParams,
    SFTParams,
)
from magistral_kedro.rewards import RewardConfig
from tests.support.params import raw_parameters
from tests.support.paths import PROJECT_ROOT

SECTIONS = {
    "model": ModelParams,
    "prompt": PromptParams,
    "curation": CurationParams,
    "difficulty_stage1": DifficultyStageParams,
    "difficulty_stage2": DifficultyStageParams,
    "sft": SFTParams,
    "sft_eval": ModelEvalParams,
    "rl": RLParams,
    "rl_eval": ModelEvalParams,
}


@pytest.mark.parametrize("env", ["base", "micro", "dynamics", "long"])
def test_shipped_parameters_validate(env):
    raw = raw_parameters(env)
    for name, model in SECTIONS.items():
        model.model_validate(raw[name])
    assert RewardConfig(**raw["reward"]) == RewardConfig()  # the YAML holds the paper's numbers
    assert isinstance(raw["seed"], int)


def test_gpu_parameters_fail_only_on_the_missing_checkpoint():
    raw = raw_parameters("gpu")
    for name in SECTIONS.keys() - {"model"}:
        SECTIONS[name].model_validate(raw[name])
    with pytest.raises(ValidationError, match=r"Qwen2\.5-1\.5B-Instruct"):
        ModelParams.model_validate(raw["model"])


def test_smol_parameters_validate_but_for_a_missing_model():
    raw = raw_parameters("smol")
    for name in SECTIONS.keys() - {"model"}:
        SECTIONS[name].model_validate(raw[name])
    RewardConfig(**raw["reward"])
    stage = raw["rl"]["curriculum"][0]
    assert raw["reward"]["l_max"] >= stage["l_max"]  # evaluation never penalises RL's lengths
    model_dir = raw["model"]["name_or_path"]
    if (PROJECT_ROOT / model_dir).is_dir():
        return
    with pytest.raises(ValidationError, match="smollm2-135m-instruct"):
        ModelParams.model_validate(raw["model"])


@pytest.mark.parametrize(
    ("section", "override", "needle"),
    [
        ("sft", {"engine": {"optim": {"lr": -0.1}}}, "lr"),
        ("sft", {"engine": {"zero_stage": 5}}, "zero_stage"),
        ("sft", {"loop": {"batch_size": 0}}, "batch_size"),
        ("sft", {"lopo": {}}, "lopo"),
        ("curation", {"math": {"languages": {"en": 1.0, "xx": 1.0}}}, "xx"),
        ("curation", {"math": {"levels": {7: 1.0}}}, "7"),
        ("curation", {"validation_size": -1}, "validation_size"),
        ("curation", {"code": {"tests_per_problem": 5}}, "tests_per_problem"),
        ("model", {"name_or_path": "/no/such/model"}, "/no/such/model"),
        ("rl", {"grpo": {"group_size": 1}}, "group_size"),
        ("rl", {"curriculum": [{"start_step": 5}]}, "the first starts at step 0"),
        ("rl", {"curriculum": [{"start_step": 0}, {"start_step": 0}]}, "later steps in order"),
        ("rl", {"curriculum": [{}, {"start_step": None}]}, "neither start_step nor min_reward"),
        ("rl", {"curriculum": []}, "curriculum"),
        ("difficulty_stage2", {"bounds": {"low": 2.0}}, "low"),
        ("difficulty_stage1", {"model": "/no/such/model"}, "/no/such/model"),
        ("rl", {"keep_checkpoint_artifacts": 0}, "keep_checkpoint_artifacts"),
        ("sft", {"keep_checkpoint_artifacts": -1}, "keep_checkpoint_artifacts"),
    ],
)
def test_wrong_values_name_the_key_and_the_value(section, override, needle):
    raw = raw_parameters("base", **{section: override})
    with pytest.raises(ValidationError) as error:
        SECTIONS[section].model_validate(raw[section])
    assert needle in str(error.value)


def test_a_missing_key_is_named():
    raw = raw_parameters("base")["curation"]
    del raw["eval_size"]
    with pytest.raises(ValidationError, match="eval_size"):
        CurationParams.model_validate(raw)


def test_a_real_checkpoint_directory_is_accepted(micro_checkpoint, tmp_path):
    from magistral_kedro.models import save_checkpoint

    save_checkpoint(micro_checkpoint, tmp_path)
    raw = raw_parameters("base", model={"name_or_path": str(tmp_path)})["model"]
    assert ModelParams.model_validate(raw).name_or_path == str(tmp_path)


def test_the_dynamics_env_trains_longer_and_changes_nothing_else_of_the_recipe():
    base, longer = raw_parameters("base"), raw_parameters("dynamics")
    assert (
        longer["sft"]["engine"]["optim"]["max_steps"] > base["sft"]["engine"]["optim"]["max_steps"]
    )
    assert longer["rl"]["engine"]["optim"]["max_steps"] > base["rl"]["engine"]["optim"]["max_steps"]
    for section in ("rl", "sft"):
        for key in ("grpo", "curriculum", "loop"):
            assert longer[section].get(key) == base[section].get(key), (section, key)
    assert longer["curation"] == base["curation"] and longer["reward"] == base["reward"]


def test_the_long_env_raises_the_allowance_in_stages_up_to_the_default_one():
    base, long = raw_parameters("base"), raw_parameters("long")
    stages = long["rl"]["curriculum"]
    allowances = [stage["l_max"] - stage["l_cache"] for stage in stages]
    assert allowances == sorted(set(allowances)) and len(stages) == 3
    assert stages[-1] | {"start_step": 0} == base["rl"]["curriculum"][0]
    assert stages[-1]["start_step"] < long["rl"]["engine"]["optim"]["max_steps"]
    grpo = {**long["rl"]["grpo"], "checkpoint_every": base["rl"]["grpo"]["checkpoint_every"]}
    assert grpo == base["rl"]["grpo"] and long["reward"] == base["reward"]
