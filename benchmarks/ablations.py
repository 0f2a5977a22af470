"""Ablations of Magistral's GRPO over seeds: which part of the recipe does what, beyond noise.

    .venv/bin/python -m benchmarks.ablations [--project DIR] [--seeds 1,2,3] [--steps 100]
        [--grpo mode=async] [--jobs 1] [--arms a,b] [--eval-problems 300]
        [--language-problems 50] [--k 4]
    .venv/bin/python -m benchmarks.ablations --table    # docs/results.md's tables

Every arm starts from the same SFT model (the latest of ``--project``, a project where
``kedro run`` ran at least through SFT), trains on the same problems (the difficulty-filtered
``rl_problems`` when the project has them, else its training split) for the same steps with the
project's GRPO loop (``train_grpo``, the default ``rl`` parameters on the torch backend), once
per seed; seed ``s`` draws the same prompts in every arm. Each run is a fresh process; ``--jobs``
runs that many at a time on ``cores / jobs`` threads each. Every arm runs in ``mode: async``
(``--grpo``), the paper's setting: generation runs up to two steps ahead, so the policy ratio
differs from 1 and the clip acts; in sync mode with one minibatch per batch the ratio is exactly
1, clipping never binds, and ``no_clip_higher`` would be the recipe bit for bit. Arms:

- ``recipe``: the recipe as it is;
- ``no_language_reward``: ``reward.language_reward = 0`` (graded with the recipe's reward);
- ``no_clip_higher``: ``eps_high = eps_low`` (does entropy fall faster?);
- ``keep_non_diverse``: groups whose rewards are all equal are kept (advantage 0), not dropped;
- ``no_adv_normalisation``: advantages ``r - mean(group)``, not normalised over the minibatch;
- ``rl_alone`` (not run by default): the recipe from the untrained base model, no SFT.

Evaluation of each trained model (and once of the SFT and the untrained base model, the
``start_models``):
``--k`` answers at T = 1 and one greedy answer to each of the first ``--eval-problems``
held-out math problems (pass@1, maj@k, greedy accuracy), and ``--k`` answers to a language set:
the first ``--language-problems`` English held-out problems each written in the six other
languages by the generator's templates (held out, like their English originals), whose answer
rate in the problem's language is ``language_rate``. The eval split has only ~5 non-English
problems per language at the default 10% translated; 50 x 6 = 300 problems x 4 answers
measure a language rate to +-0.01 (binomial), well under the seed noise.

From each run: entropy, mean completion length and reward of its last steps, the ratio of the
last to the first steps' length, and the cosine between the directions of reward and of length
in the PCA plane of its checkpoints (every 10 steps). The reward is the training reward without
its language term (which ``no_language_reward`` lacks); entropy and clip fractions are over
the tokens of the groups whose rewards differ in every arm (``keep_non_diverse`` trains on the
all-equal groups too, but they are not in its statistics: the arms compare the same tokens).

Written to ``data/08_reporting/benchmarks/ablations.json`` (per arm, one value per seed of each
figure; mean +- sd; each arm's mean per-seed difference from ``recipe``, the paired t-test over
the seeds (n - 1 degrees of freedom) and its p, and, since every arm is compared on every
figure, p adjusted by Holm's method over all those comparisons: the arms x the FIGURES, 20 for
the default arms) and ``ablations.png``. Each finished run is
kept under ``ablations_runs/`` and reused by a later call with the same settings, code version
and recipe parameters.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from safetensors.torch import load_file
from scipy import stats as scipy_stats

from benchmarks._common import (
    OUT,
    ROOT,
    StepRows,
    code_version,
    embedded_rl,
    latest_model,
    spread,
)
from benchmarks.dynamics import holm
from magistral_kedro.analysis import flatten_weights, reward_length_directions, window_means
from magistral_kedro.evaluation import grade_samples, summarise
from magistral_kedro.generation import GenerationConfig, SamplingConfig, open_generator
from magistral_kedro.grpo.config import Stage
from magistral_kedro.grpo.loop import train_grpo
from magistral_kedro.models import (
    ModelSource,
    load_checkpoint,
    tokenizer_of,
)
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tasks.frames import frame_to_problems, problems_to_frame
from magistral_kedro.tasks.math import translate_math_problem
from magistral_kedro.tasks.schema import LANGUAGES

#: arm -> (GRPOConfig overrides, RewardConfig overrides); no_clip_higher's eps_high (None here)
#: is the recipe's eps_low.
ARMS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "recipe": ({}, {}),
    "no_language_reward": ({}, {"language_reward": 0.0}),
    "no_clip_higher": ({"eps_high": None}, {}),
    "keep_non_diverse": ({"drop_non_diverse_groups": False}, {}),
    "no_adv_normalisation": ({"normalise_minibatch_advantages": False}, {}),
    "rl_alone": ({}, {}),
}
DEFAULT_ARMS = [arm for arm in ARMS if arm != "rl_alone"]
#: The models the arms start from, evaluated once each.
START_MODELS = ("sft", "base")
#: Per-seed figures of each arm, as issue 18 names them, then the extras.
FIGURES = ("pass_at_1", "maj_at_k", "entropy_last", "mean_tokens_last", "language_rate")
EXTRAS = (
    "greedy_accuracy",
    "reward_first",
    "reward_last",
    "mean_tokens_first",
    "length_ratio",
    "cosine_reward_length",
    "clip_low_frac",
    "clip_high_frac",
    "staleness",
)
EVAL_SEED = 7
#: Step metrics kept per run.
CURVES = (
    "reward/total",
    "reward/language",
    "accuracy",
    "completion/mean_tokens",
    "policy/entropy",
    "clip/low_frac",
    "clip/high_frac",
    "groups/dropped_frac",
    "async/staleness_mean",
)
#: Steps a run's checkpoints are apart: the points of its PCA.
CHECKPOINT_EVERY = 10


class TrajectoryRows(StepRows):
    """Each step's metrics, and each checkpoint's weights flattened as it is written."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[np.ndarray] = []
        self.steps: list[int] = []

    def log_checkpoint(self, path: Path, step: int) -> None:
        self.points.append(flatten_weights(load_file(str(path / "model.safetensors"))))
        self.steps.append(step)


