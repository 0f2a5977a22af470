"""Evaluation and the difficulty filter over data-parallel ranks: each rank samples its share of
the chunks, and every rank ends with what one process computes."""

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from magistral_kedro.curation.difficulty import sample_pass_rates
from magistral_kedro.evaluation import grade_samples
from magistral_kedro.generation import SamplingConfig, encode_prompts
from magistral_kedro.models import build_prompt
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tasks.frames import problems_to_frame
from tests.support.evaluation import ReferenceGenerator
from tests.support.ranks import free_port, join_as_launched

SAMPLING = SamplingConfig(max_new_tokens=8, temperature=0.0, batch_size=2)


def _both(tokenizer, problems):
    """The graded samples of 7 problems (greedy and 2 sampled, chunks of 2: 8 generator calls)
    and their pass rates (3 samples, chunks of 2: 4 calls); the generators' calls."""
    references = {p.prompt: p.reference for p in problems}
    grading = ReferenceGenerator(references, tokenizer)
    filtering = ReferenceGenerator(references, tokenizer)
    samples = grade_samples(grading, tokenizer, problems_to_frame(problems), None, SAMPLING,
                            RewardConfig(), seed=10, k=2, temperature=1.0, greedy=True)  # fmt: skip
    prompts = encode_prompts(tokenizer, [build_prompt(tokenizer, p.prompt, None) for p in problems])
    rates, _ = sample_pass_rates(filtering, problems, prompts, 3, SAMPLING, RewardConfig(),
                                 seed=10, chunk_size=2)  # fmt: skip
    return samples, rates, grading.calls, filtering.calls


def _rank(rank: int, port: int, out: dict, tokenizer, problems) -> None:
    join_as_launched(rank, port)
    out[rank] = _both(tokenizer, problems)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_share_the_chunks_and_each_returns_the_whole_result(tokenizer, math_problems):
    problems = [p for p in math_problems if p.language == "en"][:7]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank, args=(free_port(), out, tokenizer, problems), nprocs=2, join=True)
        ranks = [out[0], out[1]]
    samples, rates, grading_calls, filtering_calls = _both(tokenizer, problems)
    assert len(grading_calls) == 8 and len(filtering_calls) == 4
    for rank_samples, rank_rates, rank_grading, rank_filtering in ranks:
        assert rank_samples.equals(samples)
        assert rank_rates == rates
        assert len(rank_grading) == 4 and len(rank_filtering) == 2  # half the chunks each
    # Between them the ranks made one process's calls (seeded by chunk, not by rank).
    assert sorted(ranks[0][2] + ranks[1][2]) == sorted(grading_calls)
    assert sorted(ranks[0][3] + ranks[1][3]) == sorted(filtering_calls)
    assert samples["correct"].all() and all(r.pass_rate == 1.0 for r in rates)
