"""The dry-run check of conf/gpu: typed parameters and the checkpoint directory, no GPU."""

import json

import click
import pytest

from magistral_kedro import check
from magistral_kedro.models import Checkpoint, build_tiny_model, save_checkpoint
from tests.support.models import MICRO_MODEL
from tests.support.paths import PROJECT_ROOT

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


@pytest.mark.parametrize(
    "text",
    [
        "model.name_or_path=/models/Qwen2.5-7B,rl.grpo.group_size=16",
        "a.b=1, c = x ,d=null,e=0.5,f=true,g=1e-3,h=[1;2],i=",
        "sft.engine.optim.lr=-1",
        "",
    ],
)
def test_params_are_read_as_kedro_run_reads_them(text):
    """The values and their types, as `kedro run --params` (its own click option) reads them."""
    assert check.parse_overrides(text) == _kedro_run_params(text)


def test_params_that_kedro_run_refuses_are_refused_with_its_message(capsys):
    for text in ("a.b:1", "a", "=1"):
        with pytest.raises(click.UsageError) as kedro_error:
            _kedro_run_params(text)
        with pytest.raises(click.UsageError) as ours:
            check.parse_overrides(text)
        assert ours.value.format_message() == kedro_error.value.format_message()
    with pytest.raises(SystemExit) as exit_code:
        check.main(["--params", "model.name_or_path:/models/x"])
    assert exit_code.value.code == 2
    assert "must contain a key and a value separated by `=`" in capsys.readouterr().err


def test_every_option_has_a_help_text():
    parser = check.build_parser()
    options = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    assert set(options) == {"env", "params", "conf", "gpus"}
    assert all(len(action.help or "") > 20 for action in options.values()), options
    assert "kedro run --params" in " ".join(parser.format_help().split())


def _kedro_run_params(text: str) -> dict:
    """``--params text`` through the option of Kedro's own ``kedro run`` command."""
    from kedro.framework.cli.project import run

    (option,) = [p for p in run.params if p.name == "params"]
    with click.Context(run) as context:
        return option.process_value(context, text)
