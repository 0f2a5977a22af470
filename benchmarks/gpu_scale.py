"""GRPO at a real architecture size on one GPU: generation and training throughput, and MFU.

    python -m benchmarks.gpu_scale --arch qwen2.5-0.5b --zero-stage 2      # on a GPU machine
    python -m benchmarks.gpu_scale --arch tiny --steps 1                   # the same code on CPU

No weights can be downloaded, so the model is the architecture (Qwen2.5's config: layers,
widths, grouped-query attention, the 151,936-token vocabulary) randomly initialised in bf16,
with the project's own small tokenizer for the prompts. Three measurements, in one run:

0. Generation alone, 32 prompts x 8 samples of ``--max-new-tokens`` (a random model never
   stops): the transformers backend's loop without CUDA graphs (today's baseline) against the
   fixed-shape loop replayed from CUDA graphs, at ``--generation-batch`` and at the whole
   batch; ratios against the baseline.
1. The GRPO loop itself (``train_grpo``: transformers generation with a KV cache, the real
   rewards, advantages, DeepSpeed, a checkpoint) for ``--steps`` steps. A random model earns no
   reward, so every group is dropped and these steps train nothing: they time generation.
2. Training throughput: the loop's own loss function and DeepSpeed step on sequences of the same
   shape, with advantages of +-1 (what a learning batch costs), ``--train-steps`` steps after a
   warm-up, for each microbatch size of ``--microbatch-tokens``. MFU = model FLOPs per second /
   the card's peak (datasheet dense bf16), and against a bf16 matrix product measured in the
   same run. ``--profile`` prints the CUDA time of one step's operators, the largest first.

Figures are printed and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, Qwen2Config, Qwen2ForCausalLM

from benchmarks._common import StepRows, code_version
from magistral_kedro.generation import SamplingConfig, TransformersGenerator
from magistral_kedro.grpo.config import GRPOConfig, Stage
from magistral_kedro.grpo.loop import train_grpo
from magistral_kedro.grpo.update import Minibatch, minibatch_loss
from magistral_kedro.models import Checkpoint, build_prompt, train_tokenizer
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tasks import generate_math_problems
from magistral_kedro.training.engine import EngineConfig, OptimConfig, create_engine

# Qwen2.5 shapes from their published config.json files (no weights).
ARCHS: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         tie_word_embeddings=True),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                         tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=2048,
                 tie_word_embeddings=True),
}  # fmt: skip
#: Dense bf16 peak by the vendors' datasheets (SXM parts), TFLOP/s.
DATASHEET_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def _model(arch: str, tokenizer: Any, device: str) -> PreTrainedModel:
    config = Qwen2Config(
        **ARCHS[arch], max_position_embeddings=32768, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def _matmul_tflops(device: str) -> float | None:
    """bf16 8192^3 matrix product rate: this card's practical ceiling, measured now."""
    if device != "cuda":
        return None
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - began) / 1e12


def _flops_per_token(model: PreTrainedModel, seq_len: float) -> float:
    """Forward + backward FLOPs per trained token: 6 N (N without the embedding lookup) plus the
    causal attention scores and mixing, 6 * layers * width * seq_len."""
    cfg = model.config
    n = sum(p.numel() for p in model.parameters())
    if not cfg.tie_word_embeddings:
        n -= cfg.vocab_size * cfg.hidden_size  # the input lookup costs no FLOPs
    return 6 * n + 6 * cfg.num_hidden_layers * cfg.hidden_size * seq_len


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _generation_alone(
    model: PreTrainedModel, tokenizer: Any, prompts: list[list[int]], args: argparse.Namespace
) -> dict[str, Any]:
    """One batch of prompts x group size, by the loop without CUDA graphs (the baseline) and
    by the fixed-shape loop with them, at the generation batch and at the whole batch."""
    device = model.device.type
    n = len(prompts) * args.group_size
    ways = {
        "baseline": (False, args.generation_batch),
        "graphs": (True, args.generation_batch),
        "graphs_whole_batch": (True, n),
    }
    out: dict[str, Any] = {"sequences": n, "max_new_tokens": args.max_new_tokens}
    for name, (graphs, batch) in ways.items():
        generator = TransformersGenerator(model, tokenizer, cuda_graphs=graphs)
        warm = SamplingConfig(max_new_tokens=8, temperature=1.0, batch_size=batch)
        generator.generate(prompts, args.group_size, warm, seed=0)
        sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=1.0,
                                  batch_size=batch)  # fmt: skip
        _sync(device)
        began = time.perf_counter()
        groups = generator.generate(prompts, args.group_size, sampling, seed=1)
        _sync(device)
        seconds = time.perf_counter() - began
        tokens = sum(len(s.token_ids) for g in groups for s in g)
        out[name] = {"graphs": generator.graphs, "batch_size": batch, "seconds": seconds,
                     "tokens": tokens, "tokens_per_s": tokens / seconds}  # fmt: skip
    for name in ways:
        out[name]["x_baseline"] = out[name]["tokens_per_s"] / out["baseline"]["tokens_per_s"]
    return out


