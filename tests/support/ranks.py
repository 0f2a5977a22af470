"""Helpers of the tests that start two data-parallel ranks (gloo, CPU) as a launcher would."""

from __future__ import annotations

import os

from magistral_kedro.training import distributed
from magistral_kedro.training.engine import _free_port as free_port

__all__ = ["LAUNCHER_VARIABLES", "free_port", "join_as_launched"]

#: What a launcher puts in a process's environment, and DeepSpeed's engine for one process.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def join_as_launched(rank: int, port: int) -> None:
    """Join a group of two ranks through the environment a launcher sets (torchrun, deepspeed)."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    distributed.init_from_env()