def _recipe_reward() -> RewardConfig:
    return RewardConfig(**yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())["reward"])


def _held_out(project: Path, n: int) -> pd.DataFrame:
    """The first ``n`` held-out math problems of ``project``, as the pipelines' evaluations
    read them."""
    frame = pd.read_json(
        project / "data/05_model_input/eval_problems.jsonl", lines=True, dtype=False
    )
    return frame[frame["kind"] == "math"].head(n).reset_index(drop=True)


def language_set(project: Path, n_english: int) -> pd.DataFrame:
    """The first ``n_english`` English held-out math problems the generator's templates can
    translate (the embedded ones), each in the six other languages (numbers kept), minus any
    whose prompt is in the training split."""
    held_out = frame_to_problems(_held_out(project, 10**9))
    others = [language for language in LANGUAGES if language != "en"]
    english = [p for p in held_out if translate_math_problem(p, others[0]) is not None]
    train = pd.read_json(
        project / "data/05_model_input/train_problems.jsonl", lines=True, dtype=False
    )
    seen = set(train["prompt"])
    translated = [
        problem
        for original in english[:n_english]
        for language in others
        if (problem := translate_math_problem(original, language)) is not None
        and problem.prompt not in seen
    ]
    return problems_to_frame(translated)


def evaluate(
    model: ModelSource, held_out: pd.DataFrame, languages: pd.DataFrame, k: int, stage: Stage
) -> dict[str, float]:
    """pass@1, maj@k and greedy accuracy of ``model`` on ``held_out``, and on ``languages`` the
    share of answers the language reward grades in the problem's language (formatted, and
    identified as that language); answers as long as GRPO's ``stage`` allows, graded by the
    recipe's reward with its length window."""
    reward = dataclasses.replace(_recipe_reward(), l_max=stage.l_max, l_cache=stage.l_cache)
    sampling = SamplingConfig(max_new_tokens=stage.l_max, temperature=1.0, batch_size=256)
    with open_generator(model, GenerationConfig(), EVAL_SEED) as generator:
        tokenizer = tokenizer_of(model)
        graded = [
            grade_samples(
                generator, tokenizer, frame, "none", sampling, reward, EVAL_SEED, k, 1.0, greedy
            )
            for frame, greedy in ((held_out, True), (languages, False))
        ]
    every, foreign = summarise(graded[0]), summarise(graded[1])
    return {
        "pass_at_1": every["pass_at_1"],
        "maj_at_k": every["maj_at_k"],
        "greedy_accuracy": every["greedy_accuracy"],
        "language_rate": foreign["language_rate"],
        "language_pass_at_1": foreign["pass_at_1"],
        "language_problems": float(len(languages)),
    }


