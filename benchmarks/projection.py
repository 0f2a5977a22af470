"""The analysis' cost per checkpoint on a real model: the count-sketch projection.

    make run-smol    # the SmolLM2-135M-Instruct checkpoint this reads by default
    .venv/bin/python -m benchmarks.projection [CHECKPOINT_DIR] [--dim 1024]

Times :func:`checkpoint_point` (the analysis' reader, one file or shards) on the checkpoint:
CPU time (``time.process_time``, insensitive to other jobs on the machine), wall time, and the
peak of the process's anonymous memory above what it held before (the checkpoint's files are
memory-mapped, so the page cache they fill is not counted), sampled every 5 ms. Prints the time
per weight and its linear extrapolation to a 7.6B model.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from magistral_kedro.analysis import checkpoint_point, count_weights

DEFAULT = Path("data/06_models/smollm2-135m-instruct")
SEVEN_B = 7.6e9


def _anonymous_mb() -> int:
    """The process's anonymous resident memory (heap, not mapped files), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) // 1024
    return 0


def measure(folder: Path, dim: int) -> dict[str, float]:
    """One projection of the checkpoint in ``folder``: weights, seconds and memory."""
    weights = count_weights(folder)
    before, peak, running = _anonymous_mb(), [0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], _anonymous_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    wall, cpu = time.perf_counter(), time.process_time()
    point = checkpoint_point(folder, flatten_max_weights=0, dim=dim, seed=0)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    running[0] = False
    sampler.join()
    assert point.shape == (dim,)
    return {"weights": weights, "cpu_s": cpu, "wall_s": wall, "extra_mb": peak[0] - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--dim", type=int, default=1024)
    args = parser.parse_args()
    if not args.folder.is_dir():
        parser.exit(1, f"no checkpoint at {args.folder}: `make run-smol` writes {DEFAULT}\n")
    got = measure(args.folder, args.dim)
    per_weight = got["cpu_s"] / got["weights"]
    print(
        f"{args.folder}: {got['weights']:,.0f} weights to {args.dim} coordinates in "
        f"{got['cpu_s']:.1f} s CPU ({got['wall_s']:.1f} s wall), {got['extra_mb']:.0f} MB extra "
        f"memory; {per_weight * 1e9:.1f} ns per weight, so {per_weight * SEVEN_B / 60:.1f} min "
        f"of CPU for 7.6B weights (plus reading them from disk)"
    )


if __name__ == "__main__":
    main()
