"""Sampling in a thread beside the trainer (asynchronous GRPO) owns its randomness: the trainer's
random stream is the same whether a generation runs beside it or not, and what the generator
samples does not depend on what the trainer draws meanwhile."""

import threading

import torch

from magistral_kedro.generation import SamplingConfig, TransformersGenerator
from magistral_kedro.models import build_tiny_model
from tests.support.models import MICRO_MODEL

SAMPLING = SamplingConfig(max_new_tokens=12, temperature=1.0, batch_size=8)


class _Interleaved:
    """A ``between_steps`` hook that stops the generator after its third forward pass until the
    trainer (the main thread) has drawn: a draw made while a generation is in flight."""

    def __init__(self) -> None:
        self.in_flight, self.trainer_drew = threading.Event(), threading.Event()
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls == 3:
            self.in_flight.set()
            assert self.trainer_drew.wait(timeout=60), "the trainer never drew"
        return 0


def _generate_beside(model, tokenizer, trainer_draws: int):
    """Generate in a thread; the main thread (seeded 0) draws ``trainer_draws`` numbers while
    the generation is in flight and 4 after it. Returns (the main thread's draws, samples)."""
    hook = _Interleaved()
    generator = TransformersGenerator(model, tokenizer, between_steps=hook)
    prompts = [[1, 2, 3], [4, 5]]
    out = {}
    thread = threading.Thread(
        target=lambda: out.update(samples=generator.generate(prompts, 4, SAMPLING, seed=11))
    )
    torch.manual_seed(0)
    thread.start()
    assert hook.in_flight.wait(timeout=60)
    during = torch.rand(trainer_draws)
    hook.trainer_drew.set()
    thread.join(timeout=120)
    after = torch.rand(4)
    return torch.cat([during, after]), out["samples"]


def test_the_trainers_random_stream_is_its_own_while_a_generation_is_in_flight(tokenizer):
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0).eval()
    drawn, _ = _generate_beside(model, tokenizer, trainer_draws=6)
    torch.manual_seed(0)
    alone = torch.rand(10)  # the same draws with no generator beside the trainer
    assert torch.equal(drawn, alone)


def test_async_sampling_is_the_same_whatever_the_trainer_draws_meanwhile(tokenizer):
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0).eval()
    _, quiet = _generate_beside(model, tokenizer, trainer_draws=1)
    _, busy = _generate_beside(model, tokenizer, trainer_draws=5000)
    assert [[s.token_ids for s in group] for group in busy] == [
        [s.token_ids for s in group] for group in quiet
    ]
    assert [[s.logprobs for s in group] for group in busy] == [
        [s.logprobs for s in group] for group in quiet
    ]
