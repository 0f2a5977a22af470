"""The code verifier: compile a program and run it on tests, each run in ``rewards.sandbox``.

C++20 compiles once per program (against a precompiled ``<bits/stdc++.h>`` where there is one),
Python is interpreted; the program then runs on the drawn tests, each within the time and memory
limits. Programs are judged binary, as in the paper: all drawn tests pass, or the answer is wrong.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from magistral_kedro.rewards.limits import WALL_FACTOR
from magistral_kedro.rewards.sandbox import (
    STDERR_CAP,
    Run,
    _python_executable,
    _sandbox_base,
    open_box,
    run_in_box,
)

logger = logging.getLogger(__name__)

Status = Literal["pass", "wrong_answer", "timeout", "memory", "runtime_error", "compile_error"]
CompileStatus = Literal["ok", "compile_error", "timeout", "memory", "skipped"]
LANGUAGE_ALIASES = {
    "python": "python",
    "python3": "python",
    "py": "python",
    "cpp": "cpp",
    "c++": "cpp",
    "cc": "cpp",
    "cxx": "cpp",
    "c++20": "cpp",
}
_MEMORY_MARKERS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "out of memory")
_COMPILER_MEMORY_MB = 2048


def _time_out(run: Run, cpu_s: float) -> str:
    """Why ``run`` is over its time limit, or "" if it is not."""
    if run.timed_out:
        return f"no exit in {WALL_FACTOR * cpu_s:g} s of wall-clock time"
    if run.cpu_seconds >= cpu_s or run.returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return f"over {cpu_s:g} s of CPU"
    return ""


@dataclass(frozen=True)
class TestOutcome:
    """One test's verdict."""

    __test__ = False  # not a pytest class
    status: Status
    seconds: float
    detail: str = ""
    stdout: str = ""  # what the program printed, when it ran to completion within the limits


@dataclass(frozen=True)
class CodeResult:
    """The verdict on a program: ``passed`` only if it compiled and every drawn test passed."""

    passed: bool
    tests: list[TestOutcome] = field(default_factory=list)
    compile_status: CompileStatus = "skipped"
    compile_seconds: float = 0.0
    skipped: int = 0
    detail: str = ""

    @property
    def statuses(self) -> list[Status]:
        """Status of each test that ran, in order."""
        return [t.status for t in self.tests]


def _runtime_status(run: Run, expected: str, time_limit_s: float) -> TestOutcome:
    stderr = run.stderr.decode(errors="replace")
    if reason := _time_out(run, time_limit_s):
        return TestOutcome("timeout", run.seconds, reason)
    if any(marker in stderr for marker in _MEMORY_MARKERS):
        return TestOutcome("memory", run.seconds, stderr[-300:])
    if run.output_capped:
        return TestOutcome("wrong_answer", run.seconds, "output over the size limit")
    if run.returncode != 0:
        return TestOutcome("runtime_error", run.seconds, f"exit {run.returncode}: {stderr[-300:]}")
    got = run.stdout.decode(errors="replace")
    if got.split() == expected.split():
        return TestOutcome("pass", run.seconds, stdout=got)
    return TestOutcome("wrong_answer", run.seconds, f"got {got[:100]!r}", stdout=got)


CPP_FLAGS = ("-std=c++20", "-O2")


@cache
def precompiled_header_dir() -> str | None:
    """A directory holding ``bits/stdc++.h.gch`` built with :data:`CPP_FLAGS`, or None.

    Built once per machine from the system's own (trusted) header: most competitive-programming
    solutions include ``<bits/stdc++.h>``, whose parsing is most of their compile time.
    """
    base = _sandbox_base() / "pch"
    target = base / "bits" / "stdc++.h.gch"
    if target.is_file():
        return str(base)
    try:
        deps = subprocess.run(
            ["g++", *CPP_FLAGS, "-M", "-x", "c++", "-"],
            input="#include <bits/stdc++.h>\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        header = next(tok for tok in deps.split() if tok.endswith("bits/stdc++.h"))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        subprocess.run(
            ["g++", *CPP_FLAGS, "-x", "c++-header", header, "-o", str(tmp)],
            capture_output=True,
            timeout=120,
            check=True,
        )
        tmp.rename(target)
        for path in (base, target.parent):
            path.chmod(0o755)
        target.chmod(0o644)
        return str(base)
    except (OSError, subprocess.SubprocessError, StopIteration) as error:
        logger.warning("no precompiled <bits/stdc++.h> (%s): C++ compiles will be slower", error)
        return None


