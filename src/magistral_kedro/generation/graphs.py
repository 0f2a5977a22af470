"""Decoding at fixed shapes, each step replayed from a CUDA graph: the GPU path of the
transformers backend.

A small model's decoding step is bound by kernel launches, not arithmetic: Qwen2.5-0.5B runs a
few hundred kernels a step whose work takes a fraction of the time the host takes to launch
them. A CUDA graph launches them all at once, but it replays fixed memory at fixed shapes, so
here, unlike the shrinking batch of :func:`~magistral_kedro.generation.hf.decode`:

- the batch keeps every row to the end (a stopped row decodes on, its tokens discarded);
- the KV cache is written in place at a slot held in a device tensor, and attention reads a
  window of it whose length is a power of two (one graph per window, captured when the
  sequences first reach it), the rest masked;
- the attention mask is the model's own 4D one, built here and updated in place (transformers
  builds a 2D mask's 4D form with host-side checks, which a graph cannot hold).

A model hooked below its root is decoded the other way: a replay would skip the hooks
(DeepSpeed ZeRO-3's gather parameters; capturing them failed on a GPU and left the CUDA
generator unusable). The root's own hooks are not run at all (see ``FixedSteps._forward``).

The loop is :func:`~magistral_kedro.generation.hf.decode`'s, and sampling stays outside the
graph: the same draws within a batch, and the same log-probs of what was drawn, as the
shrinking batch (a batch whose rows all stop early draws up to ``check_every`` times more, so
the next batch's draws differ). On the CPU the same steps run without graphs (what the tests
compare with the shrinking batch and with forward passes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import DynamicLayer

from magistral_kedro.generation.sampler import (
    CACHE_KEYWORD,
    attention_cache,
    attention_implementation,
)

#: The shortest attention window: the prompts and the first steps share one graph.
_MIN_WINDOW = 128


@dataclass
class _Slots:
    """Where the next forward writes keys and values (a device tensor of positions) and how
    many positions from the start its attention reads. Shared by every layer of one cache."""

    write: torch.Tensor
    window: int


class _SlotLayer(DynamicLayer):
    """A full-attention KV-cache layer of fixed storage [B, H, capacity, D], zeroed (masked
    slots must hold finite numbers: their weight 0 times NaN is NaN), written at
    ``slots.write`` and read as its first ``slots.window`` positions."""

    is_croppable = False

    def __init__(self, capacity: int, slots: _Slots) -> None:
        super().__init__()
        self.capacity, self.slots = capacity, slots

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device, self.dtype = key_states.device, key_states.dtype
        batch, heads, _, _ = key_states.shape
        self._keys = key_states.new_zeros(batch, heads, self.capacity, key_states.shape[-1])
        self._values = value_states.new_zeros(batch, heads, self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self._keys.index_copy_(2, self.slots.write, key_states)
        self._values.index_copy_(2, self.slots.write, value_states)
        window = self.slots.window
        self.keys, self.values = self._keys[:, :, :window], self._values[:, :, :window]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.capacity


def graphable(model: PreTrainedModel) -> bool:
    """Whether :class:`FixedSteps` can decode ``model``: an attention that takes a 4D mask
    as it is given (``sdpa``: True attends; ``eager``: added to the scores); no forward hooks
    below the root (a replay would skip them; DeepSpeed ZeRO-3's gather parameters and cannot
    be captured at all; the root's, DeepSpeed's step bookkeeping, are not run: see
    ``FixedSteps._forward``); every cache layer full attention (no sliding windows, no state).
    Gradient checkpointing through transformers hooks the input embeddings: no graphs then."""
    if attention_implementation(model) not in ("sdpa", "eager"):
        return False
    below_root = list(model.modules())[1:]
    if any(module._forward_pre_hooks or module._forward_hooks for module in below_root):
        return False
    try:
        cache = attention_cache(model)
    except ValueError:
        return False
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _window(needed: int, capacity: int) -> int:
    """The attention window holding ``needed`` positions: a power of two, at most capacity."""
    return min(capacity, max(_MIN_WINDOW, 1 << (needed - 1).bit_length()))


def _mask_values(model: PreTrainedModel) -> tuple[torch.dtype, float, float]:
    """The model's 4D mask: its dtype and the values that let attend and that mask."""
    if attention_implementation(model) == "sdpa":
        return torch.bool, True, False
    return model.dtype, 0.0, torch.finfo(model.dtype).min


