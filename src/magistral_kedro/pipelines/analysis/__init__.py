"""The analysis pipeline: weight-space PCA of the RL checkpoints, curves and the HTML report."""

from magistral_kedro.pipelines.analysis.pipeline import create_pipeline

__all__ = ["create_pipeline"]
