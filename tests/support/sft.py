"""The engine the SFT tests train with: a learning rate at which the micro model learns in a few
steps, and a short warm-up."""

from __future__ import annotations

from typing import Any

from magistral_kedro.training import EngineConfig
from magistral_kedro.training.engine import OptimConfig


def sft_engine(backend: str = "torch", steps: int = 6, **kw: Any) -> EngineConfig:
    """An engine on ``backend`` for ``steps`` optimiser steps; ``kw``: other EngineConfig fields."""
    optim = OptimConfig(lr=3e-3, warmup_steps=2, max_steps=steps)
    return EngineConfig(backend=backend, optim=optim, **kw)
