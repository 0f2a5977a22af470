"""One rank of a GRPO run with a real vLLM engine per rank, as ``torchrun`` starts it:
``python -m torch.distributed.run --nproc_per_node 2 -m tests.support.vllm_grpo_rank DIR``.

DIR holds ``start`` (the checkpoint both ranks begin from) and ``problems.pkl``. After every
weight sync the rank compares its engine's parameters with the trainer's, and at the end it
saves ``rank{r}.pt``: those comparisons, its metrics and its trained weights.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from magistral_kedro.generation import GenerationConfig, Sample, SamplingConfig
from magistral_kedro.generation import vllm as vllm_backend
from magistral_kedro.generation.vllm import VLLMConfig
from magistral_kedro.grpo import rollouts
from magistral_kedro.grpo.loop import train_grpo
from magistral_kedro.models import CheckpointRef, build_prompt
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.training import distributed
from magistral_kedro.training.engine import EngineConfig, OptimConfig
from magistral_kedro.training.logprobs import token_logprobs
from tests.support.grpo import GRPO, STAGES, parity_reward
from tests.support.tracking import ListTracker

#: vLLM on CPU, as these tests run it: float32 like the trainer, no CUDA graphs.
VLLM = VLLMConfig(dtype="float32", enforce_eager=True, max_model_len=256)

#: vLLM's Llama packs these Hugging Face tensors into one parameter, in this order.
PACKED = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
}


def as_vllm_names(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trainer's Hugging Face state dict under vLLM's Llama parameter names."""
    named = dict(weights)
    for packed, parts in PACKED.items():
        for name in [n for n in named if f".{parts[0]}." in n]:
            pieces = [named.pop(name.replace(parts[0], part)) for part in parts]
            named[name.replace(parts[0], packed)] = torch.cat(pieces)
    return named


def engine_gap(llm: Any, trainer: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The largest difference between the parameters the engine holds as tensors and the
    trainer's; how many it packed away (vLLM on CPU hands its linear layers' weights to oneDNN
    and keeps an empty tensor: those are checked through the log-probs); which of the engine's
    parameters the trainer has no tensor for."""
    (engine,) = llm.apply_model(
        lambda model: {n: p.detach().float().clone() for n, p in model.named_parameters()}
    )
    expected = as_vllm_names(trainer)
    held = [n for n in engine if n in expected and engine[n].numel() > 0]
    # vLLM pads the vocabulary rows of its embedding and output layer (to a multiple of 64).
    gap = max(
        (engine[n][: len(expected[n])] - expected[n].float()).abs().max().item() for n in held
    )
    missing = sorted(set(engine) - set(expected))
    packed = len(engine) - len(held) - len(missing)
    return {"max_abs_diff": gap, "held": len(held), "packed": packed, "missing": missing}


def logprob_differences(
    model: torch.nn.Module, prompt_ids: list[int], sample: Sample, temperature: float
) -> torch.Tensor:
    """``[completion tokens]``: ``model``'s log-prob of each sampled token, after the prompt's
    token ids, minus the engine's (0 on policy)."""
    ids = torch.tensor([prompt_ids + sample.token_ids])
    with torch.no_grad():
        ours = token_logprobs(model(ids).logits, ids, temperature)[0, len(prompt_ids) :]
    return ours - torch.tensor(sample.logprobs)


def logprob_gap(generator: Any, model: torch.nn.Module, prompts: list[list[int]]) -> float:
    """The largest difference between the log-probs the engine gives its samples and those of
    ``model`` (the trainer's weights) on the same tokens."""
    groups = generator.generate(prompts, n=2, sampling=SamplingConfig(max_new_tokens=6), seed=0)
    return max(
        logprob_differences(model, prompt_ids, sample, 1.0).abs().max().item()
        for prompt_ids, group in zip(prompts, groups, strict=True)
        for sample in group
    )


def main(directory: Path) -> None:
    distributed.init_from_env()
    rank = distributed.rank()
    start = CheckpointRef(directory / "start").load()
    problems = pickle.loads((directory / "problems.pkl").read_bytes())
    rollouts.score_batch = parity_reward
    checks: list[dict[str, Any]] = []
    mirror = vllm_backend.VLLMGenerator.mirror
    reference = CheckpointRef(directory / "start").load().model.eval()  # not the trainer's
    prompts = [start.tokenizer(p.prompt)["input_ids"] for p in problems[:2]]

    def checked_mirror(self: Any, source: Any) -> None:
        mirror(self, source)
        trainer = {name: t.clone() for bucket in source() for name, t in bucket}
        reference.load_state_dict(trainer)
        checks.append(
            engine_gap(self.llm, trainer) | {"logprobs": logprob_gap(self, reference, prompts)}
        )

    vllm_backend.VLLMGenerator.mirror = checked_mirror  # type: ignore[method-assign]
    tracker = ListTracker()
    optim = OptimConfig(lr=1e-2, warmup_steps=1, max_steps=6)
    trained, _ = train_grpo(
        start,
        problems,
        [build_prompt(start.tokenizer, p.prompt, None) for p in problems],
        engine_config=EngineConfig(zero_stage=3, optim=optim, weight_bucket_mb=0.05),
        grpo=GRPO,
        stages=STAGES,
        reward=RewardConfig(),
        checkpoint_dir=directory / "rl",
        seed=3,
        fingerprint="f",
        tracker=tracker,
        generation=GenerationConfig(backend="vllm", vllm=VLLM),
    )
    weights = trained.load().model.state_dict()
    result = {"checks": checks, "metrics": tracker.metrics, "weights": weights}
    torch.save(result, directory / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
