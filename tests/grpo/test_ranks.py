"""Two gloo ranks averaging gradients give the gradient of the global token-normalised loss."""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from magistral_kedro.grpo import magistral_loss
from magistral_kedro.models import build_tiny_model
from magistral_kedro.training.distributed import loss_denominator
from tests.support.models import MICRO_MODEL
from tests.support.ranks import free_port, join_as_launched
from tests.support.tracking import ListTracker

TOKENS = torch.tensor(
    [[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]]
)


def _data():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, generator=generator)
    old = torch.randn(4, 6, generator=generator)
    advantages = torch.tensor([1.0, -0.5, 2.0, -1.0])
    return logits, old, advantages, TOKENS.float()


def _rank(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    logits, old, advantages, mask = _data()
    rows = [0, 2] if rank == 0 else [1, 3]  # 7 tokens on rank 0, 5 on rank 1
    local = logits[rows].clone().requires_grad_(True)
    denominator = loss_denominator(int(mask[rows].sum()))
    loss, _ = magistral_loss(
        local, old[rows], advantages[rows], mask[rows], 0.2, 0.28, total_tokens=denominator
    )
    loss.backward()
    full = torch.zeros(4, 6)
    full[rows] = local.grad
    dist.all_reduce(full)  # what DDP / DeepSpeed do: sum, then divide by the world size
    full /= dist.get_world_size()
    if rank == 0:
        torch.save({"grad": full, "denominator": denominator}, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_averaged_rank_gradients_equal_the_single_process_gradient(tmp_path):
    port = free_port()
    out = str(tmp_path / "rank0.pt")
    mp.spawn(_rank, args=(port, out), nprocs=2, join=True)
    result = torch.load(out)
    assert result["denominator"] == pytest.approx(12 / 2)  # global tokens / world size
    logits, old, advantages, mask = _data()
    logits.requires_grad_(True)
    loss, _ = magistral_loss(logits, old, advantages, mask, 0.2, 0.28)
    loss.backward()
    torch.testing.assert_close(result["grad"], logits.grad)


def _grpo_rank(rank: int, port: int, out: str, tokenizer, problems, run_args) -> None:
    """One of two ranks of a DeepSpeed ZeRO-2 GRPO run, as a launcher would start it; saves
    its weights, metrics, samples and the (step, stage) of every batch it trained on."""
    from magistral_kedro.grpo import loop, rollouts
    from tests.support.grpo import parity_reward, run_grpo

    join_as_launched(rank, port)
    rollouts.score_batch = parity_reward
    trained_on, make = [], loop.make_batch

    def recording(rollout, *args):
        trained_on.append((rollout.plan.step, rollout.plan.stage))
        return make(rollout, *args)

    loop.make_batch = recording
    tracker = ListTracker()
    model, samples = run_grpo(
        tokenizer, problems, Path(out) / "state", tracker, backend="deepspeed", **run_args
    )
    assert (tracker.metrics != []) == (rank == 0), "only rank 0 logs"
    torch.save(
        {
            "weights": model.state_dict(),
            "metrics": tracker.metrics,
            "samples": len(samples),
            "trained_on": trained_on,
        },
        Path(out) / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_deepspeed_ranks_train_one_model(tokenizer, math_problems, tmp_path):
    """Two gloo ranks (ZeRO-2 on CPU) share each step's prompts and end with identical weights,
    which moved from the initial ones; rank 0 alone logs metrics and samples."""
    port = free_port()
    mp.spawn(_grpo_rank, args=(port, str(tmp_path), tokenizer, math_problems[:20], {}), nprocs=2)
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    initial = build_tiny_model(tokenizer, MICRO_MODEL, seed=0).state_dict()
    moved = False
    for key, value in first["weights"].items():
        torch.testing.assert_close(second["weights"][key], value, rtol=0, atol=0, msg=key)
        moved |= not torch.equal(value, initial[key])
    assert moved, "no optimiser step changed the weights"
    steps = [step for step, _ in first["metrics"]]
    assert steps == [1, 2, 3, 4] and second["metrics"] == []
    assert first["samples"] > 0 and second["samples"] == 0
    assert any("train/grad_norm" in m for _, m in first["metrics"])


def _minibatch(tokenizer, rows):
    """A fixed minibatch of four sequences of different lengths; ``rows`` of it."""
    from magistral_kedro.grpo.update import Minibatch

    generator = torch.Generator().manual_seed(1)
    sequences = [torch.randint(5, 300, (n,), generator=generator).tolist() for n in (9, 14, 6, 11)]
    prompt_lengths = [4, 5, 3, 6]
    logprobs = [
        (-torch.rand(len(s) - p, generator=generator)).tolist()
        for s, p in zip(sequences, prompt_lengths, strict=True)
    ]
    advantages = torch.tensor([1.0, -0.5, 2.0, -1.0])
    return Minibatch.of_sequences(
        [sequences[i][: prompt_lengths[i]] for i in rows],
        [sequences[i][prompt_lengths[i] :] for i in rows],
        [logprobs[i] for i in rows],
        advantages[rows],
    )


def _step(tokenizer, rows, backend):
    """One optimiser step on ``rows`` of the minibatch; (grad norm, weights after)."""
    from magistral_kedro.grpo.config import GRPOConfig
    from magistral_kedro.grpo.update import minibatch_loss
    from magistral_kedro.training.engine import EngineConfig, OptimConfig, create_engine

    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    optim = OptimConfig(lr=1e-2, warmup_steps=0, grad_clip=0.0)
    engine = create_engine(model, EngineConfig(backend=backend, zero_stage=2, optim=optim))
    grpo = GRPOConfig(max_tokens_per_microbatch=20)  # several microbatches per rank
    minibatch_loss(engine, _minibatch(tokenizer, rows), grpo, pad_id=0)
    grad_norm = engine.step()["grad_norm"]
    return grad_norm, {k: v.detach().clone() for k, v in engine.model.state_dict().items()}


def _deepspeed_rank(rank: int, port: int, out: str, tokenizer) -> None:
    join_as_launched(rank, port)
    grad_norm, weights = _step(tokenizer, [0, 2] if rank == 0 else [1, 3], "deepspeed")
    if rank == 0:
        torch.save({"grad_norm": grad_norm, "weights": weights}, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_deepspeed_ranks_step_as_one_rank_on_the_whole_minibatch(tokenizer, tmp_path):
    """The loss denominator and DeepSpeed's gradient averaging, end to end: two gloo ranks,
    each with half the minibatch (unequal token counts, unequal microbatch counts), give the
    gradient norm and the step of one process on all of it."""
    port = free_port()
    out = str(tmp_path / "rank0.pt")
    mp.spawn(_deepspeed_rank, args=(port, out, tokenizer), nprocs=2, join=True)
    ranks = torch.load(out, weights_only=False)
    grad_norm, weights = _step(tokenizer, [0, 1, 2, 3], "torch")
    assert ranks["grad_norm"] == pytest.approx(grad_norm, rel=1e-4)
    for key, value in weights.items():
        torch.testing.assert_close(ranks["weights"][key], value, rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.slow
def test_asynchronous_ranks_sample_the_same_stage_for_the_same_step(
    tokenizer, math_problems, tmp_path
):
    """Async mode on two ranks, with a stage that starts once the mean reward reaches 0.6: each
    rank's generator thread is handed each step's stage by its trainer, which decides it from
    the step and the (gathered) last reward alone, so the ranks agree step by step."""
    from magistral_kedro.grpo.config import Stage

    stages = [
        Stage(l_max=12, l_cache=4, n_prompts=4),
        Stage(start_step=None, l_max=16, n_prompts=4, min_reward=0.6),  # by reward alone
    ]
    port = free_port()
    run_args = {"mode": "async", "stages": stages, "steps": 6}
    mp.spawn(
        _grpo_rank, args=(port, str(tmp_path), tokenizer, math_problems[:20], run_args), nprocs=2
    )
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert first["trained_on"] == second["trained_on"]
    assert [step for step, _ in first["trained_on"]] == list(range(6))
    logged = [m["curriculum/stage"] for _, m in first["metrics"]]
    assert logged[0] == 0 and logged[-1] == 1 and logged == sorted(logged)
