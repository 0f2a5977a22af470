"""A checkpoint's weights as one vector: read tensor by tensor, flattened or sketched.

A checkpoint directory holds one ``model.safetensors`` or shards listed by
``model.safetensors.index.json``; :func:`checkpoint_tensors` reads either one tensor at a time
(memory-mapped), in name order, so that neither the flattening of a small model nor the
projection of a large one ever holds the whole model.

The projection is a count sketch (a sparse random sign projection): every weight is added, with
a random sign, to one of ``dim`` sums. Its cost is one random draw and one addition per weight,
whatever ``dim`` is, where a dense Gaussian projection costs ``dim`` multiply-adds per weight.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
#: Weights drawn and summed at a time: memory is O(CHUNK) whatever the tensor's size. Part of
#: the projection's definition (each chunk has its own seed).
CHUNK = 1 << 20


def _is_float(dtype: str) -> bool:
    """Whether a safetensors dtype name (``F32``, ``BF16``, ``I64``...) is floating-point."""
    return dtype.startswith(("F", "BF"))


def read_index(index: str | Path) -> dict[str, str]:
    """The ``weight_map`` of a ``model.safetensors.index.json``: tensor name -> shard file name.

    Raises:
        ValueError: ``index`` is not valid JSON with a ``weight_map`` of names.
    """
    try:
        weight_map = json.loads(Path(index).read_text())["weight_map"]
        if not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("shard names must be strings")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{index} is not a safetensors index with a weight_map") from error
    return dict(weight_map)


def weight_files(folder: str | Path) -> dict[str, Path]:
    """Each tensor of the checkpoint in ``folder`` and the file that holds it: the shards that
    ``model.safetensors.index.json`` lists, else ``model.safetensors``.

    Raises:
        FileNotFoundError: no weights in ``folder``, or a shard the index names is missing.
        ValueError: the index is not valid JSON with a ``weight_map``.
    """
    folder = Path(folder)
    index = folder / INDEX_FILE
    if index.is_file():
        files = {name: folder / shard for name, shard in read_index(index).items()}
        for shard in sorted(set(files.values())):
            if not shard.is_file():
                raise FileNotFoundError(f"{index} names {shard.name}, which is not in {folder}")
        return files
    single = folder / SINGLE_FILE
    if not single.is_file():
        raise FileNotFoundError(f"no weights in {folder}: expected {SINGLE_FILE} or {INDEX_FILE}")
    with safe_open(single, framework="pt") as handle:
        return dict.fromkeys(handle.keys(), single)


def _stored(folder: str | Path) -> Iterator[tuple[str, Any, Any]]:
    """(name, open file, header slice) of each floating-point tensor in ``folder``, in name
    order; each file is opened once (memory-mapped) and closed at the end."""
    files = weight_files(folder)
    with ExitStack() as stack:
        handles: dict[Path, Any] = {}
        for name in sorted(files):
            path = files[name]
            if path not in handles:
                handles[path] = stack.enter_context(safe_open(path, framework="pt"))
            piece = handles[path].get_slice(name)
            if _is_float(piece.get_dtype()):
                yield name, handles[path], piece


def checkpoint_tensors(folder: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """The floating-point tensors of the checkpoint in ``folder`` (see :func:`weight_files`),
    in name order, one at a time, each as stored (shape and dtype)."""
    for name, handle, _ in _stored(folder):
        yield name, handle.get_tensor(name)


#: A chunk of one tensor: (tensor name, chunk number, its values ``[<= CHUNK]``, flattened).
Block = tuple[str, int, torch.Tensor]


def tensor_blocks(name: str, tensor: torch.Tensor) -> Iterator[Block]:
    """``tensor`` flattened, :data:`CHUNK` values at a time."""
    values = tensor.detach().reshape(-1)
    for number, start in enumerate(range(0, values.numel(), CHUNK)):
        yield name, number, values[start : start + CHUNK]


def _stored_blocks(name: str, handle: Any, piece: Any) -> Iterator[Block]:
    """The blocks of :func:`tensor_blocks` read from the file: only the rows each one spans,
    so memory holds one chunk (or one row, if longer), never the whole tensor."""
    shape = piece.get_shape()
    if len(shape) == 0:
        yield from tensor_blocks(name, handle.get_tensor(name))
        return
    total = int(np.prod(shape, dtype=np.int64))
    row = total // shape[0] if total else 1
    for number, start in enumerate(range(0, total, CHUNK)):
        end = min(start + CHUNK, total)
        first, last = start // row, -(-end // row)
        rows = piece[first:last].reshape(-1)
        yield name, number, rows[start - first * row : end - first * row]


def checkpoint_blocks(folder: str | Path) -> Iterator[Block]:
    """The blocks of every floating-point tensor of the checkpoint in ``folder``, in name order:
    what :func:`tensor_blocks` gives for each tensor, read piece by piece."""
    for name, handle, piece in _stored(folder):
        yield from _stored_blocks(name, handle, piece)


def count_weights(folder: str | Path) -> int:
    """The number of floating-point values the checkpoint in ``folder`` stores, read from the
    file headers alone (no weight is loaded)."""
    files = weight_files(folder)
    total = 0
    for path in sorted(set(files.values())):
        with safe_open(path, framework="pt") as handle:
            stored = handle.keys()
            for name in stored:
                if files.get(name) == path:
                    piece = handle.get_slice(name)
                    if _is_float(piece.get_dtype()):
                        total += int(np.prod(piece.get_shape(), dtype=np.int64))
    return total


def flatten_weights(state: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Every floating-point tensor, in name order, as one float32 vector ``[D]``."""
    parts = [
        state[name].detach().float().flatten().cpu().numpy()
        for name in sorted(state)
        if state[name].is_floating_point()
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def sketch_codes(name: str, chunk: int, size: int, dim: int, seed: int) -> torch.Tensor:
    """The codes ``[size]`` (int64, uniform in ``0 .. 2 dim - 1``) of the weights of chunk
    ``chunk`` of tensor ``name``: code ``c`` sends a weight to sum ``c mod dim``, with sign
    +1 if ``c < dim`` else -1. Fixed by (seed, name, chunk): every checkpoint of a run, and any
    sharding of it, is projected by the same matrix."""
    digest = hashlib.sha256(f"{seed}:{name}:{chunk}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8]) >> 1)
    return torch.randint(0, 2 * dim, (size,), generator=generator)


def sketch(blocks: Iterable[Block], dim: int, seed: int) -> np.ndarray:
    """The count sketch ``S x [dim]`` (float64) of the weights ``x [D]`` that ``blocks``
    cover: column ``j`` of ``S [dim, D]`` has one non-zero, ``s_j = +-1`` in row ``h_j``, both
    drawn from :func:`sketch_codes` for the weight's tensor and chunk. Since
    ``E[s_i s_j 1(h_i = h_j)] = 1(i = j)``, inner products and distances are kept in
    expectation, ``E[<Sx, Sy>] = <x, y>``; the relative spread of a squared norm is about
    ``sqrt(2 / dim)``. Time is linear in ``D`` alone, memory one block; sums are float64, in
    block order, so the result is reproducible to the bit."""
    out = torch.zeros(dim, dtype=torch.float64)
    for name, number, block in blocks:
        values = block.to(torch.float64)
        codes = sketch_codes(name, number, values.numel(), dim, seed)
        sums = torch.bincount(codes, weights=values, minlength=2 * dim)
        out += sums[:dim] - sums[dim:]
    return out.numpy()


def project_weights(state: Mapping[str, torch.Tensor], dim: int, seed: int) -> np.ndarray:
    """The floating-point tensors of ``state``, flattened in name order, projected to
    ``[dim]`` by the count sketch of :func:`sketch`."""
    floating = (name for name in sorted(state) if state[name].is_floating_point())
    return sketch(
        (block for name in floating for block in tensor_blocks(name, state[name])), dim, seed
    )


def project_checkpoint(folder: str | Path, dim: int, seed: int) -> np.ndarray:
    """:func:`project_weights` of the checkpoint in ``folder`` (one file or shards), read one
    block at a time: the same vector, to the bit, as projecting its loaded state."""
    return sketch(checkpoint_blocks(folder), dim, seed)


def checkpoint_point(
    folder: str | Path, flatten_max_weights: int, dim: int, seed: int
) -> np.ndarray:
    """The checkpoint in ``folder`` as a point: its flattened weights ``[D]`` (float32, exact)
    if it has at most ``flatten_max_weights`` of them, else their projection ``[dim]``
    (:func:`project_checkpoint`)."""
    if count_weights(folder) <= flatten_max_weights:
        return flatten_weights(dict(checkpoint_tensors(folder)))
    return project_checkpoint(folder, dim, seed)
