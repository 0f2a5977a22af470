"""Does length keep growing once the curriculum raises l_max? The paper raises the allowance for
an answer in stages "so that answers do not stall short", and reports that output length rises
to the allowed maximum.

    .venv/bin/python -m benchmarks.length_curriculum [--seeds 42,7,1] [--workdir DIR]
    .venv/bin/python -m benchmarks.length_curriculum --table    # docs/results.md's table

Per seed, once ``benchmarks.dynamics`` has run it (its SFT model is where GRPO starts), a
scratch project ``<workdir>/seed_<s>`` gets that seed's splits and its SFT model, base model
and tokenizer from ``data/09_dynamics/seed_<s>``, then runs
``kedro run --env long --pipeline rl --params seed=<s>``: GRPO for 300 steps in three stages
of 100 (``conf/long``), each allowing longer answers. The allowances (l_max - l_cache: 64, 96,
160 tokens) come from the references' lengths, not from any run: a chain written out whole is
at most 58, 73, 88 and 103 tokens at k = 3, 4, 5, 6, so the first stage leaves no room to write
out a chain of 5 or 6, the second room for 5, the third (conf/base's window) for every chain.
Every other setting is conf/base's, as in conf/dynamics' GRPO run.

Each seed's record (the run's curves, the per-stage figures) is written to
``data/08_reporting/benchmarks/length_curriculum_runs/seed_<s>.json`` when it is done (commit
it then) and reused by a later call; every call rebuilds ``length_curriculum.json`` from the
records there.

Criteria, fixed before any run
------------------------------
For each seed and stage j, L_j is the mean completion tokens of the stage's last 10 steps. The
claim ``length_grows_after_each_raise`` has, per seed, d = the mean over the two raises of
log(L_{j+1} / L_j). Over the seeds with a value (at least 3; with fewer the verdict is
``pending``) a one-sample two-sided t-test of mean(d) = 0 on n - 1 degrees of freedom gives p;
it is the one comparison made here, so p is not adjusted. Verdict: ``yes`` if p < 0.05 and
mean(d) > 0; ``no`` if p < 0.05 and mean(d) < 0; else ``not at this scale``. Each raise's
log-ratio is reported on its own with the same test, as a description (no verdict).

Reported without a verdict: per stage, the share of the allowance that L_j fills, the share of
completions cut at l_max, the longest completion and the accuracy, over its last 10 steps. The
mean over every difficulty cannot reach the allowance on this task (a chain of 1 written out is
~28 tokens), so whether answers reach the allowed maximum is read from the cut share and the
longest completions, not from the mean.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    OUT,
    ROOT,
    code_version,
    grpo_curves,
    kedro_run,
    project_from_dynamics,
    seed_records,
)
from benchmarks.dynamics import t_test, verdict
from magistral_kedro.check import load_parameters

ENV = "long"
CLAIM = "length_grows_after_each_raise"
WINDOW = 10  # steps: the end of a stage
CURVES = (
    "completion/mean_tokens",
    "completion/max_tokens",
    "completion/truncated_frac",
    "accuracy",
    "curriculum/stage",
)
#: Per-stage figures, one list per stage in the JSON.
STAGE_KEYS = (
    "first_tokens", "last_tokens", "fill", "truncated_last", "max_tokens_last", "accuracy_last",
)  # fmt: skip


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def stage_figures(curve: dict[str, list[float]], stages: list[dict[str, Any]]) -> list[dict]:
    """Per curriculum stage: its allowance and the figures of its first and last WINDOW steps
    (the module docstring), from the run's per-step ``curve``."""
    figures = []
    for index, stage in enumerate(stages):
        rows = [i for i, s in enumerate(curve["curriculum/stage"]) if s == index]
        first = {key: _mean([curve[key][i] for i in rows[:WINDOW]]) for key in CURVES}
        last = {key: _mean([curve[key][i] for i in rows[-WINDOW:]]) for key in CURVES}
        allowance = stage["l_max"] - stage["l_cache"]
        figures.append(
            {
                "l_max": stage["l_max"],
                "allowance": allowance,
                "steps": len(rows),
                "first_tokens": first["completion/mean_tokens"],
                "last_tokens": last["completion/mean_tokens"],
                "fill": last["completion/mean_tokens"] / allowance,
                "truncated_last": last["completion/truncated_frac"],
                "max_tokens_last": last["completion/max_tokens"],
                "accuracy_last": last["accuracy"],
            }
        )
    return figures