def _loop(
    tokenizer: Any, problems: list, prompts: list[str], args: argparse.Namespace,
    engine_config: EngineConfig, grpo: GRPOConfig, device: str,
) -> dict[str, Any]:  # fmt: skip
    """The GRPO loop for ``--steps`` steps; the first warms up."""
    model = _model(args.arch, tokenizer, device)
    stage = Stage(l_max=args.max_new_tokens, l_cache=args.max_new_tokens // 4,
                  n_prompts=args.prompts)  # fmt: skip
    rows = StepRows()
    with tempfile.TemporaryDirectory() as directory:
        began = time.perf_counter()
        train_grpo(Checkpoint(model, tokenizer), problems, prompts, engine_config=engine_config,
                   grpo=grpo, stages=[stage], reward=RewardConfig(), checkpoint_dir=directory,
                   seed=0, tracker=rows)  # fmt: skip
        loop_s = time.perf_counter() - began
    timed = rows.rows[1:] or rows.rows
    return {
        "tokens_per_s": statistics.median(r["throughput/generate_tokens_per_s"] for r in timed),
        "generate_s": statistics.median(r["time/generate_s"] for r in timed),
        "verify_s": statistics.median(r["time/verify_s"] for r in timed),
        "mean_completion_tokens": statistics.median(r["completion/mean_tokens"] for r in timed),
        "sequences_per_step": args.prompts * args.group_size,
        "steps_skipped_no_signal": rows.rows[-1].get("train/skipped_steps", 0.0),
        "loop_wall_s": loop_s,
    }


