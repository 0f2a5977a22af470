"""The paper's claims on the chained-arithmetic task, which does not build them in.

    .venv/bin/python -m benchmarks.dynamics [--seeds 42,7,1] [--env dynamics]
        [--split heldout|validation] [--problems 300] [--k 4] [--workdir DIR]
    .venv/bin/python -m benchmarks.dynamics --table    # docs/results.md's table, from the JSON

Per seed, in a scratch copy of the project (``<workdir>/seed_<s>``, kept between calls):

1. ``kedro run --env dynamics --params seed=<s>``: the embedded default trained longer than the
   default run's budget allows (``conf/dynamics``), whole: curation, SFT, GRPO, the evaluations,
   the analysis.
2. ``kedro run --env dynamics --pipeline rl --params seed=<s>,rl.grpo.objective=rs_ft``:
   rejection-sampling fine-tuning (RS-FT) from the same SFT model at matched compute: the same
   RL set, the same prompts in the same order (the seed draws them), the same completions per
   step (n_prompts x G, sampled from the model being trained) and the same optimiser steps and
   settings; each step fine-tunes on the completions whose answer is right.
3. The SFT, GRPO (SFT + RL) and RS-FT models answer the same problems: the first
   ``--problems`` math problems of the held-out split (or of the validation split, with
   ``--split validation``: where settings are chosen), once greedily and ``--k`` times at T = 1,
   as long as GRPO's stage allows, graded by the recipe's reward.

Each seed's record is written to ``<out>_runs/seed_<s>.json`` as soon as it is done (commit it
then: the seeds may span several sessions), and a later call reuses it; every call rebuilds
``data/08_reporting/benchmarks/dynamics.json`` (``dynamics_validation.json`` for the validation
split) from the records there.

Criteria, fixed before any run (the verdicts follow from them mechanically)
--------------------------------------------------------------------------
Every claim is a per-seed number ``d`` whose sign says whether the seed agrees with the paper.
Over the n seeds with a value (at least 3; with fewer the verdict is ``pending``) a one-sample
two-sided t-test of mean(d) = 0, on n - 1 degrees of freedom, gives a p-value; the six claims
are six comparisons, so the p-values are adjusted by Holm's method over all six (a claim
without a p-value counts as p = 1). Verdict: ``yes``
if the adjusted p is below 0.05 and mean(d) > 0; ``no`` if below 0.05 and mean(d) < 0; else
``not at this scale``. The claims and their ``d``:

- ``writing_out_pays`` (the task's premise, not the paper's claim): SFT's sampled answers to
  problems of k >= 3 operations, accuracy of those writing every intermediate result minus
  those writing none, averaged over the k whose two cells hold at least 10 answers each.
- ``rl_beats_sft``: held-out pass@1 (4 samples, T = 1) of SFT + RL minus SFT's.
- ``rl_beats_rs_ft``: pass@1 of SFT + RL minus RS-FT's (the claim of RL proper: its gain over
  a baseline that samples as much and trains on the right answers).
- ``length_grows_along_grpo``: log(mean completion tokens of GRPO's last 10 steps / first 10).
- ``length_grows_most_on_hard_problems``: the increase in mean answer tokens from SFT to
  SFT + RL on the sampled answers to problems of k >= 4 operations, minus that on k <= 2.
- ``reward_and_length_share_a_direction``: the cosine between the directions of reward and of
  length in the PCA plane of GRPO's checkpoints (the analysis pipeline's). Measurable only
  when every seed has at least 5 checkpoints inside the phase where length moves; else the
  verdict is ``not measurable``.

The phase where length moves: the mean completion tokens of the last 10 steps minus that of
the first 10 is the change; unless it is at least 5% of the first, length does not move (no
phase). Else the phase runs from step 1 to the first step, from the 10th on, where the trailing
10-step mean has covered 90% of the change; the checkpoints inside it are those at or before
that step.

Not measured here: whether length keeps growing once the curriculum raises l_max (a run of
several hundred steps; open work).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats as scipy_stats

from benchmarks._common import (
    OUT,
    ROOT,
    code_version,
    grpo_curves,
    kedro_run,
    latest_model,
    scratch_project,
    seed_records,
)
from magistral_kedro.check import load_parameters
from magistral_kedro.evaluation import evaluate_generation, summarise
from magistral_kedro.generation import GenerationConfig, SamplingConfig
from magistral_kedro.models import load_checkpoint
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tasks.math import steps_written

CLAIMS = (
    "writing_out_pays",
    "rl_beats_sft",
    "rl_beats_rs_ft",
    "length_grows_along_grpo",
    "length_grows_most_on_hard_problems",
    "reward_and_length_share_a_direction",
)
ALPHA = 0.05
MIN_SEEDS = 3
WINDOW = 10  # steps: the first and the last window of a run
MIN_MOVE = 0.05  # of the first window's length: below, length does not move
PHASE_SHARE = 0.9  # of the change: where the phase in which length moves ends
MIN_CELL = 10  # answers in each cell of writing_out_pays
MIN_IN_GROWTH = 5  # checkpoints inside the phase, for the PCA's claim
EVAL_SEED = 7
MODELS = ("sft", "sft_rl", "rs_ft")
CURVES = ("completion/mean_tokens", "reward/total", "accuracy")


def growth_phase_end(steps: list[int], tokens: list[float]) -> int | None:
    """The step at which the phase where length moves ends (module docstring), or None when
    length does not move."""
    first, last = float(np.mean(tokens[:WINDOW])), float(np.mean(tokens[-WINDOW:]))
    change = last - first
    if abs(change) < MIN_MOVE * first:
        return None
    for i in range(WINDOW - 1, len(steps)):
        trailing = float(np.mean(tokens[i + 1 - WINDOW : i + 1]))
        if (trailing - first) / change >= PHASE_SHARE:
            return steps[i]
    return steps[-1]


def _mean_by(frame: pd.DataFrame, key: str, column: str) -> dict[str, float]:
    return {str(k): float(v) for k, v in frame.groupby(key)[column].mean().items()}


def writing_gain(sampled: pd.DataFrame) -> float:
    """Accuracy writing every intermediate result minus writing none, averaged over k >= 3
    where both cells hold at least MIN_CELL answers; NaN if none does."""
    gains = []
    for k, rows in sampled[sampled["difficulty"] >= 3].groupby("difficulty"):
        every = rows[rows["written"] == k - 1]["correct"]
        none = rows[rows["written"] == 0]["correct"]
        if len(every) >= MIN_CELL and len(none) >= MIN_CELL:
            gains.append(float(every.mean()) - float(none.mean()))
    return statistics.fmean(gains) if gains else math.nan


def answers(model: Path, problems: pd.DataFrame, k: int, params: dict[str, Any]) -> pd.DataFrame:
    """One row per answer of ``model`` (greedy and ``k`` at T = 1, as long as GRPO's first
    stage allows), graded by the recipe's reward with that stage's length window, with
    ``written``."""
    stage = params["rl"]["curriculum"][0]
    window = {"l_max": stage["l_max"], "l_cache": stage["l_cache"]}
    reward = RewardConfig(**{**params["reward"], **window})
    sampling = SamplingConfig(max_new_tokens=stage["l_max"], temperature=1.0, batch_size=256)
    table, _ = evaluate_generation(
        load_checkpoint(model), problems, "none", len(problems), sampling, reward,
        GenerationConfig(), EVAL_SEED, "dynamics", k, 1.0,
    )  # fmt: skip
    table["correct"] = table["correct"].astype(float)
    return table.assign(written=table["completion"].map(steps_written))


def model_figures(table: pd.DataFrame) -> dict[str, Any]:
    sampled = table[table["decoding"] == "sampled"]
    summary = summarise(table)
    cells = sampled.groupby(["difficulty", "written"])["correct"].agg(["mean", "size"])
    return {
        "pass_at_1": summary["pass_at_1"],
        "greedy_accuracy": summary["greedy_accuracy"],
        "maj_at_k": summary["maj_at_k"],
        "mean_tokens": float(sampled["completion_tokens"].mean()),
        "accuracy_by_k": _mean_by(sampled, "difficulty", "correct"),
        "length_by_k": _mean_by(sampled, "difficulty", "completion_tokens"),
        "written_by_k": _mean_by(sampled, "difficulty", "written"),
        "accuracy_by_steps_written": _mean_by(sampled, "written", "correct"),
        "accuracy_by_k_and_steps_written": {
            f"{k}/{m}": float(mean) for (k, m), mean in cells["mean"].items()
        },
        "answers_by_k_and_steps_written": {
            f"{k}/{m}": int(size) for (k, m), size in cells["size"].items()
        },
        "writing_gain": writing_gain(sampled),
    }


def _trajectory(project: Path, curve: dict[str, list[float]]) -> dict[str, Any]:
    """The analysis pipeline's PCA of the GRPO checkpoints, and how many lie in the phase
    where length moves."""
    table = pd.read_csv(project / "data/08_reporting/weight_trajectory.csv")
    found = json.loads((project / "data/08_reporting/weight_trajectory_stats.json").read_text())
    end = growth_phase_end([int(s) for s in curve["step"]], curve["completion/mean_tokens"])
    steps = [int(s) for s in table["step"]]
    return {
        "cosine": found.get("pca", {}).get("cosine_reward_length", math.nan),
        "checkpoint_steps": steps,
        "n_checkpoints": len(steps),
        "growth_phase_end": end,
        "n_checkpoints_in_growth": 0 if end is None else sum(s <= end for s in steps),
    }


def chain_problems(project: Path, split: str, n: int) -> pd.DataFrame:
    name = "eval_problems" if split == "heldout" else "validation_problems"
    frame = pd.read_json(project / f"data/05_model_input/{name}.jsonl", lines=True, dtype=False)
    chains = frame[(frame["kind"] == "math") & (frame["source"] == "embedded/math")]
    return chains.head(n).reset_index(drop=True)


def one_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Steps 1-3 of the module docstring for ``seed``: its record."""
    project = scratch_project(args.workdir / f"seed_{seed}")
    log = project / "benchmark.log"
    record = {"seed": seed, "env": args.env, "code_version": code_version()}
    began = time.perf_counter()
    kedro_run(project, "--env", args.env, "--params", f"seed={seed}", log=log)
    record["run_minutes"] = (time.perf_counter() - began) / 60
    sft, grpo = latest_model(project, "sft_model"), latest_model(project, "rl_model")
    began = time.perf_counter()
    # Its own resumable state: GRPO's finished run stays (a later call reuses both).
    rs_ft_params = (
        f"seed={seed},rl.grpo.objective=rs_ft,rl.checkpoint_dir=data/06_models/rs_ft_state"
    )
    kedro_run(project, "--env", args.env, "--pipeline", "rl", "--params", rs_ft_params, log=log)
    record["rs_ft_run_minutes"] = (time.perf_counter() - began) / 60
    rs_ft = latest_model(project, "rl_model")
    assert sft and grpo and rs_ft and rs_ft != grpo, "a model of the seed's runs is missing"
    params = load_parameters(project / "conf", args.env, {"seed": seed})
    problems = chain_problems(project, args.split, args.problems)
    record["models"] = {
        name: model_figures(answers(path, problems, args.k, params))
        for name, path in zip(MODELS, (sft, grpo, rs_ft), strict=True)
    }
    grpo_curve, rs_ft_curve = grpo_curves(project, CURVES)[-2:]
    record["curves"] = {"sft_rl": grpo_curve, "rs_ft": rs_ft_curve}
    record["trajectory"] = _trajectory(project, grpo_curve)
    return record


