"""Problem source files: a missing file fails the run by name, unless its source is optional."""

import logging

import pytest
from kedro.io import DatasetError

from magistral_kedro.datasets import ProblemSourcesDataset


def test_a_missing_source_file_is_named(tmp_path):
    dataset = ProblemSourcesDataset({"gsm8k": str(tmp_path / "gsm8k.jsonl")})
    with pytest.raises(DatasetError, match=r"gsm8k\.jsonl"):
        dataset.load()


def test_an_optional_source_that_is_missing_is_left_out_with_a_warning(tmp_path, caplog):
    present = tmp_path / "mine.jsonl"
    present.write_text('{"problem": "1 + 1", "answer": "2"}\n')
    dataset = ProblemSourcesDataset(
        {"mine": str(present), "gsm8k": str(tmp_path / "gsm8k.jsonl")}, optional=True
    )
    with caplog.at_level(logging.WARNING):
        loaded = dataset.load()
    assert loaded == {"mine": [{"problem": "1 + 1", "answer": "2"}]}
    assert "gsm8k.jsonl" in caplog.text
