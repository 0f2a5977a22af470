"""A model's weights in buckets, for pushing them to an inference engine a part at a time
(under ZeRO-3 each bucket is gathered alone: :meth:`TrainEngine.weight_buckets`)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch

#: A decoder layer's tensors ("model.layers.3.mlp.up_proj.weight" -> "model.layers.3").
_LAYER = re.compile(r"^(.*\.layers\.\d+)\.")


def _units(model: torch.nn.Module) -> list[tuple[float, list[tuple[torch.Tensor, list[str]]]]]:
    """The state dict's tensors (parameters and persistent buffers, each once with all of its
    names), a decoder layer's together, each unit with its bytes (whole sizes: ZeRO-3's
    ``ds_numel``, not the local partition's)."""
    named: dict[int, tuple[torch.Tensor, list[str]]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        named.setdefault(id(tensor), (tensor, []))[1].append(name)
    units: dict[str, tuple[float, list[tuple[torch.Tensor, list[str]]]]] = {}
    for tensor, names in named.values():
        layer = _LAYER.match(names[0])
        key = layer.group(1) if layer else names[0]
        nbytes = getattr(tensor, "ds_numel", tensor.numel()) * tensor.element_size()
        size, members = units.get(key, (0.0, []))
        units[key] = (size + nbytes, [*members, (tensor, names)])
    return list(units.values())


def weight_buckets(
    model: torch.nn.Module, limit: float
) -> Iterator[list[tuple[torch.Tensor, list[str]]]]:
    """The state dict's tensors in consecutive buckets of at most ``limit`` bytes, or one
    decoder layer where a layer is larger. A layer is never split: an inference engine fuses
    its projections (q, k and v; gate and up) and takes them together."""
    bucket: list[tuple[torch.Tensor, list[str]]] = []
    size = 0.0
    for nbytes, members in _units(model):
        if bucket and size + nbytes > limit:
            yield bucket
            bucket, size = [], 0.0
        bucket += members
        size += nbytes
    if bucket:
        yield bucket
