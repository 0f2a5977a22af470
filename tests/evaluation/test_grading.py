"""Grading of sampled answers: problems go to the generator a batch at a time, in order."""

from magistral_kedro.evaluation import grade_samples
from magistral_kedro.generation import SamplingConfig
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tasks.frames import problems_to_frame
from tests.support.evaluation import ReferenceGenerator


def test_problems_are_sampled_a_batch_at_a_time_and_graded_in_order(math_problems, tokenizer):
    problems = [p for p in math_problems if p.language == "en"][:5]
    generator = ReferenceGenerator({p.prompt: p.reference for p in problems}, tokenizer)
    samples = grade_samples(
        generator,
        tokenizer,
        problems_to_frame(problems),
        None,
        SamplingConfig(max_new_tokens=8, temperature=0.0, batch_size=2),
        RewardConfig(),
        seed=10,
        k=2,
        temperature=1.0,
        greedy=True,
    )
    # Chunks of 2, 2 and 1 problems; chunk c of a decoding run is seeded with its seed + c.
    assert generator.calls == [
        (2, 1, 10),
        (2, 1, 11),
        (1, 1, 12),
        (2, 2, 11),
        (2, 2, 12),
        (1, 2, 13),
    ]
    ids = [p.id for p in problems]
    greedy = samples[samples["decoding"] == "greedy"]
    sampled = samples[samples["decoding"] == "sampled"]
    assert list(greedy["problem_id"]) == ids
    assert list(sampled["problem_id"]) == [i for i in ids for _ in range(2)]
    assert list(sampled["sample"]) == [0, 1] * 5
    assert samples["correct"].all() and samples["format_ok"].all()
