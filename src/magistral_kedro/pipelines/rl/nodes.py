"""RL nodes: GRPO training from the SFT model, and the trained model's evaluation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from magistral_kedro.generation import Generator
from magistral_kedro.grpo.loop import train_grpo
from magistral_kedro.models import Checkpoint, save_checkpoint
from magistral_kedro.params import PromptParams, RLParams
from magistral_kedro.pipelines.evaluation import build_prompts, evaluate_generation
from magistral_kedro.pipelines.frames import frame_to_problems
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tracking import MlflowTracker
from magistral_kedro.training import distributed


def train_rl_model(
    sft_model: Checkpoint,
    base_model: Checkpoint,
    train: pd.DataFrame,
    prompt: PromptParams,
    rl: RLParams,
    reward: RewardConfig,
    seed: int,
) -> tuple[Checkpoint, pd.DataFrame]:
    """GRPO from the SFT model (``rl.init: sft``) or the untrained base model (``base``) on the
    training problems of ``rl.kinds``; metrics and checkpoints go to MLflow as they happen.
    Returns the trained model and the completions sampled along the way."""
    start = sft_model if rl.init == "sft" else base_model
    problems_frame = train[train["kind"].isin(rl.kinds)].reset_index(drop=True)
    if problems_frame.empty:
        raise ValueError(f"no training problem of kind {rl.kinds}: check rl.kinds and curation")
    problems = frame_to_problems(problems_frame)
    prompts = build_prompts(problems_frame, start.tokenizer, prompt)
    blob = json.dumps(
        [rl.model_dump(mode="json"), reward.__dict__, seed, len(problems)], default=str
    )
    model, samples = train_grpo(
        start.model,
        start.tokenizer,
        problems,
        prompts,
        engine_config=rl.engine,
        grpo=rl.grpo,
        stages=rl.curriculum,
        reward=reward,
        checkpoint_dir=rl.checkpoint_dir,
        seed=seed,
        fingerprint=hashlib.sha256(blob.encode()).hexdigest()[:16],
        tracker=MlflowTracker("rl"),
        generator=_generator(start, rl, seed),
    )
    return Checkpoint(model=model, tokenizer=start.tokenizer), pd.DataFrame(samples)


def _generator(start: Checkpoint, rl: RLParams, seed: int) -> Generator | None:
    """None for transformers (it samples from the trained model itself); else a vLLM engine
    loaded from the start checkpoint, written beside the checkpoint directory (which a fresh
    run empties)."""
    if rl.generation.backend != "vllm":
        return None
    from magistral_kedro.generation.vllm import VLLMGenerator

    root = Path(rl.checkpoint_dir)
    path = root.with_name(f"{root.name}_vllm_start")
    if distributed.is_main():
        save_checkpoint(start, path)
    distributed.barrier()
    return VLLMGenerator(path, rl.generation.vllm, seed=seed + distributed.rank())


def evaluate_rl(
    checkpoint: Checkpoint,
    evaluation: pd.DataFrame,
    prompt: PromptParams,
    rl: RLParams,
    reward: RewardConfig,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The RL model on the eval split, graded by the Magistral reward (``rl_eval/...``)."""
    return evaluate_generation(
        checkpoint, evaluation, prompt, rl.eval_problems, rl.eval_sampling, reward, seed,
        prefix="rl_eval", k=rl.eval_k, temperature=rl.eval_temperature,
    )  # fmt: skip
