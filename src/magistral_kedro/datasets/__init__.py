"""Custom Kedro datasets."""

from magistral_kedro.datasets.hf import HFCheckpointDataset, HFTokenizerDataset

__all__ = ["HFCheckpointDataset", "HFTokenizerDataset"]
