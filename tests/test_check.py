"""The dry-run check of conf/gpu: typed parameters and the checkpoint directory, no GPU."""

import json
import math
import os

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
    assert set(options) == {"env", "params", "conf", "gpus", "gpu_memory"}
    assert all(len(action.help or "") > 20 for action in options.values()), options
    assert "kedro run --params" in " ".join(parser.format_help().split())


def _kedro_run_params(text: str) -> dict:
    """``--params text`` through the option of Kedro's own ``kedro run`` command."""
    from kedro.framework.cli.project import run

    (option,) = [p for p in run.params if p.name == "params"]
    with click.Context(run) as context:
        return option.process_value(context, text)


#: A Qwen2.5-7B-like config.json: 7.62B parameters, untied 152k vocabulary, 4 KV heads of 128.
QWEN_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def _qwen_7b_tensors():
    """(name, shape) of every tensor of the checkpoint QWEN_7B describes, biases included."""
    h, i, kv, v = 3584, 18944, 4 * 128, 152064
    yield "model.embed_tokens.weight", [v, h]
    for layer in range(28):
        prefix = f"model.layers.{layer}"
        for name, shape in (
            ("self_attn.q_proj.weight", [h, h]), ("self_attn.q_proj.bias", [h]),
            ("self_attn.k_proj.weight", [kv, h]), ("self_attn.k_proj.bias", [kv]),
            ("self_attn.v_proj.weight", [kv, h]), ("self_attn.v_proj.bias", [kv]),
            ("self_attn.o_proj.weight", [h, h]), ("mlp.gate_proj.weight", [i, h]),
            ("mlp.up_proj.weight", [i, h]), ("mlp.down_proj.weight", [h, i]),
            ("input_layernorm.weight", [h]), ("post_attention_layernorm.weight", [h]),
        ):  # fmt: skip
            yield f"{prefix}.{name}", shape
    yield "model.norm.weight", [h]
    yield "lm_head.weight", [v, h]


def write_sparse_checkpoint(directory, shards=4):
    """QWEN_7B as a checkpoint of ``shards`` safetensors files of their full size (bf16), each
    a real header followed by a hole (sparse: no weights written); returns the shard paths."""
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(QWEN_7B))
    (directory / "tokenizer.json").write_text("{}")
    tensors = list(_qwen_7b_tensors())
    names = [f"model-{k + 1:05d}-of-{shards:05d}.safetensors" for k in range(shards)]
    weight_map, paths = {}, []
    for k, name in enumerate(names):
        header, offset = {}, 0
        for tensor, shape in tensors[k::shards]:
            size = 2 * math.prod(shape)
            header[tensor] = {
                "dtype": "BF16",
                "shape": shape,
                "data_offsets": [offset, offset + size],
            }
            weight_map[tensor] = name
            offset += size
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        path = directory / name
        with path.open("wb") as out:
            out.write(len(raw).to_bytes(8, "little") + raw)
        os.truncate(path, 8 + len(raw) + offset)
        paths.append(path)
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return paths


