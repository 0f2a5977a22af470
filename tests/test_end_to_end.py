"""`kedro run --env micro` in a copy of the project: outputs on disk, everything in MLflow."""

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def kedro_run(root: Path, *args: str) -> subprocess.CompletedProcess:
    """``kedro run --env micro [args]`` in ``root``, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--env", "micro", *args],
        cwd=root,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A fresh copy of the project (conf, pyproject, the example source) and one micro run."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copy(PROJECT_ROOT / ".telemetry", root)
    (root / "src").mkdir()  # Kedro wants it; the package itself is installed (pip -e)
    (root / "data" / "01_raw").mkdir(parents=True)
    shutil.copy(
        PROJECT_ROOT / "data" / "01_raw" / "example_problems.jsonl", root / "data" / "01_raw"
    )
    result = kedro_run(root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return root


def test_outputs_land_in_their_layers(project):
    data = project / "data"
    for path in (
        "01_raw/embedded_problems.jsonl",
        "05_model_input/train_problems.jsonl",
        "05_model_input/eval_problems.jsonl",
        "02_intermediate/curation_rejects.jsonl",
        "08_reporting/curation_report.csv",
        "08_reporting/curation_funnel.png",
        "07_model_output/difficulty_stage1_pass_rates.jsonl",
        "07_model_output/difficulty_stage2_pass_rates.jsonl",
        "05_model_input/rl_problems.jsonl",
        "05_model_input/rl_problems_stage2.jsonl",
        "07_model_output/sft_eval_samples.jsonl",
        "07_model_output/rl_samples.jsonl",
        "07_model_output/rl_eval_samples.jsonl",
    ):
        assert (data / path).is_file(), path
    # Versioned checkpoints: <name>/<timestamp>/<name>/config.json
    assert list((data / "06_models" / "sft_model").glob("*/sft_model/config.json"))
    assert list((data / "06_models" / "tokenizer").glob("*/tokenizer/tokenizer.json"))


def test_one_mlflow_run_with_params_step_metrics_and_checkpoints(project):
    db = sqlite3.connect(project / "mlflow.db")
    (run_id,) = db.execute("SELECT run_uuid FROM runs").fetchone()
    params = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)))
    assert params["sft.engine.optim.lr"] == "0.003"  # from base: envs override single keys
    assert params["sft.engine.optim.max_steps"] == "8"  # from micro
    assert params["curation.translation.languages"] == "['fr', 'es', 'it', 'de', 'zh', 'ru']"
    assert params["seed"] == "42"
    steps = [
        s
        for (s,) in db.execute(
            "SELECT step FROM metrics WHERE key = 'sft/loss' AND run_uuid = ? ORDER BY step",
            (run_id,),
        )
    ]
    assert steps == list(range(1, 9))
    keys = {k for (k,) in db.execute("SELECT DISTINCT key FROM metrics")}
    assert {
        "curation/split/rows_out",
        "curation/rl_stage1",
        "sft/eval_loss",
        "sft_eval/format_rate",
        "sft_eval/accuracy",
    } <= keys
    tags = dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))
    assert "kedro_command" in tags
    artifacts = project / "mlruns"
    checkpoints = sorted(p.parent.name for p in artifacts.glob("**/checkpoints/sft/*/config.json"))
    assert checkpoints == ["step_000004", "step_000008"]
    rl_steps = [s for (s,) in db.execute(
        "SELECT step FROM metrics WHERE key = 'reward/total' AND run_uuid = ? ORDER BY step",
        (run_id,))]  # fmt: skip
    assert rl_steps == [1, 2, 3, 4]
    assert {"rl_eval/accuracy", "rl_eval/sampled_accuracy", "groups/dropped_frac",
            "curriculum/stage", "sft_eval/sampled_accuracy"} <= keys  # fmt: skip
    rl_checkpoints = sorted(
        p.parent.name for p in artifacts.glob("**/checkpoints/rl/*/config.json")
    )
    assert rl_checkpoints == ["step_000002", "step_000004"]
    assert list(artifacts.glob("**/checkpoints/sft/step_000008/tokenizer.json"))
    assert list(artifacts.glob("**/curation/curation_funnel.png"))


def test_a_wrong_parameter_fails_before_any_node_runs(project):
    before = sorted(p.name for p in (project / "data" / "06_models" / "tokenizer").iterdir())
    result = kedro_run(project, "--pipeline", "sft", "--params", "sft.engine.optim.lr=-1")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "sft" in output and "lr" in output and "greater than 0" in output
    assert "Running node" not in output
    assert (
        sorted(p.name for p in (project / "data" / "06_models" / "tokenizer").iterdir()) == before
    )
