"""RL nodes: GRPO training from the SFT model (the trained model's evaluation is the eval
pipeline's template, :func:`magistral_kedro.pipelines.eval.pipeline.evaluation_of`)."""

from __future__ import annotations

import pandas as pd

from magistral_kedro.evaluation import build_prompts
from magistral_kedro.generation import GenerationConfig, encode_prompts
from magistral_kedro.grpo.loop import train_grpo
from magistral_kedro.models import CheckpointRef, ModelSource, dtype_name, tokenizer_of
from magistral_kedro.params import PromptParams, RLParams
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tasks.frames import frame_to_problems
from magistral_kedro.tracking import MlflowTracker
from magistral_kedro.training import distributed
from magistral_kedro.training.fingerprint import data_digest, fingerprint, weights_digest


def train_rl_model(
    sft_model: ModelSource,
    base_model: ModelSource,
    train: pd.DataFrame,
    prompt: PromptParams,
    rl: RLParams,
    reward: RewardConfig,
    generation: GenerationConfig,
    seed: int,
) -> tuple[CheckpointRef, pd.DataFrame]:
    """GRPO from the SFT model (``rl.init: sft``) or the untrained base model (``base``) on the
    training problems of ``rl.kinds``; metrics and checkpoints go to MLflow as they happen.
    Returns the trained model and the completions sampled along the way. Only the starting
    model is loaded; a finished run with the same inputs is reused without loading anything."""
    start = sft_model if rl.init == "sft" else base_model
    problems_frame = train[train["kind"].isin(rl.kinds)].reset_index(drop=True)
    if problems_frame.empty:
        raise ValueError(f"no training problem of kind {rl.kinds}: check rl.kinds and curation")
    problems = frame_to_problems(problems_frame)
    tokenizer = tokenizer_of(start)
    prompts = build_prompts(problems_frame, tokenizer, prompt.system_prompt)
    # What the run depends on: settings, the problems, the prompts as the model reads them (token
    # ids), the start weights and their dtype. Computed on every rank from its own node's inputs,
    # which must be rank 0's.
    run = distributed.same_on_every_rank(
        lambda: fingerprint(
            rl.init,
            rl.kinds,
            rl.engine,
            rl.grpo,
            rl.curriculum,
            reward,
            generation,
            seed,
            data_digest(problems),
            data_digest(encode_prompts(tokenizer, prompts)),
            weights_digest(start),
            dtype_name(start),
        ),
        "rl's inputs (settings, problems, prompts, start weights)",
    )
    model, samples = train_grpo(
        start,
        problems,
        prompts,
        engine_config=rl.engine,
        grpo=rl.grpo,
        stages=rl.curriculum,
        reward=reward,
        checkpoint_dir=rl.checkpoint_dir,
        seed=seed,
        fingerprint=run,
        tracker=MlflowTracker.for_training(
            "rl", rl.engine.optim.max_steps, rl.grpo.checkpoint_every, rl.keep_checkpoint_artifacts
        ),
        generation=generation,
    )
    return model, pd.DataFrame(samples)
