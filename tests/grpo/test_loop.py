"""The GRPO loop: on-policy ratio 1, determinism, resume after a crash and after kill -9.

Rewards come from a stand-in verifier (a function of the completion's tokens) so that a random
micro model gets diverse groups and the training path runs; the real reward has its own tests.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from magistral_kedro.grpo import curriculum, rollouts, update
from magistral_kedro.grpo.config import Stage
from magistral_kedro.models import build_tiny_model
from magistral_kedro.rewards import RewardBreakdown
from tests.support.grpo import GRPO, parity_reward
from tests.support.grpo import run_grpo as _run
from tests.support.models import MICRO_MODEL
from tests.support.tracking import ListTracker


@pytest.fixture()
def fake_reward(monkeypatch):
    monkeypatch.setattr(rollouts, "score_batch", parity_reward)


def test_trains_on_policy_logs_everything_and_is_deterministic(tokenizer, math_problems, tmp_path,
                                                                fake_reward):  # fmt: skip
    tracker = ListTracker()
    _, samples = _run(tokenizer, math_problems[:20], tmp_path / "a", tracker)
    steps = [step for step, _ in tracker.metrics]
    assert steps == [1, 2, 3, 4] and tracker.checkpoints == [2, 4]
    first = tracker.metrics[0][1]
    # Same temperature scaling on both sides, no top-k/top-p: before any update the ratio is 1.
    assert first["policy/mean_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert first["policy/approx_kl"] < 1e-6
    for key in (
        "reward/total",
        "groups/dropped_frac",
        "clip/high_frac",
        "clip/low_frac",
        "policy/entropy",
        "train/grad_norm",
        "train/lr",
        "time/generate_s",
        "time/verify_s",
        "time/train_s",
        "completion/mean_tokens",
        "curriculum/stage",
    ):
        assert key in first, key  # fmt: skip
    assert [m["curriculum/stage"] for _, m in tracker.metrics] == [0, 0, 0, 1]
    assert [m["curriculum/l_max"] for _, m in tracker.metrics] == [12, 12, 12, 16]
    assert len(samples) == 8 and {"completion", "total", "step"} <= set(samples[0])
    again = ListTracker()
    _run(tokenizer, math_problems[:20], tmp_path / "b", again)
    assert [m["reward/total"] for _, m in again.metrics] == [
        m["reward/total"] for _, m in tracker.metrics
    ]


def test_a_crashed_run_resumes_into_the_same_run_without_repeating_steps(
    tokenizer, math_problems, tmp_path, monkeypatch, fake_reward
):
    reference, _ = _run(tokenizer, math_problems[:20], tmp_path / "ref")
    calls = {"n": 0}

    def crash_at_step_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return parity_reward(*args, **kwargs)

    monkeypatch.setattr(rollouts, "score_batch", crash_at_step_3)
    first = ListTracker()
    with pytest.raises(RuntimeError, match="killed"):
        _run(tokenizer, math_problems[:20], tmp_path / "run", first)
    monkeypatch.setattr(rollouts, "score_batch", parity_reward)
    second = ListTracker()
    resumed, samples = _run(tokenizer, math_problems[:20], tmp_path / "run", second)
    assert [s for s, _ in first.metrics] == [1, 2]
    # The resumed run says where it resumed, then logs the steps after its checkpoint.
    assert second.metrics[0] == (2, {"rl/resumed_at_step": 2.0})
    assert [s for s, _ in second.metrics[1:]] == [3, 4]
    assert second.attached == ["run-1"]  # the first run's id, read back from the checkpoint
    assert sorted({row["step"] for row in samples}) == [1, 2, 3, 4]
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)


def test_a_batch_with_every_group_dropped_is_skipped_and_counted(
    tokenizer, math_problems, tmp_path, monkeypatch
):
    zero = RewardBreakdown(0.0, 0.0, 0.0, 0.0, 0.0)
    monkeypatch.setattr(rollouts, "score_batch", lambda texts, *a, **k: [zero] * len(texts))
    tracker = ListTracker()
    _run(tokenizer, math_problems[:20], tmp_path / "z", tracker, steps=2)
    assert [m["train/skipped_steps"] for _, m in tracker.metrics] == [1, 2]
    assert all(m["groups/dropped_frac"] == 1.0 for _, m in tracker.metrics)


KILL_SCRIPT = """
import json, sys
from pathlib import Path
from magistral_kedro.grpo import rollouts
from tests.support.grpo import run_grpo as _run, parity_reward
from tests.support.tracking import ListTracker
from magistral_kedro.tasks import LANGUAGES, generate_math_problems
from magistral_kedro.models import train_tokenizer
rollouts.score_batch = parity_reward
levels = dict.fromkeys(range(1, 6), 1.0)
problems = generate_math_problems(300, 0, dict.fromkeys(LANGUAGES, 1.0), levels)
tokenizer = train_tokenizer([t for p in problems for t in (p.prompt, p.reference)], 400)
class FileTracker(ListTracker):
    def log_metrics(self, metrics, step):
        with open(sys.argv[2], "a") as out:
            out.write(json.dumps({"step": step, **metrics}) + "\\n")
