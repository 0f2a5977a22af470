"""SFT over data-parallel ranks: each rank trains on its share of a step's examples."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from magistral_kedro.models import Checkpoint, build_tiny_model
from magistral_kedro.training import sft
from tests.support.models import MICRO_MODEL
from tests.support.ranks import free_port, join_as_launched
from tests.support.sft import sft_engine
from tests.support.tracking import ListTracker

STEPS = 3
#: Small microbatches: the ranks' shares of a step cut into unequal numbers of them.
LOOP = sft.SFTConfig(
    batch_size=8, max_tokens_per_microbatch=60, eval_every=2, eval_size=3, checkpoint_every=STEPS
)
EXAMPLES = [sft.SFTExample([1, *range(5, 5 + n)], 3) for n in range(8, 40, 3)]
LOGGED = ("sft/loss", "sft/grad_norm", "sft/eval_loss")


def _train(tokenizer, directory, backend, zero_stage=2):
    """The trained weights and the metrics logged, per step; activations recomputed in backward,
    as conf/gpu trains (its bf16 aside: the comparison is to 1e-4)."""
    tracker = ListTracker()
    ref = sft.train_sft(
        Checkpoint(build_tiny_model(tokenizer, MICRO_MODEL, seed=0), tokenizer),
        EXAMPLES,
        EXAMPLES[:4],
        engine_config=sft_engine(
            backend, steps=STEPS, zero_stage=zero_stage, gradient_checkpointing=True
        ),
        loop=LOOP,
        checkpoint_dir=directory,
        seed=0,
        tracker=tracker,
    )
    return ref.load().model.state_dict(), tracker.metrics


def _sft_rank(rank: int, port: int, out: str, tokenizer) -> None:
    """One of two ZeRO-3 ranks; saves the training rows it computed a loss on, the
    microbatches it cut each step into, and (rank 0) the weights and metrics."""
    join_as_launched(rank, port)
    rows, microbatches = [], []
    nll, cut = sft.summed_token_nll, sft._microbatches

    def counting_nll(forward, batch, *args):
        if torch.is_grad_enabled():  # not the eval loss, which every rank computes whole
            rows.append(int(batch["input_ids"].shape[0]))
        return nll(forward, batch, *args)

    def counting_cut(examples, *args):
        batches = cut(examples, *args)
        if len(examples) != LOOP.eval_size:
            microbatches.append(len(batches[0]))
        return batches

    sft.summed_token_nll, sft._microbatches = counting_nll, counting_cut
    weights, metrics = _train(tokenizer, f"{out}/state", "deepspeed", zero_stage=3)
    saved = {"rows": sum(rows), "microbatches": microbatches, "weights": weights}
    torch.save({**saved, "metrics": metrics}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_zero3_ranks_split_each_step_and_train_as_one_process(tokenizer, tmp_path):
    """Each of two gloo ranks (DeepSpeed ZeRO-3 with gradient checkpointing, the gpu env's
    engine) computes the loss of half of each step's examples, in as many microbatches as its
    share needs (the ranks' counts differ, the idle one keeps pace); the loss, gradient norm and
    eval loss of each step and the trained model are those of a single process on whole steps."""
    mp.spawn(_sft_rank, args=(free_port(), str(tmp_path), tokenizer), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["rows"] for r in ranks] == [STEPS * LOOP.batch_size // 2] * 2
    assert ranks[0]["microbatches"] != ranks[1]["microbatches"]
    assert ranks[1]["metrics"] == []  # rank 0 alone logs
    weights, metrics = _train(tokenizer, tmp_path / "alone", "torch")
    assert [step for step, _ in ranks[0]["metrics"]] == [step for step, _ in metrics] == [1, 2, 3]
    for (_, launched), (_, alone) in zip(ranks[0]["metrics"], metrics, strict=True):
        for key in (k for k in LOGGED if k in alone):
            assert launched[key] == pytest.approx(alone[key], rel=1e-4), key
    initial = build_tiny_model(tokenizer, MICRO_MODEL, seed=0).state_dict()
    for key, value in weights.items():
        assert not torch.equal(value, initial[key]), key
        torch.testing.assert_close(ranks[0]["weights"][key], value, rtol=1e-4, atol=1e-5, msg=key)
