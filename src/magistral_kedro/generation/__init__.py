"""Generation behind one interface: transformers here, vLLM on GPU (another backend, same calls).

:func:`open_generator` is the one place that picks the backend from the ``generation`` parameters.
"""

from magistral_kedro.generation.base import Generator, Sample, SamplingConfig, encode_prompts
from magistral_kedro.generation.factory import GenerationConfig, open_generator
from magistral_kedro.generation.hf import TransformersGenerator

__all__ = [
    "GenerationConfig",
    "Generator",
    "Sample",
    "SamplingConfig",
    "TransformersGenerator",
    "encode_prompts",
    "open_generator",
]
