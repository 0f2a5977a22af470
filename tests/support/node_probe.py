"""``magistral_kedro.launch`` with a probe for the two-node test: after GRPO's last step each
rank writes the SHA-256 of its trainer's weights to ``$WEIGHTS_PROBE/rank<RANK>.sha256``, a
directory outside every project copy (a rank's weights otherwise never leave its memory).

    torchrun ... -m tests.support.node_probe --env micro --pipeline rl
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from magistral_kedro import launch
from magistral_kedro.grpo import loop


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over every tensor of ``model.state_dict()`` (name order, float32 bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _probed(train: Callable[..., None]) -> Callable[..., None]:
    def train_then_probe(self: Any, state: Any, max_steps: int) -> None:
        train(self, state, max_steps)
        out = Path(os.environ["WEIGHTS_PROBE"]) / f"rank{os.environ['RANK']}.sha256"
        out.write_text(weights_sha256(self.engine.model))

    return train_then_probe


if __name__ == "__main__":
    loop._Loop.train = _probed(loop._Loop.train)  # type: ignore[method-assign]
    launch.main()
