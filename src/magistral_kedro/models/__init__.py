"""Models and tokenizers: the tiny embedded default and real Hugging Face checkpoints alike."""

from magistral_kedro.models.factory import (
    Checkpoint,
    TinyModelConfig,
    build_tiny_model,
    load_checkpoint,
    save_checkpoint,
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
    "TinyModelConfig",
    "build_prompt",
    "build_tiny_model",
    "load_checkpoint",
    "save_checkpoint",
    "train_tokenizer",
]
