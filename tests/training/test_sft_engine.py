"""The SFT loop and the engine: learning, resume after a crash, and DeepSpeed/torch parity."""

import pytest
import torch

from magistral_kedro.models import Checkpoint, build_prompt
from magistral_kedro.training import CheckpointManager
from magistral_kedro.training.engine import OptimConfig, lr_lambda
from magistral_kedro.training.sft import (
    SFTConfig,
    batch_indices,
    evaluate_loss,
    tokenize_examples,
    train_sft,
)
from tests.support.ranks import LAUNCHER_VARIABLES
from tests.support.sft import sft_engine
from tests.support.tracking import ListTracker


@pytest.fixture(scope="module")
def examples(tokenizer, math_problems):
    prompts = [build_prompt(tokenizer, p.prompt, None) for p in math_problems]
    data, too_long = tokenize_examples(
        prompts, [p.reference for p in math_problems], tokenizer, 256
    )
    assert too_long == 0
    return data


LOOP = SFTConfig(
    batch_size=8, max_tokens_per_microbatch=300, eval_every=3, eval_size=16, checkpoint_every=3
)


def _train(model, tokenizer, examples, directory, steps=7, evaluation=(), backend="torch",
           zero_stage=2, seed=5, fingerprint="run", tracker=None):  # fmt: skip
    """train_sft with this module's loop settings; the trained model, loaded from what it
    returned (its last checkpoint's Hugging Face directory)."""
    trained = train_sft(Checkpoint(model, tokenizer), examples, list(evaluation),
                     engine_config=sft_engine(backend, steps=steps, zero_stage=zero_stage),
                     loop=LOOP, checkpoint_dir=directory, seed=seed, fingerprint=fingerprint,
                     tracker=tracker)  # fmt: skip
    return trained.load().model


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_tokenize_masks_prompt_and_appends_eos(tokenizer):
    (example,), too_long = tokenize_examples(
        ["<|bos|><|user|>1+1<|assistant|>"], ["<think>2</think>"], tokenizer, 64
    )
    assert too_long == 0
    assert example.input_ids[-1] == tokenizer.eos_token_id
    assert (
        tokenizer.decode(example.input_ids[: example.prompt_length])
        == "<|bos|><|user|>1+1<|assistant|>"
    )
    (_, too_long) = tokenize_examples(["x" * 50], ["y" * 50], tokenizer, 10)
    assert too_long == 1


def test_batches_cover_each_epoch_once_and_depend_only_on_the_step():
    seen = [i for step in range(5) for i in batch_indices(20, 4, step, seed=1)]
    assert sorted(seen) == list(range(20))
    assert batch_indices(20, 4, 7, seed=1) == batch_indices(20, 4, 7, seed=1)
    assert len(batch_indices(5, 8, 0, seed=0)) == 8  # a batch larger than the data wraps epochs


def test_warmup_then_cosine():
    optim = OptimConfig(warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_lambda(0, optim) == pytest.approx(0.1)
    assert lr_lambda(9, optim) == pytest.approx(1.0)
    assert lr_lambda(60, optim) == pytest.approx(0.55)
    assert lr_lambda(110, optim) == pytest.approx(0.1)


def test_training_lowers_the_eval_loss(micro_checkpoint, examples, tmp_path):
    tok = micro_checkpoint.tokenizer
    before = evaluate_loss(micro_checkpoint.model, examples[:32], 600, tok.pad_token_id)
    tracker = ListTracker()
    model = _train(micro_checkpoint.model, tok, examples, tmp_path / "state", steps=30,
                      evaluation=examples[:32], seed=0, tracker=tracker)  # fmt: skip
    after = evaluate_loss(model, examples[:32], 600, tok.pad_token_id)
    assert after < before - 1.0
    assert tracker.steps == list(range(1, 31))
    assert tracker.checkpoints == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    logged = tracker.metrics
    assert {"sft/loss", "sft/lr", "sft/grad_norm", "sft/tokens_per_s"} <= set(logged[0][1])
    assert "sft/eval_loss" in logged[2][1] and "sft/eval_loss" not in logged[0][1]
    assert (tmp_path / "state" / "COMPLETE").exists()


class _Crash(RuntimeError):
    pass


def test_a_crashed_run_resumes_to_the_same_weights(tokenizer, examples, tmp_path):
    from magistral_kedro.models import build_tiny_model
    from tests.support.models import MICRO_MODEL

    def fresh():
        return build_tiny_model(tokenizer, MICRO_MODEL, seed=0)

    reference = _train(fresh(), tokenizer, examples, tmp_path / "a")

    def crash_after_step_4(metrics, step):
        if step == 4:
            raise _Crash

    with pytest.raises(_Crash):
        _train(fresh(), tokenizer, examples, tmp_path / "b",
               tracker=ListTracker(on_metrics=crash_after_step_4))  # fmt: skip
    manager = CheckpointManager(tmp_path / "b", fingerprint="run")
    assert manager.resumable().name == "step_000003"
    resumed_tracker = ListTracker()
    resumed = _train(fresh(), tokenizer, examples, tmp_path / "b", tracker=resumed_tracker)
    # It says where it resumed, then goes on after its checkpoint: no step lost.
    assert resumed_tracker.metrics[0] == (3, {"sft/resumed_at_step": 3.0})
    assert resumed_tracker.steps[1:] == [4, 5, 6, 7]
    assert resumed_tracker.attached == ["run-1"]  # the run it started in, as GRPO does
    for key, value in _weights(reference).items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)