def raise_ratios(figures: list[dict[str, Any]]) -> list[float]:
    """log(L_{j+1} / L_j) for each raise of the allowance."""
    return [
        math.log(after["last_tokens"] / before["last_tokens"])
        for before, after in itertools.pairwise(figures)
    ]


def one_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    project = project_from_dynamics(args.dynamics / f"seed_{seed}", args.workdir / f"seed_{seed}")
    began = time.perf_counter()
    kedro_run(project, "--env", ENV, "--pipeline", "rl", "--params", f"seed={seed}",
              log=project / "benchmark.log")  # fmt: skip
    minutes = (time.perf_counter() - began) / 60
    stages = load_parameters(project / "conf", ENV, {"seed": seed})["rl"]["curriculum"]
    curve = grpo_curves(project, CURVES)[-1]
    return {
        "seed": seed,
        "code_version": code_version(),
        "run_minutes": minutes,
        "stages": stage_figures(curve, stages),
        "curve": curve,
    }


def report(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-seed figures and the claim's verdict by the module docstring's rules."""
    records = sorted(records, key=lambda r: r["seed"])
    ratios = [raise_ratios(r["stages"]) for r in records]
    claim = t_test([statistics.fmean(r) for r in ratios])
    claim["verdict"] = verdict(claim["mean"], claim["p"], claim["df"] + 1)
    n_stages = len(records[0]["stages"])

    def per_stage(key: str) -> list[list[float]]:
        return [[r["stages"][j][key] for r in records] for j in range(n_stages)]

    return {
        "code_version": sorted({r["code_version"] for r in records}),
        "env": ENV,
        "seeds": [r["seed"] for r in records],
        "criteria": __doc__.split("Criteria, fixed before any run")[1],
        "verdicts": {CLAIM: claim},
        "raises": [t_test([r[j] for r in ratios]) for j in range(n_stages - 1)],
        "allowance": [s["allowance"] for s in records[0]["stages"]],
        **{f"{key}_by_stage": per_stage(key) for key in STAGE_KEYS},
        "run_minutes": [r["run_minutes"] for r in records],
    }


def table(result: dict[str, Any]) -> str:
    """The stages of ``result`` (a length_curriculum JSON) as a Markdown table: means over the
    seeds, then the claim's line."""
    lines = [
        "| stage | l_max - l_cache | mean tokens, first 10 steps | last 10 steps | share cut at "
        "l_max | longest | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for j, allowance in enumerate(result["allowance"]):
        mean = {key: statistics.fmean(result[f"{key}_by_stage"][j]) for key in STAGE_KEYS}
        lines.append(
            f"| {j + 1} | {allowance} | {mean['first_tokens']:.1f} | {mean['last_tokens']:.1f} | "
            f"{mean['truncated_last']:.3f} | {mean['max_tokens_last']:.0f} | "
            f"{mean['accuracy_last']:.3f} |"
        )
    claim = result["verdicts"][CLAIM]
    values = ", ".join(f"{v:+.3f}" for v in claim["per_seed"])
    lines.append(
        f"\nlog(L after / L before), mean over the raises, per seed ({values}): mean "
        f"{claim['mean']:+.3f}, t {claim['t']:.2f} ({claim['df']} df), p {claim['p']:.3f}: "
        f"**{claim['verdict']}**"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="42,7,1")
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "09_long")
    parser.add_argument("--dynamics", type=Path, default=ROOT / "data" / "09_dynamics",
                        help="where benchmarks.dynamics ran the seeds")  # fmt: skip
    parser.add_argument("--table", action="store_true", help="print the JSON's table, run nothing")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads((OUT / "length_curriculum.json").read_text())))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    records = seed_records(OUT / "length_curriculum_runs", seeds, lambda seed: one_seed(seed, args))
    result = report(records)
    (OUT / "length_curriculum.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
