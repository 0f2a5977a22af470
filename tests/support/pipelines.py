"""Run pipelines on micro parameters with Kedro's SequentialRunner, everything in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from magistral_kedro.datasets import ProblemSourcesDataset
from magistral_kedro.generation import GenerationConfig
from magistral_kedro.models import Checkpoint
from magistral_kedro.params import (
    CurationParams,
    DifficultyStageParams,
    ModelEvalParams,
    ModelParams,
    PromptParams,
    SFTParams,
)
from magistral_kedro.pipelines.curation import create_pipeline as curation
from magistral_kedro.rewards import RewardConfig
from tests.support.params import merge, raw_parameters

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
SOURCE_FILES = {
    "math_style": "math_style.jsonl",
    "gsm8k_style": "gsm8k_style.jsonl",
    "code_style": "code_style.parquet",
}
SOURCE_MAPPINGS = {
    "math_style": {
        "kind": "math",
        "prompt": "problem",
        "id": "unique_id",
        "difficulty": "level",
        "answer": {"column": "solution", "extract": "last_boxed"},
    },
    "gsm8k_style": {
        "kind": "math",
        "prompt": "question",
        "answer": {"column": "answer", "extract": "after_hashes"},
    },
    "code_style": {
        "kind": "code",
        "prompt": "statement",
        "id": "name",
        "solutions": "solutions",
        "input_generator": "generator",
        "tests": {"column": "tests", "input_key": "stdin", "output_key": "stdout"},
    },
}


RAW = raw_parameters(
    "micro",
    seed=0,
    curation={
        "math": {"n": 300},
        "code": {"n": 4},
        "eval_size": 30,
        "vocab_size": 400,
        "sources": SOURCE_MAPPINGS,
    },
)
MICRO = {
    "params:seed": RAW["seed"],
    "params:prompt": PromptParams.model_validate(RAW["prompt"]),
    "params:model": ModelParams.model_validate(RAW["model"]),
    "params:curation": CurationParams.model_validate(RAW["curation"]),
    "params:difficulty_stage1": DifficultyStageParams.model_validate(RAW["difficulty_stage1"]),
    "params:reward": RewardConfig(**RAW["reward"]),
    "params:generation": GenerationConfig(**RAW["generation"]),
}


def sft_params(checkpoint_dir: str) -> SFTParams:
    """The micro SFT section on plain torch, checkpointing into ``checkpoint_dir``."""
    raw = merge(
        RAW["sft"],
        {
            "engine": {"backend": "torch", "optim": {"max_steps": 6}},
            "loop": {"checkpoint_every": 3, "eval_every": 3, "eval_size": 8},
            "checkpoint_dir": checkpoint_dir,
        },
    )
    return SFTParams.model_validate(raw)


#: The micro SFT model's evaluation, shorter still (6 problems, 16 tokens).
SFT_EVAL = ModelEvalParams.model_validate(
    merge(RAW["sft_eval"], {"max_problems": 6, "sampling": {"max_new_tokens": 16, "batch_size": 6}})
)


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


def load_sources() -> dict[str, list[dict[str, Any]]]:
    """The three fixture sources (MATH-, GSM8K- and code-style) as the catalog loads them."""
    files = {name: str(FIXTURES / file) for name, file in SOURCE_FILES.items()}
    return ProblemSourcesDataset(files).load()


def curated(problem_sources: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The curation pipeline up to the split and the tokenizer (no model needed)."""
    pipeline = curation().to_outputs(
        "train_problems", "eval_problems", "validation_problems", "tokenizer"
    )
    return run(pipeline, {**MICRO, "problem_sources": problem_sources})


def filtered(data: dict[str, Any], sft_model: Checkpoint) -> dict[str, Any]:
    """Difficulty stage 1 on ``data``'s training problems with ``sft_model``: the RL set."""
    stage = curation().only_nodes_with_namespaces(["difficulty_stage1"])
    return run(stage, {**MICRO, "train_problems": data["train_problems"], "sft_model": sft_model})
