"""Custom Kedro datasets."""

from magistral_kedro.datasets.hf import HFCheckpointDataset, HFTokenizerDataset
from magistral_kedro.datasets.sources import ProblemSourcesDataset

__all__ = ["HFCheckpointDataset", "HFTokenizerDataset", "ProblemSourcesDataset"]
