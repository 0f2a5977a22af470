"""Curation nodes: sources in, verifiable problems out, every filter its own node.

Every row that leaves the funnel leaves with a stage and a reason, in ``curation_rejects``; the
report (``report.py``) counts rows in and out of every stage per source and kind.
"""

from __future__ import annotations

import contextlib
import logging
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from transformers import PreTrainedTokenizerFast

from magistral_kedro.curation.code_tests import repair_code_problems
from magistral_kedro.curation.difficulty import PassRate, difficulty_verdict, sample_pass_rates
from magistral_kedro.curation.sources import map_source, require_mappings
from magistral_kedro.curation.translation import (
    ModelTranslator,
    TemplateTranslator,
    Translator,
    plan_translations,
    translate_problems,
)
from magistral_kedro.curation.verifiability import verifiability_reasons
from magistral_kedro.evaluation import build_prompts
from magistral_kedro.generation import GenerationConfig, encode_prompts, open_generator
from magistral_kedro.models import CheckpointRef, ModelSource, dtype_name, tokenizer_of
from magistral_kedro.models.tokenizer import train_tokenizer
from magistral_kedro.params import CurationParams, DifficultyStageParams, ModelParams, PromptParams
from magistral_kedro.rewards import RewardConfig
from magistral_kedro.tasks import generate_code_problems, generate_math_problems
from magistral_kedro.tasks.frames import frame_to_problems, problems_to_frame
from magistral_kedro.tasks.prompts import resolve_system_prompt
from magistral_kedro.tasks.schema import validate_rows

logger = logging.getLogger(__name__)

#: The funnel's stages, in order; ``curation_rejects.stage`` is one of them.
STAGES = (
    "read",
    "validate",
    "verifiability",
    "deduplicate",
    "code_tests",
    "split",
    "difficulty_stage1",
    "difficulty_stage2",
)
REJECT_COLUMNS = ["id", "source", "kind", "language", "stage", "reject_reason"]


def rejects_of(frame: pd.DataFrame, stage: str, reasons: Any) -> pd.DataFrame:
    """``frame``'s rows as rejects of ``stage`` with their reasons (a scalar or one per row)."""
    out = frame.assign(stage=stage, reject_reason=reasons).reset_index(drop=True)
    return out.reindex(columns=list(dict.fromkeys([*frame.columns, *REJECT_COLUMNS])))


def generate_embedded_problems(curation: CurationParams, seed: int) -> pd.DataFrame:
    """The embedded default's problems: multilingual chained-arithmetic problems and code
    tasks."""
    math_problems = generate_math_problems(
        curation.math.n, seed, curation.math.languages, curation.math.levels
    )
    code_problems = generate_code_problems(curation.code.n, seed, curation.code.tests_per_problem)
    return problems_to_frame(math_problems + code_problems)


