"""Run pipelines on micro parameters with Kedro's SequentialRunner, everything in memory."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from magistral_kedro.params import CurationParams, ModelParams, PromptParams, SFTParams
from magistral_kedro.rewards import RewardConfig
from tests.params import merge, raw_parameters

RAW = raw_parameters(
    "micro",
    seed=0,
    curation={"math": {"n": 300}, "code": {"n": 8}, "eval_size": 30, "vocab_size": 400},
)
MICRO = {
    "params:seed": RAW["seed"],
    "params:prompt": PromptParams.model_validate(RAW["prompt"]),
    "params:model": ModelParams.model_validate(RAW["model"]),
    "params:curation": CurationParams.model_validate(RAW["curation"]),
    "params:reward": RewardConfig(**RAW["reward"]),
}


def sft_params(checkpoint_dir: str) -> SFTParams:
    """The micro SFT section on plain torch, checkpointing into ``checkpoint_dir``."""
    raw = merge(
        RAW["sft"],
        {
            "engine": {"backend": "torch", "optim": {"max_steps": 6}},
            "loop": {"checkpoint_every": 3, "eval_every": 3, "eval_size": 8},
            "checkpoint_dir": checkpoint_dir,
            "eval_problems": 6,
            "eval_sampling": {"max_new_tokens": 16, "batch_size": 6},
        },
    )
    return SFTParams.model_validate(raw)


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so tests can read intermediate datasets."""

    def _release(self) -> None:
        pass


def run(pipeline: Pipeline, inputs: dict[str, Any]) -> dict[str, Any]:
    """Run ``pipeline`` with every dataset in memory; returns every dataset's final value."""
    datasets = {name: KeptDataset(copy_mode="assign") for name in pipeline.all_outputs()}
    datasets.update(
        {name: KeptDataset(value, copy_mode="assign") for name, value in inputs.items()}
    )
    catalog = DataCatalog(datasets)
    SequentialRunner().run(pipeline, catalog)
    names = pipeline.all_outputs() | pipeline.inputs()
    return {name: catalog.load(name) for name in names}


@pytest.fixture()
def user_problems() -> pd.DataFrame:
    """A user source with one good row, one malformed row and one duplicate of the good one."""
    good = {
        "id": "u1",
        "kind": "math",
        "language": "en",
        "difficulty": 1,
        "prompt": "What is 40 + 2?",
        "answer": "42",
        "source": "user/test",
    }
    return pd.DataFrame(
        [
            good,
            {**good, "id": "u2", "answer": None},
            {**good, "id": "u3", "prompt": "what is 40+2 ?"},
        ]
    )