class FixedSteps:
    """The decoding steps of a batch at fixed shapes (see the module docstring): one step's
    inputs at fixed addresses, and its forward, replayed from one CUDA graph per window where
    ``graphs``, else run as it is. Rows never leave the batch."""

    #: Steps between two checks of whether every row has stopped (each waits for the GPU).
    check_every = 16

    def __init__(
        self, model: PreTrainedModel, batch: dict[str, torch.Tensor], limit: int, graphs: bool
    ) -> None:
        real = batch["attention_mask"].bool()  # [B, W]
        positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        batch_size, width = real.shape
        self.model, self.graphs = model, graphs
        self.capacity = width + limit
        self.dtype, self.allow, self.deny = _mask_values(model)
        self.real, self.prompt_positions = real, positions
        device = real.device
        self.slots = _Slots(torch.arange(width, device=device), _window(width, self.capacity))
        self.cache = attention_cache(model)
        self.cache.layers = [_SlotLayer(self.capacity, self.slots) for _ in self.cache.layers]
        # A step's inputs: its tokens [B, 1], positions [B, 1], the slot it writes [1] and the
        # mask [B, 1, 1, capacity] of the slots holding keys (its own set before it runs).
        self.tokens = torch.zeros((batch_size, 1), dtype=torch.long, device=device)
        self.positions = positions[:, -1:].clone()
        self.write = torch.zeros(1, dtype=torch.long, device=device)
        self.mask = torch.full(
            (batch_size, 1, 1, self.capacity), self.deny, dtype=self.dtype, device=device
        )
        self.mask[:, 0, 0, :width].masked_fill_(real, self.allow)
        self.replays: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        # forward, not __call__: the root's hooks would run at capture but not in replays, and
        # DeepSpeed's (a throughput timer) synchronises the device, which no capture may do.
        return self.model.forward(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
            logits_to_keep=1, **{CACHE_KEYWORD: self.cache},
        ).logits[:, -1]  # fmt: skip

    def prompts(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The prompts' forward [B, W] -> the last position's logits [B, V]; fills the cache.
        Their mask [B, 1, W, window]: causal, real tokens only, and each position sees itself,
        so that no row of a left-padded prompt is all masked (its softmax would be NaN)."""
        batch, width = self.real.shape
        device = self.real.device
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        sees = causal & self.real[:, None, :] | torch.eye(width, dtype=torch.bool, device=device)
        mask = torch.full(
            (batch, 1, width, self.slots.window), self.deny, dtype=self.dtype, device=device
        )
        mask[:, 0, :, :width].masked_fill_(sees, self.allow)
        return self._forward(input_ids, mask, self.prompt_positions)

    def step(self, tokens: torch.Tensor, slot: int) -> torch.Tensor:
        """Feed ``tokens`` [B] at cache ``slot`` -> the next logits [B, V] (a view the next
        step overwrites when replayed from a graph)."""
        self.tokens.copy_(tokens[:, None])
        self.positions.add_(1)
        self.write.fill_(slot)
        self.mask[:, 0, 0, slot] = self.allow
        self.slots.write, self.slots.window = self.write, _window(slot + 1, self.capacity)
        if not self.graphs:
            return self._window_forward()
        if self.slots.window not in self.replays:
            self.replays[self.slots.window] = self._capture()
        graph, logits = self.replays[self.slots.window]
        graph.replay()
        return logits

    def compact(self, running: torch.Tensor) -> None:
        """Rows never leave a fixed-shape batch."""
        return None

    def _window_forward(self) -> torch.Tensor:
        mask = self.mask[..., : self.slots.window]
        return self._forward(self.tokens, mask, self.positions)

    def _capture(self) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """A graph of this window's step. It is warmed up on a side stream first (lazy
        initialisations must not happen during capture); the warm-up writes this step's own
        keys, which the replay writes again."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._window_forward()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = self._window_forward()
        return graph, logits