def map_sources(
    sources: dict[str, list[dict[str, Any]]], curation: CurationParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every source file's rows in the problem schema, by its ``curation.sources`` mapping; rows
    that cannot be mapped (unreadable line, missing column, no answer) are rejects of ``read``."""
    require_mappings(sources, curation.sources, "curation.sources")
    mapped, rejects = [], []
    for name, rows in sources.items():
        good, bad = map_source(name, rows, curation.sources[name])
        logger.info(
            "source %s: %d rows, %d mapped, %d rejected", name, len(rows), len(good), len(bad)
        )
        mapped += good
        rejects += bad
    rejected = pd.DataFrame(
        rejects, columns=["source", "kind", "source_row", "raw", "reject_reason"]
    )
    return pd.DataFrame(mapped), rejects_of(rejected, "read", rejected["reject_reason"])


def merge_sources(embedded: pd.DataFrame, mapped: pd.DataFrame) -> pd.DataFrame:
    """All sources in one table, the ``source`` column saying where each row came from."""
    return pd.concat([embedded, mapped], ignore_index=True, sort=False)


def validate_problems(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into schema-valid problems and rejects (row as given + ``reject_reason``)."""
    valid, rejects = validate_rows(raw.to_dict(orient="records"))
    if rejects:
        logger.warning(
            "%d of %d raw rows fail the problem schema; see curation_rejects. First: %s",
            len(rejects),
            len(raw),
            rejects[0]["reject_reason"],
        )
    invalid = pd.DataFrame(rejects, columns=[*raw.columns, "reject_reason"])
    return problems_to_frame(valid), rejects_of(invalid, "validate", invalid["reject_reason"])


def filter_verifiable(problems: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Math problems a rule-based verifier can grade: no proofs, multiple choice, multi-part
    questions, several answers or unreadable answers (reason codes: ``curation.verifiability``)."""
    reasons = pd.Series(verifiability_reasons(frame_to_problems(problems)), index=problems.index)
    dropped = reasons.notna()
    return problems[~dropped].reset_index(drop=True), rejects_of(
        problems[dropped], "verifiability", reasons[dropped].to_numpy()
    )


def normalise_text(text: str) -> str:
    """Case, accents-as-composed, punctuation and spacing folded: near-identical prompts collide."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def deduplicate(problems: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the first of each group of problems whose prompts match exactly or once normalised.

    Returns the unique problems and the duplicates, each with ``reject_reason`` naming the id kept.
    """
    keys = {
        "exact duplicate": problems["prompt"],
        "normalised-text duplicate": problems["prompt"].map(normalise_text),
    }
    keep = pd.Series(True, index=problems.index)
    reasons = pd.Series("", index=problems.index)
    for label, key in keys.items():
        first_id = problems.groupby(key)["id"].transform("first")
        duplicate = keep & (key.duplicated(keep="first"))
        reasons[duplicate] = label + " of " + first_id[duplicate]
        keep &= ~duplicate
    duplicates = rejects_of(problems[~keep], "deduplicate", reasons[~keep].to_numpy())
    return problems[keep].reset_index(drop=True), duplicates


def repair_code_tests(
    problems: pd.DataFrame, curation: CurationParams, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Run every accepted solution on every test: drop tests the solutions disagree on, fix stored
    outputs they all contradict, add tests from input generators (``curation.code_tests``).

    Returns the problems (the others first, then the code ones repaired; ``no_valid_tests`` ones
    removed), one row per test change, and the removed problems as rejects. Problems left with
    too few tests, or without a runnable solution, stay and are named in the log (flags
    ``too_few_tests`` / ``unverified``).
    """
    is_code = (problems["kind"] == "code").to_numpy()
    code = frame_to_problems(problems[is_code])
    repairs = repair_code_problems(code, curation.code_tests, seed)
    changes = pd.DataFrame(
        [change.__dict__ for r in repairs for change in r.changes],
        columns=["problem_id", "test_index", "action", "old_output", "new_output", "detail"],
    )
    flags = pd.DataFrame(
        [
            {"problem_id": r.problem.id, "action": f"flag:{r.flag}", "detail": r.detail}
            for r in repairs
            if r.flag
        ]
    )
    log = pd.concat([changes, flags], ignore_index=True, sort=False)
    kept = [r.problem for r in repairs if r.flag != "no_valid_tests"]
    removed = [r for r in repairs if r.flag == "no_valid_tests"]
    counts = log["action"].value_counts().to_dict() if not log.empty else {}
    logger.info("code tests of %d problems checked: %s", len(code), counts)
    repaired = pd.concat([problems[~is_code], problems_to_frame(kept)], ignore_index=True).reindex(
        columns=problems.columns
    )
    rejects = rejects_of(
        problems_to_frame([r.problem for r in removed]), "code_tests", [r.detail for r in removed]
    )
    return repaired, log, rejects


def translate(
    problems: pd.DataFrame,
    curation: CurationParams,
    model: ModelParams,
    generation: GenerationConfig,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace ``curation.translation.fraction`` of the English math problems by translations
    (templates for embedded problems, else the configured model, sampled through the
    ``generation`` backend). Returns the problems and the translation log (one row per planned
    translation, failures with the reason)."""
    params = curation.translation
    typed = frame_to_problems(problems)
    plan = plan_translations(typed, params.fraction, params.languages, seed)
    with contextlib.ExitStack() as stack:
        translators: list[Translator] = [TemplateTranslator()]
        if params.model is not None:
            source = CheckpointRef(Path(params.model), model.dtype)
            generator = stack.enter_context(open_generator(source, generation, seed))
            tokenizer = tokenizer_of(source)
            translators.append(ModelTranslator(generator, tokenizer, params.sampling, seed))
        translated, log = translate_problems(typed, plan, translators)
    table = pd.DataFrame(log, columns=["problem_id", "language", "translator", "status", "detail"])
    failed = int((table["status"] == "failed").sum())
    if failed:
        logger.warning(
            "%d of %d planned translations failed (kept in English); see translation_log",
            failed,
            len(table),
        )
    return problems_to_frame(translated), table


def split_train_eval(
    problems: pd.DataFrame, curation: CurationParams, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A seeded random split into training, held-out (``eval_size`` problems, at most half the
    data) and validation (``validation_size``, at most a quarter) problems. Settings are chosen
    on the validation split; the held-out one only measures."""
    if problems.empty:
        raise ValueError("no problem survived curation: check curation_rejects for the reasons")
    n_eval = min(curation.eval_size, len(problems) // 2)
    n_validation = min(curation.validation_size, len(problems) // 4)
    order = np.random.default_rng(seed).permutation(len(problems))
    eval_rows, validation_rows, train_rows = np.split(order, [n_eval, n_eval + n_validation])

    def rows(picked: np.ndarray) -> pd.DataFrame:
        return problems.iloc[np.sort(picked)].reset_index(drop=True)

    return rows(train_rows), rows(eval_rows), rows(validation_rows)


def measure_pass_rates(
    problems: pd.DataFrame,
    model: ModelSource,
    stage: DifficultyStageParams,
    prompt: PromptParams,
    reward: RewardConfig,
    generation: GenerationConfig,
    seed: int,
) -> pd.DataFrame:
    """A difficulty stage's sampling: ``n_samples`` samples per problem of its ``kinds`` (at most
    ``max_problems``, drawn with the seed) from its ``model`` or, when null, the pipeline's model,
    through the ``generation`` backend; one row per problem: correct count, pass rate, the
    histogram of answers given, the majority answer."""
    if stage.model is not None:
        model = CheckpointRef(Path(stage.model), dtype_name(model))
    pool = problems[problems["kind"].isin(stage.kinds)]
    if stage.max_problems is not None and len(pool) > stage.max_problems:
        pool = pool.sample(n=stage.max_problems, random_state=seed).sort_index()
    tokenizer = tokenizer_of(model)
    prompts = encode_prompts(tokenizer, build_prompts(pool, tokenizer, prompt.system_prompt))
    with open_generator(model, generation, seed) as generator:
        rates, seconds = sample_pass_rates(
            generator,
            frame_to_problems(pool),
            prompts,
            stage.n_samples,
            stage.sampling,
            reward,
            seed,
        )
    logger.info(
        "pass rates of %d problems x %d samples: sampling %.1f s, verifying %.1f s",
        len(rates),
        stage.n_samples,
        seconds["sampling"],
        seconds["verifying"],
    )
    table = pd.DataFrame([{**r.__dict__, "pass_rate": r.pass_rate} for r in rates])
    return table.reindex(
        columns=[
            "problem_id",
            "n_samples",
            "n_correct",
            "pass_rate",
            "majority_answer",
            "majority_count",
            "majority_correct",
            "answers",
        ]
    )


def filter_by_pass_rate(
    problems: pd.DataFrame, pass_rates: pd.DataFrame, stage: DifficultyStageParams
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Keep the problems whose pass rate is within the stage's ``bounds`` (re-run alone to
    re-threshold saved pass rates). Problems of other kinds pass through; problems of the
    filtered kinds that were not sampled (``max_problems``) are left out as ``not_sampled``.

    Returns the kept problems, the dropped ones (rejects with the reason; ``collect_rejects``
    names their stage), and the suspected wrong references with the answer most samples gave
    instead."""
    records = {r["problem_id"]: PassRate.from_record(r) for r in pass_rates.to_dict("records")}
    reasons: list[str | None] = []
    for problem_id, kind in zip(problems["id"], problems["kind"], strict=True):
        rate = records.get(problem_id)
        if kind not in stage.kinds:
            reasons.append(None)
        elif rate is None:
            reasons.append("not_sampled")
        else:
            reasons.append(difficulty_verdict(rate, stage.bounds))
    verdicts = pd.Series(reasons, index=problems.index, dtype=object)
    dropped = verdicts.notna()
    kept = problems[~dropped].reset_index(drop=True)
    counts = verdicts[dropped].value_counts().to_dict()
    logger.info("difficulty filter: %d of %d kept; dropped %s", len(kept), len(problems), counts)
    if kept.empty:
        raise ValueError(
            f"the difficulty filter kept no problem (dropped: {counts}); loosen its stage's "
            f"bounds (difficulty_stage1 / difficulty_stage2) or look at the pass rates it saved"
        )
    rejects = rejects_of(problems[dropped], "difficulty", verdicts[dropped].to_numpy())
    suspect_ids = rejects.loc[rejects["reject_reason"] == "suspect_reference", "id"]
    suspects = problems[problems["id"].isin(suspect_ids)][["id", "source", "prompt", "answer"]]
    suspects = suspects.merge(
        pass_rates[["problem_id", "majority_answer", "majority_count", "n_samples", "answers"]],
        left_on="id",
        right_on="problem_id",
    ).drop(columns="problem_id")
    return kept, rejects, suspects.reset_index(drop=True)


def train_problem_tokenizer(
    train: pd.DataFrame, curation: CurationParams, prompt: PromptParams
) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the training prompts, references and the system prompt."""
    system_prompt = resolve_system_prompt(prompt.system_prompt) or ""
    texts = [system_prompt, *train["prompt"], *train["reference"].dropna()]
    return train_tokenizer(texts, curation.vocab_size)
