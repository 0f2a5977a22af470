"""A fixed-seed synchronous GRPO reference: the weights' digest and every metric of a short run.

Two versions of the code that should behave the same (a refactoring) must print the same JSON:
torch and DeepSpeed engines, one and two minibatches a step, each run training on every step
(a stand-in verifier, the parity of the letter "e", gives every group a signal on a random micro
model) so that each step's update is in the digest. Times and throughputs are left out.

    python -m benchmarks.grpo_reference --out before.json
    python -m benchmarks.grpo_reference --out after.json --compare before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from magistral_kedro.grpo import rollouts
from magistral_kedro.grpo.config import GRPOConfig, Stage
from magistral_kedro.grpo.loop import train_grpo
from magistral_kedro.models import (
    Checkpoint,
    TinyModelConfig,
    build_prompt,
    build_tiny_model,
    train_tokenizer,
)
from magistral_kedro.rewards import RewardBreakdown, RewardConfig
from magistral_kedro.tasks import LANGUAGES, generate_math_problems
from magistral_kedro.training.engine import EngineConfig, OptimConfig

STEPS = 4
ARMS = {
    "torch_1mb": ("torch", 1),
    "torch_2mb": ("torch", 2),
    "deepspeed_1mb": ("deepspeed", 1),
    "deepspeed_2mb": ("deepspeed", 2),
}
MODEL = TinyModelConfig(
    hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=256
)


def parity_reward(texts: list[str], *_: Any, **__: Any) -> list[RewardBreakdown]:
    """1.1 for an even number of 'e' in the completion, else 0.1."""
    even = [float(text.count("e") % 2 == 0) for text in texts]
    return [RewardBreakdown(0.1, 0.9 * e, 0.0, 0.0, 0.1 + 0.9 * e) for e in even]


class _Metrics:
    """A tracker that keeps the metrics that measure the run, not its speed."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def attach(self, run_id: str | None) -> str:
        return run_id or "reference"

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        kept = {k: v for k, v in metrics.items() if not k.startswith(("time/", "throughput/"))}
        self.rows.append({"step": step, **kept})

    def log_checkpoint(self, path: Path, step: int) -> None:
        """Checkpoints are not part of the reference: the final weights' digest is."""


def digest(model: torch.nn.Module) -> str:
    """SHA-256 over every tensor of the state dict, in name order."""
    hasher = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        hasher.update(name.encode())
        hasher.update(tensor.detach().float().contiguous().numpy().tobytes())
    return hasher.hexdigest()


def run_arm(backend: str, n_minibatches: int, directory: Path) -> dict[str, Any]:
    """One fixed-seed run: its final weights' digest and its per-step metrics."""
    problems = generate_math_problems(
        300, 0, dict.fromkeys(LANGUAGES, 1.0), dict.fromkeys(range(1, 6), 1.0)
    )
    tokenizer = train_tokenizer([t for p in problems for t in (p.prompt, p.reference)], 400)
    problems = problems[:20]
    start = build_tiny_model(tokenizer, MODEL, seed=0)
    initial = digest(start)
    tracker = _Metrics()
    trained, _ = train_grpo(
        Checkpoint(start, tokenizer),
        problems,
        [build_prompt(tokenizer, p.prompt, None) for p in problems],
        engine_config=EngineConfig(
            backend=backend,  # type: ignore[arg-type]
            optim=OptimConfig(lr=1e-3, warmup_steps=1, max_steps=STEPS),
        ),
        grpo=GRPOConfig(
            group_size=4,
            checkpoint_every=2,
            reward_workers=1,
            samples_per_step=2,
            n_minibatches=n_minibatches,
        ),
        stages=[Stage(l_max=12, l_cache=4, n_prompts=4), Stage(start_step=3, l_max=16)],
        reward=RewardConfig(),
        checkpoint_dir=directory,
        seed=3,
        fingerprint="reference",
        tracker=tracker,  # type: ignore[arg-type]
    )
    final = digest(trained.load().model)
    skipped = [row["step"] for row in tracker.rows if row.get("train/skipped_steps")]
    if skipped or final == initial:
        raise RuntimeError(f"the reference must train on every step (skipped: {skipped})")
    return {"digest": final, "metrics": tracker.rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compare", type=Path, help="a reference JSON that must be equal")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rollouts.score_batch = parity_reward  # type: ignore[assignment]
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (backend, n_minibatches) in ARMS.items():
            result[name] = run_arm(backend, n_minibatches, Path(tmp) / name)
            print(name, result[name]["digest"][:16], flush=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.compare is None:
        return 0
    expected = json.loads(args.compare.read_text())
    differ = [name for name in ARMS if expected.get(name) != result[name]]
    print("same as", args.compare if not differ else f"DIFFERENT: {differ}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
