"""Checkpoint weights read tensor by tensor, from one file or shards, and their count sketch."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from magistral_kedro.analysis import weights
from magistral_kedro.analysis.weights import (
    checkpoint_point,
    checkpoint_tensors,
    count_weights,
    flatten_weights,
    project_checkpoint,
    project_weights,
    sketch_codes,
)


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "b.weight": torch.randn(40, 30, generator=generator),
        "a.weight": torch.randn(70, generator=generator).to(torch.bfloat16),
        "c.bias": torch.randn(13, generator=generator),
        "d.scale": torch.tensor(2.5),  # zero-dimensional
        "steps": torch.tensor([7, 8]),
    }


def test_the_projection_is_the_count_sketch_it_defines(monkeypatch):
    """S x with S built densely from the codes: column j holds +1 in row c_j (c_j < dim) or -1
    in row c_j - dim; every chunk of a tensor has its own codes."""
    monkeypatch.setattr(weights, "CHUNK", 500)  # the 1200-value tensor spans 3 chunks
    state, dim = _state(), 8
    expected = torch.zeros(dim, dtype=torch.float64)
    for name in sorted(state):
        values = state[name].reshape(-1).double()
        if not state[name].is_floating_point():
            continue
        for chunk, start in enumerate(range(0, values.numel(), 500)):
            block = values[start : start + 500]
            codes = sketch_codes(name, chunk, block.numel(), dim, seed=3)
            matrix = torch.zeros(dim, block.numel(), dtype=torch.float64)
            columns = torch.arange(block.numel())
            matrix[codes % dim, columns] = torch.where(codes < dim, 1.0, -1.0).double()
            expected += matrix @ block
    np.testing.assert_allclose(project_weights(state, dim, seed=3), expected.numpy(), rtol=1e-12)


def test_the_codes_are_uniform_signs_and_buckets_and_fixed_by_seed_name_and_chunk():
    codes = sketch_codes("w", 0, 200_000, 16, seed=0)
    assert int(codes.min()) >= 0 and int(codes.max()) == 31
    counts = torch.bincount(codes, minlength=32).double()
    assert (counts / counts.mean() - 1).abs().max() < 0.05  # 6250 each, sd 1.3%
    assert torch.equal(codes, sketch_codes("w", 0, 200_000, 16, seed=0))
    for other in (sketch_codes("w", 0, 200_000, 16, 1), sketch_codes("v", 0, 200_000, 16, 0)):
        assert (other == codes).double().mean() < 0.05  # 1/32 by chance
    assert not torch.equal(sketch_codes("w", 1, 1000, 16, 0), codes[:1000])


def test_inner_products_and_distances_are_kept_on_average():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, generator=generator, dtype=torch.float64)
    y = 0.6 * x + 0.8 * torch.randn(20_000, generator=generator, dtype=torch.float64)
    exact = float(x @ y)  # about 0.6 * 20000
    dim = 256
    estimates = [
        float(project_weights({"w": x}, dim, s) @ project_weights({"w": y}, dim, s))
        for s in range(40)
    ]
    # one estimate's spread: sqrt((|x|^2 |y|^2 + <x,y>^2) / dim) ~ 0.072 * |x||y|
    spread = float(np.sqrt((x @ x) * (y @ y) + exact**2) / np.sqrt(dim))
    assert abs(np.mean(estimates) - exact) < 3 * spread / np.sqrt(len(estimates))
    assert np.std(estimates) == pytest.approx(spread, rel=0.35)
    a, b = project_weights({"w": x}, dim, 0), project_weights({"w": y}, dim, 0)
    assert np.linalg.norm(a - b) == pytest.approx(float(torch.linalg.norm(x - y)), rel=0.25)
    both = project_weights({"w": x + y}, dim, 0)
    np.testing.assert_allclose(both, a + b, rtol=1e-9, atol=1e-9)  # linear


def _sharded(folder, state, shards):
    """``state`` as ``len(shards)`` files and their index; ``shards``: names per file."""
    folder.mkdir()
    weight_map = {}
    for number, names in enumerate(shards, 1):
        file = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_file({name: state[name] for name in names}, folder / file)
        weight_map |= dict.fromkeys(names, file)
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def test_sharded_and_single_file_checkpoints_read_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "CHUNK", 500)  # chunks that cut rows of b.weight [40, 30]
    state = _state()
    single = tmp_path / "single"
    single.mkdir()
    save_file(state, single / "model.safetensors")
    sharded = _sharded(
        tmp_path / "sharded", state, [["c.bias", "a.weight"], ["b.weight", "steps", "d.scale"]]
    )
    for folder in (single, sharded):
        names = [name for name, _ in checkpoint_tensors(folder)]
        assert names == ["a.weight", "b.weight", "c.bias", "d.scale"]  # name order, floats
        assert count_weights(folder) == 70 + 1200 + 13 + 1
    for folder in (single, sharded):
        assert np.array_equal(project_checkpoint(folder, 32, 5), project_weights(state, 32, 5))
    assert np.array_equal(checkpoint_point(sharded, 10_000, 32, 5), flatten_weights(state))
    assert np.array_equal(checkpoint_point(sharded, 1283, 32, 5), project_weights(state, 32, 5))


def test_a_checkpoint_sharded_by_transformers_reads_like_the_model(micro_checkpoint, tmp_path):
    model = micro_checkpoint.model
    model.save_pretrained(tmp_path / "shards", max_shard_size="20KB")
    assert (tmp_path / "shards" / "model.safetensors.index.json").is_file()
    state = model.state_dict()
    del state["lm_head.weight"]  # tied: saved once, as the input embedding
    point = checkpoint_point(tmp_path / "shards", 10**9, 8, 0)
    assert np.array_equal(point, flatten_weights(state))


def test_missing_weights_and_shards_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no weights in .*empty"):
        list(checkpoint_tensors(tmp_path / "empty"))
    folder = _sharded(tmp_path / "gap", _state(), [["a.weight"], ["b.weight"]])
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"names model-00002-of-00002\.safetensors"):
        count_weights(folder)
    (folder / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(ValueError, match="not a safetensors index with a weight_map"):
        count_weights(folder)