_run(tokenizer, problems[:20], Path(sys.argv[1]), FileTracker(), steps=int(sys.argv[3]))
"""


@pytest.mark.slow
def test_kill_9_mid_run_then_the_same_command_continues(tmp_path):
    root = Path(__file__).resolve().parents[2]
    command = [
        sys.executable,
        "-c",
        KILL_SCRIPT,
        str(tmp_path / "state"),
        str(tmp_path / "m.jsonl"),
        "40",
    ]
    process = subprocess.Popen(command, cwd=root, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while not (tmp_path / "state" / "step_000004").is_dir():
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere after step 4: mid-step or mid-checkpoint
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    (mark,) = [i for i, row in enumerate(rows) if "rl/resumed_at_step" in row]
    resumed_at = rows[mark]["step"]
    before, after = rows[:mark], rows[mark + 1 :]
    # Logged live: the killed run got past its last checkpoint; the resumed run says where it
    # resumed and logs every step after it again. No step is lost, and a step logged twice has
    # the same value both times (sync mode is deterministic), the later one counting.
    assert resumed_at >= 4 and resumed_at % 2 == 0
    assert [r["step"] for r in before] == list(range(1, len(before) + 1))
    assert len(before) >= resumed_at
    assert [r["step"] for r in after] == list(range(resumed_at + 1, 41))

    def measured(row):  # what the step computed, not how long it took
        return {k: v for k, v in row.items() if not k.startswith(("time/", "throughput/"))}

    for again in after[: len(before) - resumed_at]:
        assert measured(again) == measured(before[again["step"] - 1])


def test_curriculum_switches_by_step_or_by_reward():
    stages = [Stage(), Stage(start_step=10, min_reward=0.5), Stage(start_step=20)]
    assert curriculum.stage_index(stages, 3, 0, last_reward=0.1) == 0
    assert curriculum.stage_index(stages, 3, 0, last_reward=0.6) == 1  # reward reached early
    assert curriculum.stage_index(stages, 10, 0, last_reward=0.0) == 1
    assert curriculum.stage_index(stages, 25, 1, last_reward=0.0) == 2
    assert curriculum.stage_index(stages, 5, 2, last_reward=0.0) == 2  # never back
    by_reward = [Stage(), Stage(start_step=None, min_reward=0.5)]
    assert curriculum.stage_index(by_reward, 10**6, 0, last_reward=0.4) == 0
    assert curriculum.stage_index(by_reward, 1, 0, last_reward=0.5) == 1


def test_nan_loss_stops_with_step_and_last_checkpoint(tokenizer, math_problems, tmp_path,
                                                      fake_reward, monkeypatch):  # fmt: skip
    def nan_loss(*args, **kwargs):
        raise FloatingPointError("GRPO loss is nan")

    monkeypatch.setattr(update, "minibatch_loss", nan_loss)
    with pytest.raises(FloatingPointError, match=r"step 1;.*Last good checkpoint: none"):
        _run(tokenizer, math_problems[:20], tmp_path / "nan")


def test_a_kill_while_a_checkpoint_goes_to_the_tracker_loses_no_step_and_no_model(
    tokenizer, math_problems, tmp_path, fake_reward
):
    class DiesWhileLoggingTheCheckpoint(ListTracker):
        def log_checkpoint(self, path, step):
            raise KeyboardInterrupt  # after the checkpoint is on disk, before the tracker has it

    first = DiesWhileLoggingTheCheckpoint()
    with pytest.raises(KeyboardInterrupt):
        _run(tokenizer, math_problems[:20], tmp_path / "run", first)
    resumed = ListTracker()
    _run(tokenizer, math_problems[:20], tmp_path / "run", resumed)
    assert first.steps == [1, 2]  # a step is logged before its checkpoint is written
    assert resumed.steps == [2, 3, 4] and "rl/resumed_at_step" in resumed.metrics[0][1]
    assert resumed.checkpoints == [2, 4]  # the model the first run could not hand over


def test_async_mode_trains_on_completions_at_most_two_versions_old(
    tokenizer, math_problems, tmp_path, fake_reward
):
    tracker = ListTracker()
    model, _ = _run(tokenizer, math_problems[:20], tmp_path / "async", tracker, steps=6,
                    mode="async")  # fmt: skip
    assert tracker.steps == [1, 2, 3, 4, 5, 6]
    first = tracker.metrics[0][1]
    assert first["async/staleness_max"] == 0  # the first batch comes from the initial weights
    assert first["policy/mean_ratio"] == pytest.approx(1.0, abs=1e-4)
    staleness = [m["async/staleness_max"] for _, m in tracker.metrics]
    assert max(staleness) <= GRPO.max_batches_in_flight
    assert all("train/grad_norm" in m for _, m in tracker.metrics)
    initial = build_tiny_model(tokenizer, MICRO_MODEL, seed=0).state_dict()
    assert any(not torch.equal(v, initial[k]) for k, v in model.state_dict().items())


def test_async_generation_errors_reach_the_trainer(tokenizer, math_problems, tmp_path,
                                                   monkeypatch):  # fmt: skip
    def broken(*args, **kwargs):
        raise ValueError("verifier crashed")

    monkeypatch.setattr(rollouts, "score_batch", broken)
    with pytest.raises(RuntimeError, match="asynchronous generation failed") as caught:
        _run(tokenizer, math_problems[:20], tmp_path / "broken", mode="async")
    assert "verifier crashed" in str(caught.value.__cause__)


def test_async_staleness_counts_weight_updates_not_steps(tokenizer, math_problems, tmp_path,
                                                         monkeypatch):  # fmt: skip
    """Steps that drop every group change no weight: their batches are not stale."""
    zero = RewardBreakdown(0.0, 0.0, 0.0, 0.0, 0.0)
    monkeypatch.setattr(rollouts, "score_batch", lambda texts, *a, **k: [zero] * len(texts))
    tracker = ListTracker()
    _run(tokenizer, math_problems[:20], tmp_path / "z", tracker, steps=4, mode="async")
    assert [m["train/skipped_steps"] for _, m in tracker.metrics] == [1, 2, 3, 4]
    assert [m["async/staleness_max"] for _, m in tracker.metrics] == [0, 0, 0, 0]
