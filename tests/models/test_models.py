import pytest
import torch

from magistral_kedro.models import THINK_TOKENS, build_prompt, load_checkpoint, save_checkpoint
from magistral_kedro.models.factory import TinyModelConfig, build_tiny_model


def test_digits_are_single_tokens_and_think_tags_are_atomic(tokenizer):
    tokens = tokenizer.tokenize("<think>\n12 + 345 = 357\n</think>")
    assert tokens[0] == "<think>" and tokens[-1] == "</think>"
    digits = [t for t in tokens if any(c.isdigit() for c in t)]
    assert all(len(t.lstrip("Ġ")) == 1 for t in digits), digits


def test_decoding_keeps_think_tags_and_drops_specials(tokenizer, math_problems):
    for problem in math_problems[:50]:
        ids = tokenizer(problem.reference + tokenizer.eos_token, add_special_tokens=False).input_ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == problem.reference
    assert all(len(tokenizer.tokenize(t)) == 1 for t in THINK_TOKENS)


def test_prompt_uses_the_chat_template(tokenizer):
    text = build_prompt(tokenizer, "What is 2 + 2?", system_prompt="Be brief.")
    assert text == "<|bos|><|system|>Be brief.<|user|>What is 2 + 2?<|assistant|>"
    assert build_prompt(tokenizer, "Hi", None) == "<|bos|><|user|>Hi<|assistant|>"


def test_tiny_model_size_follows_config(tokenizer):
    small = build_tiny_model(
        tokenizer,
        TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
        seed=0,
    )
    large = build_tiny_model(
        tokenizer,
        TinyModelConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128),
        seed=0,
    )
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(small) < count(large)
    assert small.config.vocab_size == len(tokenizer)


def test_bad_shape_is_rejected(tokenizer):
    with pytest.raises(ValueError, match="divisible"):
        build_tiny_model(tokenizer, TinyModelConfig(hidden_size=30, num_heads=4), seed=0)


def test_checkpoint_round_trips_as_a_hugging_face_directory(micro_checkpoint, tmp_path):
    save_checkpoint(micro_checkpoint, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "config.json").is_file()
    loaded = load_checkpoint(tmp_path / "ckpt")
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        expected = micro_checkpoint.model(ids).logits
        got = loaded.model(ids).logits
    torch.testing.assert_close(got, expected)
    assert loaded.tokenizer.tokenize("<think>12</think>") == micro_checkpoint.tokenizer.tokenize(
        "<think>12</think>"
    )


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere")


def _copy_on_rank(rank: int, port: int, checkpoint, out: str) -> None:
    """Each rank opens its own temporary copy of an in-memory model (a vLLM engine per rank
    reads one); it records which files its copy holds."""
    import torch.distributed as dist

    from magistral_kedro.generation.factory import checkpoint_directory
    from tests.support.ranks import join_as_launched

    join_as_launched(rank, port)
    with checkpoint_directory(checkpoint) as directory:
        files = sorted(path.name for path in directory.iterdir())
        torch.save(files, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_every_rank_writes_its_own_copy_of_a_model_in_memory(micro_checkpoint, tmp_path):
    """save_pretrained writes on rank 0 alone once torch.distributed is up; a copy in a rank's
    own temporary directory must be written by that rank, or its engine finds nothing."""
    import torch.multiprocessing as mp

    from tests.support.ranks import free_port

    mp.spawn(_copy_on_rank, args=(free_port(), micro_checkpoint, str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        files = torch.load(tmp_path / f"rank{rank}.pt")
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files), (rank, files)
