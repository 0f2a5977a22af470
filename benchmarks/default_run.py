"""How long the default run takes: ``kedro run`` of the embedded default in fresh projects.

    .venv/bin/python -m benchmarks.default_run [--runs 2] [--workdir DIR]

Each run is a fresh scratch copy of the project (nothing to reuse), so it times what a user's
first ``kedro run`` does after the install. Per run: the MLflow run's duration (from its start
to its end, what MLflow shows) and the wall time of the whole command (Python's start and
Kedro's session included). Written to ``data/08_reporting/benchmarks/default_run.json`` with
the median of each; the budget the issue sets is an MLflow run of at most 13 minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from benchmarks._common import OUT, ROOT, code_version, kedro_run, mlflow_runs, scratch_project


def mlflow_minutes(project: Path) -> float:
    """The duration of the only MLflow run of ``project``, in minutes."""
    _, runs = mlflow_runs(project)
    if len(runs) != 1:
        raise SystemExit(f"expected one MLflow run in {project}, found {len(runs)}")
    return (runs[0].info.end_time - runs[0].info.start_time) / 60_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "09_default_run")
    args = parser.parse_args()
    result = {"code_version": code_version(), "runs": []}
    for index in range(args.runs):
        shutil.rmtree(args.workdir / f"run_{index}", ignore_errors=True)
        project = scratch_project(args.workdir / f"run_{index}")
        began = time.perf_counter()
        kedro_run(project, log=project / "benchmark.log")
        wall = (time.perf_counter() - began) / 60
        result["runs"].append({"mlflow_minutes": mlflow_minutes(project), "wall_minutes": wall})
        print(f"run {index}: {result['runs'][-1]}", flush=True)
    for key in ("mlflow_minutes", "wall_minutes"):
        result[f"median_{key}"] = statistics.median(run[key] for run in result["runs"])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "default_run.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