def _compile_cpp(
    box: Path, code: str, timeout_s: float, precompiled_header: bool
) -> tuple[CompileStatus, float, str]:
    (box / "main.cpp").write_text(code)
    pch = precompiled_header_dir() if precompiled_header else None
    include = ["-I", pch] if pch else []
    run = run_in_box(
        box,
        ["g++", *CPP_FLAGS, *include, "-pipe", "-o", "main", "main.cpp"],
        "",
        timeout_s,
        _COMPILER_MEMORY_MB,
        output_cap=STDERR_CAP,
        processes=16,
    )
    detail = run.stderr.decode(errors="replace")[-500:]
    if reason := _time_out(run, timeout_s):
        return "timeout", run.seconds, f"compilation {reason}"
    killed = run.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
    if any(marker in detail for marker in _MEMORY_MARKERS) or killed:
        return "memory", run.seconds, detail
    if run.returncode != 0 or not (box / "main").exists():
        return "compile_error", run.seconds, detail
    return "ok", run.seconds, ""


def _run_tests(
    box: Path,
    argv: list[str],
    tests: list[Mapping[str, str]],
    time_limit_s: float,
    memory_mb: int,
    stop_on_failure: bool,
) -> list[TestOutcome]:
    """Run the program ``argv`` on each test in turn, up to the first failure if asked."""
    outcomes: list[TestOutcome] = []
    for test in tests:
        expected = test["output"]
        cap = 2 * len(expected.encode()) + 4096
        run = run_in_box(box, argv, test["input"], time_limit_s, memory_mb, output_cap=cap)
        outcomes.append(_runtime_status(run, expected, time_limit_s))
        if stop_on_failure and outcomes[-1].status != "pass":
            break
    return outcomes


def run_code(
    code: str,
    language: str,
    tests: Sequence[Mapping[str, str]],
    *,
    time_limit_s: float = 4.0,
    memory_mb: int = 300,
    compile_timeout_s: float = 10.0,
    max_tests: int = 20,
    seed: int = 0,
    stop_on_failure: bool = True,
    precompiled_header: bool = True,
) -> CodeResult:
    """Compile (C++20) or interpret (Python) ``code`` and run it on up to ``max_tests`` tests.

    Tests are ``{"input": ..., "output": ...}``, drawn at random with ``seed`` when there are more
    than ``max_tests``; stdout is compared whitespace-tolerantly. With ``stop_on_failure`` (the
    default: the reward is binary) the remaining tests are skipped after the first failure.
    ``precompiled_header`` lets C++ reuse a precompiled ``<bits/stdc++.h>`` (same verdicts).
    """
    lang = LANGUAGE_ALIASES.get(language.strip().lower())
    if lang is None:
        return CodeResult(
            False, compile_status="compile_error", detail=f"unsupported language {language!r}"
        )
    if not tests:
        return CodeResult(False, detail="no tests to run")
    chosen = list(tests)
    if len(chosen) > max_tests:
        chosen = random.Random(seed).sample(chosen, max_tests)
    with open_box() as box:
        compile_status: CompileStatus = "skipped"
        compile_seconds = 0.0
        if lang == "cpp":
            compile_status, compile_seconds, detail = _compile_cpp(
                box, code, compile_timeout_s, precompiled_header
            )
            if compile_status != "ok":
                return CodeResult(
                    False,
                    compile_status=compile_status,
                    compile_seconds=compile_seconds,
                    skipped=len(chosen),
                    detail=detail,
                )
            argv = ["./main"]
        else:
            (box / "main.py").write_text(code)
            argv = [_python_executable(), "-I", "-S", "main.py"]
        outcomes = _run_tests(box, argv, chosen, time_limit_s, memory_mb, stop_on_failure)
        passed = len(outcomes) == len(chosen) and all(o.status == "pass" for o in outcomes)
        return CodeResult(
            passed, outcomes, compile_status, compile_seconds, skipped=len(chosen) - len(outcomes)
        )
