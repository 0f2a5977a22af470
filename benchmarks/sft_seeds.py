"""SFT over seeds: how much the SFT model's held-out accuracy depends on the seed.

    .venv/bin/python -m benchmarks.sft_seeds [--seeds 42,7,1] [--params KEY=VALUE,...]
                                            [--label NAME] [--jobs 1] [--workdir DIR]

For each seed, a scratch copy of the project under ``--workdir`` (``seed_<N>``, kept: a second
recipe reuses its curated data) runs ``kedro run --pipeline curation --to-outputs
train_problems,eval_problems,validation_problems,tokenizer`` once, then ``kedro run --pipeline
sft`` with ``seed=<N>`` and ``--params`` (the recipe under test, e.g.
``sft.engine.optim.lr=1e-3``). The seed changes everything: the generated problems, the split,
the initial weights, the data order. ``--jobs 2`` runs two seeds at a time, each on ``cores /
jobs`` torch threads (on 2 cores, 1.2x the throughput of one run on both).

Read from each run's MLflow records: the ``sft_eval`` metrics (greedy accuracy, pass@1, maj@k
on the held-out problems) and the loss curves. Printed per seed and as mean +- sample standard
deviation, and written to ``data/08_reporting/benchmarks/sft_seeds_<label>.json`` with a plot of
the training and eval loss per step (``.png``, one line per seed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks._common import OUT, ROOT, kedro_run, mlflow_runs, scratch_project, spread

CURATED = "train_problems,eval_problems,validation_problems,tokenizer"
EVAL_METRICS = ("greedy_accuracy", "pass_at_1", "maj_at_k", "format_rate")


@dataclass(frozen=True)
class SeedRun:
    """One seed's SFT: its held-out metrics and curves."""

    seed: int
    wall_s: float
    metrics: dict[str, float]  # sft_eval/<name> for name in EVAL_METRICS
    loss: list[float]  # training loss per step
    eval_loss: dict[int, float]  # step -> held-out loss

    @property
    def last_eval_loss(self) -> float:
        """The held-out loss of the trained model."""
        return self.eval_loss[max(self.eval_loss)]


def _records(project: Path) -> tuple[dict[str, float], list[float], dict[int, float]]:
    """The newest MLflow run of ``project`` with an SFT evaluation: its metrics and curves."""
    client, runs = mlflow_runs(project, "metrics.`sft_eval/greedy_accuracy` >= 0")
    if not runs:
        raise SystemExit(f"no SFT evaluation in {project}'s MLflow records")
    run = runs[-1]
    metrics = {name: run.data.metrics[f"sft_eval/{name}"] for name in EVAL_METRICS}
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "sft/loss")}
    evals = client.get_metric_history(run.info.run_id, "sft/eval_loss")
    return metrics, [history[s] for s in sorted(history)], {m.step: m.value for m in evals}


def _one_seed(seed: int, params: str, workdir: Path, threads: int) -> SeedRun:
    project = scratch_project(workdir / f"seed_{seed}")
    log = project / "benchmark.log"
    if not (project / "data/05_model_input/train_problems.jsonl").exists():
        curation = ("--pipeline", "curation", "--to-outputs", CURATED, "--params", f"seed={seed}")
        kedro_run(project, *curation, log=log, threads=threads)
    overrides = ",".join(part for part in (f"seed={seed}", params) if part)
    began = time.perf_counter()
    kedro_run(project, "--pipeline", "sft", "--params", overrides, log=log, threads=threads)
    wall = time.perf_counter() - began
    metrics, loss, eval_loss = _records(project)
    return SeedRun(seed, wall, metrics, loss, eval_loss)


def _plot(runs: list[SeedRun], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (train_axes, eval_axes) = plt.subplots(1, 2, figsize=(11, 3.8))
    for run in runs:
        label = f"seed {run.seed}: greedy {run.metrics['greedy_accuracy']:.3f}"
        train_axes.plot(range(1, len(run.loss) + 1), run.loss, lw=0.7, label=label)
        eval_axes.plot(list(run.eval_loss), list(run.eval_loss.values()), marker="o", label=label)
    train_axes.set_title(f"SFT training loss ({title})")
    eval_axes.set_title("held-out loss")
    for axes in (train_axes, eval_axes):
        axes.set_yscale("log")
        axes.set_xlabel("step")
        axes.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="42,7,1")
    parser.add_argument("--params", default="", help="kedro --params overrides (the recipe)")
    parser.add_argument("--label", default="default")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at a time")
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "09_sft_seeds")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(lambda s: _one_seed(s, args.params, args.workdir, threads), seeds))
    summary = {
        **{name: spread([r.metrics[name] for r in runs]) for name in EVAL_METRICS},
        "eval_loss_last": spread([r.last_eval_loss for r in runs]),
    }
    print(f"== SFT over seeds, recipe {args.label!r} ({args.params or 'conf/base'})")
    for run in runs:
        m = run.metrics
        print(
            f"seed {run.seed:>4}: greedy {m['greedy_accuracy']:.3f}  pass@1 {m['pass_at_1']:.3f}"
            f"  maj@k {m['maj_at_k']:.3f}  eval loss {run.last_eval_loss:.4f}"
            f"  {run.wall_s:.0f} s"
        )
    for name, value in summary.items():
        print(f"{name:<16} {value['mean']:.4f} +- {value['sd']:.4f}")
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"label": args.label, "params": args.params, "summary": summary}
    report["runs"] = [asdict(r) for r in runs]
    (OUT / f"sft_seeds_{args.label}.json").write_text(json.dumps(report, indent=2))
    _plot(runs, args.label, OUT / f"sft_seeds_{args.label}.png")
    print(f"written: {OUT / f'sft_seeds_{args.label}.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
