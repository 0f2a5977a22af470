"""The transformers backend: batched ``generate`` with a KV cache, on CPU or GPU."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from magistral_kedro.generation.base import Sample, SamplingConfig


class _BetweenSteps(LogitsProcessor):
    """Calls ``hook`` after each decoding step's forward pass and records what it returns."""

    def __init__(self, hook: Callable[[], int]) -> None:
        self.hook = hook
        self.versions: list[int] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.versions.append(self.hook())
        return scores


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
        self, prompts: Sequence[str], sampling: SamplingConfig
    ) -> list[tuple[list[int], list[float], bool, tuple[int, int] | None]]:
        tokenizer = self.tokenizer
        hook = None if self.between_steps is None else _BetweenSteps(self.between_steps)
        encoded = tokenizer(
            list(prompts), return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.model.device)
        greedy = sampling.temperature == 0
        output = self.model.generate(  # type: ignore[operator]
            **encoded,
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None if greedy else 0,  # generate() defaults to top_k=50: a biased sampler
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            return_dict_in_generate=True,
            output_logits=True,
            logits_processor=LogitsProcessorList([hook] if hook is not None else []),
        )
        new_tokens = output.sequences[:, encoded["input_ids"].shape[1] :]  # [B, T]
        scale = 1.0 if greedy else sampling.temperature
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
            stopped = tokenizer.eos_token_id in tokens
            end = tokens.index(tokenizer.eos_token_id) + 1 if stopped else len(tokens)
            versions = None if hook is None else (hook.versions[0], hook.versions[end - 1])
            results.append((tokens[:end], lps[:end], stopped, versions))
        return results

    def generate(
        self, prompts: Sequence[str], n: int, sampling: SamplingConfig, seed: int
    ) -> list[list[Sample]]:
        """``n`` completions per prompt; sampling is reproducible from ``seed`` alone."""
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
