"""The transformers backend: batched ``generate`` with a KV cache, on CPU or GPU.

Every sampling setting is explicit: ``generate()`` would otherwise fill each setting left unset
with the checkpoint's own ``generation_config`` (a repetition penalty, banned n-grams, top-k
50...), and the samples would come from another distribution than the one whose log-probs the
trainer compares against. The checkpoint's generation config is set aside for the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from transformers import (
    DynamicCache,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.cache_utils import DynamicLayer
from transformers.generation import utils as generation_utils

from magistral_kedro.generation.base import Sample, SamplingConfig


class _BetweenSteps(LogitsProcessor):
    """Calls ``hook`` after each decoding step's forward pass and records what it returns."""

    def __init__(self, hook: Callable[[], int]) -> None:
        self.hook = hook
        self.versions: list[int] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.versions.append(self.hook())
        return scores


#: generate()'s keyword for a cache object: ``cache`` since transformers 5.21, before that
#: ``past_key_values`` (the vLLM extra pins 5.20).
_CACHE_KEYWORD = "cache" if "cache" in generation_utils.ALL_CACHE_NAMES else "past_key_values"


class _PreallocatedLayer(DynamicLayer):
    """A full-attention KV-cache layer written in place into storage sized for the whole call:
    the default layer concatenates its whole cache at every decoding step, a third of the tiny
    model's sampling time on CPU. Keys and values are views of the filled part. Sampling and
    greedy decoding use nothing else of a cache layer; what would (beam search, cropping for
    assisted decoding) is refused rather than done wrong."""

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

    def get_seq_length(self) -> int:
        return self.length


def _cache_argument(model: PreTrainedModel, capacity: int) -> dict[str, DynamicCache]:
    """generate()'s cache argument: the model's default cache, its full-attention layers
    preallocated for ``capacity`` positions (sliding-window layers stay as they are); none for
    a model whose default cache is not a DynamicCache (state-space and hybrid models)."""
    supports = getattr(model, "_supports_default_dynamic_cache", None)
    if supports is None or not supports():
        return {}
    cache = DynamicCache(config=model.config)
    cache.layers = [
        _PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer
        for layer in cache.layers
    ]
    return {_CACHE_KEYWORD: cache}


def stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Where a completion ends: the tokenizer's EOS and every end token the checkpoint's
    generation config names (an instruct model's end of turn and end of text, say), as vLLM
    stops. Stopping shapes no probability, so the checkpoint's word counts here."""
    shipped = model.generation_config.eos_token_id
    extra = [shipped] if isinstance(shipped, int) else list(shipped or [])
    eos = tokenizer.eos_token_id
    assert isinstance(eos, int), "the tokenizer needs an EOS token"
    return list(dict.fromkeys([eos, *extra]))


def sampler_config(sampling: SamplingConfig, pad_id: int, eos_id: list[int]) -> GenerationConfig:
    """The whole sampler: temperature sampling (top-p if asked, never top-k) or greedy
    decoding, and no logits processor besides (no penalty, no banned tokens)."""
    greedy = sampling.temperature == 0
    return GenerationConfig(
        max_new_tokens=sampling.max_new_tokens,
        do_sample=not greedy,
        temperature=1.0 if greedy else sampling.temperature,
        top_p=1.0 if greedy else sampling.top_p,
        top_k=None if greedy else 0,  # generate() samples top_k=50 unless told: biased
        min_p=None,
        typical_p=1.0,
        epsilon_cutoff=0.0,
        eta_cutoff=0.0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        num_beams=1,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        return_dict_in_generate=True,
        output_logits=True,
    )


@contextlib.contextmanager
def _checkpoint_config_set_aside(model: PreTrainedModel) -> Iterator[None]:
    """``generate()`` fills unset settings from ``model.generation_config``: a blank one for
    the call, so that nothing the checkpoint ships applies."""
    shipped = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = shipped


def left_padded(
    prompts: Sequence[list[int]], pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """``input_ids`` [B, T] and ``attention_mask`` [B, T] of prompts padded on the left."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, tokens in enumerate(prompts):
        input_ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
        attention_mask[row, width - len(tokens) :] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


class TransformersGenerator:
    """Samples with ``model.generate`` and returns each sampled token's log-prob. Where CUDA is
    available, a model still on the CPU (as the catalog loads it) is moved to the GPU.

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
    ) -> None:
        if torch.cuda.is_available() and model.device.type == "cpu":
            model.to(torch.device("cuda", torch.cuda.current_device()))  # type: ignore[arg-type]
        self.model = model
        self.tokenizer = tokenizer
        self.between_steps = between_steps

    @torch.no_grad()
    def _generate_batch(
        self, prompts: Sequence[list[int]], sampling: SamplingConfig
    ) -> list[tuple[list[int], list[float], bool, tuple[int, int] | None]]:
        pad_id, ends = self.tokenizer.pad_token_id, stop_ids(self.model, self.tokenizer)
        assert pad_id is not None, "the tokenizer needs a pad token"
        hook = None if self.between_steps is None else _BetweenSteps(self.between_steps)
        encoded = left_padded(prompts, pad_id, self.model.device)
        capacity = encoded["input_ids"].shape[1] + sampling.max_new_tokens
        with _checkpoint_config_set_aside(self.model):
            output = self.model.generate(  # type: ignore[operator]
                **encoded,
                generation_config=sampler_config(sampling, pad_id, ends),
                logits_processor=LogitsProcessorList([hook] if hook is not None else []),
                **_cache_argument(self.model, capacity),
            )
        new_tokens = output.sequences[:, encoded["input_ids"].shape[1] :]  # [B, T]
        scale = 1.0 if sampling.temperature == 0 else sampling.temperature
        # One step at a time: a [B, T, V] float copy would not fit at real vocabularies.
        logprobs = torch.stack(
            [
                torch.log_softmax(step.float() / scale, dim=-1).gather(-1, new_tokens[:, t, None])[
                    :, 0
                ]
                for t, step in enumerate(output.logits)  # step: [B, V], raw logits
            ],
            dim=1,
        )  # [B, T]
        results = []
        for tokens, lps in zip(new_tokens.tolist(), logprobs.tolist(), strict=True):
            end = next((t + 1 for t, token in enumerate(tokens) if token in ends), len(tokens))
            stopped = tokens[end - 1] in ends
            versions = None if hook is None else (hook.versions[0], hook.versions[end - 1])
            results.append((tokens[:end], lps[:end], stopped, versions))
        return results

    def generate(
        self, prompts: Sequence[list[int]], n: int, sampling: SamplingConfig, seed: int
    ) -> list[list[Sample]]:
        """``n`` completions per prompt (token ids); reproducible from ``seed`` alone."""
        was_training = self.model.training
        self.model.eval()
        flat = [(i, p) for i, p in enumerate(prompts) for _ in range(n)]
        samples: list[list[Sample]] = [[] for _ in prompts]
        # fork_rng: sampling must not move the training RNG (resume depends on it).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for start in range(0, len(flat), sampling.batch_size):
                chunk = flat[start : start + sampling.batch_size]
                outputs = self._generate_batch([p for _, p in chunk], sampling)
                for (index, _), (tokens, lps, stopped, versions) in zip(
                    chunk, outputs, strict=True
                ):
                    samples[index].append(
                        Sample(
                            prompt_index=index,
                            token_ids=tokens,
                            logprobs=lps,
                            text=str(self.tokenizer.decode(tokens, skip_special_tokens=True)),
                            finish_reason="stop" if stopped else "length",
                            policy_versions=versions,
                        )
                    )
        self.model.train(was_training)
        return samples
