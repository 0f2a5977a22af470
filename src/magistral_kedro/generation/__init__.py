"""Generation behind one interface: transformers here, vLLM on GPU (another backend, same calls)."""

from magistral_kedro.generation.base import Generator, Sample, SamplingConfig
from magistral_kedro.generation.hf import TransformersGenerator

__all__ = ["Generator", "Sample", "SamplingConfig", "TransformersGenerator"]
