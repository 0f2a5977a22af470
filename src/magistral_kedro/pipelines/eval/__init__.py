"""The eval pipeline: a checkpoint on benchmark sets, and the comparison across MLflow runs."""

from magistral_kedro.pipelines.eval.pipeline import create_pipeline

__all__ = ["create_pipeline"]
