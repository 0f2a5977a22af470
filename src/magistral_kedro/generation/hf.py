"""The transformers backend: a batched decoding loop over the model's KV cache, CPU or GPU.

The loop is ours rather than ``generate()``'s, for what a sampler for RL needs:

- one categorical draw per row from the cumulative probabilities: ``generate()`` samples with
  ``torch.multinomial``, whose CPU kernel draws an exponential variate for every vocabulary
  entry at every step (37% of the tiny model's sampling time);
- rows leave the batch as they stop (``generate()`` runs every row until the last one stops);
- the drawn token's log-prob is taken as it is drawn (no per-step logits are kept);
- the sampler is only temperature (and top-p if asked): nothing of the checkpoint's own
  ``generation_config`` (a repetition penalty, banned n-grams, top-k 50...) can shape the
  distribution whose log-probs the trainer compares against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from magistral_kedro.generation.base import Sample, SamplingConfig
from magistral_kedro.generation.graphs import FixedSteps, graphable
from magistral_kedro.generation.sampler import (
    CACHE_KEYWORD,
    Decoded,
    attention_cache,
    decoded_rows,
    draw_tokens,
    left_padded,
    stop_ids,
)

#: Rows leave the batch once this share of it has stopped: dropping them copies the whole KV
#: cache, about what one decoding step costs.
_COMPACT_SHARE = 0.25


class _PreallocatedLayer(DynamicLayer):
    """A full-attention KV-cache layer written in place into storage sized for the whole call:
    the default layer concatenates its whole cache at every decoding step, a third of the tiny
    model's sampling time on CPU. Keys and values are views of the filled part."""

    is_croppable = False

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device, self.dtype = key_states.device, key_states.dtype
        batch, heads, _, _ = key_states.shape
        self._keys = key_states.new_empty(batch, heads, self.capacity, key_states.shape[-1])
        self._values = value_states.new_empty(batch, heads, self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def reset(self) -> None:
        self.length = 0
        self.is_initialized = False

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise ValueError(f"KV cache of {self.capacity} positions asked for {end}")
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if not self.is_initialized:
            return
        self._keys, self._values = self._keys[indices], self._values[indices]
        self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]

    def get_seq_length(self) -> int:
        return self.length


def kv_cache(model: PreTrainedModel, capacity: int) -> DynamicCache:
    """The model's default cache (:func:`attention_cache`), its full-attention layers
    preallocated for ``capacity`` positions (sliding-window layers stay as they are)."""
    cache = attention_cache(model)
    cache.layers = [
        _PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer
        for layer in cache.layers
    ]
    return cache


