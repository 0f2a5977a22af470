"""What GRPO bought: the SFT and RL models of the last ``kedro run`` on the same held-out problems.

    .venv/bin/python -m benchmarks.rl_gain [--k 4] [--temperature 1.0] [--problems 300]

Runs the pipelines' own evaluation (``evaluation/grading.py``) on both models and prints greedy
accuracy, sampled accuracy (pass@1 averaged over k samples per problem, the quantity RL
optimises, with its binomial standard error) and mean reward, and the differences.
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd
import torch

from benchmarks._common import ROOT, latest_model
from magistral_kedro.evaluation import evaluate_generation
from magistral_kedro.generation import GenerationConfig, SamplingConfig
from magistral_kedro.models import CheckpointRef
from magistral_kedro.rewards import RewardConfig

SAMPLING_SEED = 7


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--problems", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(2)
    frame = pd.read_json(ROOT / "data/05_model_input/eval_problems.jsonl", lines=True, dtype=False)
    greedy = SamplingConfig(max_new_tokens=192, temperature=0.0, batch_size=256)
    results = {}
    for name in ("sft_model", "rl_model"):
        model = latest_model(ROOT, name)
        if model is None:
            raise SystemExit(f"no {name} yet: run `make run` first")
        table, metrics = evaluate_generation(
            CheckpointRef(model),
            frame,
            "none",
            args.problems,
            greedy,
            RewardConfig(),
            GenerationConfig(),
            seed=SAMPLING_SEED - 1,
            prefix=name,
            k=args.k,
            temperature=args.temperature,
        )
        values = {key.removeprefix(f"{name}/"): value for key, value in metrics.items()}
        results[name] = values
        problems = table["problem_id"].nunique()
        n = problems * args.k
        acc = values["pass_at_1"]
        print(
            f"{name:<10} {model.parent.name}  greedy accuracy "
            f"{values['greedy_accuracy']:.3f}  pass@1 {acc:.3f} "
            f"(+/- {math.sqrt(acc * (1 - acc) / n):.3f})  "
            f"sampled mean reward {values['mean_reward']:.3f}  ({problems} problems x {args.k})"
        )
    for key in ("greedy_accuracy", "pass_at_1", "mean_reward"):
        print(f"RL - SFT {key}: {results['rl_model'][key] - results['sft_model'][key]:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
