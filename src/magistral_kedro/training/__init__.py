"""The training engine (DeepSpeed or plain torch), checkpoints, batching and the SFT loop.

Plain torch, no Kedro: the sft pipeline and the rl pipeline both train through here.
"""

from magistral_kedro.training.batching import collate_causal_lm, greedy_collate
from magistral_kedro.training.checkpointing import CheckpointManager
from magistral_kedro.training.engine import EngineConfig, OptimConfig, TrainEngine, create_engine

__all__ = [
    "CheckpointManager",
    "EngineConfig",
    "OptimConfig",
    "TrainEngine",
    "collate_causal_lm",
    "create_engine",
    "greedy_collate",
]
