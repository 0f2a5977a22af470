"""`kedro run --env micro` in a copy of the project: outputs on disk, everything in MLflow."""

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from magistral_kedro.evaluation import LOGGED
from tests.support.e2e import kedro_run, new_project, output_of
from tests.support.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A fresh copy of the project (conf, pyproject, the example source) and one micro run."""
    root = new_project(tmp_path_factory.mktemp("project"))
    result = kedro_run(root)
    assert result.returncode == 0, output_of(result)
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
        "07_model_output/eval_samples.jsonl",
        "08_reporting/eval_summary.csv",
        "08_reporting/eval_comparison.csv",
        "08_reporting/weight_trajectory.png",
        "08_reporting/training_curves.png",
        "08_reporting/report.html",
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
    assert params["sft.engine.optim.lr"] == "0.0015"  # from base: envs override single keys
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
        "sft_eval/greedy_accuracy",
    } <= keys
    tags = dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))
    assert "kedro_command" in tags
    artifacts = project / "mlruns"
    checkpoints = sorted(p.parent.name for p in artifacts.glob("**/checkpoints/sft/*/config.json"))
    assert checkpoints == ["step_000004", "step_000008"]
    rl_steps = [
        s
        for (s,) in db.execute(
            "SELECT step FROM metrics WHERE key = 'reward/total' AND run_uuid = ? ORDER BY step",
            (run_id,),
        )
    ]
    assert rl_steps == [1, 2, 3, 4]
    assert {
        "rl_eval/greedy_accuracy",
        "rl_eval/pass_at_1",
        "groups/dropped_frac",
        "curriculum/stage",
        "sft_eval/pass_at_1",
    } <= keys
    # One naming scheme: the same metric names under every evaluation's prefix.
    for prefix in ("sft_eval", "rl_eval", "eval/heldout"):
        assert {f"{prefix}/{metric}" for metric in LOGGED} <= keys, prefix
    assert not {"sft_eval/accuracy", "rl_eval/sampled_accuracy"} & keys
    # Every GRPO step reached MLflow at its own time, in order.
    query = "SELECT timestamp FROM metrics WHERE key = ? AND run_uuid = ? ORDER BY step"
    times = [t for (t,) in db.execute(query, ("reward/total", run_id))]
    assert len(times) == 4 and times == sorted(set(times)), times
    rl_checkpoints = sorted(
        p.parent.name for p in artifacts.glob("**/checkpoints/rl/*/config.json")
    )
    assert rl_checkpoints == ["step_000002", "step_000004"]
    assert list(artifacts.glob("**/checkpoints/sft/step_000008/tokenizer.json"))
    assert list(artifacts.glob("**/curation/curation_funnel.png"))
    assert {"eval/heldout/pass_at_1", "eval/heldout/maj_at_k", "curation/rl_stage2"} <= keys
    for name in ("analysis/report.html", "analysis/weight_trajectory.png", "eval/eval_summary.csv"):
        assert list(artifacts.glob(f"**/{name}")), name


@pytest.fixture()
def store(project, monkeypatch):
    """The micro run's MLflow store, as a client sees it: the experiment's runs, the micro run
    (the first) first."""
    import mlflow

    monkeypatch.chdir(project)
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_experiment("magistral_kedro")  # conf/base/mlflow.yml's
    yield mlflow.search_runs(order_by=["start_time ASC"])
    mlflow.set_tracking_uri("")


def _latest_version(project: Path, name: str) -> Path:
    return sorted((project / "data" / "06_models" / name).glob(f"*/{name}"))[-1]


def test_the_models_are_registered_with_their_metrics_and_load_back(project, store):
    """`models:/magistral-rl/1` is this run's RL model: the weights the catalog saved, the
    rl_eval metrics linked to it and to the eval set; the transformers flavour loads it."""
    import mlflow
    import torch
    from safetensors.torch import load_file

    from magistral_kedro.registry import checkpoint_directory

    run = mlflow.get_run(store["run_id"][0])
    client = mlflow.MlflowClient()
    for name, dataset, prefix in [
        ("magistral-sft", "sft_model", "sft_eval"),
        ("magistral-rl", "rl_model", "rl_eval"),
    ]:
        version = client.get_model_version(name, "1")
        assert version.run_id == run.info.run_id
        model = mlflow.get_logged_model(version.source.removeprefix("models:/"))
        evaluation = {k: v for k, v in run.data.metrics.items() if k.startswith(f"{prefix}/")}
        assert {m.key: m.value for m in model.metrics} == evaluation and evaluation
        assert {m.dataset_name for m in model.metrics} == {"eval_problems"}
        saved = load_file(_latest_version(project, dataset) / "model.safetensors")
        registered = load_file(checkpoint_directory(f"models:/{name}/1") / "model.safetensors")
        assert set(saved) == set(registered)
        assert all(torch.equal(saved[k], registered[k]) for k in saved), name
    pipeline = mlflow.transformers.load_model("models:/magistral-rl/latest")
    assert pipeline.tokenizer.chat_template and pipeline.task == "text-generation"


def test_system_metrics_inputs_and_sample_tables_are_in_the_run(project, store):
    import mlflow
    import pandas as pd

    run = mlflow.get_run(store["run_id"][0])
    client = mlflow.MlflowClient()
    cpu = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    memory = client.get_metric_history(run.info.run_id, "system/system_memory_usage_megabytes")
    assert len(cpu) >= 2 and all(0 <= m.value <= 100 for m in cpu)
    assert memory and all(m.value > 0 for m in memory)
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert {"train_problems", "eval_problems", "rl_problems"} <= set(inputs)
    for name in ("train_problems", "eval_problems", "rl_problems"):
        path = project / "data" / "05_model_input" / f"{name}.jsonl"
        frame = pd.read_json(path, lines=True, orient="records", dtype=False)
        assert inputs[name].dataset.digest == mlflow.data.from_pandas(frame).digest, name
        assert json.loads(inputs[name].dataset.source)["uri"] == str(path.resolve())
        assert json.loads(inputs[name].dataset.profile)["num_rows"] == len(frame)
    samples = pd.read_json(project / "data/07_model_output/eval_samples.jsonl", lines=True)
    table = mlflow.load_table("eval/samples.json", run_ids=[run.info.run_id])
    columns = ["benchmark", "problem_id", "decoding", "sample", "completion", "correct", "reward"]
    pd.testing.assert_frame_equal(table[columns], samples[columns], check_dtype=False)
    grpo = mlflow.load_table("rl/samples.json", run_ids=[run.info.run_id])
    assert sorted(grpo["step"].unique()) == [1, 2, 3, 4] and grpo["completion"].notna().all()
    for name in ("sft_eval", "rl_eval"):
        rows = mlflow.load_table(f"{name}/samples.json", run_ids=[run.info.run_id])
        assert set(rows["decoding"]) == {"greedy", "sampled"}, name


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


def test_one_namespace_runs_alone(project):
    """`kedro run --namespaces sft_eval`: the SFT model's evaluation alone, from what is on
    disk; no other node runs, and its metrics land in a new MLflow run under sft_eval/."""
    outputs = project / "data" / "07_model_output"
    files = {name: outputs / f"{name}_eval_samples.jsonl" for name in ("sft", "rl")}
    before = {name: path.stat().st_mtime_ns for name, path in files.items()}
    runs_before = _mlflow_runs(project)
    result = kedro_run(project, "--namespaces", "sft_eval")
    assert result.returncode == 0, output_of(result)
    assert "Completed 2 out of 2 tasks" in result.stdout + result.stderr  # evaluate, log
    after = {name: path.stat().st_mtime_ns for name, path in files.items()}
    assert after["sft"] > before["sft"] and after["rl"] == before["rl"]
    (run_id,) = _mlflow_runs(project) - runs_before
    db = sqlite3.connect(project / "mlflow.db")
    keys = {k for (k,) in db.execute("SELECT key FROM metrics WHERE run_uuid = ?", (run_id,))}
    assert "sft_eval/greedy_accuracy" in keys and not any(k.startswith("rl_eval/") for k in keys)
    versions = db.execute("SELECT name FROM model_versions WHERE run_id = ?", (run_id,))
    assert [name for (name,) in versions] == ["magistral-sft"]  # a new version of the SFT model


@pytest.mark.parametrize("name", ["compare_runs", "explore_curated_data"])
def test_the_notebooks_run_on_a_real_run(project, name):
    """Both notebooks execute top to bottom on the micro run's MLflow store and data, which they
    reach through Kedro (`%load_ext kedro.ipython`: the catalog, kedro-mlflow's settings)."""
    import nbformat
    from nbclient import NotebookClient

    shutil.copytree(PROJECT_ROOT / "notebooks", project / "notebooks", dirs_exist_ok=True)
    notebook = nbformat.read(project / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(project / "notebooks")}},
    ).execute()
    printed = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    # Found through the project (its catalog, kedro-mlflow's store): nothing empty, no new store.
    expected = {
        "compare_runs": [
            r"[1-9]\d* runs of the experiment 'magistral_kedro'",
            r"[1-9]\d* registered model versions",
            r"[1-9]\d* evaluation samples in 1 runs",
        ],
        "explore_curated_data": [
            r"train [1-9]\d*, eval [1-9]\d*, RL set [1-9]\d*",
            r"difficulty_stage1: 24 problems x 4 samples",
            r"difficulty_stage2: [1-9]\d* problems",
        ],
    }
    for pattern in expected[name]:
        assert re.search(pattern, printed), printed[-2000:]
    assert not (project / "notebooks" / "mlflow.db").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
]


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("REQUIRE_BROWSER"),
    reason="needs Debian's chromium (.ci/run installs it and sets REQUIRE_BROWSER)",
)
def test_kedro_viz_renders_the_five_pipelines_in_a_browser(project, tmp_path):
    """`kedro viz build`, served on localhost, rendered by headless Chromium: the flowchart
    shows nodes and datasets of every pipeline; a screenshot is kept next to the build."""
    assert CHROMIUM is not None, "REQUIRE_BROWSER is set but chromium is not installed"
    build = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    site = project / "build"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(site),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(50):
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        browser = [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=20000",
        ]
        dom = subprocess.run(
            [*browser, "--dump-dom", url], capture_output=True, text=True, timeout=180, check=False
        ).stdout
        shot = site / "kedro-viz.png"
        subprocess.run(
            [*browser, f"--screenshot={shot}", url], capture_output=True, timeout=180, check=False
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert shot.is_file() and shot.stat().st_size > 10_000
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    # A node and a dataset of each of the five pipelines, as the flowchart labels them.
    for label in (
        "map_sources",
        "train_problems",
        "train_sft",
        "sft_model",
        "train_rl",
        "rl_problems",
        "evaluate_benchmarks",
        "eval_summary",
        "weight_trajectory",
        "analysis_report",
    ):
        assert label in text, f"{label!r} is not on the rendered page"
    pipelines = json.loads((site / "api" / "main").read_text())["pipelines"]
    assert {p["id"] for p in pipelines} >= {"curation", "sft", "rl", "eval", "analysis"}


@pytest.mark.parametrize(
    ("pipeline", "model", "metric", "steps"),
    [
        ("sft", "sft_model", "sft/loss", list(range(1, 9))),
        ("rl", "rl_model", "reward/total", [1, 2, 3, 4]),
    ],
)
def test_two_launched_ranks_run_a_training_pipeline_once(project, pipeline, model, metric, steps):
    """torchrun starts two ranks (gloo, DeepSpeed ZeRO-2 on CPU); each opens a KedroSession and
    runs the pipeline. One MLflow run with every step's metrics and one new version of each
    output come of it, and the run's held-out evaluation was graded on every problem once."""
    runs_before = _mlflow_runs(project)
    versions_before = set((project / "data" / "06_models" / model).iterdir())
    samples = project / "data" / "07_model_output" / f"{pipeline}_eval_samples.jsonl"
    graded_before = _graded_rows(samples)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "-m", "magistral_kedro.launch", "--env", "micro", "--pipeline", pipeline,
         "--params", f"{pipeline}.checkpoint_dir=data/06_models/{pipeline}_state_ranks"],
        cwd=project, env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    new_runs = _mlflow_runs(project) - runs_before
    assert len(new_runs) == 1, "rank 1 must not open an MLflow run"
    run = new_runs.pop()
    db = sqlite3.connect(project / "mlflow.db")
    logged = [s for (s,) in db.execute(
        "SELECT step FROM metrics WHERE key = ? AND run_uuid = ? ORDER BY step", (metric, run)
    )]  # fmt: skip
    assert logged == steps
    new_versions = set((project / "data" / "06_models" / model).iterdir()) - versions_before
    assert len(new_versions) == 1, "rank 1 must not write datasets"
    # The ranks graded the greedy and the sampled batches between them; rank 0 wrote them all.
    assert _graded_rows(samples) == graded_before


def _graded_rows(samples: Path) -> list[tuple[str, str, int]]:
    frame = pd.read_json(samples, lines=True)
    return sorted(zip(frame["decoding"], frame["problem_id"], frame["sample"], strict=True))


def _mlflow_runs(project: Path) -> set[str]:
    db = sqlite3.connect(project / "mlflow.db")
    return {run for (run,) in db.execute("SELECT run_uuid FROM runs")}
