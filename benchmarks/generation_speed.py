"""How fast our decoding loop samples from SmolLM2-135M-Instruct on CPU, and where the time goes.

    .venv/bin/python -m benchmarks.generation_speed [--model DIR] [--batch 32] [--tokens 128]
        [--threads N] [--repeats 2] [--completions 1]

Needs the converted model (``make run-smol``). ``--batch`` chat-templated prompts "What is a + b?
Explain step by step." (``--completions`` copies of each distinct one, as GRPO samples) are
answered at T = 1 with up to ``--tokens`` new tokens (a row stops at its end token), by
transformers' ``generate()`` and by our loop
(:class:`~magistral_kedro.generation.TransformersGenerator`), each after a warm-up, alternated
``--repeats`` times in the same process: tokens per second of wall and of CPU time
(``time.process_time``) of each, and their ratio. Then one profiled run of our loop splits its
CPU time by operator family (matrix products of the layers, the output projection, attention,
sampling, the rest), each operator called from Python counted with what it calls. On a machine
shared with other jobs the absolute figures are low and noisy: compare within one run. Written
to ``data/08_reporting/benchmarks/generation_speed.json``.
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

Timed = tuple[float, float, int]
MODEL_DIR = ROOT / "data" / "06_models" / "smollm2-135m-instruct"
#: Operators called from Python, by the family their CPU time (with that of the operators they
#: call) is counted in; any other is "rest". A matrix product whose operands have the vocabulary
#: as a dimension is the output projection.
FAMILIES = {
    "attention": {"aten::scaled_dot_product_attention", "aten::softmax", "aten::bmm"},
    "matrix products": {"aten::linear", "aten::matmul", "aten::mm", "aten::addmm"},
    "sampling": {
        "aten::log_softmax", "aten::exp", "aten::cumsum", "aten::searchsorted", "aten::rand",
        "aten::gather", "aten::minimum", "aten::nextafter", "aten::multinomial", "aten::argmax",
    },
}  # fmt: skip


def prompts(tokenizer: Any, batch: int, seed: int, completions: int = 1) -> list[list[int]]:
    """``batch`` chat-templated questions "What is a + b? Explain step by step.", each distinct
    question ``completions`` times in a row (GRPO's group of completions of one prompt)."""
    draw = random.Random(seed)
    texts = [
        build_prompt(
            tokenizer,
            f"What is {draw.randint(10, 99)} + {draw.randint(10, 99)}? Explain step by step.",
            None,
        )
        for _ in range(-(-batch // completions))
    ]
    return [ids for ids in encode_prompts(tokenizer, texts) for _ in range(completions)][:batch]


def ours(generator: TransformersGenerator, ids: list[list[int]], tokens: int) -> Timed:
    """(wall seconds, CPU seconds, tokens) of one batch through our loop."""
    sampling = SamplingConfig(max_new_tokens=tokens, temperature=1.0, batch_size=len(ids))
    start, cpu = time.perf_counter(), time.process_time()
    groups = generator.generate(ids, 1, sampling, seed=0)
    count = sum(len(g[0].token_ids) for g in groups)
    return time.perf_counter() - start, time.process_time() - cpu, count


def theirs(model: Any, tokenizer: Any, ids: list[list[int]], tokens: int) -> Timed:
    """(wall seconds, CPU seconds, tokens) of one batch through ``generate()`` (left-padded,
    sampled); a row's tokens are counted up to its end token, as ours are."""
    tokenizer.padding_side = "left"
    batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    start, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        out = model.generate(
            **batch, max_new_tokens=tokens, do_sample=True, temperature=1.0, top_p=1.0,
            top_k=0, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    ends = set(stop_ids(model, tokenizer))
    counted = 0
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        stop = next((i for i, token in enumerate(row) if token in ends), len(row) - 1)
        counted += stop + 1
    return seconds, cpu_seconds, counted


def where_time_goes(generator: TransformersGenerator, ids: list[list[int]], tokens: int) -> dict:
    """Seconds of CPU time per operator family in one profiled run of our loop."""
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True
    ) as prof:
        ours(generator, ids, tokens)
    vocab = generator.model.config.vocab_size
    totals = dict.fromkeys([*FAMILIES, "output projection", "rest"], 0.0)
    for event in prof.events():
        parent = event.cpu_parent
        if not event.name.startswith("aten::") or (
            parent is not None and parent.name.startswith("aten::")
        ):
            continue  # an annotation (another library's), or counted in its calling operator
        family = next((n for n, names in FAMILIES.items() if event.name in names), "rest")
        if family == "matrix products" and any(vocab in shape for shape in event.input_shapes):
            family = "output projection"
        totals[family] += event.cpu_time_total / 1e6
    return totals


def alternated(model: Any, tokenizer: Any, ids: list[list[int]], args: Any) -> dict:
    """Our loop and ``generate()`` in turn, ``args.repeats`` times: each run's tokens per second
    of wall and of CPU time, and the ratio of the summed tokens per second."""
    generator = TransformersGenerator(model, tokenizer)
    ours(generator, ids[:4], 8)  # warm-up
    theirs(model, tokenizer, ids[:4], 8)
    runs: dict[str, list[Timed]] = {"ours": [], "generate": []}
    for _ in range(args.repeats):
        runs["ours"].append(ours(generator, ids, args.tokens))
        runs["generate"].append(theirs(model, tokenizer, ids, args.tokens))
    report: dict[str, Any] = {}
    for name, timed in runs.items():
        report[f"{name}_tokens_per_s"] = [count / wall for wall, _, count in timed]
        report[f"{name}_tokens_per_cpu_s"] = [count / cpu for _, cpu, count in timed]
        report[f"{name}_tokens"] = [count for _, _, count in timed]
    rates = {n: sum(c for _, _, c in t) / sum(w for w, _, _ in t) for n, t in runs.items()}
    report["ratio"] = rates["ours"] / rates["generate"]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL_DIR)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--completions", type=int, default=1, help="of each distinct prompt")
    parser.add_argument("--out", type=Path, default=OUT / "generation_speed.json")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"no converted model in {args.model}: run `make run-smol` first")
    torch.set_num_threads(args.threads)
    loaded = CheckpointRef(args.model, "float32").load()
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    ids = prompts(tokenizer, args.batch, seed=0, completions=args.completions)
    report = {
        "code_version": code_version(),
        "command": "python -m benchmarks.generation_speed " + " ".join(sys.argv[1:]),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "max_new_tokens": args.tokens,
        "completions_per_prompt": args.completions,
        **alternated(model, tokenizer, ids, args),
        "cpu_seconds_by_family": where_time_goes(
            TransformersGenerator(model, tokenizer), ids, args.tokens
        ),
    }
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
