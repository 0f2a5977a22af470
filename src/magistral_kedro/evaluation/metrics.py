"""pass@1, unbiased pass@k, maj@k and the rest, from a per-sample table.

The table has one row per completion: ``problem_id``, ``decoding`` (``sampled`` or ``greedy``),
``answer`` (the normalised final answer, ``""`` if none), ``correct``, ``answer_correct`` (right
whatever the format: ``answer_accuracy``), ``format_ok``, ``language_ok``, ``completion_tokens``,
``truncated``, ``reward``, plus any columns to slice by (``language``, ``difficulty``) and ``kind``
(maj@k counts math problems only).

One naming scheme for every evaluation (the SFT and RL models' and the eval pipeline's
benchmarks): the names of :data:`METRICS` under a prefix, ``<prefix>/<metric>`` for all problems
and ``<prefix>/<column>_<value>/<metric>`` for a slice (:func:`named_metrics`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from math import comb

import pandas as pd

#: The metrics :func:`summarise` returns, in order.
METRICS = (
    "problems",
    "samples_per_problem",
    "pass_at_1",
    "pass_at_k",
    "maj_at_k",
    "greedy_accuracy",
    "format_rate",
    "answer_accuracy",
    "language_rate",
    "mean_reward",
    "mean_completion_tokens",
    "max_completion_tokens",
    "truncated_fraction",
)

#: The metrics logged to MLflow (all but the counts).
LOGGED = tuple(m for m in METRICS if m not in ("problems", "samples_per_problem"))


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k from ``n`` samples of which ``c`` are right (Chen et al.,
    2021): 1 - C(n - c, k) / C(n, k)."""
    if not 0 <= c <= n or not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 0 < k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_vote(answers: Sequence[str], correct: Sequence[bool]) -> tuple[str, bool]:
    """The most frequent non-empty answer and whether it is right; a tie goes to the answer that
    came first, so the vote never depends on anything but the samples' order. No answer at all:
    ``("", False)``."""
    counts = Counter(a for a in answers if a)
    if not counts:
        return "", False
    best = max(counts.values())
    winner = next(a for a in answers if a and counts[a] == best)
    return winner, any(ok for a, ok in zip(answers, correct, strict=True) if a == winner)


def summarise(samples: pd.DataFrame) -> dict[str, float]:
    """The metrics of :data:`METRICS` over one set of problems (k = samples per problem)."""
    sampled = samples[samples["decoding"] == "sampled"]
    greedy = samples[samples["decoding"] == "greedy"]
    out: dict[str, float] = {"problems": float(samples["problem_id"].nunique())}
    if not sampled.empty:
        groups = sampled.groupby("problem_id", sort=False)
        sizes = groups.size()
        k = int(sizes.min())
        out["samples_per_problem"] = float(k)
        out["pass_at_1"] = float(sampled["correct"].mean())
        out["pass_at_k"] = float(
            groups["correct"].apply(lambda c: pass_at_k(len(c), int(c.sum()), k)).mean()
        )
        # maj@k votes over final answers: math only (a code answer has none to vote on).
        voting = sampled[sampled["kind"] == "math"] if "kind" in sampled else sampled
        if not voting.empty:
            votes = [
                majority_vote(list(g["answer"]), list(g["correct"]))[1]
                for _, g in voting.groupby("problem_id", sort=False)
            ]
            out["maj_at_k"] = sum(votes) / len(votes)
    if not greedy.empty:
        out["greedy_accuracy"] = float(greedy["correct"].mean())
    every = sampled if not sampled.empty else greedy
    out |= {
        "format_rate": float(every["format_ok"].mean()),
        "answer_accuracy": float(every["answer_correct"].mean()),
        "language_rate": float(every["language_ok"].mean()),
        "mean_reward": float(every["reward"].mean()),
        "mean_completion_tokens": float(every["completion_tokens"].mean()),
        "max_completion_tokens": float(every["completion_tokens"].max()),
        "truncated_fraction": float(every["truncated"].mean()),
    }
    return {key: out[key] for key in METRICS if key in out}


def summary_table(
    samples: pd.DataFrame, by: Sequence[str] = ("language", "difficulty")
) -> pd.DataFrame:
    """One row per benchmark and slice (``all``, ``language=fr``, ``difficulty=3``...), one
    column per metric."""
    rows = []
    for benchmark, frame in samples.groupby("benchmark", sort=False):
        rows.append({"benchmark": benchmark, "slice": "all", **summarise(frame)})
        for column in by:
            for value, part in frame.groupby(column, sort=True):
                rows.append(
                    {"benchmark": benchmark, "slice": f"{column}={value}", **summarise(part)}
                )
    return pd.DataFrame(rows, columns=["benchmark", "slice", *METRICS])


def named_metrics(summary: pd.DataFrame, prefix: str) -> dict[str, float]:
    """The rows of a :func:`summary_table` as MLflow metrics: ``<prefix>/<metric>`` for the slice
    ``all``, ``<prefix>/language_fr/<metric>`` for ``language=fr``... A ``{benchmark}`` in
    ``prefix`` is the row's benchmark (``eval/{benchmark}``); a metric not measured for a slice
    (NaN, e.g. maj@k without samples) is left out."""
    metrics: dict[str, float] = {}
    for row in summary.to_dict("records"):
        where = "" if row["slice"] == "all" else str(row["slice"]).replace("=", "_") + "/"
        named = prefix.format(benchmark=row["benchmark"])
        for metric in LOGGED:
            value = row.get(metric)
            if value is not None and not math.isnan(value):
                metrics[f"{named}/{where}{metric}"] = float(value)
    return metrics
