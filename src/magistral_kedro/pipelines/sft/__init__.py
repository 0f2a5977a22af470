"""The sft pipeline: supervised fine-tuning on reference traces."""

from magistral_kedro.pipelines.sft.pipeline import create_pipeline

__all__ = ["create_pipeline"]
