"""Custom Kedro datasets."""

from magistral_kedro.datasets.hf import HFCheckpointDataset, HFTokenizerDataset
from magistral_kedro.datasets.sources import ProblemSourcesDataset
from magistral_kedro.datasets.tables import MlflowTableDataset

__all__ = [
    "HFCheckpointDataset",
    "HFTokenizerDataset",
    "MlflowTableDataset",
    "ProblemSourcesDataset",
]
