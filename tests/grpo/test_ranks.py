"""Two gloo ranks averaging gradients give the gradient of the global token-normalised loss."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from magistral_kedro.grpo import loss_denominator, magistral_loss

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
    loss, _ = magistral_loss(local, old[rows], advantages[rows], mask[rows], 0.2, 0.28,
                             total_tokens=denominator)  # fmt: skip
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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = str(tmp_path / "rank0.pt")
    mp.spawn(_rank, args=(port, out), nprocs=2, join=True)
    result = torch.load(out)
    assert result["denominator"] == pytest.approx(12 / 2)  # global tokens / world size
    logits, old, advantages, mask = _data()
    logits.requires_grad_(True)
    loss, _ = magistral_loss(logits, old, advantages, mask, 0.2, 0.28)
    loss.backward()
    torch.testing.assert_close(result["grad"], logits.grad)
