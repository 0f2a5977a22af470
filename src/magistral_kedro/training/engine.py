"""One small training engine with two backends: DeepSpeed (ZeRO 0-3) and plain torch.

The caller owns gradient accumulation: it calls :meth:`TrainEngine.backward` once per microbatch
with a loss already divided by the step's global token count, then :meth:`TrainEngine.step` once.
That keeps the loss denominator exact however the batch is cut (docs/recipe.md, section 1, item 5).

DeepSpeed on CPU (what CI and laptops have) runs single-process over gloo; with several ranks
the first start JIT-compiles a shared-memory communication op (~70 s, cached in
``$TORCH_EXTENSIONS_DIR``), which one process does without.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from magistral_kedro.config import config
from magistral_kedro.training import distributed
from magistral_kedro.training.buckets import weight_buckets

STATE_FILE = "engine.pt"
DEEPSPEED_TAG = "deepspeed"


@config
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr``."""

    lr: Annotated[float, Field(gt=0)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (
        0.9,
        0.95,
    )
    eps: Annotated[float, Field(gt=0)] = 1e-8
    warmup_steps: Annotated[int, Field(ge=0)] = 100
    max_steps: Annotated[int, Field(gt=0)] = 1000
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    grad_clip: Annotated[float, Field(ge=0, description="0 disables clipping")] = 1.0


@config
class EngineConfig:
    """Which backend trains, and how."""

    backend: Literal["torch", "deepspeed"] = "deepspeed"
    zero_stage: Literal[0, 1, 2, 3] = 2
    precision: Literal["fp32", "bf16"] = "fp32"
    optim: OptimConfig = field(default_factory=OptimConfig)
    #: Recompute activations in backward: less memory for long sequences, ~30% more compute.
    gradient_checkpointing: bool = False
    #: Extra DeepSpeed config keys merged over the generated ones (e.g. ZeRO offload settings).
    deepspeed_overrides: dict[str, Any] = field(default_factory=dict)
    #: Weights pushed to an inference engine per bucket (ZeRO-3 gathers one bucket at a time:
    #: the extra memory of a push). A tensor larger than this is a bucket of its own.
    weight_bucket_mb: Annotated[float, Field(gt=0)] = 512.0


def lr_lambda(step: int, optim: OptimConfig) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    if step < optim.warmup_steps:  # warmup_steps > 0 here
        return (step + 1) / optim.warmup_steps
    span = max(1, optim.max_steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * cosine


def _optimizer_and_scheduler(
    model: torch.nn.Module, optim: OptimConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    # Norms and biases are not decayed (standard for transformers).
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": optim.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=optim.lr,
        betas=optim.betas,
        eps=optim.eps,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_lambda(s, optim))
    return optimizer, scheduler


class TrainEngine:
    """Plain torch backend; :class:`DeepSpeedEngine` overrides the parts DeepSpeed owns."""

    def __init__(self, model: torch.nn.Module, config: EngineConfig) -> None:
        if distributed.world_size() > 1:
            raise ValueError(
                "the torch backend trains one process; with several ranks use "
                "engine.backend: deepspeed (it averages the ranks' gradients)"
            )
        _prepare(model, config)
        self.config = config
        if torch.cuda.is_available():
            model.to("cuda")
        self.optimizer, self.scheduler = _optimizer_and_scheduler(model, config.optim)
        self.module = model

    def __enter__(self) -> TrainEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # on errors too: DeepSpeed's partitions and hooks, accelerator memory

    @property
    def device(self) -> torch.device:
        """Where the model's parameters (and so every batch) live."""
        return next(self.model.parameters()).device

    def forward(self, **batch: torch.Tensor | int) -> Any:
        """Run the (possibly wrapped) model on ``batch`` (its tensors moved to the model's
        device; other arguments, such as ``logits_to_keep``, passed as they are)."""
        device = self.device
        on_device = {
            key: value.to(device) if isinstance(value, torch.Tensor) else value
            for key, value in batch.items()
        }
        # DeepSpeed casts the weights itself; the torch backend mixes precision by autocast.
        autocast = self.config.precision == "bf16" and self.config.backend == "torch"
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            return self.module(**on_device)

    @contextlib.contextmanager
    def full_weights(self) -> Iterator[torch.nn.Module]:
        """The bare model with every parameter whole on this rank (ZeRO-3 gathers its shards):
        for generation, exporting, and pushing weights to an inference engine."""
        with self._gathered(list(self.model.parameters())):
            yield self.model

    def weight_buckets(self) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """The model's state dict, whole, in buckets of about ``config.weight_bucket_mb`` (whole
        decoder layers): lists of (name, tensor), tied weights under each of their names.
        Under ZeRO-3 only the bucket being read is gathered, and it is released when the next
        one is asked for: copy what you keep. Every rank must read every bucket, in order (a
        gather is a collective)."""
        limit = self.config.weight_bucket_mb * 2**20
        for bucket in weight_buckets(self.model, limit):
            with self._gathered([tensor for tensor, _ in bucket]):
                yield [(name, tensor.detach()) for tensor, names in bucket for name in names]

    def _gathered(self, tensors: list[torch.Tensor]) -> contextlib.AbstractContextManager[None]:
        """A block in which ``tensors`` (the model's) are whole on this rank."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate gradients of ``loss`` (already divided by the step's token count)."""
        loss.backward()

    def idle_pass(self, pad_id: int, backward: bool) -> None:
        """A forward (and, if ``backward``, a zero-gradient backward) on one pad token: a rank
        with fewer microbatches than another still takes part in every collective (ZeRO-3
        gathers parameters in each forward, DeepSpeed reduces gradients in each backward)."""
        token = torch.tensor([[pad_id]])
        output = self.forward(input_ids=token, attention_mask=torch.ones_like(token))
        if backward:
            self.backward(output.logits.sum() * 0.0)

    def step(self) -> dict[str, float]:
        """Clip, apply one optimiser step and advance the schedule; returns grad norm and lr."""
        lr = float(self.scheduler.get_last_lr()[0])
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.module.parameters(),
            self.config.optim.grad_clip if self.config.optim.grad_clip > 0 else float("inf"),
        )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"grad_norm": float(grad_norm), "lr": lr}

    @property
    def model(self) -> torch.nn.Module:
        """The bare model (for saving weights and for generation)."""
        return self.module

    def save_state(self, directory: Path) -> None:
        """Write model, optimiser and scheduler state into ``directory``."""
        torch.save(
            {
                "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
            },
            directory / STATE_FILE,
        )

    def load_state(self, directory: Path) -> None:
        """Restore what :meth:`save_state` wrote."""
        state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=False)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def close(self) -> None:
        """Release the optimiser state and accelerator memory once training is over (the model
        leaves as its exported checkpoint, not as this engine's module)."""
        self.optimizer.state.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_distributed_env() -> None:
    """Single-process runs need the variables a launcher would set (else DeepSpeed wants MPI)."""
    defaults = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def deepspeed_config(config: EngineConfig) -> dict[str, Any]:
    """The DeepSpeed config dict this engine runs with (batching is ours, hence 1 / unmanaged)."""
    base: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": config.optim.grad_clip,
        "zero_optimization": {"stage": config.zero_stage},
        "bf16": {"enabled": config.precision == "bf16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    return _merge(base, config.deepspeed_overrides)


def _skip_shared_memory_op_when_alone(deepspeed: Any) -> None:
    """A single CPU process has no peer to share memory with, yet DeepSpeed JIT-compiles its
    shared-memory all-reduce op at every start whose extension cache is cold (40-70 s of a
    fresh machine's first run). Marking the op unavailable in DeepSpeed's op table (kept for
    edits like this one) leaves gloo's own collectives, which a single rank hardly uses."""
    if torch.cuda.is_available() or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is not None:
        deepspeed.ops.__compatible_ops__[builder.NAME] = False


class DeepSpeedEngine(TrainEngine):
    """DeepSpeed backend: ZeRO partitioning, its own checkpoint format, gloo on CPU."""

    def __init__(self, model: torch.nn.Module, config: EngineConfig) -> None:
        import deepspeed  # ~10 s to import: only when DeepSpeed actually trains

        # DeepSpeed calls collectives torch has renamed: one deprecation warning per call, every
        # step under ZeRO-3. Said once here instead of hundreds of times in the run's log.
        for old in ("all_gather_into_tensor", "reduce_scatter_tensor"):
            warnings.filterwarnings("ignore", message=f"`torch.distributed.{old}` is deprecated")
        _ensure_distributed_env()
        _skip_shared_memory_op_when_alone(deepspeed)
        if not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            deepspeed.init_distributed(dist_backend=backend)
        _prepare(model, config)
        self.config = config
        optimizer, scheduler = _optimizer_and_scheduler(model, config.optim)
        self.ds, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=scheduler,
            config=deepspeed_config(config),
        )
        self.module = self.ds

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate gradients; no rescaling by DeepSpeed (the loss is already normalised)."""
        self.ds.backward(loss, scale_wrt_gas=False)

    def step(self) -> dict[str, float]:
        """One optimiser step (DeepSpeed clips, steps and advances the scheduler)."""
        lr = float(self.scheduler.get_last_lr()[0])
        self.ds.step()
        grad_norm = self.ds.get_global_grad_norm()
        return {"grad_norm": float(grad_norm) if grad_norm is not None else float("nan"), "lr": lr}

    @property
    def model(self) -> torch.nn.Module:
        """The bare model inside the DeepSpeed wrapper."""
        return self.ds.module

    def _gathered(self, tensors: list[torch.Tensor]) -> contextlib.AbstractContextManager[None]:
        """ZeRO-3: the partitioned parameters among ``tensors`` gathered for the block."""
        params = [t for t in tensors if hasattr(t, "ds_id")]
        if self.config.zero_stage != 3 or not params:
            return contextlib.nullcontext()
        import deepspeed

        gathered: contextlib.AbstractContextManager[None] = deepspeed.zero.GatheredParameters(
            params, modifier_rank=None
        )
        return gathered

    def save_state(self, directory: Path) -> None:
        """DeepSpeed's own checkpoint (model, optimiser partitions, scheduler)."""
        self.ds.save_checkpoint(str(directory), tag=DEEPSPEED_TAG, save_latest=False)

    def load_state(self, directory: Path) -> None:
        """Restore what :meth:`save_state` wrote."""
        path, _ = self.ds.load_checkpoint(str(directory), tag=DEEPSPEED_TAG)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint under {directory}")

    def close(self) -> None:
        """Release DeepSpeed's partitions, hooks and accelerator memory."""
        self.ds.destroy()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _prepare(model: torch.nn.Module, config: EngineConfig) -> None:
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()  # type: ignore[operator]
        model.config.use_cache = False  # type: ignore[union-attr]  # generation passes its own


def create_engine(model: torch.nn.Module, config: EngineConfig) -> TrainEngine:
    """The engine for ``config.backend``: ``"deepspeed"`` or ``"torch"``."""
    if config.backend == "deepspeed":
        return DeepSpeedEngine(model, config)
    if config.backend == "torch":
        return TrainEngine(model, config)
    raise ValueError(f"backend must be 'deepspeed' or 'torch', got {config.backend!r}")
