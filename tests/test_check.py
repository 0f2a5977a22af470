"""The dry-run check of conf/gpu: typed parameters and the checkpoint directory, no GPU."""

import json

from magistral_kedro import check
from magistral_kedro.models import Checkpoint, build_tiny_model, save_checkpoint
from tests.conftest import MICRO_MODEL, PROJECT_ROOT

CONF = PROJECT_ROOT / "conf"


def _gpu_parameters(**overrides):
    return check.load_parameters(CONF, "gpu", check.parse_overrides(
        ",".join(f"{k}={v}" for k, v in overrides.items())
    ))  # fmt: skip


def test_conf_gpu_passes_with_a_real_checkpoint_directory(tokenizer, tmp_path, capsys):
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    model.config.max_position_embeddings = 65536  # a long-context model
    save_checkpoint(Checkpoint(model, tokenizer), tmp_path / "ckpt")
    code = check.main(["--env", "gpu", "--conf", str(CONF), "--gpus", "8",
                       "--params", f"model.name_or_path={tmp_path / 'ckpt'}"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    n = sum(p.numel() for p in model.parameters())
    assert f"{n / 1e9:.2f}B parameters" in out
    assert "ZeRO-3, 8 GPUs" in out and "generation by vllm" in out
    assert "dry-run check: passed" in out


def test_a_missing_checkpoint_or_shard_or_short_context_is_named(tokenizer, tmp_path):
    report = check.check(_gpu_parameters(**{"model.name_or_path": tmp_path / "none"}), 8)
    assert "model.name_or_path" in report.problems[0] and "config.json" in report.problems[0]

    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)  # a 256-token context window
    save_checkpoint(Checkpoint(model, tokenizer), tmp_path / "ckpt")
    index = {"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}
    (tmp_path / "ckpt" / "model.safetensors.index.json").write_text(json.dumps(index))
    report = check.check(_gpu_parameters(**{"model.name_or_path": tmp_path / "ckpt"}), 8)
    assert any("model-00002-of-00002.safetensors" in p for p in report.problems)
    assert any("context window (256)" in p for p in report.problems)


def test_invalid_parameters_fail_before_anything_is_read(tmp_path):
    parameters = _gpu_parameters(**{"model.name_or_path": "null", "rl.grpo.mode": "async"})
    report = check.check(parameters, 8)
    assert any("rl.grpo.mode 'async'" in p for p in report.problems), report.problems


def test_an_evaluation_that_would_cut_answers_short_is_named(tokenizer, tmp_path):
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    model.config.max_position_embeddings = 65536
    save_checkpoint(Checkpoint(model, tokenizer), tmp_path / "ckpt")
    overrides = {"model.name_or_path": tmp_path / "ckpt", "eval.sampling.max_new_tokens": 4096}
    problems = check.check(_gpu_parameters(**overrides), 8).problems
    assert problems == [
        "eval.sampling.max_new_tokens 4096 would truncate answers: GRPO lets them grow to "
        "l_max 36864 (rl.curriculum), and a cut answer is graded wrong"
    ]


def test_the_shipped_environments_pass_except_for_the_missing_gpu_checkpoint():
    for env in ("base", "micro"):
        report = check.check(check.load_parameters(CONF, env, {}), 1)
        assert report.problems == [], (env, report.problems)
    (problem,) = check.check(check.load_parameters(CONF, "gpu", {}), 8).problems
    assert "model.name_or_path='/models/Qwen2.5-1.5B-Instruct' is not a local checkpoint" in problem
