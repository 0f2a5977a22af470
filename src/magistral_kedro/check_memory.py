"""Memory per GPU of a configuration, from the checkpoint's ``config.json`` alone (no weights).

Estimates, per GPU, of what a run holds at its peak, each named so that what will not fit is:

- **training state** under the ZeRO stage: 16 bytes a parameter with mixed-precision Adam (bf16
  weights 2 + gradients 2 + fp32 master weights and two moments 12; fp32 training has the same
  16 without a master copy), the stage's share of it split over the GPUs;
- **logits**: for the model types the chunked head serves
  (:mod:`magistral_kedro.training.chunked_head`), three float32 temporaries of one chunk of
  positions and the float32 gradient of the head's weight, whatever the tokens; for others, one
  microbatch's whole ``[tokens, vocab]`` logits in float32 and their gradient;
- **activations**: with gradient checkpointing, each layer's input hidden state
  ``[tokens, hidden]`` plus one layer recomputed at a time; without, every layer's saved tensors.
  A layer saves, per token, its input, the attention's q, k, v and output, and the MLP's input,
  gate, up, activation and product: ``4 hidden + 2 kv_dim + 4 intermediate`` elements;
- **vLLM's engine**: its share of the GPU (``gpu_memory_utilization``) less its weights is its
  KV cache; a sequence of a curriculum stage's ``l_max`` tokens holds
  ``2 (k and v) x layers x kv_heads x head_dim`` elements a token, so the cache holds that many
  sequences at once. While GRPO trains, a sleeping engine (``sleep_level`` > 0) has given its
  memory back; awake at level 0, it keeps its share and training has the rest.

Approximations (biases, norms, the framework's own buffers and fragmentation are left out):
a margin is the user's to keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from magistral_kedro.training.chunked_head import HEAD_CHUNK_ELEMENTS, PLAIN_HEAD_MODELS

GIB = 2**30
#: Bytes per parameter while training with mixed-precision Adam (ZeRO paper's accounting).
TRAIN_BYTES_PER_PARAM = 16
#: Of those, the bytes each ZeRO stage splits across the GPUs: none, optimiser, + gradients, all.
SHARDED_BYTES_PER_PARAM = {0: 0, 1: 12, 2: 14, 3: 16}
DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}
_REQUIRED = (
    "hidden_size",
    "num_hidden_layers",
    "intermediate_size",
    "vocab_size",
    "num_attention_heads",
)


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer that memory depends on."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    #: config.json's ``model_type`` ("" where it has none)
    model_type: str = ""

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> ModelShape:
        """The shape a Hugging Face ``config.json`` describes; ValueError naming ``where`` and
        the keys it lacks."""
        missing = [key for key in _REQUIRED if not isinstance(config.get(key), int)]
        if missing:
            raise ValueError(f"{where}: no integer {', '.join(missing)} (cannot size the model)")
        heads = config["num_attention_heads"]
        return cls(
            layers=config["num_hidden_layers"],
            hidden=config["hidden_size"],
            intermediate=config["intermediate_size"],
            vocab=config["vocab_size"],
            heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            tied=bool(config.get("tie_word_embeddings", False)),
            model_type=str(config.get("model_type") or ""),
        )

    @property
    def kv_dim(self) -> int:
        """Width of the keys (and of the values) of one token in one layer."""
        return self.kv_heads * self.head_dim

    def parameters(self) -> int:
        """Weights of the embedding, the layers' attention and MLP, and the output layer."""
        attention = 2 * self.hidden * self.heads * self.head_dim + 2 * self.hidden * self.kv_dim
        mlp = 3 * self.hidden * self.intermediate
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return embeddings + self.layers * (attention + mlp)

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """vLLM's KV cache for one token: keys and values of every layer."""
        return 2 * self.layers * self.kv_dim * dtype_bytes

    def layer_activation_elements(self) -> int:
        """Elements one layer saves for its backward, per token (module docstring)."""
        return 4 * self.hidden + 2 * self.kv_dim + 4 * self.intermediate


@dataclass(frozen=True)
class Training:
    """One training phase's peak per GPU, in bytes, part by part."""

    name: str
    state: float
    logits: float
    activations: float
    #: what the logits' bytes are, for the table
    logits_kind: str = "logits"

    @property
    def total(self) -> float:
        return self.state + self.logits + self.activations


def training_memory(shape: ModelShape, engine: Any, tokens: int, gpus: int, name: str) -> Training:
    """Peak per GPU of a microbatch of ``tokens`` tokens trained under ``engine``
    (:class:`~magistral_kedro.training.engine.EngineConfig`) on ``gpus`` GPUs."""
    n = shape.parameters()
    sharded = SHARDED_BYTES_PER_PARAM[engine.zero_stage]
    state = n * (TRAIN_BYTES_PER_PARAM - sharded + sharded / gpus)
    logits, kind = logits_memory(shape, tokens)
    element = 2 if engine.precision == "bf16" else 4
    layer = tokens * shape.layer_activation_elements() * element
    if engine.gradient_checkpointing:
        activations = shape.layers * tokens * shape.hidden * element + layer
    else:
        activations = shape.layers * layer
    return Training(name, state, logits, activations, kind)


