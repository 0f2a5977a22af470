"""``python -m benchmarks``: the CPU suite, one script after another (after ``make run``).

    .venv/bin/python -m benchmarks [--only grpo,overhead] [--skip vs_trl]

Each script prints its figures (all measured in its own run); the output of each is also kept in
``data/08_reporting/benchmarks/<name>.txt``. ``vs_trl`` needs the ``bench`` extra (TRL) and is
skipped with a note without it. ``gpu_scale`` needs a GPU, ``sft_seeds`` trains SFT once per
seed (about 15 minutes each on 2 cores) and ``ablations`` GRPO once per arm and seed (about an
hour in all): they are run on their own (``--only sft_seeds``), as are ``dynamics`` (the
paper's claims, an hour a seed), ``default_run`` (two fresh default runs), the real model's
``real_model`` (the smol env's chain over 2 seeds: hours) and ``generation_speed`` (both need
``make run-smol``).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys

from benchmarks._common import OUT, ROOT

SUITE = [
    "equivalence",
    "rewards",
    "sandbox",
    "grpo",
    "overhead",
    "async_rl",
    "rl_gain",
    "curation",
    "vs_trl",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(SUITE), help="comma-separated names")
    parser.add_argument("--skip", default="", help="comma-separated names")
    args = parser.parse_args()
    chosen = [n for n in args.only.split(",") if n and n not in args.skip.split(",")]
    unknown = sorted(
        set(chosen)
        - set(SUITE)
        - {"gpu_scale", "sft_seeds", "ablations", "dynamics", "default_run"}
        - {"real_model", "generation_speed"}
    )
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; the suite: {', '.join(SUITE)}")
    OUT.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in chosen:
        if name == "vs_trl" and importlib.util.find_spec("trl") is None:
            print('== vs_trl skipped: TRL is not installed (.venv/bin/pip install -e ".[bench]")')
            continue
        print(f"== benchmarks.{name}", flush=True)
        done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], cwd=ROOT,
                              capture_output=True, text=True, check=False)  # fmt: skip
        (OUT / f"{name}.txt").write_text(done.stdout + done.stderr)
        print(done.stdout, flush=True)
        if done.returncode != 0:
            failed.append(name)
            print(done.stderr[-3000:], file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
