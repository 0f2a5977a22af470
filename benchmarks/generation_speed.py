"""How fast our decoding loop samples from SmolLM2-135M-Instruct on CPU, and where the time goes.

    .venv/bin/python -m benchmarks.generation_speed [--model DIR] [--batch 32] [--tokens 128]

Needs the converted model (``make run-smol``). ``--batch`` chat-templated prompts "What is a + b?
Explain step by step." are answered at T = 1 with up to ``--tokens`` new tokens (a row stops at
its end token), once by transformers' ``generate()`` and once by our loop
(:class:`~magistral_kedro.generation.TransformersGenerator`), each after a warm-up, in the same
process: tokens per second of each and their ratio. Then one profiled run of our loop splits its
CPU time by operator family (matrix products of the layers, the output projection, attention,
sampling, the rest). Written to ``data/08_reporting/benchmarks/generation_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import OUT, ROOT, code_version
from magistral_kedro.generation import SamplingConfig, TransformersGenerator, encode_prompts
from magistral_kedro.generation.sampler import stop_ids
from magistral_kedro.models import CheckpointRef, build_prompt

MODEL_DIR = ROOT / "data" / "06_models" / "smollm2-135m-instruct"
#: Profiler operator names by the family they are counted in (first match wins).
FAMILIES = (
    ("attention", ("scaled_dot_product", "softmax", "bmm", "baddbmm")),
    ("matrix products", ("aten::mm", "aten::addmm", "aten::matmul", "aten::linear")),
    ("sampling", ("multinomial", "exponential", "argmax", "topk", "sort", "cumsum")),
)


def prompts(tokenizer: Any, batch: int, seed: int) -> list[list[int]]:
    """``batch`` chat-templated questions "What is a + b? Explain step by step."."""
    draw = random.Random(seed)
    texts = [
        build_prompt(
            tokenizer,
            f"What is {draw.randint(10, 99)} + {draw.randint(10, 99)}? Explain step by step.",
            None,
        )
        for _ in range(batch)
    ]
    return encode_prompts(tokenizer, texts)


def ours(generator: TransformersGenerator, ids: list[list[int]], tokens: int) -> tuple[float, int]:
    """(seconds, tokens) of one batch through our loop."""
    sampling = SamplingConfig(max_new_tokens=tokens, temperature=1.0, batch_size=len(ids))
    start = time.perf_counter()
    groups = generator.generate(ids, 1, sampling, seed=0)
    return time.perf_counter() - start, sum(len(g[0].token_ids) for g in groups)


def theirs(model: Any, tokenizer: Any, ids: list[list[int]], tokens: int) -> tuple[float, int]:
    """(seconds, tokens) of one batch through ``generate()`` (left-padded, sampled); a row's
    tokens are counted up to its end token, as ours are."""
    tokenizer.padding_side = "left"
    batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            **batch, max_new_tokens=tokens, do_sample=True, temperature=1.0, top_p=1.0,
            top_k=0, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    ends = set(stop_ids(model, tokenizer))
    counted = 0
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        stop = next((i for i, token in enumerate(row) if token in ends), len(row) - 1)
        counted += stop + 1
    return seconds, counted


def where_time_goes(generator: TransformersGenerator, ids: list[list[int]], tokens: int) -> dict:
    """Seconds of CPU time per operator family in one profiled run of our loop."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        ours(generator, ids, tokens)
    vocab = generator.model.config.vocab_size
    totals: dict[str, float] = {name: 0.0 for name, _ in FAMILIES}
    totals |= {"output projection": 0.0, "rest": 0.0}
    for event in prof.key_averages(group_by_input_shape=True):
        seconds = event.self_cpu_time_total / 1e6
        shapes = str(event.input_shapes)
        family = next((n for n, keys in FAMILIES if any(k in event.key for k in keys)), "rest")
        if family == "matrix products" and str(vocab) in shapes:
            family = "output projection"
        totals[family] += seconds
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL_DIR)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=OUT / "generation_speed.json")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"no converted model in {args.model}: run `make run-smol` first")
    loaded = CheckpointRef(args.model, "float32").load()
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    ids = prompts(tokenizer, args.batch, seed=0)
    generator = TransformersGenerator(model, tokenizer)
    ours(generator, ids[:4], 8)  # warm-up
    theirs(model, tokenizer, ids[:4], 8)
    seconds, count = ours(generator, ids, args.tokens)
    hf_seconds, hf_count = theirs(model, tokenizer, ids, args.tokens)
    report = {
        "code_version": code_version(),
        "command": "python -m benchmarks.generation_speed",
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "max_new_tokens": args.tokens,
        "ours_tokens_per_s": count / seconds,
        "generate_tokens_per_s": hf_count / hf_seconds,
        "ratio": (count / seconds) / (hf_count / hf_seconds),
        "cpu_seconds_by_family": where_time_goes(generator, ids, args.tokens),
    }
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
