"""Models and tokenizers: the tiny embedded default and real Hugging Face checkpoints alike."""

from magistral_kedro.models.factory import (
    Checkpoint,
    CheckpointRef,
    ModelSource,
    TinyModelConfig,
    build_tiny_model,
    dtype_name,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
    tokenizer_of,
)
from magistral_kedro.models.tokenizer import (
    CHAT_TEMPLATE,
    THINK_TOKENS,
    build_prompt,
    train_tokenizer,
)

__all__ = [
    "CHAT_TEMPLATE",
    "THINK_TOKENS",
    "Checkpoint",
    "CheckpointRef",
    "ModelSource",
    "TinyModelConfig",
    "build_prompt",
    "build_tiny_model",
    "dtype_name",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "save_model",
    "tokenizer_of",
    "train_tokenizer",
]