def _finite_mean(values: list[float]) -> float:
    """The mean of the finite ``values`` (NaN where a step did not log the metric); NaN if none."""
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


def run_figures(rows: TrajectoryRows) -> dict[str, Any]:
    """What one run's steps say: last-steps entropy, length and reward, the length ratio of the
    last to the first steps (windows of a third of the run, at most 10 steps), and the cosine of
    the reward and length directions over the checkpoints."""
    steps = list(range(1, len(rows.rows) + 1))
    curves = {key: [row.get(key, math.nan) for row in rows.rows] for key in CURVES}
    window = max(1, min(10, len(steps) // 3))
    tokens = curves["completion/mean_tokens"]
    # Without its language term, so that no_language_reward (which lacks it) compares.
    rewards = list(np.subtract(curves["reward/total"], curves["reward/language"]))
    curves["reward/task"] = rewards
    figures: dict[str, Any] = {
        "entropy_last": _finite_mean(curves["policy/entropy"][-window:]),
        "mean_tokens_first": float(np.mean(tokens[:window])),
        "mean_tokens_last": float(np.mean(tokens[-window:])),
        "reward_first": float(np.mean(rewards[:window])),
        "reward_last": float(np.mean(rewards[-window:])),
        "cosine_reward_length": math.nan,
        "clip_low_frac": _finite_mean(curves["clip/low_frac"]),
        "clip_high_frac": _finite_mean(curves["clip/high_frac"]),
        "staleness": _finite_mean(curves["async/staleness_mean"]),
        "curves": curves,
    }
    figures["length_ratio"] = figures["mean_tokens_last"] / figures["mean_tokens_first"]
    if len(rows.points) >= 3:
        found = reward_length_directions(
            np.stack(rows.points),
            window_means(steps, rewards, rows.steps),
            window_means(steps, tokens, rows.steps),
        )
        figures["cosine_reward_length"] = found.cosine
    return figures


def _worker(arm: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One GRPO run of ``arm`` with ``seed``, then its evaluation."""
    common = {"checkpoint_every": CHECKPOINT_EVERY, **_grpo_overrides(args.grpo)}
    setup = embedded_rl(args.steps, args.project, _rl_set(args.project), **common)
    grpo_overrides, reward_overrides = ARMS[arm]
    overrides = {k: setup.grpo.eps_low if v is None else v for k, v in grpo_overrides.items()}
    grpo = dataclasses.replace(setup.grpo, keep_checkpoints=2, **overrides)
    start = _base_model(args.project) if arm == "rl_alone" else setup.checkpoint
    rows = TrajectoryRows()
    with tempfile.TemporaryDirectory() as directory:
        trained, _ = train_grpo(
            start,
            setup.problems,
            setup.prompts,
            engine_config=setup.engine,
            grpo=grpo,
            stages=setup.stages,
            reward=dataclasses.replace(_recipe_reward(), **reward_overrides),
            checkpoint_dir=directory,
            seed=seed,
            tracker=rows,
        )
        evaluated = _evaluate_run(trained, args, setup.stages[0])
    return {"arm": arm, "seed": seed, **run_figures(rows), **evaluated}


def _base_model(project: Path) -> ModelSource:
    """The untrained model ``project``'s SFT started from (its latest version)."""
    model = latest_model(project, "base_model")
    if model is None:
        raise SystemExit(f"no base model in {project}: run `kedro run --pipeline sft` first")
    return load_checkpoint(model)


def _grpo_overrides(text: str) -> dict[str, Any]:
    """``"key=value,key=value"`` (values in YAML) as GRPOConfig overrides."""
    pairs = [item.split("=", 1) for item in text.split(",") if item]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"--grpo takes key=value pairs separated by commas, got {text!r}")
    return {key.strip(): yaml.safe_load(value) for key, value in pairs}


def _rl_set(project: Path) -> str:
    """The problems GRPO trains on: ``project``'s difficulty-filtered RL set if it has one,
    else its training split."""
    filtered = (project / "data/05_model_input/rl_problems.jsonl").exists()
    return "rl_problems" if filtered else "train_problems"


def _evaluate_run(model: ModelSource, args: argparse.Namespace, stage: Stage) -> dict[str, float]:
    held_out = _held_out(args.project, args.eval_problems)
    languages = language_set(args.project, args.language_problems)
    return evaluate(model, held_out, languages, args.k, stage)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """What makes two runs of an arm comparable (and a kept run reusable)."""
    keys = ("steps", "grpo", "eval_problems", "language_problems", "k")
    settings: dict[str, Any] = {key: getattr(args, key) for key in keys}
    model = latest_model(args.project, "sft_model")
    settings["sft_model"] = model.parent.name if model else None
    settings["project"] = str(args.project.resolve())
    settings["rl_problems"] = _rl_set(args.project) == "rl_problems"
    # The recipe's parameters are this checkout's, like its code.
    conf = [ROOT / "conf/base" / name for name in ("parameters.yml", "parameters_rl.yml")]
    settings["conf"] = hashlib.sha256(b"".join(path.read_bytes() for path in conf)).hexdigest()
    settings["code"] = code_version()
    return settings


def _run(
    task: str, seed: int, args: argparse.Namespace, threads: int, digest: str
) -> dict[str, Any]:
    """One arm and seed (or a start model's evaluation) in a fresh process, or the result kept
    from a call whose settings had this ``digest``."""
    kept = OUT / "ablations_runs" / f"{task}_seed{seed}_{digest}.json"
    if kept.exists():
        return dict(json.loads(kept.read_text()))
    kept.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "benchmarks.ablations", "--worker", task]
    command += ["--seed", str(seed), "--out", str(kept), "--project", str(args.project.resolve())]
    for key in ("steps", "grpo", "eval_problems", "language_problems", "k"):
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"  {task} seed {seed}: done", flush=True)
    return dict(json.loads(kept.read_text()))


