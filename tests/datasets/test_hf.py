"""The versioned Hugging Face directory datasets."""

import pytest
import torch
from kedro.io import DatasetError

from magistral_kedro.datasets import HFCheckpointDataset, HFTokenizerDataset
from magistral_kedro.models import CheckpointRef, save_checkpoint


def test_a_checkpoint_round_trips_through_a_version(micro_checkpoint, tmp_path):
    dataset = HFCheckpointDataset(str(tmp_path / "model"), dtype="bfloat16", version=None)
    dataset.save(micro_checkpoint)
    reference = dataset.load()  # nothing read yet: a reference in the configured dtype
    assert isinstance(reference, CheckpointRef) and reference.dtype == "bfloat16"
    loaded = reference.load()
    for ours, theirs in zip(
        micro_checkpoint.model.parameters(), loaded.model.parameters(), strict=True
    ):
        assert theirs.dtype == torch.bfloat16
        torch.testing.assert_close(ours.to(torch.bfloat16), theirs)
    assert loaded.tokenizer.tokenize("<think>") == ["<think>"]


def test_a_model_on_disk_is_saved_as_links_to_its_files(micro_checkpoint, tmp_path):
    save_checkpoint(micro_checkpoint, tmp_path / "trained")
    dataset = HFCheckpointDataset(str(tmp_path / "model"), version=None)
    dataset.save(CheckpointRef(tmp_path / "trained"))
    saved = dataset.load().path / "model.safetensors"
    assert saved.stat().st_ino == (tmp_path / "trained" / "model.safetensors").stat().st_ino
    for ours, theirs in zip(
        micro_checkpoint.model.parameters(), dataset.load().load().model.parameters(), strict=True
    ):
        torch.testing.assert_close(ours, theirs)


def test_a_missing_version_says_which_run_makes_it_where_it_is_used(tmp_path):
    """A model no run has saved yet loads as a reference that raises once a node reads it: a
    node given a model it does not use (rl.init picks one of two, eval.checkpoint replaces
    this run's RL model) runs without it."""
    from kedro.io.core import Version

    made_by = r"has not run.*`kedro run` runs every pipeline"
    absent = HFCheckpointDataset(str(tmp_path / "sft_model"), version=Version(None, None)).load()
    assert isinstance(absent, CheckpointRef)
    for read in (absent.load, absent.load_tokenizer):
        with pytest.raises(FileNotFoundError, match=made_by):
            read()
    with pytest.raises(DatasetError, match=made_by):
        HFTokenizerDataset(str(tmp_path / "tokenizer"), version=Version(None, None)).load()