def claim_values(record: dict[str, Any]) -> dict[str, float]:
    """One seed's ``d`` for every claim (module docstring)."""
    models, tokens = record["models"], record["curves"]["sft_rl"]["completion/mean_tokens"]

    def growth(ks: range) -> float:
        start, end = models["sft"]["length_by_k"], models["sft_rl"]["length_by_k"]
        keys = [str(k) for k in ks if str(k) in start and str(k) in end]
        return statistics.fmean(end[k] - start[k] for k in keys) if keys else math.nan

    return {
        "writing_out_pays": models["sft"]["writing_gain"],
        "rl_beats_sft": models["sft_rl"]["pass_at_1"] - models["sft"]["pass_at_1"],
        "rl_beats_rs_ft": models["sft_rl"]["pass_at_1"] - models["rs_ft"]["pass_at_1"],
        "length_grows_along_grpo": math.log(np.mean(tokens[-WINDOW:]) / np.mean(tokens[:WINDOW])),
        "length_grows_most_on_hard_problems": growth(range(4, 7)) - growth(range(1, 3)),
        "reward_and_length_share_a_direction": record["trajectory"]["cosine"],
    }


def verdicts(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per claim: the per-seed values, their mean, t, degrees of freedom, p, Holm-adjusted p
    and the verdict, by the module docstring's rules."""
    per_record = [claim_values(r) for r in records]
    out = {claim: t_test([found[claim] for found in per_record]) for claim in CLAIMS}
    adjusted = holm({claim: figures["p"] for claim, figures in out.items()})
    for claim, figures in out.items():
        figures["p_holm"] = adjusted[claim]
        figures["verdict"] = verdict(figures["mean"], figures["p_holm"], figures["df"] + 1)
    measurable = all(r["trajectory"]["n_checkpoints_in_growth"] >= MIN_IN_GROWTH for r in records)
    if records and not measurable:
        out["reward_and_length_share_a_direction"]["verdict"] = "not measurable"
    return out


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of ``p_values``, every one a comparison (NaN counts as 1)."""
    ordered = sorted((p if math.isfinite(p) else 1.0, name) for name, p in p_values.items())
    adjusted, running = {}, 0.0
    for rank, (p, name) in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * p))
        adjusted[name] = running
    return adjusted


def t_test(per_seed: list[float]) -> dict[str, Any]:
    """A one-sample two-sided t-test of mean = 0 over the finite values of ``per_seed``: the
    values, their mean, t, the degrees of freedom and p (NaN with fewer than 2 values)."""
    finite = [v for v in per_seed if math.isfinite(v)]
    test = scipy_stats.ttest_1samp(finite, 0.0) if len(finite) >= 2 else None
    return {
        "per_seed": per_seed,
        "mean": statistics.fmean(finite) if finite else math.nan,
        "t": float(test.statistic) if test else math.nan,
        "df": len(finite) - 1,
        "p": float(test.pvalue) if test else math.nan,
    }


def verdict(mean: float, p: float, n_seeds: int) -> str:
    """``pending`` below MIN_SEEDS seeds; ``yes``/``no`` (the sign of ``mean``) when the
    (adjusted) ``p`` is below ALPHA; else ``not at this scale``."""
    if n_seeds < MIN_SEEDS:
        return "pending"
    if math.isfinite(p) and p < ALPHA:
        return "yes" if mean > 0 else "no"
    return "not at this scale"


def _per_seed(records: list[dict[str, Any]], model: str, key: str) -> dict[str, list[float]]:
    """``{key value: [one value per seed]}`` of a model's figure (NaN where a seed lacks it)."""
    keys = sorted({k for r in records for k in r["models"][model][key]}, key=_natural)
    return {k: [r["models"][model][key].get(k, math.nan) for r in records] for k in keys}


def _natural(key: str) -> tuple[int, ...]:
    return tuple(int(part) for part in key.split("/"))


def report(records: list[dict[str, Any]], split: str) -> dict[str, Any]:
    """The JSON of the issue's shape: figures per seed (lists in the order of ``seeds``)."""
    records = sorted(records, key=lambda r: r["seed"])
    return {
        "code_version": sorted({r["code_version"] for r in records}),
        "split": split,
        "seeds": [r["seed"] for r in records],
        "criteria": __doc__.split("Criteria, fixed before any run")[1].split("Not measured")[0],
        "verdicts": verdicts(records),
        "sft": {
            "accuracy_by_k": _per_seed(records, "sft", "accuracy_by_k"),
            "accuracy_by_steps_written": _per_seed(records, "sft", "accuracy_by_steps_written"),
            "accuracy_by_k_and_steps_written": _per_seed(
                records, "sft", "accuracy_by_k_and_steps_written"
            ),
        },
        "grpo": {
            "length_by_k_start": _per_seed(records, "sft", "length_by_k"),
            "length_by_k_end": _per_seed(records, "sft_rl", "length_by_k"),
            "written_by_k_start": _per_seed(records, "sft", "written_by_k"),
            "written_by_k_end": _per_seed(records, "sft_rl", "written_by_k"),
        },
        "rs_ft": {"length_by_k_end": _per_seed(records, "rs_ft", "length_by_k")},
        f"{split}_pass_at_1": {m: [r["models"][m]["pass_at_1"] for r in records] for m in MODELS},
        f"{split}_greedy_accuracy": {
            m: [r["models"][m]["greedy_accuracy"] for r in records] for m in MODELS
        },
        "cosine": [r["trajectory"]["cosine"] for r in records],
        "n_checkpoints": [r["trajectory"]["n_checkpoints"] for r in records],
        "n_checkpoints_in_growth": [r["trajectory"]["n_checkpoints_in_growth"] for r in records],
        "env": sorted({r["env"] for r in records}),
        "run_minutes": [r["run_minutes"] for r in records],
    }


CLAIM_TEXT = {
    "writing_out_pays": "writing the steps out pays (the task's premise)",
    "rl_beats_sft": "SFT then RL beats SFT alone (held-out pass@1)",
    "rl_beats_rs_ft": "RL beats rejection-sampling fine-tuning at matched compute",
    "length_grows_along_grpo": "output length grows along RL",
    "length_grows_most_on_hard_problems": "length grows most on the hardest problems",
    "reward_and_length_share_a_direction": "reward and length grow along one PCA direction",
}


def table(result: dict[str, Any]) -> str:
    """The claims of ``result`` (a dynamics JSON) as a Markdown table: the per-seed values,
    their mean, the test and the verdict."""
    lines = [
        f"| the paper says | d per seed ({', '.join(map(str, result['seeds']))}) | mean | "
        "t (df) | p, Holm | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for claim, f in result["verdicts"].items():
        values = ", ".join(f"{v:+.3f}" for v in f["per_seed"])
        lines.append(
            f"| {CLAIM_TEXT[claim]} | {values} | {f['mean']:+.3f} | {f['t']:.2f} ({f['df']}) | "
            f"{f['p_holm']:.3f} | **{f['verdict']}** |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="42,7,1")
    parser.add_argument("--env", default="dynamics", help="the Kedro env of the runs")
    parser.add_argument("--split", choices=("heldout", "validation"), default="heldout")
    parser.add_argument("--problems", type=int, default=300)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "09_dynamics")
    parser.add_argument("--table", action="store_true", help="print the JSON's table, run nothing")
    args = parser.parse_args()
    name = "dynamics" + ("" if args.env == "dynamics" else f"_{args.env}")
    name += "" if args.split == "heldout" else "_validation"
    if args.table:
        print(table(json.loads((OUT / f"{name}.json").read_text())))
        return 0
    torch.set_num_threads(2)
    seeds = [int(s) for s in args.seeds.split(",")]
    records = seed_records(OUT / f"{name}_runs", seeds, lambda seed: one_seed(seed, args))
    result = report(records, args.split)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
    for claim, figures in result["verdicts"].items():
        print(f"{claim:<38} mean {figures['mean']:+.4f}  p_holm {figures['p_holm']:.3g}  "
              f"{figures['verdict']}")  # fmt: skip
    print(f"written: {OUT / f'{name}.json'} ({len(records)} seeds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