def paired(arm: list[float], reference: list[float]) -> dict[str, float | bool]:
    """The mean of the per-seed differences ``arm - reference`` (the same seed draws the same
    prompts in both), their standard error ``sd / sqrt(n)``, the paired t-test's degrees of
    freedom and two-sided p, and whether p < 0.05, unadjusted (with a standard error of 0,
    whether the difference is not 0)."""
    diffs = [a - r for a, r in zip(arm, reference, strict=True) if np.isfinite(a - r)]
    if len(diffs) < 2:
        return {"difference": math.nan, "se": math.nan, "n": len(diffs), "df": len(diffs) - 1,
                "p": math.nan, "exceeds_noise": False}  # fmt: skip
    mean, se = statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
    p = float(scipy_stats.ttest_1samp(diffs, 0.0).pvalue) if se > 0 else float(mean == 0)
    return {"difference": mean, "se": se, "n": len(diffs), "df": len(diffs) - 1, "p": p,
            "exceeds_noise": p < 0.05}  # fmt: skip


def compare(arms: dict[str, dict[str, list[float]]], reference: str) -> dict[str, Any]:
    """Each arm against ``reference``, figure by figure, over the seeds both ran
    (:func:`paired`); the p-values of the FIGURES (every arm's) are one family, Holm-adjusted
    together (``p_holm``, ``beyond_noise_adjusted``); the EXTRAS' are descriptive."""
    out: dict[str, Any] = {}
    mine = arms[reference]
    for arm, figures in arms.items():
        if arm == reference:
            continue
        common = [s for s in figures["seeds"] if s in mine["seeds"]]
        at = {s: i for i, s in enumerate(figures["seeds"])}
        ref = {s: i for i, s in enumerate(mine["seeds"])}
        out[arm] = {
            key: paired([figures[key][at[s]] for s in common], [mine[key][ref[s]] for s in common])
            for key in (*FIGURES, *EXTRAS)
        }
    family = {(arm, key): out[arm][key]["p"] for arm in out for key in FIGURES}
    adjusted = holm({f"{arm}/{key}": p for (arm, key), p in family.items()})
    for arm, key in family:
        test = out[arm][key]
        test["p_holm"] = adjusted[f"{arm}/{key}"]
        test["n_comparisons"] = len(family)
        test["beyond_noise_adjusted"] = bool(test["p_holm"] < 0.05)
    return out


