"""Versioned Kedro datasets for Hugging Face directories (a model + tokenizer, or a tokenizer).

With ``versioned: true`` each save lands in ``<filepath>/<timestamp>/<name>/`` and a load takes the
latest version unless ``--load-versions`` names one, as for any Kedro dataset::

    sft_model:
      type: magistral_kedro.datasets.HFCheckpointDataset
      filepath: data/06_models/sft_model
      dtype: ${globals:model_dtype}
      versioned: true

A checkpoint loads lazily, as a :class:`~magistral_kedro.models.CheckpointRef` (the version
directory and the dtype): a node reads the weights only if it uses them, so a node that only
runs after another, or hands the directory to vLLM, never holds a copy of a large model. A
checkpoint no run has saved yet is an error only where a node reads it.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from magistral_kedro.models.factory import (
    AbsentCheckpoint,
    CheckpointRef,
    ModelSource,
    save_model,
)


class _HFDirectoryDataset(AbstractVersionedDataset):
    """Shared plumbing: a local directory per version, replaced whole on save."""

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(filepath=PurePosixPath(filepath), version=version, exists_function=None)
        self.metadata = metadata

    def _exists(self) -> bool:
        try:
            path = self._get_load_path()
        except DatasetError:
            return False
        return Path(path).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}

    def _load_dir(self) -> PurePosixPath:
        """The version directory to load; a missing one says which run makes it."""
        try:
            return self._get_load_path()
        except DatasetError as error:
            raise DatasetError(
                f"{error} -- nothing saved there yet: the pipeline that writes it has not run. "
                "`kedro run` runs every pipeline in order (curation -> sft -> rl ...); "
                "`kedro run --pipeline curation --to-outputs train_problems,eval_problems,"
                "validation_problems,tokenizer` curates without any model."
            ) from error

    def _fresh_save_dir(self) -> Path:
        path = Path(self._get_save_path())
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path


class HFCheckpointDataset(_HFDirectoryDataset):
    """A causal LM and its tokenizer as a Hugging Face directory, loaded in ``dtype``."""

    def __init__(
        self,
        filepath: str,
        dtype: str = "float32",
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(filepath, version, metadata)
        self._dtype = dtype

    def load(self) -> CheckpointRef:
        """The (latest or pinned) version, to be loaded in ``dtype`` by whoever uses it; with
        no version saved, an :class:`AbsentCheckpoint` that says why once it is read."""
        try:
            return CheckpointRef(Path(self._load_dir()), self._dtype)
        except DatasetError as missing:
            return AbsentCheckpoint(Path(self._filepath), self._dtype, reason=str(missing))

    def save(self, data: ModelSource) -> None:
        """Write a model (in memory or a directory on disk) into a new version directory."""
        save_model(data, self._fresh_save_dir())


class HFTokenizerDataset(_HFDirectoryDataset):
    """A tokenizer alone, as a Hugging Face directory."""

    def load(self) -> PreTrainedTokenizerBase:
        """Load the tokenizer from the (latest or pinned) version."""
        return AutoTokenizer.from_pretrained(str(self._load_dir()))

    def save(self, data: PreTrainedTokenizerBase) -> None:
        """Write the tokenizer into a new version directory."""
        data.save_pretrained(self._fresh_save_dir())
