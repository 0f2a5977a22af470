"""Fingerprints of what a training run depends on: resume and reuse are only safe when equal.

A run's fingerprint hashes its settings, the content of its data and the weights it starts from.
A killed run resumes only into a checkpoint with the same fingerprint, and a finished run is
reused only when nothing it depends on changed; any other input (another problem set of the same
size, a new starting model) starts a fresh run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from safetensors import safe_open

from magistral_kedro.models.factory import Checkpoint, CheckpointRef, ModelSource

#: Settings of how a run is carried out, not of what it computes: changed (after running out of
#: memory, on another machine), the run resumes instead of starting over.
OPERATIONAL = frozenset(
    {
        "gradient_checkpointing",
        "max_tokens_per_microbatch",
        "checkpoint_every",
        "keep_checkpoints",
        "keep_checkpoint_artifacts",
        "samples_per_step",
        "reward_workers",
        "eval_every",
        "eval_size",
        "gpu_memory_utilization",
        "tensor_parallel_size",
        "max_model_len",
        "sleep_level",
        "enforce_eager",
        "engine_kwargs",
    }
)


def _without_operational(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_operational(v) for k, v in value.items() if k not in OPERATIONAL}
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _without_operational(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _without_operational(dataclasses.asdict(value))
    return str(value)


def fingerprint(*parts: Any) -> str:
    """A short digest of ``parts`` (JSON-able values, typed configs without their
    :data:`OPERATIONAL` settings, digests)."""
    blob = json.dumps(parts, sort_keys=True, default=_plain)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _tensor_digest(tensor: torch.Tensor) -> str:
    data = tensor.detach().cpu().reshape(-1)
    header = f"{data.dtype}{tuple(data.shape)}".encode()
    return hashlib.sha256(header + data.view(torch.uint8).numpy().tobytes()).hexdigest()


def _digest_of(tensor_digests: Iterable[str]) -> str:
    # A set of tensor digests, sorted: the same weights give the same digest whether they come
    # from a model in memory or from its files (where a tied weight is stored once, under
    # another name). Identical tensors collapse, which costs nothing in telling models apart.
    return hashlib.sha256("".join(sorted(set(tensor_digests))).encode()).hexdigest()[:16]


def _file_tensor_digests(directory: Path) -> Iterable[str]:
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {directory}")
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                yield _tensor_digest(handle.get_tensor(name))  # one tensor in memory at a time


def weights_digest(source: ModelSource) -> str:
    """A digest of a model's weights (values, dtypes and shapes; not names or file layout)."""
    if isinstance(source, CheckpointRef):
        return _digest_of(_file_tensor_digests(Path(source.path)))
    assert isinstance(source, Checkpoint)
    return _digest_of(_tensor_digest(t) for t in source.model.state_dict().values())


def data_digest(items: Iterable[Any]) -> str:
    """A digest of a sequence of JSON-able records (problems, token ids...), in order."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item, sort_keys=True, default=_plain).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]
