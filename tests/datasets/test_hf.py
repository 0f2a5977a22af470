"""The versioned Hugging Face directory datasets."""

import pytest
import torch
from kedro.io import DatasetError

from magistral_kedro.datasets import HFCheckpointDataset, HFTokenizerDataset


def test_a_checkpoint_round_trips_through_a_version(micro_checkpoint, tmp_path):
    dataset = HFCheckpointDataset(str(tmp_path / "model"), version=None)
    dataset.save(micro_checkpoint)
    loaded = dataset.load()
    for ours, theirs in zip(
        micro_checkpoint.model.parameters(), loaded.model.parameters(), strict=True
    ):
        torch.testing.assert_close(ours, theirs)
    assert loaded.tokenizer.tokenize("<think>") == ["<think>"]


def test_a_missing_version_says_which_run_makes_it(tmp_path):
    from kedro.io.core import Version

    for dataset in (
        HFCheckpointDataset(str(tmp_path / "sft_model"), version=Version(None, None)),
        HFTokenizerDataset(str(tmp_path / "tokenizer"), version=Version(None, None)),
    ):
        with pytest.raises(DatasetError, match=r"has not run.*`kedro run` runs every pipeline"):
            dataset.load()