def _profile(step: Any) -> str:
    """The CUDA time of one call of ``step``, by operator, the largest 20."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    return str(prof.key_averages().table(sort_by="cuda_time_total", row_limit=20))


def _sampled_minibatch(
    engine: Any, tokenizer: Any, prompts: list[str], args: argparse.Namespace
) -> Minibatch:
    """One step's completions sampled from the engine's model, advantages +-1."""
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=1.0,
                              batch_size=args.prompts * args.group_size)  # fmt: skip
    prompt_ids = tokenizer(prompts[: args.prompts], add_special_tokens=False)["input_ids"]
    with engine.full_weights() as whole:
        groups = TransformersGenerator(whole, tokenizer).generate(
            prompt_ids, args.group_size, sampling, seed=1
        )
    flat = [(prompt_ids[i], s) for i, group in enumerate(groups) for s in group]
    return Minibatch.of_sequences(
        [ids for ids, _ in flat],
        [s.token_ids for _, s in flat],
        [s.logprobs for _, s in flat],
        torch.tensor([1.0 if i % 2 else -1.0 for i in range(len(flat))]),
        tokenizer.pad_token_id,
    )


def _training(
    model: PreTrainedModel, tokenizer: Any, prompts: list[str], args: argparse.Namespace,
    engine_config: EngineConfig, grpo: GRPOConfig, microbatch_tokens: int,
) -> dict[str, Any]:  # fmt: skip
    """Loss + DeepSpeed step on a sampled batch. The first step's ratio is the on-policy
    check: the trainer's log-probs against the generator's, before any update (~1)."""
    device = model.device.type
    grpo = dataclasses.replace(grpo, max_tokens_per_microbatch=microbatch_tokens, tis="off")
    with create_engine(model, engine_config) as engine:
        minibatch = _sampled_minibatch(engine, tokenizer, prompts, args)

        def step() -> dict[str, float]:
            stats = minibatch_loss(engine, minibatch, grpo, tokenizer.pad_token_id)
            engine.step()
            return stats

        on_policy = step()  # warms up
        times = []
        for _ in range(args.train_steps):
            _sync(device)
            began = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - began)
        profile = _profile(step) if args.profile and device == "cuda" else None
        tokens = int(minibatch.lengths.sum())
        # The mean length halved halves the (already causal) attention term once more, about
        # 1% of the FLOPs at the 0.5B shape: kept so that figures compare with earlier ones.
        flops = _flops_per_token(engine.model, tokens / len(minibatch.lengths) / 2)
    seconds = statistics.median(times)
    return {
        "microbatch_tokens": microbatch_tokens,
        "tokens_per_step": tokens,
        "step_s_median": seconds,
        "step_s_min": min(times),
        "step_s_max": max(times),
        "tokens_per_s": tokens / seconds,
        "model_tflops": flops * tokens / seconds / 1e12,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        "first_step_mean_ratio": on_policy["policy/mean_ratio"],
        "first_step_approx_kl": on_policy["policy/approx_kl"],
        "profile": profile,
    }


def _free(device: str) -> None:
    gc.collect()  # DeepSpeed engines and their optimiser state
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="qwen2.5-0.5b")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2, help="GRPO loop steps (generation)")
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--zero-stage", type=int, choices=[0, 1, 2, 3], default=2)
    parser.add_argument(
        "--generation-batch", type=int, default=128, help="sequences decoded as one batch"
    )
    parser.add_argument(
        "--microbatch-tokens", default="16384", help="comma-separated: one measurement each"
    )
    parser.add_argument("--profile", action="store_true", help="operator table of one step")
    parser.add_argument(
        "--out", type=Path, default=Path("data/08_reporting/benchmarks/gpu_scale.json")
    )
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    card = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    problems = generate_math_problems(
        max(args.prompts * 4, 256), seed=0, languages={"en": 1.0}, levels={1: 1.0, 2: 1.0}
    )
    tokenizer = train_tokenizer([t for p in problems for t in (p.prompt, p.reference)], 1000)
    prompts = [build_prompt(tokenizer, p.prompt, "magistral") for p in problems]
    precision = "bf16" if device == "cuda" else "fp32"
    engine_config = EngineConfig(
        backend="deepspeed", zero_stage=args.zero_stage, precision=precision,
        optim=OptimConfig(lr=1e-6, warmup_steps=0, max_steps=args.steps),
    )  # fmt: skip
    grpo = GRPOConfig(
        group_size=args.group_size, generation_batch_size=args.generation_batch,
        checkpoint_every=args.steps, reward_workers=min(8, os.cpu_count() or 1),
    )  # fmt: skip
    ceiling = _matmul_tflops(device)
    peak = next((v for k, v in DATASHEET_TFLOPS.items() if k in card), None)

    model = _model(args.arch, tokenizer, device)
    n_params = sum(p.numel() for p in model.parameters())
    prompt_ids = tokenizer(prompts[: args.prompts], add_special_tokens=False)["input_ids"]
    generation = _generation_alone(model, tokenizer, prompt_ids, args)
    print(json.dumps(generation, indent=2), flush=True)
    del model
    _free(device)
    loop = _loop(tokenizer, problems, prompts, args, engine_config, grpo, device)
    print(json.dumps(loop, indent=2), flush=True)
    _free(device)
    training = []
    for tokens in [int(t) for t in args.microbatch_tokens.split(",")]:
        model = _model(args.arch, tokenizer, device)
        row = _training(model, tokenizer, prompts, args, engine_config, grpo, tokens)
        row["mfu_vs_datasheet"] = row["model_tflops"] / peak if peak else None
        row["mfu_vs_measured_matmul"] = row["model_tflops"] / ceiling if ceiling else None
        print(row.pop("profile") or "", flush=True)
        print(json.dumps(row, indent=2), flush=True)
        training.append(row)
        del model
        _free(device)
    result = {
        "card": card, "arch": args.arch, "parameters": n_params, "zero_stage": args.zero_stage,
        "precision": precision, "torch": torch.__version__, "code_version": code_version(),
        "matmul_bf16_tflops": ceiling, "datasheet_bf16_tflops": peak,
        "generation_alone": generation, "grpo_loop": loop, "training": training,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