def logits_memory(shape: ModelShape, tokens: int) -> tuple[float, str]:
    """Bytes training holds for the logits of a microbatch of ``tokens`` tokens, and what they
    are (see the module docstring)."""
    if shape.model_type in PLAIN_HEAD_MODELS:
        rows = min(tokens, max(1, HEAD_CHUNK_ELEMENTS // shape.vocab))
        head_grad = shape.vocab * shape.hidden * 4
        kind = f"logits chunk [{rows} x {shape.vocab}] float32 x 3 and head gradient"
        return 3 * rows * shape.vocab * 4 + head_grad, kind
    return 2 * tokens * shape.vocab * 4, f"logits [{tokens} x {shape.vocab}] float32 and gradient"


def describe_training(training: Training, engine: Any, tokens: int) -> str:
    """One line of the memory table for a training phase."""
    kind = "checkpointed" if engine.gradient_checkpointing else "every layer"
    return (
        f"  {training.name} per GPU ({tokens} tokens a microbatch): state "
        f"{training.state / GIB:.1f} GiB + {training.logits_kind} "
        f"{training.logits / GIB:.1f} GiB + activations ({kind}) "
        f"{training.activations / GIB:.1f} GiB = {training.total / GIB:.1f} GiB"
    )


def training_problem(training: Training, room: float, hint: str) -> list[str]:
    """A problem naming the largest parts when ``training`` exceeds ``room`` bytes."""
    if training.total <= room:
        return []
    parts = sorted(
        [("logits", training.logits), ("state", training.state), ("act.", training.activations)],
        key=lambda part: -part[1],
    )
    named = ", ".join(f"{name} {size / GIB:.1f} GiB" for name, size in parts)
    return [
        f"{training.name} will not fit: {training.total / GIB:.1f} GiB per GPU > "
        f"{room / GIB:.1f} GiB available ({named}): {hint}"
    ]


def engine_memory(
    shape: ModelShape, vllm: Any, gpu_bytes: float, stages: list[tuple[int, int]]
) -> tuple[list[str], list[str]]:
    """vLLM's share, weights, KV cache and sequences at once for each (stage, l_max); the
    facts and the problems."""
    dtype = DTYPE_BYTES[vllm.dtype]
    share = vllm.gpu_memory_utilization * gpu_bytes
    weights = shape.parameters() * dtype / vllm.tensor_parallel_size
    per_token = shape.kv_bytes_per_token(dtype) / vllm.tensor_parallel_size
    cache = share - weights
    facts = [
        f"  vllm engine per GPU ({vllm.gpu_memory_utilization} of the GPU = {share / GIB:.1f} "
        f"GiB): weights {weights / GIB:.1f} GiB, KV cache {max(cache, 0) / GIB:.1f} GiB, "
        f"{per_token / 2**10:.1f} KiB a token"
    ]
    if cache <= 0:
        return facts, [
            f"generation.vllm will not fit: its weights ({weights / GIB:.1f} GiB) fill its "
            f"share ({share / GIB:.1f} GiB): raise gpu_memory_utilization or "
            "tensor_parallel_size"
        ]
    problems = []
    for stage, l_max in stages:
        sequence = per_token * l_max
        at_once = int(cache // sequence)
        facts.append(
            f"  rl.curriculum[{stage}] l_max {l_max}: KV cache {sequence / GIB:.2f} GiB a "
            f"sequence, {at_once} sequences at once"
        )
        if at_once == 0:
            problems.append(
                f"generation.vllm: the KV cache ({cache / GIB:.1f} GiB) holds no sequence of "
                f"rl.curriculum[{stage}].l_max {l_max} ({sequence / GIB:.2f} GiB)"
            )
    return facts, problems


def memory_report(
    config: dict[str, Any], where: str, validated: dict[str, Any], gpus: int, gpu_gib: float
) -> tuple[list[str], list[str]]:
    """The memory table (facts) and what will not fit (problems) of the validated parameters
    for the model of ``config`` (its config.json, read from ``where``)."""
    try:
        shape = ModelShape.from_config(config, where)
    except ValueError as error:
        return [], [str(error)]
    gpu_bytes = gpu_gib * GIB
    rl, sft, generation = validated["rl"], validated["sft"], validated["generation"]
    facts = [
        f"memory per GPU ({gpu_gib:g} GiB GPUs, {gpus} GPUs; from config.json: "
        f"{shape.parameters() / 1e9:.2f}B parameters):"
    ]
    problems: list[str] = []
    colocated = generation.backend == "vllm" and generation.vllm.sleep_level == 0
    room = gpu_bytes * (1 - generation.vllm.gpu_memory_utilization) if colocated else gpu_bytes
    phases = (
        ("rl", rl.engine, rl.grpo.max_tokens_per_microbatch, room),
        ("sft", sft.engine, sft.loop.max_tokens_per_microbatch, gpu_bytes),
    )
    for name, engine, tokens, available in phases:
        training = training_memory(shape, engine, tokens, gpus, f"{name} training")
        facts.append(f"  {name} training state (ZeRO-{engine.zero_stage}, {gpus} GPUs, "
                     f"{engine.precision}): {training.state / GIB:.1f} GiB")  # fmt: skip
        facts.append(describe_training(training, engine, tokens))
        hint = f"lower {name}.{'grpo' if name == 'rl' else 'loop'}.max_tokens_per_microbatch"
        if not engine.gradient_checkpointing:
            hint += f" or set {name}.engine.gradient_checkpointing"
        problems += training_problem(training, available, hint)
    if generation.backend == "vllm":
        stages = [(i, stage.l_max) for i, stage in enumerate(rl.curriculum)]
        more, trouble = engine_memory(shape, generation.vllm, gpu_bytes, stages)
        facts += more
        problems += trouble
    return facts, problems
