"""The rl pipeline: Magistral's GRPO from the SFT checkpoint."""

from magistral_kedro.pipelines.rl.pipeline import create_pipeline

__all__ = ["create_pipeline"]
