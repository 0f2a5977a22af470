"""The curation pipeline: problems in, validated, de-duplicated train / eval sets out."""

from magistral_kedro.pipelines.curation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
