"""Our GRPO loop against TRL's GRPOTrainer: same model, prompts, batch, sampling and steps.

    .venv/bin/pip install -e ".[bench]"          # trl 1.16.0, kept out of the main install
    .venv/bin/python -m benchmarks.vs_trl [--steps 20] [--repeats 1] [--eval-problems 200]

Our loop runs twice, synchronous (the default) and asynchronous (``rl.grpo.mode: async``:
generation overlapping training, docs/recipe.md, section 3), then TRL. All start from the SFT model
of the last ``kedro run`` (``make run`` first), each in a fresh process with the same torch
threads, and train on the very same prompts in the same order (our
loop's draws, fed to TRL unshuffled): the default stage's n_prompts x G completions per
optimiser step, at most its l_max new tokens (32 x 8 and 128 when vs_trl.json was measured),
temperature 1 with no top-k / top-p, AdamW lr 1e-4 (betas 0.9 / 0.95, 5 warm-up
steps, constant after), gradient clipping 1.0, our reward function (plugged into TRL as its
reward function). TRL is set as close to Magistral as it allows: beta 0 (no KL, no reference
model), loss_type "dapo" (token-level, normalised by the global token count), epsilon 0.2,
epsilon_high 0.28, one update per batch, advantages scaled by the batch's std.

Printed and written to ``data/08_reporting/benchmarks/vs_trl.json`` (+ ``vs_trl.png``, reward
against wall time): seconds per step (min / median / max after the first), generated tokens/s,
peak memory (the process's max RSS), mean reward of the last 5 steps and greedy accuracy on
held-out problems after the same number of steps, mean reward at the same wall time, and the
ratios ours / TRL.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks._common import OUT, ROOT, StepRows, code_version, embedded_rl
from magistral_kedro.evaluation import evaluate_generation
from magistral_kedro.generation import GenerationConfig, SamplingConfig
from magistral_kedro.grpo import curriculum, loop
from magistral_kedro.models import Checkpoint
from magistral_kedro.rewards import RewardConfig, score_batch

#: Our loop synchronous (the default) and asynchronous (generation overlapping training), TRL.
KINDS = ["ours-sync", "ours-async", "trl"]
#: What TRL does not do of Magistral's recipe; the comparison says so rather than hiding it.
TRL_GAPS = [
    "groups whose rewards are all equal are not dropped: they get advantage 0 but their tokens "
    "still count in the loss denominator (Magistral drops them before counting)",
    "no minibatch normalisation of the kept advantages: closest is scale_rewards='batch' "
    "(r - group mean, divided by the batch std, not re-centred over kept groups)",
    "warm-up starts at lr 0 (transformers' constant_with_warmup), ours at lr/5",
    "no asynchronous generation (on CPU, without vLLM): ours-async is the paper's scheme",
]


def _reward_config(setup: Any) -> RewardConfig:
    stage = setup.stages[0]
    return dataclasses.replace(RewardConfig(), l_max=stage.l_max, l_cache=stage.l_cache)


def _greedy_accuracy(model: torch.nn.Module, tokenizer: Any, n: int, cfg: RewardConfig) -> float:
    """Greedy accuracy on the first ``n`` held-out math problems, graded as the pipelines do."""
    frame = pd.read_json(ROOT / "data/05_model_input/eval_problems.jsonl", lines=True, dtype=False)
    greedy = SamplingConfig(max_new_tokens=cfg.l_max, temperature=0.0, batch_size=64)
    _, metrics = evaluate_generation(
        Checkpoint(model, tokenizer),
        frame,
        "none",
        n,
        greedy,
        cfg,
        GenerationConfig(),
        seed=0,
        prefix="eval",
    )
    return float(metrics["eval/greedy_accuracy"])


def _ours(steps: int, eval_problems: int, mode: str) -> dict[str, Any]:
    setup = embedded_rl(steps, mode=mode)
    per_step = setup.stages[0].n_prompts * setup.grpo.group_size
    rows = StepRows()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        trained, _ = loop.train_grpo(
            setup.checkpoint, setup.problems, setup.prompts,
            engine_config=setup.engine, grpo=setup.grpo, stages=setup.stages,
            reward=RewardConfig(), checkpoint_dir=directory, seed=0, tracker=rows,
        )  # fmt: skip
        total = time.perf_counter() - began
        model = trained.load().model
    step_s = [r["time/step_s"] for r in rows.rows]
    return {
        "wall_s": total,
        "step_s": step_s,
        "reward": [r["reward/total"] for r in rows.rows],
        "generated_tokens": [r["completion/mean_tokens"] * per_step for r in rows.rows],
        "eval_accuracy": _greedy_accuracy(
            model, setup.checkpoint.tokenizer, eval_problems, _reward_config(setup)
        ),
    }


def _trl(steps: int, eval_problems: int) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    setup = embedded_rl(steps)
    stage, grpo = setup.stages[0], setup.grpo
    # Our loop's draws, step by step, so that TRL trains on the same prompts in the same order.
    order = [
        i for step in range(steps) for i in curriculum.draw_problems(setup.problems, stage, 0, step)
    ]
    dataset = Dataset.from_dict(
        {"prompt": [setup.prompts[i] for i in order], "problem_index": order}
    )
    cfg = _reward_config(setup)

    def magistral_reward(completions: list[str], completion_ids: list[list[int]],
                         problem_index: list[int], **_: Any) -> list[float]:  # fmt: skip
        problems = [setup.problems[i] for i in problem_index]
        rewards = score_batch(completions, problems, [len(c) for c in completion_ids], cfg,
                              n_workers=grpo.reward_workers)  # fmt: skip
        return [r.total for r in rewards]

    class Clock(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.began = 0.0
            self.step_s: list[float] = []
            self.logs: list[dict[str, float]] = []

        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            self.began = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            self.step_s.append(time.perf_counter() - self.began)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if logs and "reward" in logs:
                self.logs.append(dict(logs))

    optim = setup.engine.optim
    per_step = stage.n_prompts * grpo.group_size
    with tempfile.TemporaryDirectory() as directory:
        config = GRPOConfig(
            output_dir=directory, max_steps=steps, per_device_train_batch_size=per_step // 4,
            gradient_accumulation_steps=4, num_generations=grpo.group_size,
            max_completion_length=stage.l_max, temperature=grpo.temperature, top_p=1.0, top_k=0,
            learning_rate=optim.lr, lr_scheduler_type="constant_with_warmup",
            warmup_steps=optim.warmup_steps, adam_beta1=optim.betas[0],
            adam_beta2=optim.betas[1], weight_decay=optim.weight_decay,
            max_grad_norm=optim.grad_clip, beta=0.0, epsilon=grpo.eps_low,
            epsilon_high=grpo.eps_high, loss_type="dapo", scale_rewards="batch",
            num_iterations=1, shuffle_dataset=False, logging_steps=1, save_strategy="no",
            report_to="none", use_cpu=True, seed=0, disable_tqdm=True, bf16=False,
            gradient_checkpointing=False,  # TRL's default is on; ours is off: same compute
        )  # fmt: skip
        clock = Clock()
        trainer = GRPOTrainer(
            model=setup.checkpoint.model, reward_funcs=magistral_reward, args=config,
            train_dataset=dataset, processing_class=setup.checkpoint.tokenizer,
            callbacks=[clock],
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # every step's log dict on stdout
        began = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - began
    lengths = [log.get("completions/mean_length", 0.0) for log in clock.logs]
    return {
        "wall_s": total,
        "step_s": clock.step_s,
        "reward": [log["reward"] for log in clock.logs],
        "generated_tokens": [length * per_step for length in lengths],
        "eval_accuracy": _greedy_accuracy(
            trainer.model, setup.checkpoint.tokenizer, eval_problems, cfg
        ),
    }


def _worker(kind: str, steps: int, eval_problems: int, threads: int, out: Path) -> None:
    torch.set_num_threads(threads)
    if kind == "trl":
        result = _trl(steps, eval_problems)
    else:
        result = _ours(steps, eval_problems, mode=kind.removeprefix("ours-"))
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(result))


def _summary(run: dict[str, Any], wall_budget: float) -> dict[str, float]:
    steps = run["step_s"][1:] or run["step_s"]  # the first step warms up
    clock = np.cumsum(run["step_s"])
    within = [r for r, t in zip(run["reward"], clock, strict=False) if t <= wall_budget]
    return {
        "step_s_min": min(steps),
        "step_s_median": statistics.median(steps),
        "step_s_max": max(steps),
        "steps_per_s": 1 / statistics.median(steps),
        "generated_tokens_per_s": sum(run["generated_tokens"][1:]) / sum(steps),
        "peak_rss_mib": run["peak_rss_mib"],
        "reward_last5": statistics.fmean(run["reward"][-5:]),
        "reward_at_same_wall_time": statistics.fmean(within[-5:]) if within else float("nan"),
        "eval_accuracy": run["eval_accuracy"],
    }


def _plot(runs: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, run in runs.items():
        ax.plot(np.cumsum(run["step_s"]), run["reward"], marker=".", label=name)
    ax.set_xlabel("wall time in training steps (s)")
    ax.set_ylabel("mean reward of the step")
    ax.set_title("GRPO on the embedded default: ours (sync, async) vs TRL")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each (min/median/max)")
    parser.add_argument("--eval-problems", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.steps, args.eval_problems, args.threads, args.out)
        return 0
    try:
        import trl
    except ImportError:
        raise SystemExit('TRL is not installed: .venv/bin/pip install -e ".[bench]"') from None
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory() as directory:
        for repeat in range(args.repeats):
            for kind, kind_runs in runs.items():
                out = Path(directory) / f"{kind}{repeat}.json"
                command = [sys.executable, "-m", "benchmarks.vs_trl", "--worker", kind,
                           "--steps", str(args.steps), "--eval-problems", str(args.eval_problems),
                           "--threads", str(args.threads), "--out", str(out)]  # fmt: skip
                subprocess.run(command, cwd=ROOT, env=env, check=True)
                kind_runs.append(json.loads(out.read_text()))
    budget = min(sum(run["step_s"]) for kind_runs in runs.values() for run in kind_runs)
    summary = {
        kind: [_summary(run, budget) for run in kind_runs] for kind, kind_runs in runs.items()
    }
    median = {kind: {key: statistics.median(s[key] for s in rows) for key in rows[0]}
              for kind, rows in summary.items()}  # fmt: skip
    ours_kinds = [kind for kind in KINDS if kind != "trl"]
    ratios = {
        kind: {key: median[kind][key] / median["trl"][key] for key in median[kind]
               if median["trl"][key]}
        for kind in ours_kinds
    }  # fmt: skip
    print(
        f"== ours (sync, async) vs TRL {trl.__version__} GRPOTrainer, {args.steps} steps, "
        f"{args.repeats} repeat(s), {args.threads} threads; same wall time = {budget:.1f} s"
    )
    print(f"{'':<26}" + "".join(f"{kind:>12}" for kind in KINDS)
          + "".join(f"{kind + '/TRL':>16}" for kind in ours_kinds))  # fmt: skip
    for key in median["trl"]:
        values = "".join(f"{median[kind][key]:12.3f}" for kind in KINDS)
        shares = "".join(
            f"{ratios[kind][key]:16.2f}" if key in ratios[kind] else " " * 16 for kind in ours_kinds
        )
        print(f"{key:<26}{values}{shares}")
    print("what TRL cannot do of Magistral's GRPO (compared as configured, not approximated):")
    for gap in TRL_GAPS:
        print(f"  - {gap}")
    OUT.mkdir(parents=True, exist_ok=True)
    report = {
        "code_version": code_version(),
        "trl_version": trl.__version__,
        "steps": args.steps,
        "threads": args.threads,
        "repeats": summary,
        "median": median,
        "ratios_over_trl": ratios,
        "trl_gaps": TRL_GAPS,
        "curves": {k: v[0] for k, v in runs.items()},
    }
    (OUT / "vs_trl.json").write_text(json.dumps(report, indent=2))
    _plot({k: v[0] for k, v in runs.items()}, OUT / "vs_trl.png")
    print(f"written: {OUT / 'vs_trl.json'}, {OUT / 'vs_trl.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
