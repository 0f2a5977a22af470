"""Synchronous against asynchronous GRPO on the embedded default: wall time and reward.

    .venv/bin/python -m benchmarks.async_rl [--steps 30] [--threads 2]

Both modes start from the SFT model of the last ``kedro run`` (run ``make run`` first) with the
default ``rl`` parameters and the same seed, for the same number of steps, one after the other in
this process. Printed: wall time, seconds per step (median), mean reward over all steps and over
the last third, and the ratios async / sync. Asynchronous mode overlaps generation (its own
thread and copy of the weights) with training; its batches are up to 2 versions stale.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time

import torch

from benchmarks._common import StepRows, embedded_rl
from magistral_kedro.grpo.loop import train_grpo
from magistral_kedro.models import Checkpoint
from magistral_kedro.rewards import RewardConfig


def _run(mode: str, steps: int) -> dict[str, float]:
    setup = embedded_rl(steps, mode=mode)
    rows = StepRows()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        start = Checkpoint(copy.deepcopy(setup.checkpoint.model), setup.checkpoint.tokenizer)
        train_grpo(start, setup.problems, setup.prompts, engine_config=setup.engine,
                   grpo=setup.grpo, stages=setup.stages, reward=RewardConfig(),
                   checkpoint_dir=directory, seed=0, tracker=rows)  # fmt: skip
    wall = time.perf_counter() - began
    rewards = [r["reward/total"] for r in rows.rows]
    last = rewards[-max(1, steps // 3) :]
    return {
        "wall_s": wall,
        "step_s": statistics.median(r["time/step_s"] for r in rows.rows[1:] or rows.rows),
        "reward_all": statistics.fmean(rewards),
        "reward_last_third": statistics.fmean(last),
        "staleness": statistics.fmean(r.get("async/staleness_mean", 0.0) for r in rows.rows),
        "wait_s": statistics.median(r["time/wait_s"] for r in rows.rows),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (both modes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {mode: _run(mode, args.steps) for mode in ("sync", "async")}
    print(f"== sync vs async GRPO, {args.steps} steps each, {args.threads} torch threads")
    print(
        f"{'':<8}{'wall s':>9}{'s/step':>9}{'reward':>9}{'last 1/3':>10}{'stale':>8}{'wait s':>8}"
    )
    for mode, r in results.items():
        print(
            f"{mode:<8}{r['wall_s']:9.1f}{r['step_s']:9.2f}{r['reward_all']:9.3f}"
            f"{r['reward_last_third']:10.3f}{r['staleness']:8.2f}{r['wait_s']:8.2f}"
        )
    sync, asyn = results["sync"], results["async"]
    print(
        f"async / sync: wall {asyn['wall_s'] / sync['wall_s']:.2f}x, reward (last third) "
        f"{asyn['reward_last_third'] - sync['reward_last_third']:+.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
