"""A short GRPO run on the micro model, with a stand-in verifier that gives a random model
diverse groups (a function of the completion's text), so that the training path runs."""

from __future__ import annotations

import dataclasses

from magistral_kedro.grpo.config import GRPOConfig, Stage
from magistral_kedro.grpo.loop import train_grpo
from magistral_kedro.models import Checkpoint, build_prompt, build_tiny_model
from magistral_kedro.rewards import RewardBreakdown, RewardConfig
from magistral_kedro.training.engine import EngineConfig, OptimConfig
from tests.support.models import MICRO_MODEL

GRPO = GRPOConfig(group_size=4, checkpoint_every=2, reward_workers=1, samples_per_step=2)
STAGES = [Stage(l_max=12, l_cache=4, n_prompts=4), Stage(start_step=3, l_max=16, n_prompts=3)]


def parity_reward(completions, problems, n_tokens, cfg, **_):
    """1.1 for completions with an even number of 'e' characters, else 0.1."""
    return [
        RewardBreakdown(0.1, 0.9 * (text.count("e") % 2 == 0), 0.0, 0.0,
                        0.1 + 0.9 * (text.count("e") % 2 == 0))
        for text in completions
    ]  # fmt: skip


def run_grpo(
    tokenizer, problems, directory, tracker=None, steps=4, backend="torch", stages=STAGES, **grpo
):
    """GRPO from the micro model (seed 0); the trained model, loaded, and the samples."""
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    prompts = [build_prompt(tokenizer, p.prompt, None) for p in problems]
    engine = EngineConfig(
        backend=backend, optim=OptimConfig(lr=1e-3, warmup_steps=1, max_steps=steps)
    )
    config = dataclasses.replace(GRPO, **grpo)
    trained, samples = train_grpo(
        Checkpoint(model, tokenizer),
        problems,
        prompts,
        engine_config=engine,
        grpo=config,
        stages=stages,
        reward=RewardConfig(),
        checkpoint_dir=directory,
        seed=3,
        fingerprint="f",
        tracker=tracker,
    )
    return trained.load().model, samples
