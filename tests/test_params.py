"""Typed parameters: the shipped configuration is valid; wrong values name key and value."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from magistral_kedro.params import CurationParams, ModelParams, PromptParams, SFTParams

CONF = Path(__file__).resolve().parents[1] / "conf"


def _load(env: str, name: str) -> dict:
    return yaml.safe_load((CONF / env / name).read_text())


def test_shipped_base_parameters_validate():
    base = _load("base", "parameters.yml")
    ModelParams.model_validate(base["model"])
    PromptParams.model_validate(base["prompt"])
    CurationParams.model_validate(_load("base", "parameters_curation.yml")["curation"])
    sft = SFTParams.model_validate(_load("base", "parameters_sft.yml")["sft"])
    assert sft.engine.optim.lr == pytest.approx(3e-3)


@pytest.mark.parametrize(
    ("model", "raw", "needle"),
    [
        (SFTParams, {"engine": {"optim": {"lr": -0.1}}}, "lr"),
        (SFTParams, {"engine": {"zero_stage": 5}}, "zero_stage"),
        (SFTParams, {"loop": {"batch_size": 0}}, "batch_size"),
        (SFTParams, {"lopo": {}}, "lopo"),
        (CurationParams, {"math": {"languages": {"en": 1.0, "xx": 1.0}}}, "xx"),
        (CurationParams, {"code": {"tests_per_problem": 5}}, "tests_per_problem"),
        (ModelParams, {"name_or_path": "/no/such/model"}, "/no/such/model"),
    ],
)
def test_wrong_values_name_the_key_and_the_value(model, raw, needle):
    with pytest.raises(ValidationError) as error:
        model.model_validate(raw)
    assert needle in str(error.value)


def test_a_real_checkpoint_directory_is_accepted(micro_checkpoint, tmp_path):
    from magistral_kedro.models import save_checkpoint

    save_checkpoint(micro_checkpoint, tmp_path)
    assert ModelParams(name_or_path=str(tmp_path)).name_or_path == str(tmp_path)
