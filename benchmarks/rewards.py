"""Verifier throughput, and its share of an RL step.

    .venv/bin/python -m benchmarks.rewards [--n-math 300] [--rl-prompts 32 --rl-group 8]

Prints (all measured in this run, on this machine):
1. math verifications per second: in-process; through ``math_equal`` (a worker process per call's
   hard limit); and ``score_batch`` with 1 and 2 workers, with the ratio of 2 workers to 1;
2. C++ compile + run seconds per problem (20 tests), with and without the precompiled
   ``<bits/stdc++.h>``, and Python run seconds per problem;
3. for one RL step of the embedded default (``--rl-prompts`` x ``--rl-group`` completions from the
   SFT model of the last ``kedro run``, or a random tiny model if there is none): seconds
   generating vs verifying, and verification's share.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from benchmarks._common import ROOT, latest_model
from magistral_kedro.generation import SamplingConfig, TransformersGenerator
from magistral_kedro.models import build_prompt, load_checkpoint
from magistral_kedro.rewards import RewardConfig, math_equal, run_code, score_batch
from magistral_kedro.rewards.math import math_equal_in_process
from magistral_kedro.tasks import LANGUAGES, generate_code_problems, generate_math_problems

SHARED = ROOT.parent / "shared" / "data" / "answer_equivalence.jsonl"


def _pairs(n: int) -> list[tuple[str, str]]:
    """Real (pred, gold) pairs from public graders' suites when present, else generated ones."""
    if SHARED.is_file():
        rows = [json.loads(line) for line in SHARED.open()]
        pairs = [(r["pred"], r["gold"]) for r in rows]
    else:
        problems = generate_math_problems(n, 0, {"en": 1.0}, {5: 1.0})
        pairs = [(p.reference or "", p.answer or "") for p in problems]
    return (pairs * (n // len(pairs) + 1))[:n]


def _rate(n: int, run: object) -> float:
    started = time.perf_counter()
    run()  # type: ignore[operator]
    return n / (time.perf_counter() - started)


def bench_math(n: int) -> None:
    pairs = _pairs(n)
    math_equal_in_process(*pairs[0])  # first call imports SymPy / math-verify
    math_equal(*pairs[0])  # starts the shared worker
    in_process = _rate(n, lambda: [math_equal_in_process(p, g) for p, g in pairs])
    guarded = _rate(n, lambda: [math_equal(p, g) for p, g in pairs])
    print(f"== math verification ({n} (pred, gold) pairs from public graders' suites)")
    print(f"math_equal_in_process        {in_process:8.1f} /s")
    print(
        f"math_equal (worker + limits) {guarded:8.1f} /s  ({guarded / in_process:.2f}x in-process)"
    )

    languages, levels = dict.fromkeys(LANGUAGES, 1.0), dict.fromkeys(range(1, 6), 1.0)
    problems = generate_math_problems(n, 1, languages, levels)
    right = [p.reference or "" for p in problems]
    wrong = right[1:] + right[:1]  # each scored against another problem's answer: SymPy runs
    cfg = RewardConfig()
    for label, completions in (("right answers", right), ("wrong answers", wrong)):
        rates = {}
        for workers in (1, 2):
            score_batch(completions[:4], problems[:4], [50] * 4, cfg, n_workers=workers)
            rates[workers] = _rate(
                n,
                lambda c=completions, w=workers: score_batch(
                    c, problems, [50] * n, cfg, n_workers=w
                ),
            )
        print(
            f"score_batch, {label}: 1 worker {rates[1]:7.1f} /s, 2 workers {rates[2]:7.1f} /s "
            f"({rates[2] / rates[1]:.2f}x)"
        )


def bench_code(n: int) -> None:
    problems = generate_code_problems(n, 2, tests_per_problem=20)
    rows = {}
    for label, language, pch in (("C++ (no PCH)", "cpp", False), ("C++ (PCH)", "cpp", True),
                                 ("Python", "python", True)):  # fmt: skip
        seconds, compile_seconds = [], []
        for problem in problems:
            tests = [t.model_dump() for t in problem.tests or []]
            started = time.perf_counter()
            code = (problem.solutions or {})[language]
            result = run_code(code, language, tests, precompiled_header=pch)
            seconds.append(time.perf_counter() - started)
            compile_seconds.append(result.compile_seconds)
            assert result.passed, (problem.id, result)
        rows[label] = (statistics.median(seconds), statistics.median(compile_seconds))
    print("== code verification (20 tests per problem, sandboxed; medians)")
    base = rows["C++ (no PCH)"][0]
    for label, (total, compile_s) in rows.items():
        ratio = total / base
        print(
            f"{label:<14} {total:6.2f} s/problem  compile {compile_s:5.2f} s  ({ratio:.2f}x no-PCH)"
        )


def _model():
    sft_model = latest_model(ROOT, "sft_model")
    if sft_model is not None:
        return load_checkpoint(sft_model), f"SFT model {sft_model.parent.name}"
    from magistral_kedro.models import TinyModelConfig, build_tiny_model, train_tokenizer
    from magistral_kedro.models.factory import Checkpoint

    problems = generate_math_problems(2000, 0, dict.fromkeys(LANGUAGES, 1.0), {1: 1.0})
    tokenizer = train_tokenizer([t for p in problems for t in (p.prompt, p.reference or "")], 2048)
    return Checkpoint(
        build_tiny_model(tokenizer, TinyModelConfig(), 0), tokenizer
    ), "random tiny model (no `kedro run` yet)"


def bench_rl_step(prompts: int, group: int) -> None:
    checkpoint, name = _model()
    problems = generate_math_problems(
        prompts, 3, dict.fromkeys(LANGUAGES, 1.0), dict.fromkeys(range(1, 6), 1.0)
    )
    texts = [build_prompt(checkpoint.tokenizer, p.prompt, None) for p in problems]
    generator = TransformersGenerator(checkpoint.model, checkpoint.tokenizer)
    sampling = SamplingConfig(max_new_tokens=128, temperature=1.0, batch_size=128)
    generator.generate(texts[:2], n=2, sampling=sampling, seed=0)  # warm-up
    started = time.perf_counter()
    samples = generator.generate(texts, n=group, sampling=sampling, seed=1)
    generate_s = time.perf_counter() - started
    flat = [s for g in samples for s in g]
    flat_problems = [p for p in problems for _ in range(group)]
    score_batch(["x"], flat_problems[:1], [1], RewardConfig())  # start the workers
    started = time.perf_counter()
    rewards = score_batch([s.text for s in flat], flat_problems, [len(s.token_ids) for s in flat],
                          RewardConfig())  # fmt: skip
    verify_s = time.perf_counter() - started
    tokens = sum(len(s.token_ids) for s in flat)
    print(f"== one RL step: {prompts} prompts x {group} samples, {name}")
    print(f"generate  {generate_s:6.2f} s  ({tokens / generate_s:,.0f} tokens/s)")
    mean_reward = sum(r.total for r in rewards) / len(rewards)
    print(f"verify    {verify_s:6.2f} s  (mean reward {mean_reward:.3f})")
    print(f"verification share of generate+verify: {verify_s / (generate_s + verify_s):.1%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-math", type=int, default=300)
    parser.add_argument("--n-code", type=int, default=8)
    parser.add_argument("--rl-prompts", type=int, default=32)
    parser.add_argument("--rl-group", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"python {sys.version.split()[0]}, torch threads {torch.get_num_threads()}")
    bench_math(args.n_math)
    bench_code(args.n_code)
    bench_rl_step(args.rl_prompts, args.rl_group)
    return 0


if __name__ == "__main__":
    sys.exit(main())
