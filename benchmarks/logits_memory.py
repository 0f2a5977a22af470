"""Peak memory of one training step at a 150k vocabulary: whole logits against the chunked head.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.logits_memory [--tokens 2048]

One forward and backward of the GRPO loss's log-probs (with entropy, as the loss computes them)
on a tiny Llama whose vocabulary is Qwen's size, on CPU, in three subprocesses: a baseline that
only builds the model, the plain path (the model's [tokens, vocab] logits, then the chunked
log-softmax) and the chunked head (:mod:`magistral_kedro.training.chunked_head`). Each reports
its own peak resident memory (``getrusage(RUSAGE_SELF).ru_maxrss``: the parent's
``RUSAGE_CHILDREN`` would be the largest of all children so far, not each one's); a variant's
figure is its peak minus the baseline's. ``tracemalloc`` cannot see torch's allocator.
Writes ``data/08_reporting/benchmarks/logits_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks._common import OUT, ROOT, code_version
from magistral_kedro.training import chunked_head
from magistral_kedro.training.chunked_head import chunkable_head
from magistral_kedro.training.logprobs import completion_logprobs

VOCAB = 151_936  # Qwen2.5's
HIDDEN = 64
ROWS = 2  # sequences of tokens / ROWS each
VARIANTS = ("baseline", "plain", "chunked")


def _model() -> torch.nn.Module:
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def _step(model: torch.nn.Module, tokens: int, chunked: bool) -> None:
    """Forward and backward of the summed log-probs of ``tokens`` tokens, all completion."""
    ids = torch.randint(
        0, VOCAB, (ROWS, tokens // ROWS), generator=torch.Generator().manual_seed(0)
    )
    mask = torch.ones_like(ids)
    mask[:, 0] = 0  # the first token has no context
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "loss_mask": mask}
    head = chunkable_head(model) if chunked else None
    assert (head is None) != chunked
    logprobs, entropy = completion_logprobs(model, batch, 1.0, True, head=head)
    (-(logprobs * mask).sum()).backward()
    assert entropy.shape == ids.shape


def child(variant: str, tokens: int) -> dict[str, float]:
    """Run one variant in this process: its peak resident MB and seconds."""
    torch.set_num_threads(1)
    model = _model()
    began = time.perf_counter()
    if variant != "baseline":
        _step(model, tokens, chunked=variant == "chunked")
    seconds = time.perf_counter() - began
    return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "s": seconds}


def _measure(variant: str, tokens: int) -> dict[str, float]:
    command = [sys.executable, "-m", "benchmarks.logits_memory", "--child", variant]
    done = subprocess.run(
        [*command, "--tokens", str(tokens)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tokens)))
        return
    runs = {variant: _measure(variant, args.tokens) for variant in VARIANTS}
    base = runs["baseline"]["peak_mb"]
    plain, chunked = (runs[v]["peak_mb"] - base for v in ("plain", "chunked"))
    figures = {
        "code_version": code_version(),
        "vocab": VOCAB,
        "tokens": args.tokens,
        "hidden": HIDDEN,
        "head_chunk_elements": chunked_head.HEAD_CHUNK_ELEMENTS,
        "logits_mb": args.tokens * VOCAB * 4 / 2**20,
        "baseline_mb": base,
        "plain_extra_mb": plain,
        "chunked_extra_mb": chunked,
        "ratio": plain / chunked,
        "plain_s": runs["plain"]["s"],
        "chunked_s": runs["chunked"]["s"],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "logits_memory.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
