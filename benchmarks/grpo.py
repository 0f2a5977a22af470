"""One GRPO step of the embedded default, phase by phase, and greedy collation's padding.

    .venv/bin/python -m benchmarks.grpo [--steps 3]

Uses the SFT model of the last ``kedro run`` (run ``make run`` first) and the default ``rl``
parameters. Prints, all measured in this run: seconds per RL step by phase (generate / verify /
train, median over ``--steps`` steps after one warm-up step), generation and training tokens/s,
and the padded-token count of greedy collation against fixed-size batches on the same lengths.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from benchmarks._common import StepRows, embedded_rl
from magistral_kedro.grpo import greedy_collate
from magistral_kedro.grpo.loop import train_grpo
from magistral_kedro.rewards import RewardConfig

ROOT = Path(__file__).resolve().parents[1]


def _padding(lengths: list[int], budget: int) -> tuple[int, int]:
    """Padded tokens of greedy collation, and of fixed-size batches holding as many sequences
    as greedy's microbatches do on average (same number of microbatches), in arrival order."""
    greedy = greedy_collate(lengths, budget)
    greedy_tokens = sum(len(b) * max(lengths[i] for i in b) for b in greedy)
    size = max(1, round(len(lengths) / len(greedy)))
    fixed = [lengths[i : i + size] for i in range(0, len(lengths), size)]
    return greedy_tokens, sum(len(b) * max(b) for b in fixed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    setup = embedded_rl(args.steps + 1)
    checkpoint, problems, prompts = setup.checkpoint, setup.problems, setup.prompts
    grpo, stages = setup.grpo, setup.stages
    times = StepRows()
    with tempfile.TemporaryDirectory() as directory:
        train_grpo(checkpoint, problems, prompts,
                   engine_config=setup.engine, grpo=grpo, stages=stages, reward=RewardConfig(),
                   checkpoint_dir=directory, seed=0, tracker=times)  # fmt: skip
        samples = pd.read_json(Path(directory) / "samples.jsonl", lines=True)
    rows = times.rows[1:]  # the first step pays warm-ups (worker start, allocator)
    print(
        f"== GRPO step ({stages[0].n_prompts} prompts x {grpo.group_size}, SFT model "
        f"{setup.label}, torch backend, 2 threads; median of {len(rows)} steps)"
    )
    total = 0.0
    for phase in ("generate", "verify", "train"):
        seconds = statistics.median(r.get(f"time/{phase}_s", 0.0) for r in rows)
        total += seconds
        print(f"{phase:<9} {seconds:6.2f} s")
    print(f"step      {total:6.2f} s")
    for kind in ("generate", "train"):
        rate = statistics.median(r.get(f"throughput/{kind}_tokens_per_s", 0.0) for r in rows)
        print(f"{kind} throughput {rate:9,.0f} tokens/s")
    prompt_of = {p.id: text for p, text in zip(problems, prompts, strict=True)}
    tokens = checkpoint.tokenizer
    lengths = [
        len(tokens(prompt_of[pid]).input_ids) + len(tokens(text).input_ids)
        for pid, text in zip(samples["problem_id"], samples["completion"], strict=True)
    ]
    greedy, fixed = _padding(lengths, 1024)
    useful = sum(lengths)
    print(f"== padding on {len(lengths)} sampled sequences, 1,024-token microbatches")
    print(
        f"greedy collation {greedy:,} padded tokens ({1 - useful / greedy:.1%} padding); "
        f"fixed-size batches {fixed:,} ({1 - useful / fixed:.1%}); ratio {greedy / fixed:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