class _ShrinkingSteps:
    """The decoding steps of a batch that drops its stopped rows (once ``_COMPACT_SHARE`` of
    it has stopped) over a growing KV cache: the CPU's way, and any model the fixed-shape
    steps cannot take."""

    check_every = 1  # whether every row has stopped: a free question on the CPU

    def __init__(self, model: PreTrainedModel, batch: dict[str, torch.Tensor], limit: int):
        self.model = model
        self.mask = batch["attention_mask"]  # [b, W + t] as t grows
        self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        self.cache = kv_cache(model, self.mask.shape[1] + limit)

    def _forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(
            input_ids=input_ids, attention_mask=self.mask, position_ids=self.positions,
            use_cache=True, logits_to_keep=1, **{CACHE_KEYWORD: self.cache},
        ).logits[:, -1]  # fmt: skip

    def prompts(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The prompts' forward [b, W] -> the last position's logits [b, V]. A prompt repeated
        in the batch (the n completions of one prompt) is run through once and its cache rows
        copied. On the CPU a row's results do not depend on how many rows share the pass, so a
        seed draws the same tokens as before; a GPU kernel chosen by batch size may round
        differently."""
        distinct: dict[tuple[int, ...], int] = {}  # a prompt -> its place among the distinct
        place = [distinct.setdefault(tuple(row), len(distinct)) for row in input_ids.tolist()]
        if len(distinct) == len(place):
            return self._forward(input_ids)
        firsts = torch.tensor(
            [place.index(k) for k in range(len(distinct))], device=input_ids.device
        )
        mask, positions = self.mask, self.positions
        self.mask, self.positions = mask[firsts], positions[firsts]
        logits = self._forward(input_ids[firsts])
        self.mask, self.positions = mask, positions
        expand = torch.tensor(place, device=input_ids.device)
        self.cache.batch_select_indices(expand)
        return logits[expand]

    def step(self, tokens: torch.Tensor, slot: int) -> torch.Tensor:
        """Feed ``tokens`` [b] -> the next logits [b, V] (``slot``: unused, the cache grows)."""
        self.positions = self.positions[:, -1:] + 1
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
        return self._forward(tokens[:, None])

    def compact(self, running: torch.Tensor) -> torch.Tensor | None:
        """The batch rows to keep [b'] once enough have stopped (dropped from the cache here),
        else None."""
        if (~running).sum() < _COMPACT_SHARE * len(running):
            return None
        keep = running.nonzero()[:, 0]
        self.cache.batch_select_indices(keep)
        self.mask, self.positions = self.mask[keep], self.positions[keep]
        return keep


@torch.no_grad()
def decode(
    model: PreTrainedModel,
    prompts: Sequence[list[int]],
    sampling: SamplingConfig,
    pad_id: int,
    ends: list[int],
    generator: torch.Generator,
    between_steps: Callable[[], int] | None = None,
    fixed_shapes: bool = False,
    graphs: bool = False,
) -> list[Decoded]:
    """Decode ``prompts`` as one batch, sampling from ``generator`` (on the model's device).

    The one decoding loop, with two ways of stepping: rows leave the batch as they stop
    (:class:`_ShrinkingSteps`), or, with ``fixed_shapes``, every row decodes to the end over a
    fixed KV cache, each step replayed from a CUDA graph where ``graphs``
    (:class:`~magistral_kedro.generation.graphs.FixedSteps`). ``between_steps`` runs after
    each forward pass (see :class:`TransformersGenerator`)."""
    device, limit = model.device, sampling.max_new_tokens
    batch = left_padded(prompts, pad_id, device)
    steps: _ShrinkingSteps | FixedSteps = (
        FixedSteps(model, batch, limit, graphs)
        if fixed_shapes
        else _ShrinkingSteps(model, batch, limit)
    )
    n, width = batch["input_ids"].shape
    tokens = torch.full((n, limit), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((n, limit), device=device)
    lengths = torch.full((n,), limit, device=device)
    rows = torch.arange(n, device=device)  # which prompt each batch row decodes
    running = torch.ones(n, dtype=torch.bool, device=device)  # of each batch row
    stops, versions = torch.tensor(ends, device=device), []
    logits = steps.prompts(batch["input_ids"])
    for step in range(limit):
        if between_steps is not None:
            versions.append(between_steps())
        token, logprob = draw_tokens(logits.float(), sampling, generator)
        tokens[rows, step], logprobs[rows, step] = token, logprob
        stopped = running & torch.isin(token, stops)
        lengths[rows] = torch.where(stopped, step + 1, lengths[rows])
        running &= ~stopped
        if step + 1 == limit or ((step + 1) % steps.check_every == 0 and not running.any()):
            break
        keep = steps.compact(running)
        if keep is not None:
            rows, running, token = rows[keep], running[keep], token[keep]
        logits = steps.step(token, width + step)
    return decoded_rows(tokens, logprobs, lengths, ends, versions)


class TransformersGenerator:
    """Samples with :func:`decode` and returns each sampled token's log-prob. Where CUDA is
    available, a model still on the CPU (as the catalog loads it) is moved to the GPU, and
    decoded at fixed shapes from CUDA graphs (``cuda_graphs``) where
    :func:`~magistral_kedro.generation.graphs.graphable` allows and without ``between_steps``
    (new weights that came as new tensors would not be seen).

    ``between_steps``, if given, runs after every decoding step's forward pass, before the next:
    it may load new weights into ``model`` in place (the KV cache of the sequences in flight is
    kept) and returns the policy version that computed the step just taken. Samples then carry
    ``policy_versions``.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        between_steps: Callable[[], int] | None = None,
        cuda_graphs: bool = True,
    ) -> None:
        if torch.cuda.is_available() and model.device.type == "cpu":
            model.to(torch.device("cuda", torch.cuda.current_device()))  # type: ignore[arg-type]
        self.model = model
        self.tokenizer = tokenizer
        self.between_steps = between_steps
        self.graphs = (
            cuda_graphs
            and model.device.type == "cuda"
            and between_steps is None
            and graphable(model)
        )

    def generate(
        self, prompts: Sequence[list[int]], n: int, sampling: SamplingConfig, seed: int
    ) -> list[list[Sample]]:
        """``n`` completions per prompt (token ids); reproducible from ``seed`` alone (and, with
        ``between_steps``, the weight version at each step). Sampling draws from a generator
        that ``seed`` starts, never from torch's global one, which the trainer owns."""
        pad_id, ends = self.tokenizer.pad_token_id, stop_ids(self.model, self.tokenizer)
        assert pad_id is not None, "the tokenizer needs a pad token"
        was_training = self.model.training
        self.model.eval()
        flat = [(i, p) for i, p in enumerate(prompts) for _ in range(n)]
        samples: list[list[Sample]] = [[] for _ in prompts]
        generator = torch.Generator(self.model.device).manual_seed(seed)
        for start in range(0, len(flat), sampling.batch_size):
            chunk = flat[start : start + sampling.batch_size]
            batch = [p for _, p in chunk]
            decoded = decode(
                self.model, batch, sampling, pad_id, ends, generator, self.between_steps,
                fixed_shapes=self.graphs, graphs=self.graphs,
            )  # fmt: skip
            for (index, _), row in zip(chunk, decoded, strict=True):
                samples[index].append(
                    Sample(
                        prompt_index=index,
                        token_ids=row.tokens,
                        logprobs=row.logprobs,
                        text=str(self.tokenizer.decode(row.tokens, skip_special_tokens=True)),
                        finish_reason="stop" if row.stopped else "length",
                        policy_versions=row.versions,
                    )
                )
        self.model.train(was_training)
        return samples