def test_a_different_configuration_starts_fresh(tokenizer, micro_checkpoint, examples, tmp_path):
    """Other inputs start a new run; an unfinished run they replace is moved aside, not lost
    (a setting changed by mistake costs no training)."""
    second = ListTracker()
    _train(micro_checkpoint.model, tokenizer, examples, tmp_path / "s", steps=3, fingerprint="one")
    (tmp_path / "s" / "COMPLETE").unlink()  # pretend it was killed after its last checkpoint
    _train(
        micro_checkpoint.model,
        tokenizer,
        examples,
        tmp_path / "s",
        steps=3,
        fingerprint="two",
        tracker=second,
    )
    assert second.steps == [1, 2, 3]
    kept = CheckpointManager(tmp_path / "s.previous", fingerprint="one")
    assert kept.resumable() is not None and kept.resumable().name == "step_000003"
    # A finished run of other inputs is simply replaced.
    _train(
        micro_checkpoint.model, tokenizer, examples, tmp_path / "s", steps=3, fingerprint="three"
    )
    assert CheckpointManager(tmp_path / "s.previous", fingerprint="one").resumable() is not None


def test_nan_loss_stops_with_a_clear_message(micro_checkpoint, examples, tmp_path):
    with torch.no_grad():
        next(micro_checkpoint.model.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="step 1;"):
        _train(micro_checkpoint.model, micro_checkpoint.tokenizer, examples, tmp_path / "nan")


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 2, 3])
def test_deepspeed_matches_plain_torch(tokenizer, examples, tmp_path, stage):
    """Same seed, same data: DeepSpeed ZeRO (gloo, CPU) and torch end on the same weights, and
    what the loop returns is the whole model (ZeRO-3: every shard gathered), equal to DeepSpeed's
    own consolidation of the last checkpoint's partitions."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from magistral_kedro.models import build_tiny_model
    from tests.support.models import MICRO_MODEL

    results = {}
    for backend in ("torch", "deepspeed"):
        model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
        results[backend] = _train(model, tokenizer, examples, tmp_path / backend, steps=4,
                                  backend=backend, zero_stage=stage, seed=0)  # fmt: skip
    trained = results["deepspeed"].state_dict()
    for key, value in results["torch"].state_dict().items():
        assert trained[key].shape == value.shape, key
        torch.testing.assert_close(trained[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert (tmp_path / "deepspeed" / "step_000003" / "deepspeed").is_dir()
    if stage >= 2:
        consolidated = get_fp32_state_dict_from_zero_checkpoint(
            str(tmp_path / "deepspeed" / "step_000004"), tag="deepspeed"
        )
        for key, value in consolidated.items():
            torch.testing.assert_close(trained[key], value, rtol=0, atol=0, msg=key)


def test_a_finished_run_is_reused_and_a_changed_one_trains_again(tokenizer, examples, tmp_path):
    from magistral_kedro.models import build_tiny_model
    from tests.support.models import MICRO_MODEL

    def train(fingerprint, tracker):
        model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
        return train_sft(Checkpoint(model, tokenizer), examples, [],
                         engine_config=sft_engine(steps=3), loop=LOOP,
                         checkpoint_dir=tmp_path / "s", seed=0,
                         fingerprint=fingerprint, tracker=tracker)  # fmt: skip

    first, again, other = ListTracker(), ListTracker(), ListTracker()
    path = train("one", first)
    assert train("one", again) == path and again.steps == []  # nothing trained: reused
    assert train("two", other) == path and other.steps == [1, 2, 3]  # inputs changed: trained


def test_one_deepspeed_process_compiles_no_op(tmp_path):
    """A single CPU process starts DeepSpeed without JIT-compiling its shared-memory all-reduce
    (40-70 s of a fresh machine's first run, for no peer): the extension cache stays empty."""
    import os
    import subprocess
    import sys

    script = (
        "import torch\n"
        "from magistral_kedro.training.engine import EngineConfig, create_engine\n"
        "engine = create_engine(torch.nn.Sequential(torch.nn.Linear(4, 4)), EngineConfig())\n"
        "print(type(engine).__name__)\n"
    )
    cache = tmp_path / "torch_extensions"
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env["TORCH_EXTENSIONS_DIR"] = str(cache)
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("DeepSpeedEngine")
    assert not cache.exists() or not any(cache.iterdir())
