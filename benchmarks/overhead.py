"""One GRPO step of the embedded default against the bare compute it contains.

    .venv/bin/python -m benchmarks.overhead [--repeats 3] [--threads 2]

On the SFT model of the last ``kedro run`` and the default ``rl`` parameters (16 prompts x 8,
up to 192 new tokens), each repeat times, on the same batch:

- generation: our generator (log-probs of every sampled token, decoded text) against a plain
  batched ``model.generate`` of the same prompts, seed and sampling (the same tokens);
- training: our loss and optimiser step (microbatches by greedy collation, clipped surrogate,
  entropy statistics) against a plain forward + cross-entropy + backward + AdamW step over the
  same microbatches;
- verification (the rewards), which has no bare counterpart.

Printed: min / median / max seconds of each, and the overhead ratio ours / bare (1.0 = the
hardware's limit for this model and batch).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from benchmarks._common import embedded_rl
from magistral_kedro.generation import SamplingConfig, TransformersGenerator, encode_prompts
from magistral_kedro.generation.sampler import left_padded
from magistral_kedro.grpo import curriculum, update
from magistral_kedro.grpo.core import group_advantages, magistral_advantages
from magistral_kedro.rewards import RewardConfig, score_batch
from magistral_kedro.training.batching import collate_causal_lm, greedy_collate
from magistral_kedro.training.engine import create_engine


def _timed(work: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    result = work(*args)
    return time.perf_counter() - began, result


def _ours_train(engine: Any, sequences: list[list[int]], lengths: list[int],
                old: list[list[float]], advantages: torch.Tensor, pad_id: int,
                grpo: Any) -> None:  # fmt: skip
    minibatch = update.Minibatch.of_sequences(
        [s[:n] for s, n in zip(sequences, lengths, strict=True)],
        [s[n:] for s, n in zip(sequences, lengths, strict=True)],
        old, advantages, pad_id,
    )  # fmt: skip
    update.minibatch_loss(engine, minibatch, dataclasses.replace(grpo, tis="off"), pad_id)
    engine.step()


@torch.no_grad()
def _bare_generate(model: Any, tokenizer: Any, prompts: list[list[int]], n: int,
                   sampling: SamplingConfig, seed: int) -> None:  # fmt: skip
    """``model.generate`` alone, in the same batches, with the same seed as our generator."""
    flat = [p for p in prompts for _ in range(n)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(flat), sampling.batch_size):
            encoded = left_padded(flat[start : start + sampling.batch_size],
                                  tokenizer.pad_token_id, model.device)  # fmt: skip
            model.generate(**encoded, max_new_tokens=sampling.max_new_tokens, do_sample=True,
                           temperature=sampling.temperature, top_k=0, top_p=1.0,
                           pad_token_id=tokenizer.pad_token_id,
                           eos_token_id=tokenizer.eos_token_id)  # fmt: skip


def _bare_train(model: Any, optimizer: torch.optim.Optimizer, sequences: list[list[int]],
                prompt_lengths: list[int], pad_id: int, budget: int) -> None:  # fmt: skip
    """Forward, token cross-entropy and backward over the same microbatches, one AdamW step."""
    for group in greedy_collate([len(s) for s in sequences], budget):
        batch = collate_causal_lm([sequences[i] for i in group],
                                  [prompt_lengths[i] for i in group], pad_id)  # fmt: skip
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1), batch["input_ids"][:, 1:].flatten(),
            reduction="none",
        )  # fmt: skip
        (loss * batch["loss_mask"][:, 1:].flatten()).sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup = embedded_rl(1)
    model, tokenizer = setup.checkpoint.model, setup.checkpoint.tokenizer
    stage, grpo = setup.stages[0], setup.grpo
    engine = create_engine(model, setup.engine)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)  # bare: same work, no change
    sampling = SamplingConfig(max_new_tokens=stage.l_max, temperature=grpo.temperature,
                              batch_size=grpo.generation_batch_size)  # fmt: skip
    reward = dataclasses.replace(RewardConfig(), l_max=stage.l_max, l_cache=stage.l_cache)
    chosen = curriculum.draw_problems(setup.problems, stage, 0, 0)
    prompts = [setup.prompts[i] for i in chosen]
    prompt_ids = encode_prompts(tokenizer, prompts)
    generator = TransformersGenerator(model, tokenizer)
    times: dict[str, list[float]] = {}
    for repeat in range(args.repeats + 1):  # repeat 0 warms up
        seconds, groups = _timed(generator.generate, prompt_ids, grpo.group_size, sampling, 0)
        bare_gen, _ = _timed(_bare_generate, model, tokenizer, prompt_ids, grpo.group_size,
                             sampling, 0)  # fmt: skip
        flat = [(g, s) for g, group in enumerate(groups) for s in group]
        verify, rewards = _timed(
            partial(score_batch, n_workers=grpo.reward_workers), [s.text for _, s in flat],
            [setup.problems[chosen[g]] for g, _ in flat], [len(s.token_ids) for _, s in flat],
            reward,
        )  # fmt: skip
        totals, groups_of = (
            torch.tensor([r.total for r in rewards]),
            torch.tensor([g for g, _ in flat]),
        )
        _, keep = group_advantages(totals, groups_of)
        advantages = magistral_advantages(totals, groups_of, torch.where(keep, 0, -1))
        rows = [k for k in range(len(flat)) if keep[k]]
        sequences = [prompt_ids[flat[k][0]] + flat[k][1].token_ids for k in rows]
        lengths = [len(prompt_ids[flat[k][0]]) for k in rows]
        train, _ = _timed(_ours_train, engine, sequences, lengths,
                          [flat[k][1].logprobs for k in rows], advantages[rows],
                          tokenizer.pad_token_id, grpo)  # fmt: skip
        bare_train, _ = _timed(_bare_train, model, optimizer, sequences, lengths,
                               tokenizer.pad_token_id, grpo.max_tokens_per_microbatch)  # fmt: skip
        if repeat == 0:
            continue
        for key, value in {"generate": seconds, "generate_bare": bare_gen, "verify": verify,
                           "train": train, "train_bare": bare_train}.items():  # fmt: skip
            times.setdefault(key, []).append(value)
    median = {key: statistics.median(values) for key, values in times.items()}
    print(
        f"== one GRPO step, {len(prompts)} prompts x {grpo.group_size}, SFT model "
        f"{setup.label}, torch backend, {args.threads} threads, {args.repeats} repeats"
    )
    for key, values in times.items():
        print(f"{key:<14} min {min(values):6.2f} s  median {median[key]:6.2f} s  "
              f"max {max(values):6.2f} s")  # fmt: skip
    gen_ratio = median["generate"] / median["generate_bare"]
    train_ratio = median["train"] / median["train_bare"]
    ours = median["generate"] + median["train"]
    bare = median["generate_bare"] + median["train_bare"]
    print(f"overhead ours / bare: generate {gen_ratio:.2f}x, train {train_ratio:.2f}x, "
          f"step without verification {ours / bare:.2f}x, with it "
          f"{(ours + median['verify']) / bare:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
