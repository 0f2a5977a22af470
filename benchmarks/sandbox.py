"""What the code sandbox adds to one run of a program.

    .venv/bin/python -m benchmarks.sandbox [--runs 40] [--repeats 3]

Runs a Python program that echoes its input ``--runs`` times bare (a plain subprocess) and as
the verifier runs it (``rewards.sandbox.run_in_box``: namespaces, mounts, limits, its own uid),
and prints the medians and their ratio, ``--repeats`` times. It imports no torch, like the
reward workers that run programs: a parent with torch loaded pays ~25 ms more per sandboxed run,
since the limits are set between fork and exec, which rules out the cheaper vfork.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from magistral_kedro.rewards.sandbox import (
    _python_executable,
    isolation_mode,
    open_box,
    run_in_box,
)


def _median_ms(run: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"isolation: {isolation_mode() or 'none (resource limits only)'}")
    with open_box() as box:
        (box / "main.py").write_text("print(input())\n")

        def sandboxed() -> object:
            return run_in_box(box, ["python3", "main.py"], "5\n", 4.0, 300, 4096)

        def bare() -> object:
            command = [_python_executable(), "main.py"]
            return subprocess.run(command, input=b"5\n", cwd=box, capture_output=True, check=True)

        for _ in range(args.repeats):
            boxed_ms, bare_ms = _median_ms(sandboxed, args.runs), _median_ms(bare, args.runs)
            ratio = boxed_ms / bare_ms
            print(f"sandboxed {boxed_ms:5.1f} ms, bare {bare_ms:5.1f} ms: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
