"""What the benchmarks share: a tracker that keeps each step's metrics, the embedded default's
RL setup (the SFT model of the last ``kedro run`` and the default ``rl`` parameters), and
scratch copies of the project to run ``kedro run`` in."""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import yaml

from magistral_kedro.grpo.config import GRPOConfig, Stage
from magistral_kedro.models import Checkpoint, build_prompt, load_checkpoint
from magistral_kedro.tasks.frames import frame_to_problems
from magistral_kedro.tasks.schema import Problem
from magistral_kedro.tracking import last_per_step
from magistral_kedro.training.engine import EngineConfig
from tests.support.e2e import new_project

ROOT = Path(__file__).resolve().parents[1]
#: Where the benchmarks write their figures (JSON, plots, printed output).
OUT = ROOT / "data" / "08_reporting" / "benchmarks"


def code_version() -> str:
    """The commit the figures are measured on, for the JSON a benchmark writes: the
    ``CODE_VERSION`` environment variable where set (a copy sent to a GPU machine, whose git
    metadata may be older than its files), else ``git describe`` (``-dirty`` with uncommitted
    changes), else "unknown"."""
    if os.environ.get("CODE_VERSION"):
        return os.environ["CODE_VERSION"]
    command = ["git", "describe", "--always", "--dirty"]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    except OSError:  # no git
        return "unknown"
    return done.stdout.strip() or "unknown"


class StepRows:
    """A Tracker that keeps each step's metrics (nothing else)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def attach(self, run_id: str | None) -> str | None:
        return run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.rows.append(dict(metrics))

    def log_checkpoint(self, path: Path, step: int) -> None:
        pass


@dataclass
class EmbeddedRL:
    """The default rl run's inputs: model, problems, prompts and typed parameters."""

    checkpoint: Checkpoint
    label: str  # the SFT model's version
    problems: list[Problem]
    prompts: list[str]
    engine: EngineConfig
    grpo: GRPOConfig
    stages: list[Stage]


def latest_model(project: Path, name: str) -> Path | None:
    """The newest version of the versioned model ``name`` (``sft_model``, ``base_model``...)
    in ``project``, or None if it has none."""
    versions = sorted((project / "data" / "06_models" / name).glob(f"*/{name}"))
    return versions[-1] if versions else None


def embedded_rl(
    steps: int, project: Path = ROOT, problems: str = "train_problems", **grpo: Any
) -> EmbeddedRL:
    """The latest SFT model of ``project`` (a directory where ``kedro run`` ran) and the
    default ``rl`` parameters for ``steps`` steps on the torch backend (no checkpoints on the
    way), on the math problems of its ``data/05_model_input/<problems>.jsonl``; ``grpo``
    overrides GRPOConfig fields."""
    model = latest_model(project, "sft_model")
    if model is None:
        raise SystemExit(
            f"no SFT model in {project}: run `make run` (or `kedro run --pipeline sft`) first"
        )
    checkpoint = load_checkpoint(model)
    raw: dict[str, Any] = yaml.safe_load((ROOT / "conf/base/parameters_rl.yml").read_text())["rl"]
    train = pd.read_json(
        project / "data" / "05_model_input" / f"{problems}.jsonl", lines=True, dtype=False
    )
    typed = frame_to_problems(train[train["kind"] == "math"].reset_index(drop=True))
    prompts = [build_prompt(checkpoint.tokenizer, p.prompt, None) for p in typed]
    optim = {**raw["engine"]["optim"], "max_steps": steps}
    engine = EngineConfig(**{**raw["engine"], "backend": "torch", "optim": optim})
    config = GRPOConfig(
        **{**raw["grpo"], "checkpoint_every": 10**6, "samples_per_step": 10**6, **grpo}
    )
    stages = [Stage(**stage) for stage in raw["curriculum"]]
    return EmbeddedRL(checkpoint, model.parent.name, typed, prompts, engine, config,
                      stages)  # fmt: skip


def scratch_project(root: Path) -> Path:
    """The end-to-end tests' copy of the project (:func:`tests.support.e2e.new_project`), kept
    between runs: an existing copy keeps its data and gets this checkout's conf again."""
    if not (root / "src").is_dir():
        return new_project(root)
    shutil.rmtree(root / "conf")
    shutil.copytree(ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    return root


#: What a run that starts from a conf/dynamics run's SFT model needs of that run's project.
DYNAMICS_INPUTS = (
    "data/05_model_input",
    "data/06_models/sft_model",
    "data/06_models/base_model",
    "data/06_models/tokenizer",
)


def project_from_dynamics(source: Path, root: Path) -> Path:
    """A scratch project in ``root`` (:func:`scratch_project`) holding the splits and the
    models of ``source``, a project where ``benchmarks.dynamics`` ran a seed: GRPO runs there
    start from its SFT model and leave ``source`` as it was."""
    if not (source / "data/06_models/sft_model").is_dir():
        raise SystemExit(f"no SFT model in {source}: run `python -m benchmarks.dynamics` first")
    project = scratch_project(root)
    for inputs in DYNAMICS_INPUTS:
        if not (project / inputs).exists():
            shutil.copytree(source / inputs, project / inputs)
    return project


def kedro_run(project: Path, *args: str, log: Path, threads: int | None = None) -> None:
    """``kedro run [args]`` in ``project`` with this checkout's package, output appended to
    ``log``, with ``threads`` torch threads (None: torch's default); raises SystemExit naming
    the log if it fails."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    with log.open("a") as out:
        done = subprocess.run(
            [sys.executable, "-m", "kedro", "run", *args],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"kedro run {' '.join(args)} failed in {project}: see {log}")


def mlflow_runs(project: Path, where: str = "") -> tuple[Any, list[Any]]:
    """The MLflow client of ``project``'s store and its experiment's runs matching ``where``
    (MLflow's filter syntax), oldest first; SystemExit if it has no experiment."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("magistral_kedro")
    if experiment is None:
        raise SystemExit(f"no MLflow experiment 'magistral_kedro' in {project}")
    runs = client.search_runs(
        [experiment.experiment_id], where, order_by=["attributes.start_time ASC"]
    )
    return client, list(runs)


def grpo_curves(project: Path, keys: Sequence[str]) -> list[dict[str, list[float]]]:
    """Per GRPO run in ``project``'s MLflow store, oldest first: ``step`` and each of ``keys``
    per step (the value logged last where a resumed run logged a step twice)."""
    client, runs = mlflow_runs(project, "metrics.`completion/mean_tokens` >= 0")
    curves = []
    for run in runs:
        curve: dict[str, list[float]] = {}
        for key in keys:
            last = last_per_step(client.get_metric_history(run.info.run_id, key))
            curve["step"], curve[key] = [float(s) for s in last], list(last.values())
        curves.append(curve)
    return curves


def seed_records(
    kept: Path, seeds: Iterable[int], run: Callable[[int], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every seed's record in ``kept`` (``seed_<s>.json``) after running ``run(seed)`` for each
    of ``seeds`` that has none there, each written as soon as it is done (a later call reuses
    it: the seeds may span several sessions)."""
    kept.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        path = kept / f"seed_{seed}.json"
        if not path.exists():
            path.write_text(json.dumps(run(seed), indent=1))
            print(f"seed {seed}: written {path}", flush=True)
    return [json.loads(p.read_text()) for p in sorted(kept.glob("seed_*.json"))]


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (NaN for one value) and count of the finite ``values``."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": math.nan, "sd": math.nan, "n": 0}
    sd = statistics.stdev(finite) if len(finite) > 1 else math.nan
    return {"mean": statistics.fmean(finite), "sd": sd, "n": len(finite)}
