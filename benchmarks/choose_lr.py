"""GRPO's learning rate, chosen on the validation split (never on the held-out one).

    .venv/bin/python -m benchmarks.choose_lr [--lrs 2.5e-5,5e-5,1e-4] [--seed 42]

From the SFT model of one conf/dynamics seed (``data/09_dynamics/seed_<s>``, where
``benchmarks.dynamics`` ran it), GRPO trains as conf/dynamics trains it (150 steps, every other
setting conf/base's) once per learning rate, each in its own scratch project
(``<workdir>/lr_<lr>``: ``kedro run --env dynamics --pipeline rl``); then each model answers the
first ``--problems`` chain problems of the validation split, once greedily and ``--k`` times at
T = 1, graded by the recipe's reward, as ``benchmarks.dynamics --split validation`` grades
them. Each learning rate's record is kept in ``choose_lr_runs/lr_<lr>.json`` (reused by a later
call); every call rebuilds ``choose_lr.json``.

The rule, fixed before any run: the learning rate of the highest validation pass@1 is chosen,
unless it beats conf/base's current one by less than one standard error of the difference of
two pass@1 over the same problems (sqrt(2 p (1 - p) / answers), p their mean): then the current
one stays. conf/base's comment says what was chosen, on what, with this file's name.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import (
    OUT,
    ROOT,
    code_version,
    kedro_run,
    latest_model,
    project_from_dynamics,
)
from benchmarks.dynamics import answers, chain_problems, model_figures
from magistral_kedro.check import load_parameters

ENV = "dynamics"


def _current_lr() -> float:
    raw = yaml.safe_load((ROOT / "conf/base/parameters_rl.yml").read_text())
    return float(raw["rl"]["engine"]["optim"]["lr"])


def one_lr(lr: float, args: argparse.Namespace) -> dict[str, Any]:
    """GRPO at ``lr`` from the seed's SFT model, and its figures on the validation split."""
    version = code_version()  # the code that trains, not the one checked out when it ends
    project = project_from_dynamics(args.dynamics / f"seed_{args.seed}", args.workdir / f"lr_{lr}")
    params = f"seed={args.seed},rl.engine.optim.lr={lr}"
    kedro_run(project, "--env", ENV, "--pipeline", "rl", "--params", params,
              log=project / "benchmark.log")  # fmt: skip
    model = latest_model(project, "rl_model")
    assert model is not None, f"no GRPO model in {project}"
    parameters = load_parameters(project / "conf", ENV, {"seed": args.seed})  # stage, reward
    problems = chain_problems(project, "validation", args.problems)
    figures = model_figures(answers(model, problems, args.k, parameters))
    return {"lr": lr, "seed": args.seed, "code_version": version, **figures}


def choose(records: list[dict[str, Any]], current: float, n_answers: int) -> dict[str, Any]:
    """The module docstring's rule over ``records`` (one per learning rate)."""
    by_lr = {r["lr"]: r["pass_at_1"] for r in records}
    best = max(by_lr, key=lambda lr: by_lr[lr])
    if current not in by_lr:
        return {"chosen": best, "best": best, "se": math.nan, "kept_current": False}
    p = (by_lr[best] + by_lr[current]) / 2
    se = math.sqrt(2 * p * (1 - p) / n_answers)
    kept = by_lr[best] - by_lr[current] < se
    return {"chosen": current if kept else best, "best": best, "se": se, "kept_current": kept}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lrs", default="2.5e-5,5e-5,1e-4")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--problems", type=int, default=300)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "09_lr")
    parser.add_argument("--dynamics", type=Path, default=ROOT / "data" / "09_dynamics")
    args = parser.parse_args()
    kept = OUT / "choose_lr_runs"
    kept.mkdir(parents=True, exist_ok=True)
    records = []
    for lr in (float(value) for value in args.lrs.split(",")):
        path = kept / f"lr_{lr}.json"
        if not path.exists():
            path.write_text(json.dumps(one_lr(lr, args), indent=1))
        records.append(json.loads(path.read_text()))
    result = {
        "code_version": sorted({r["code_version"] for r in records}),
        "split": "validation",
        "rule": __doc__.split("The rule, fixed before any run: ")[1].split("\n\n")[0],
        "current": _current_lr(),
        **choose(records, _current_lr(), args.problems * args.k),
        "pass_at_1": {str(r["lr"]): r["pass_at_1"] for r in records},
        "greedy_accuracy": {str(r["lr"]): r["greedy_accuracy"] for r in records},
        "mean_tokens": {str(r["lr"]): r["mean_tokens"] for r in records},
        "runs": records,
    }
    (OUT / "choose_lr.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("chosen", "best", "se", "pass_at_1")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
