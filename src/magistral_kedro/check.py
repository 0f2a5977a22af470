"""Dry-run check of a configuration environment, without a GPU and without loading weights.

    python -m magistral_kedro.check --env gpu
    python -m magistral_kedro.check --env gpu --params model.name_or_path=/models/Qwen2.5-7B

Validates every parameter section with the same typed classes the pipelines use and the rules
that span sections (the same rules ``kedro run`` applies before its first node), then the
checkpoint directory (``model.name_or_path``): config.json, tokenizer files, every weight shard
an index names (a shard that cannot be read, or is shorter than its header says, is named). Reads
the architecture from config.json and prints a memory table per GPU (:mod:`check_memory`:
training state for the ZeRO stage, logits, activations, vLLM's KV cache and how many sequences
of each curriculum stage it holds at once), naming what will not fit. Every pipeline's lengths are
checked against the model's context window (the tiny model's when no checkpoint is named), and an
evaluation or a difficulty filter that would cut answers shorter than GRPO lets them grow is
named. Exit status 0 when nothing is wrong, 1 otherwise (each problem named).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from kedro.config import OmegaConfigLoader
from pydantic import ValidationError

from magistral_kedro import params as typed
from magistral_kedro.analysis.weights import INDEX_FILE, read_index
from magistral_kedro.check_memory import memory_report
from magistral_kedro.config_loader import CONFIG_LOADER_ARGS
from magistral_kedro.generation import GenerationConfig, SamplingConfig
from magistral_kedro.grpo.config import check_generation_mode
from magistral_kedro.rewards import RewardConfig

SECTIONS: dict[str, Any] = {
    "model": typed.ModelParams,
    "prompt": typed.PromptParams,
    "reward": RewardConfig,
    "generation": GenerationConfig,
    "curation": typed.CurationParams,
    "difficulty_stage1": typed.DifficultyStageParams,
    "difficulty_stage2": typed.DifficultyStageParams,
    "sft": typed.SFTParams,
    "sft_eval": typed.ModelEvalParams,
    "rl": typed.RLParams,
    "rl_eval": typed.ModelEvalParams,
    "eval": typed.EvalParams,
    "analysis": typed.AnalysisParams,
}
#: GPU memory the table assumes unless told (--gpu-memory): an H100's 80 GB.
GPU_GIB = 79.6


@dataclass
class Report:
    """What the check found: facts, and problems that would stop a run."""

    facts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def load_parameters(conf: Path, env: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The merged parameters of ``env`` over base, as ``kedro run --env`` sees them."""
    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    loader = OmegaConfigLoader(str(conf), env=env, runtime_params=overrides, **args)
    return dict(loader["parameters"])


def parse_overrides(text: str | None) -> dict[str, Any]:
    """``--params`` read exactly as ``kedro run --params`` reads it, by Kedro's own parser
    (``kedro.framework.cli.utils._split_params``): items split on commas, each ``key=value``
    (Kedro 1.7 refuses ``key:value``, whatever its help text says), dotted keys nested, values
    typed by OmegaConf's dot-list: ``a.b=1,c=x,d=null`` -> ``{"a": {"b": 1}, "c": "x",
    "d": None}``. A malformed item raises :class:`click.UsageError` with Kedro's message."""
    # Imported here: kedro.framework.cli configures logging on import (`--help` stays quiet).
    from kedro.framework.cli.utils import _split_params

    option = click.Option(["--params"], type=click.UNPROCESSED, default="")  # as kedro run's
    with click.Context(click.Command("check")) as context:
        parsed: dict[str, Any] = _split_params(context, option, text or "")
    return parsed


def _shard_names(directory: Path) -> list[str]:
    """The weight files of a checkpoint: those its index names, else every ``*.safetensors``.
    ValueError naming the index when it cannot be read."""
    index = directory / INDEX_FILE
    if index.is_file():
        return sorted(set(read_index(index).values()))
    return sorted(p.name for p in directory.glob("*.safetensors"))


