"""What GRPO bought: the SFT and RL models of the last ``kedro run`` on the same held-out problems.

    .venv/bin/python benchmarks/rl_gain.py [--k 4] [--temperature 1.0] [--problems 300]

Prints, for each model, sampled accuracy (pass@1 averaged over k samples per problem, the
quantity RL optimises) and mean reward on the eval split, with binomial standard errors, and the
difference. The pipelines' own ``sft_eval``/``rl_eval`` metrics are greedy.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
import torch

from magistral_kedro.generation import SamplingConfig, TransformersGenerator
from magistral_kedro.models import build_prompt, load_checkpoint
from magistral_kedro.pipelines.frames import frame_to_problems
from magistral_kedro.rewards import RewardConfig, score_batch

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--problems", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(2)
    frame = pd.read_json(ROOT / "data/05_model_input/eval_problems.jsonl", lines=True, dtype=False)
    problems = frame_to_problems(frame[frame["kind"] == "math"].head(args.problems))
    sampling = SamplingConfig(max_new_tokens=128, temperature=args.temperature, batch_size=256)
    accuracy = {}
    for name in ("sft_model", "rl_model"):
        versions = sorted((ROOT / "data/06_models" / name).glob(f"*/{name}"))
        if not versions:
            raise SystemExit(f"no {name} yet: run `make run` first")
        checkpoint = load_checkpoint(versions[-1])
        prompts = [build_prompt(checkpoint.tokenizer, p.prompt, None) for p in problems]
        groups = TransformersGenerator(checkpoint.model, checkpoint.tokenizer).generate(
            prompts, n=args.k, sampling=sampling, seed=7
        )
        flat = [s for group in groups for s in group]
        rewards = score_batch(
            [s.text for s in flat],
            [p for p in problems for _ in range(args.k)],
            [len(s.token_ids) for s in flat],
            RewardConfig(),
        )
        n = len(rewards)
        acc = sum(r.correct > 0 for r in rewards) / n
        accuracy[name] = acc
        print(
            f"{name:<10} {versions[-1].parent.name}  sampled accuracy {acc:.3f} "
            f"(+/- {math.sqrt(acc * (1 - acc) / n):.3f})  mean reward "
            f"{sum(r.total for r in rewards) / n:.3f}  ({len(problems)} problems x {args.k})"
        )
    print(f"RL - SFT: {accuracy['rl_model'] - accuracy['sft_model']:+.3f} sampled accuracy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
