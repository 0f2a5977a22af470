"""SFT over data-parallel ranks: each rank trains on its share of a step's examples."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from magistral_kedro.models import Checkpoint, build_tiny_model
from magistral_kedro.training import sft
from tests.conftest import MICRO_MODEL
from tests.grpo.test_ranks import _free_port, _join_as_launched
from tests.training.test_sft_engine import _engine

STEPS = 3
#: Small microbatches: the ranks' shares of a step cut into unequal numbers of them.
LOOP = sft.SFTConfig(batch_size=8, max_tokens_per_microbatch=60, checkpoint_every=STEPS)


def _train(tokenizer, examples, directory, backend, zero_stage=2):
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    ref = sft.train_sft(
        Checkpoint(model, tokenizer),
        examples,
        [],
        engine_config=_engine(backend, steps=STEPS, zero_stage=zero_stage),
        loop=LOOP,
        checkpoint_dir=directory,
        seed=0,
    )
    return ref.load().model.state_dict()


def _sft_rank(rank: int, port: int, out: str, tokenizer, examples) -> None:
    """One of two ZeRO-3 ranks; saves the rows it computed a loss on, the microbatches it
    cut each step into, and (rank 0) the trained weights."""
    _join_as_launched(rank, port)
    rows, microbatches = [], []
    nll, cut = sft.summed_token_nll, sft._microbatches

    def counting_nll(forward, batch):
        rows.append(int(batch["input_ids"].shape[0]))
        return nll(forward, batch)

    def counting_cut(*args):
        batches = cut(*args)
        microbatches.append(len(batches[0]))
        return batches

    sft.summed_token_nll, sft._microbatches = counting_nll, counting_cut
    weights = _train(tokenizer, examples, f"{out}/state", "deepspeed", zero_stage=3)
    torch.save(
        {"rows": sum(rows), "microbatches": microbatches, "weights": weights},
        f"{out}/rank{rank}.pt",
    )
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_zero3_ranks_split_each_step_and_train_as_one_process(tokenizer, tmp_path):
    """Each of two gloo ranks (DeepSpeed ZeRO-3, the gpu env's engine) computes the loss of half
    of each step's examples, in as many microbatches as its share needs (the ranks' counts
    differ, the idle one keeps pace), and the model they train is the one a single process
    trains on whole steps."""
    examples = [sft.SFTExample([1, *range(5, 5 + n)], 3) for n in range(8, 40, 3)]
    port = _free_port()
    mp.spawn(_sft_rank, args=(port, str(tmp_path), tokenizer, examples), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["rows"] for r in ranks] == [STEPS * LOOP.batch_size // 2] * 2
    assert ranks[0]["microbatches"] != ranks[1]["microbatches"]
    alone = _train(tokenizer, examples, tmp_path / "alone", "torch")
    initial = build_tiny_model(tokenizer, MICRO_MODEL, seed=0).state_dict()
    for key, value in alone.items():
        assert not torch.equal(value, initial[key]), key
        torch.testing.assert_close(ranks[0]["weights"][key], value, rtol=1e-4, atol=1e-5, msg=key)