def test_a_7b_checkpoint_gets_a_memory_table_from_its_config(tmp_path, capsys):
    """conf/gpu with a 7B checkpoint (headers only) on 8 H100s: the table names the training
    state, the logits, the activations, vLLM's KV cache and sequences at once per stage, and
    the whole [65536, 152064] float32 logits (and gradient) of a microbatch will not fit (no
    model_type: not a model the chunked head serves)."""
    write_sparse_checkpoint(tmp_path / "qwen7b")
    code = check.main(["--env", "gpu", "--conf", str(CONF), "--gpus", "8", "--gpu-memory", "80",
                       "--params", f"model.name_or_path={tmp_path / 'qwen7b'}"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1, out
    assert "7.62B parameters" in out  # the headers' count and config.json's agree
    assert "rl training state (ZeRO-3, 8 GPUs, bf16): 14.2 GiB" in out
    assert "logits [65536 x 152064] float32 and gradient 74.2 GiB" in out  # 2 x 4 bytes each
    assert "KiB a token" in out and "56.0 KiB a token" in out  # 2 x 28 layers x 512 x 2 bytes
    stages = check.load_parameters(CONF, "gpu", {})["rl"]["curriculum"]
    for k, stage in enumerate(stages):
        line = next(
            x for x in out.splitlines() if f"rl.curriculum[{k}] l_max {stage['l_max']}" in x
        )
        assert "sequences at once" in line and f"{56 * stage['l_max'] / 2**20:.2f} GiB" in line
    rl, sft = [x for x in out.splitlines() if x.startswith("PROBLEM")]
    assert "rl training will not fit" in rl and "logits 74.2 GiB" in rl
    assert "rl.grpo.max_tokens_per_microbatch" in rl
    # conf/gpu's SFT keeps every layer's activations: at 32k tokens and 7B they are the most.
    assert "sft training will not fit" in sft and "sft.engine.gradient_checkpointing" in sft


@pytest.mark.parametrize("damage", ["empty", "cut after its header"])
def test_a_damaged_shard_is_a_problem_naming_it_not_a_traceback(tmp_path, capsys, damage):
    """An interrupted copy: the last shard empty, or cut right after its header."""
    last = write_sparse_checkpoint(tmp_path / "qwen7b")[-1]
    if damage == "empty":
        os.truncate(last, 0)
    else:
        with last.open("rb") as handle:
            os.truncate(last, 8 + int.from_bytes(handle.read(8), "little"))
    code = check.main(["--env", "gpu", "--conf", str(CONF),
                       "--params", f"model.name_or_path={tmp_path / 'qwen7b'}"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    named = [x for x in out.splitlines() if x.startswith("PROBLEM") and str(last) in x]
    assert len(named) == 1 and ("cut short" in named[0] or "empty" in named[0]), out


def test_a_damaged_shard_index_is_a_problem_naming_it_not_a_traceback(tmp_path, capsys):
    """An interrupted copy of the index itself: its JSON cut short."""
    write_sparse_checkpoint(tmp_path / "qwen7b")
    index = tmp_path / "qwen7b" / "model.safetensors.index.json"
    index.write_text(index.read_text()[:40])
    code = check.main(["--env", "gpu", "--conf", str(CONF),
                       "--params", f"model.name_or_path={tmp_path / 'qwen7b'}"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    named = [x for x in out.splitlines() if x.startswith("PROBLEM") and str(index) in x]
    assert len(named) == 1, out


def test_a_model_type_the_chunked_head_serves_holds_one_chunk_of_logits(tmp_path, capsys):
    """The same 7B checkpoint, its config naming Qwen2 (as Qwen's own does): training holds
    three float32 temporaries of one chunk of positions and the head's float32 gradient, not
    the microbatch's whole logits, and the rl microbatch fits."""
    write_sparse_checkpoint(tmp_path / "qwen7b")
    config = tmp_path / "qwen7b" / "config.json"
    config.write_text(json.dumps({**QWEN_7B, "model_type": "qwen2"}))
    code = check.main(["--env", "gpu", "--conf", str(CONF), "--gpus", "8", "--gpu-memory", "80",
                       "--params", f"model.name_or_path={tmp_path / 'qwen7b'}"])  # fmt: skip
    out = capsys.readouterr().out
    rows = 2**26 // 152064
    chunk = (3 * rows * 152064 * 4 + 152064 * 3584 * 4) / 2**30
    assert f"logits chunk [{rows} x 152064] float32 x 3 and head gradient {chunk:.1f} GiB" in out
    problems = [x for x in out.splitlines() if x.startswith("PROBLEM")]
    assert not any("rl training" in x for x in problems), out
    assert code == 1 and any("sft training will not fit" in x for x in problems), out