def read_shard_header(path: Path) -> dict[str, Any]:
    """The tensors a safetensors file declares (its JSON header), no weights read.

    ValueError naming the file when it cannot be read (empty, header cut or not JSON) or is
    shorter than its header says: 8 bytes of header length + the header + the largest data
    offset (an interrupted copy)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path}: {size} bytes, not a safetensors file (an empty copy?)")
        length = int.from_bytes(prefix, "little")
        if 8 + length > size:
            raise ValueError(f"{path}: header of {length} bytes, file of {size}: cut short")
        try:
            header: dict[str, Any] = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: unreadable safetensors header ({error})") from None
    tensors = [v for k, v in header.items() if k != "__metadata__"]
    end = 8 + length + max((t["data_offsets"][1] for t in tensors), default=0)
    if size < end:
        raise ValueError(
            f"{path}: {size} bytes, its header says {end}: cut short (incomplete copy)"
        )
    return header


def _shard_parameters(directory: Path) -> tuple[int, list[str]]:
    """Parameter count read from the safetensors headers (no weights loaded); the problems
    (missing, unreadable or cut shards), each naming its file."""
    count, problems, missing = 0, [], []
    try:
        names = _shard_names(directory)
    except ValueError as error:
        return 0, [str(error)]
    for name in names:
        path = directory / name
        if not path.is_file():
            missing.append(name)
            continue
        try:
            header = read_shard_header(path)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
            problems.append(str(error) if isinstance(error, ValueError) else f"{path}: {error!r}")
            continue
        for key, tensor in header.items():
            if key != "__metadata__":
                count += math.prod(tensor["shape"])
    if missing:
        problems.insert(0, f"{directory}: weight shards missing: {', '.join(missing)}")
    return count, problems


def check_checkpoint(directory: Path, report: Report) -> dict[str, Any] | None:
    """Files of a Hugging Face checkpoint directory; its config.json if readable."""
    if not (directory / "config.json").is_file():
        report.problems.append(f"{directory}: no config.json (not a checkpoint directory)")
        return None
    try:
        model_config: dict[str, Any] = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as error:
        report.problems.append(f"{directory / 'config.json'}: unreadable ({error})")
        return None
    tokenizer_files = ("tokenizer.json", "tokenizer.model", "vocab.json")
    if not any((directory / name).is_file() for name in tokenizer_files):
        report.problems.append(f"{directory}: no tokenizer ({' / '.join(tokenizer_files)})")
    count, shard_problems = _shard_parameters(directory)
    report.problems += shard_problems
    if count == 0 and not shard_problems:
        report.problems.append(f"{directory}: no *.safetensors weights")
    model_config["_parameters"] = count
    arch = ", ".join(model_config.get("architectures", ["?"]))
    report.facts.append(
        f"checkpoint {directory}: {arch}, {count / 1e9:.2f}B parameters, "
        f"{model_config.get('num_hidden_layers', '?')} layers, hidden "
        f"{model_config.get('hidden_size', '?')}, vocabulary {model_config.get('vocab_size', '?')}"
    )
    return model_config


def validate_sections(parameters: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Every section of :data:`SECTIONS` as its typed class; the problems found on the way."""
    validated: dict[str, Any] = {}
    problems: list[str] = []
    for name, cls in SECTIONS.items():
        if name not in parameters:
            problems.append(f"parameters: section {name!r} is missing")
            continue
        try:
            validated[name] = cls(**parameters[name])
        except (ValidationError, TypeError, ValueError) as error:
            problems.append(f"parameters: {name}: {error}")
    return validated, problems


def rule_problems(validated: dict[str, Any]) -> list[str]:
    """Rules that span sections (each section alone is valid)."""
    try:
        check_generation_mode(validated["rl"].grpo, validated["generation"])
    except ValueError as error:
        return [f"parameters: {error}"]
    return []


def _samplings(validated: dict[str, Any]) -> list[tuple[str, SamplingConfig, int]]:
    """The pipelines' sampling settings that grade answers, each with the answer length it must
    allow: evaluations the longest l_max GRPO trains for, the difficulty filter the first stage's
    (what the problems it keeps are trained at). Translation samples with its own model."""
    stages = validated["rl"].curriculum
    longest, first = max(stage.l_max for stage in stages), stages[0].l_max
    return [
        ("sft_eval.sampling", validated["sft_eval"].sampling, longest),
        ("rl_eval.sampling", validated["rl_eval"].sampling, longest),
        ("eval.sampling", validated["eval"].sampling, longest),
        ("difficulty_stage1.sampling", validated["difficulty_stage1"].sampling, first),
        ("difficulty_stage2.sampling", validated["difficulty_stage2"].sampling, first),
    ]


