"""Curation throughput on the embedded default: problems per second through every stage.

    .venv/bin/python -m benchmarks.curation [--stage1-problems 256] [--baseline-problems 32]

Runs the curation nodes (the functions the pipeline wires, same parameters as ``kedro run``) in
order, timing each, then difficulty stage 1 on ``--stage1-problems`` training problems with the
latest SFT model of ``make run`` (a freshly built tiny model if there is none: it answers at the
length limit, so sampling takes longer than with the trained one). Prints problems/s per stage,
the share of the difficulty filter spent sampling vs verifying, and, as the baseline measured in
the same run, sampling one problem at a time (G samples per call) vs batching across problems.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
from kedro.config import OmegaConfigLoader

from benchmarks._common import ROOT, latest_model
from magistral_kedro.curation.difficulty import sample_pass_rates
from magistral_kedro.evaluation import build_prompts
from magistral_kedro.generation import TransformersGenerator
from magistral_kedro.models import Checkpoint, build_tiny_model, load_checkpoint
from magistral_kedro.params import (
    CurationParams,
    DifficultyStageParams,
    ModelParams,
    PromptParams,
)
from magistral_kedro.pipelines.curation import nodes
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tasks.frames import frame_to_problems

#: Seconds spent in the data stages so far (summed by :func:`timed`).
TOTAL = [0.0]


def timed(label: str, rows: int, fn: Callable[..., Any], *args: Any) -> Any:
    began = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - began
    print(f"{label:<26} {rows:>7} problems  {seconds:7.2f} s  {rows / seconds:9.0f} problems/s")
    TOTAL[0] += seconds
    return result


def reference_model(curation_tokenizer: Any, model: ModelParams, seed: int) -> Checkpoint:
    sft_model = latest_model(ROOT, "sft_model")
    if sft_model is not None:
        print(f"reference model: SFT model {sft_model.parent.name}")
        return load_checkpoint(sft_model)
    print("reference model: no SFT model (run `make run` first): a fresh tiny model instead")
    return Checkpoint(build_tiny_model(curation_tokenizer, model.tiny, seed), curation_tokenizer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage1-problems", type=int, default=256)
    parser.add_argument("--baseline-problems", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(2)
    params = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="base")
    raw = params["parameters"]
    curation = CurationParams.model_validate(raw["curation"])
    prompt = PromptParams.model_validate(raw["prompt"])
    reward, seed = RewardConfig(**raw["reward"]), int(raw["seed"])

    embedded = timed(
        "generate (embedded)",
        curation.math.n + curation.code.n,
        nodes.generate_embedded_problems,
        curation,
        seed,
    )
    valid, _ = timed("validate", len(embedded), nodes.validate_problems, embedded)
    verifiable, _ = timed("verifiability", len(valid), nodes.filter_verifiable, valid)
    unique, _ = timed("deduplicate", len(verifiable), nodes.deduplicate, verifiable)
    n_code = int((unique["kind"] == "code").sum())
    tested, _, _ = timed(
        f"code tests ({n_code} code)", len(unique), nodes.repair_code_tests, unique, curation, seed
    )
    translated, _ = timed("translate", len(tested), nodes.translate, tested, curation, seed)
    train, _ = timed("split", len(translated), nodes.split_train_eval, translated, curation, seed)
    tokenizer = timed(
        "tokenizer", len(train), nodes.train_problem_tokenizer, train, curation, prompt
    )
    data_seconds = TOTAL[0]

    stage = DifficultyStageParams.model_validate(raw["difficulty_stage1"])
    model = reference_model(tokenizer, ModelParams.model_validate(raw["model"]), seed)
    pool = train[train["kind"].isin(stage.kinds)].sample(args.stage1_problems, random_state=seed)
    problems = frame_to_problems(pool)
    prompts = build_prompts(pool, model.tokenizer, prompt.system_prompt)
    generator = TransformersGenerator(model.model, model.tokenizer)
    began = time.perf_counter()
    rates, seconds = sample_pass_rates(
        generator, problems, prompts, stage.n_samples, stage.sampling, reward, seed
    )
    filter_seconds = time.perf_counter() - began
    sampled = seconds["sampling"] / filter_seconds
    print(
        f"{'difficulty stage 1':<26} {len(problems):>7} problems  {filter_seconds:7.2f} s  "
        f"{len(problems) / filter_seconds:9.1f} problems/s  (x{stage.n_samples} samples)"
    )
    print(
        f"  sampling {seconds['sampling']:.1f} s ({sampled:.0%}), "
        f"verifying {seconds['verifying']:.1f} s ({seconds['verifying'] / filter_seconds:.0%})"
    )
    kept = sum(0 < r.n_correct < r.n_samples for r in rates)
    print(f"  kept {kept} of {len(rates)} (0 < pass rate < 1)")

    # Baseline: the same sampling, one problem per generate call.
    n = args.baseline_problems
    began = time.perf_counter()
    sample_pass_rates(
        generator,
        problems[:n],
        prompts[:n],
        stage.n_samples,
        stage.sampling,
        reward,
        seed,
        chunk_size=1,
    )
    one_at_a_time = time.perf_counter() - began
    began = time.perf_counter()
    sample_pass_rates(
        generator, problems[:n], prompts[:n], stage.n_samples, stage.sampling, reward, seed
    )
    batched = time.perf_counter() - began
    print(
        f"baseline on {n} problems: one problem per call {one_at_a_time:.1f} s, batched "
        f"{batched:.1f} s -> batching is {one_at_a_time / batched:.2f}x faster"
    )
    per_problem = filter_seconds / len(problems)
    print(
        f"data stages: {len(embedded) / data_seconds:.0f} problems/s over {data_seconds:.1f} s; "
        f"stage 1 costs {per_problem:.2f} s per problem -> {len(train)} training problems "
        f"would take {per_problem * len(train) / 60:.0f} min (default max_problems: "
        f"{stage.max_problems})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
