"""The micro model every model-training test builds (a few thousand weights, CPU-fast)."""

from __future__ import annotations

from magistral_kedro.models import TinyModelConfig

MICRO_MODEL = TinyModelConfig(
    hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=256
)
