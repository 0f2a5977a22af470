import random

from magistral_kedro.training.batching import collate_causal_lm, greedy_collate


def test_greedy_collate_hand_computed():
    # budget 10: [6] alone (6+6 > 10); 5 and 4 share (2*5 = 10); 3,3,3 share (3*3 = 9); 12 alone.
    lengths = [3, 6, 5, 12, 4, 3, 3]
    assert greedy_collate(lengths, max_tokens=10) == [[3], [1], [2, 4], [0, 5, 6]]


def test_greedy_collate_properties():
    rng = random.Random(0)
    for _ in range(50):
        lengths = [rng.randint(1, 100) for _ in range(rng.randint(1, 60))]
        budget = rng.randint(20, 400)
        batches = greedy_collate(lengths, budget)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for batch in batches:
            padded = len(batch) * max(lengths[i] for i in batch)
            assert padded <= budget or len(batch) == 1


def test_greedy_collate_pads_less_than_fixed_batches():
    rng = random.Random(1)
    lengths = [rng.randint(10, 200) for _ in range(256)]
    greedy = sum(len(b) * max(lengths[i] for i in b) for b in greedy_collate(lengths, 2048))
    fixed = sum(16 * max(lengths[i : i + 16]) for i in range(0, 256, 16))  # same ~2k-token size
    assert greedy < fixed


def test_collate_masks_only_completion_tokens():
    batch = collate_causal_lm([[1, 2, 3, 4], [5, 6]], prompt_lengths=[2, 1], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4], [5, 6, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["loss_mask"].tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]