def length_problems(validated: dict[str, Any], window: int) -> list[str]:
    """Lengths that do not fit the context window, and graders that would cut answers short."""
    rl, problems = validated["rl"], []
    longest = max(stage.l_max for stage in rl.curriculum)
    if longest > window:
        problems.append(
            f"rl.curriculum: l_max {longest} exceeds the model's context window ({window})"
        )
    if validated["sft"].loop.max_length > window:
        problems.append(
            f"sft.loop.max_length {validated['sft'].loop.max_length} exceeds the model's "
            f"context window ({window})"
        )
    vllm = validated["generation"].vllm
    use_vllm = validated["generation"].backend == "vllm" and vllm.max_model_len is not None
    if use_vllm and vllm.max_model_len < longest:
        problems.append(
            f"generation.vllm.max_model_len {vllm.max_model_len} < the longest l_max {longest}"
        )
    for key, sampling, allowed in _samplings(validated):
        wanted = sampling.max_new_tokens
        if wanted >= window:
            problems.append(
                f"{key}.max_new_tokens {wanted} leaves no room for the prompt in the model's "
                f"context window ({window})"
            )
        if use_vllm and wanted >= vllm.max_model_len:
            problems.append(
                f"{key}.max_new_tokens {wanted} >= generation.vllm.max_model_len "
                f"{vllm.max_model_len}"
            )
        if wanted < allowed:
            problems.append(
                f"{key}.max_new_tokens {wanted} would truncate answers: GRPO lets them grow to "
                f"l_max {allowed} (rl.curriculum), and a cut answer is graded wrong"
            )
    return problems


def check(parameters: dict[str, Any], gpus: int, gpu_gib: float = GPU_GIB) -> Report:
    """Everything :func:`main` reports, for merged ``parameters``, on ``gpus`` GPUs in all of
    ``gpu_gib`` GiB each."""
    report = Report()
    validated, report.problems = validate_sections(parameters)
    if report.problems:
        return report
    report.facts.append(f"parameters: {len(SECTIONS)} sections valid")
    report.problems += rule_problems(validated)
    model_path = validated["model"].name_or_path
    rl = validated["rl"]
    if model_path is None:
        tiny = validated["model"].tiny
        report.facts.append(
            f"model: the embedded tiny model (context window {tiny.max_position_embeddings})"
        )
        report.problems += length_problems(validated, tiny.max_position_embeddings)
        return report
    model_config = check_checkpoint(Path(model_path), report)
    if model_config is None:
        return report
    window = model_config.get("max_position_embeddings")
    if window is not None:
        report.problems += length_problems(validated, window)
    where = str(Path(model_path) / "config.json")
    facts, problems = memory_report(model_config, where, validated, gpus, gpu_gib)
    report.facts += facts
    report.problems += problems
    report.facts.append(
        f"rl: {len(rl.curriculum)} stages, l_max up to {max(s.l_max for s in rl.curriculum)}, "
        f"generation by {validated['generation'].backend}, {rl.grpo.mode} mode"
    )
    return report


def build_parser() -> argparse.ArgumentParser:
    """The command line, every option with its help (--env and --params as kedro run's)."""
    parser = argparse.ArgumentParser(
        prog="python -m magistral_kedro.check",
        description=__doc__.split("\n")[0],
        epilog="Exit status 0 when nothing is wrong, 1 when a problem is found (each named).",
    )
    parser.add_argument(
        "--env",
        default="gpu",
        help="configuration environment merged over conf/base, as kedro run --env (default: gpu)",
    )
    parser.add_argument(
        "--params",
        default="",
        help="parameter overrides, read by Kedro's own parser as kedro run --params reads them: "
        "comma-separated key=value items, dotted keys for nested ones, values typed as YAML "
        "scalars, e.g. model.name_or_path=/models/Qwen2.5-7B,rl.grpo.group_size=16 "
        "(Kedro 1.7 refuses key:value)",
    )
    parser.add_argument(
        "--conf",
        type=Path,
        default=Path("conf"),
        help="the project's configuration directory (default: ./conf)",
    )
    parser.add_argument(
        "--gpu-memory",
        type=float,
        default=GPU_GIB,
        help=f"memory of one GPU in GiB, for the memory table (default: {GPU_GIB:g}, an H100)",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=8,
        help="GPUs in all, over every node, for the training memory per GPU (default: 8)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print the facts and the problems; 1 if any problem."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.params)
    except click.UsageError as error:
        parser.error(error.format_message())
    report = check(load_parameters(args.conf, args.env, overrides), args.gpus, args.gpu_memory)
    for fact in report.facts:
        print(f"ok       {fact}")
    for problem in report.problems:
        print(f"PROBLEM  {problem}")
    print("dry-run check: " + ("passed" if not report.problems else "FAILED"))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
