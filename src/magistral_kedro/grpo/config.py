"""The GRPO loop's settings: the curriculum's stages and the loop's knobs (``rl.grpo``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from magistral_kedro.config import config
from magistral_kedro.generation.factory import GenerationConfig

Positive = Annotated[int, Field(gt=0)]


@config
class Stage:
    """One curriculum stage (docs/recipe.md, section 5), in force from ``start_step`` or as
    soon as the mean reward of the last step reaches ``min_reward``, whichever comes first
    (``start_step: null``: by reward alone)."""

    start_step: Annotated[int, Field(ge=0)] | None = 0
    l_max: Positive = 128
    l_cache: Annotated[int, Field(ge=0)] = 32
    n_prompts: Positive = 32
    difficulty: tuple[int, int] = (0, 1_000_000)
    min_reward: float | None = None


@config
class GRPOConfig:
    """Knobs of the loop; the paper's values are the defaults where it gives one."""

    group_size: Annotated[int, Field(ge=2)] = 8
    eps_low: Annotated[float, Field(ge=0, lt=1)] = 0.2
    eps_high: Annotated[float, Field(ge=0)] = 0.28
    temperature: Annotated[float, Field(gt=0)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    n_minibatches: Positive = 1
    #: Drop the groups whose rewards are all equal before normalising and counting tokens
    #: (docs/recipe.md, section 1). False keeps them, with advantage 0: an ablation, in
    #: which every step updates (a step of all-equal groups has a zero loss, yet the optimiser's
    #: momentum still moves the weights).
    drop_non_diverse_groups: bool = True
    #: Normalise the kept advantages over each minibatch (docs/recipe.md, section 1). False
    #: trains on r - mean(group) as it is: an ablation.
    normalise_minibatch_advantages: bool = True
    #: grpo: Magistral's GRPO. rs_ft: rejection-sampling fine-tuning, the baseline GRPO is
    #: measured against at matched compute: the same sampling, and each step fine-tunes on the
    #: completions whose answer is right (advantage 1), every other one left out (counted in
    #: groups/dropped_frac); the two switches above do not apply to it.
    objective: Literal["grpo", "rs_ft"] = "grpo"
    max_tokens_per_microbatch: Positive = 8192
    generation_batch_size: Positive = 256
    checkpoint_every: Positive = 10
    keep_checkpoints: Positive = 2
    samples_per_step: Annotated[int, Field(ge=0)] = 4
    reward_workers: Positive = 2
    #: sync: generate, then train, each step. async: generation runs ahead in a thread.
    mode: Literal["sync", "async"] = "sync"
    #: async only: at most this many steps' batches generated and not yet trained on
    #: (in-flight sequences <= max_batches_in_flight * n_batch; the paper's bound is 2).
    max_batches_in_flight: Positive = 2
    #: Truncated importance sampling of the generator/trainer mismatch: each token's loss is
    #: weighted by min(pi_trainer_old / pi_generator, tis_cap) and the ratio taken against the
    #: trainer's own log-probs before the update. auto: on where the generator is not the
    #: trained model's own forward (vLLM's kernels), off where the ratio is 1 by construction
    #: (transformers on the trained model; async keeps the paper's generator log-probs as the
    #: old policy, clipped).
    tis: Literal["auto", "on", "off"] = "auto"
    #: The largest importance weight C (TRL and verl use 2 to 3).
    tis_cap: Annotated[float, Field(ge=1)] = 2.0
    #: The log-ratio of the loss is clamped to +-this before exp: one wild token cannot make
    #: the loss infinite.
    max_log_ratio: Annotated[float, Field(gt=0)] = 20.0


def check_generation_mode(grpo: GRPOConfig, generation: GenerationConfig) -> None:
    """Raise ValueError when ``grpo.mode`` cannot run with ``generation.backend``."""
    if grpo.mode == "async" and generation.backend != "transformers":
        raise ValueError(
            "rl.grpo.mode 'async' runs its own transformers generator thread: set "
            f"generation.backend to 'transformers' (not {generation.backend!r}) or rl.grpo.mode "
            "to 'sync'"
        )


def uses_tis(grpo: GRPOConfig, generation: GenerationConfig) -> bool:
    """Whether truncated importance sampling is on (``grpo.tis``, auto resolved)."""
    if grpo.tis == "auto":
        return grpo.mode == "sync" and generation.backend != "transformers"
    return grpo.tis == "on"
