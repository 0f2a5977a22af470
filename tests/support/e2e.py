"""Helpers for end-to-end tests: a fresh copy of the project and `kedro run` in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import PROJECT_ROOT


def new_project(root: Path) -> Path:
    """A fresh copy of the project in ``root`` (conf, pyproject, the example source); the package
    itself is the installed one (pip -e)."""
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copy(PROJECT_ROOT / ".telemetry", root)
    (root / "src").mkdir()  # Kedro wants it
    (root / "data" / "01_raw").mkdir(parents=True)
    shutil.copy(
        PROJECT_ROOT / "data" / "01_raw" / "example_problems.jsonl", root / "data" / "01_raw"
    )
    return root


def kedro_command(*args: str, env: str = "micro") -> list[str]:
    """``kedro run --env <env> [args]`` as a command line."""
    return [sys.executable, "-m", "kedro", "run", "--env", env, *args]


def kedro_run(root: Path, *args: str, env: str = "micro") -> subprocess.CompletedProcess:
    """``kedro run --env <env> [args]`` in ``root``, output captured."""
    return subprocess.run(
        kedro_command(*args, env=env),
        cwd=root,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def output_of(result: subprocess.CompletedProcess) -> str:
    """The end of a run's output, for an assertion message."""
    return result.stdout[-3000:] + result.stderr[-6000:]