def report(
    runs: list[dict[str, Any]], starts: dict[str, dict[str, float]], settings: dict[str, Any]
) -> dict[str, Any]:
    """The JSON of the ablations: per arm the seeds and one value per seed of each figure, their
    mean +- sd, the comparison with the recipe, and the evaluation of the models the arms start
    from (``starts``: ``sft``, ``base``)."""
    arms: dict[str, dict[str, Any]] = {}
    for arm in ARMS:
        mine = sorted((r for r in runs if r["arm"] == arm), key=lambda r: r["seed"])
        if mine:
            arms[arm] = {"seeds": [r["seed"] for r in mine]}
            arms[arm] |= {key: [r.get(key, math.nan) for r in mine] for key in (*FIGURES, *EXTRAS)}
    summary = {
        arm: {key: spread(figures[key]) for key in (*FIGURES, *EXTRAS)}
        for arm, figures in arms.items()
    }
    return {
        "code_version": settings.get("code", code_version()),
        "settings": settings,
        "start_models": starts,
        "arms": arms,
        "summary": summary,
        "versus_recipe": compare(arms, "recipe") if "recipe" in arms else {},
        "curves": {f"{r['arm']}/seed{r['seed']}": r["curves"] for r in runs},
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """Entropy, length and reward along the runs (mean over seeds per arm), and the held-out
    figures with their spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(19, 4))
    panels = (
        ("policy/entropy", "entropy"),
        ("completion/mean_tokens", "mean completion tokens"),
        ("reward/task", "mean reward without the language term"),
    )
    for arm in result["arms"]:
        mine = [c for name, c in result["curves"].items() if name.split("/")[0] == arm]
        for ax, (key, title) in zip(axes, panels, strict=False):
            curve = np.nanmean(np.array([c[key] for c in mine], dtype=float), axis=0)
            ax.plot(np.arange(1, len(curve) + 1), curve, label=arm, lw=1.2)
            ax.set_title(f"{title} (mean over seeds)")
            ax.set_xlabel("GRPO step")
    names = list(result["arms"])
    for offset, key in enumerate(("pass_at_1", "maj_at_k", "language_rate")):
        stats = [result["summary"][arm][key] for arm in names]
        where = np.arange(len(names)) + 0.27 * (offset - 1)
        means, sds = [s["mean"] for s in stats], [s["sd"] for s in stats]
        axes[3].bar(where, means, 0.27, yerr=sds, label=key, capsize=2)
    axes[3].set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=7)
    axes[3].set_title("held out (mean +- sd over seeds)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print(result: dict[str, Any]) -> None:
    settings = result["settings"]
    print(
        f"== GRPO ablations: {settings['steps']} steps, SFT model {settings['sft_model']}, "
        f"{settings['eval_problems']} held-out problems x {settings['k']}; mean +- sd over "
        f"seeds; * = differs from recipe (paired t-test over seeds, 5%), ** = after Holm's "
        f"adjustment over every arm and figure"
    )
    for name, figures in result["start_models"].items():
        print(f"{name} model: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    keys = (*FIGURES, "greedy_accuracy", "length_ratio", "cosine_reward_length")
    print(f"{'arm':<22}" + "".join(f"{key:>22}" for key in keys))
    for arm, stats in result["summary"].items():
        marks = result["versus_recipe"].get(arm, {})
        cells = "".join(
            f"{stats[key]['mean']:>12.3f} +- {stats[key]['sd']:<5.3f}" + _stars(marks.get(key, {}))
            for key in keys
        )
        print(f"{arm:<22}{cells}")


#: docs/results.md's columns: (key, header, digits, scale).
TABLE_COLUMNS = (
    ("pass_at_1", "pass@1", 3, 1),
    ("maj_at_k", "maj@k", 3, 1),
    ("greedy_accuracy", "greedy", 3, 1),
    ("entropy_last", "entropy, last steps", 4, 1),
    ("mean_tokens_last", "tokens, last steps", 1, 1),
    ("length_ratio", "length last / first", 3, 1),
    ("language_rate", "in the problem's language", 3, 1),
    ("clip_high_frac", "% of tokens clipped high", 4, 100),
    ("clip_low_frac", "% clipped low", 4, 100),
)


def table(result: dict[str, Any]) -> str:
    """``result`` (an ablations JSON) as Markdown: mean +- sd over the seeds per arm, then each
    arm's difference from the recipe on the FIGURES with the paired test's p and Holm's p."""
    header = "| arm | " + " | ".join(column[1] for column in TABLE_COLUMNS) + " |"
    lines = [header, "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
    for arm, stats in result["summary"].items():
        tests = result["versus_recipe"].get(arm, {})
        cells = [
            f"{scale * stats[key]['mean']:.{digits}f} +- {scale * stats[key]['sd']:.{digits}f}"
            + _stars(tests.get(key, {})).strip()
            for key, _, digits, scale in TABLE_COLUMNS
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| arm - recipe | " + " | ".join(FIGURES) + " |",
        "|---" * (len(FIGURES) + 1) + "|",
    ]
    for arm, tests in result["versus_recipe"].items():
        cells = [
            f"{tests[key]['difference']:+.4f} (p {tests[key].get('p', math.nan):.3f}, "
            f"Holm {tests[key].get('p_holm', math.nan):.3f})"
            for key in FIGURES
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _stars(test: dict[str, Any]) -> str:
    if test.get("beyond_noise_adjusted"):
        return "**"
    return "* " if test.get("exceeds_noise") else "  "


def _write(path: Path, result: dict[str, Any]) -> None:
    """``result`` as JSON at ``path``, whole or not at all (a killed worker leaves no file)."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(result))
    partial.replace(path)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument(
        "--grpo",
        default="mode=async",
        help="GRPOConfig overrides of every arm, key=value,...: async by default, where the "
        "policy ratio differs from 1 and clipping acts (in sync mode with one minibatch it is 1)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS))
    parser.add_argument("--eval-problems", type=int, default=300)
    parser.add_argument("--language-problems", type=int, default=50, help="English originals")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--table", action="store_true", help="print the JSON's tables, run nothing")
    parser.add_argument("--worker", choices=[*ARMS, *START_MODELS], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = sorted(set(args.arms.split(",")) - set(ARMS))
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; the arms: {', '.join(ARMS)}")
    return args


def main() -> int:
    args = _arguments()
    if args.table:
        print(table(json.loads((OUT / "ablations.json").read_text())))
        return 0
    if args.worker in START_MODELS:
        setup = embedded_rl(1, args.project)
        model = setup.checkpoint if args.worker == "sft" else _base_model(args.project)
        _write(args.out, _evaluate_run(model, args, setup.stages[0]))
        return 0
    if args.worker:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        _write(args.out, _worker(args.worker, args.seed, args))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    # Seed by seed: if the budget runs out, every arm has the same seeds so far.
    tasks = [(name, 0) for name in START_MODELS]
    tasks += [(arm, s) for s in seeds for arm in args.arms.split(",")]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    settings = _settings(args)  # once: the code version is the one the runs start with
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda task: _run(*task, args, threads, digest), tasks))
    starts = dict(zip(START_MODELS, done, strict=False))
    result = report(done[len(START_MODELS) :], starts, settings)
    _print(result)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ablations.json").write_text(json.dumps(result, indent=2))
    plot(result, OUT / "ablations.png")
    print(f"written: {OUT / 'ablations.json'}, {OUT / 'ablations.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
