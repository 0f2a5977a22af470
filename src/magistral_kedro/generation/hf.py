"""The transformers backend: batched ``generate`` with a KV cache, on CPU or GPU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from magistral_kedro.generation.base import Sample, SamplingConfig


class TransformersGenerator:
    """Samples with ``model.generate`` and returns each sampled token's log-prob."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @torch.no_grad()
    def _generate_batch(
        self, prompts: Sequence[str], sampling: SamplingConfig
    ) -> list[tuple[list[int], list[float], bool]]:
        tokenizer = self.tokenizer
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
        )
        new_tokens = output.sequences[:, encoded["input_ids"].shape[1] :]  # [B, T]
        logits = torch.stack(output.logits, dim=1).float()  # [B, T, V], raw
        if not greedy:
            logits = logits / sampling.temperature
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens.unsqueeze(-1))[..., 0]
        results = []
        for tokens, lps in zip(new_tokens.tolist(), logprobs.tolist(), strict=True):
            if tokenizer.eos_token_id in tokens:
                end = tokens.index(tokenizer.eos_token_id) + 1
                results.append((tokens[:end], lps[:end], True))
            else:
                results.append((tokens, lps, False))
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
                for (index, _), (tokens, lps, stopped) in zip(chunk, outputs, strict=True):
                    samples[index].append(
                        Sample(
                            prompt_index=index,
                            token_ids=tokens,
                            logprobs=lps,
                            text=str(self.tokenizer.decode(tokens, skip_special_tokens=True)),
                            finish_reason="stop" if stopped else "length",
                        )
                    )
        self.model.train(was_training)
        return samples
