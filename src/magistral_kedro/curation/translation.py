"""Translating a fraction of the English problems, so the language reward has something to reward
(docs/recipe.md, sections 2 and 4: 10% of the problems in French, Spanish, Italian, German, Chinese
and Russian).

Two translators share one interface. :class:`TemplateTranslator` rewrites the embedded generator's
problems with its own templates in the other language (exact, with a trace in that language).
:class:`ModelTranslator` prompts a local model through the generation interface; a translation is
kept only if the fastText classifier reads it as the target language and every number of the
original is still in it. The answer is never touched.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from transformers import PreTrainedTokenizerBase

from magistral_kedro.generation.base import Generator, SamplingConfig, encode_prompts
from magistral_kedro.models.tokenizer import build_prompt
from magistral_kedro.rewards.language import language_of
from magistral_kedro.tasks.math import translate_math_problem
from magistral_kedro.tasks.schema import Problem

LANGUAGE_NAMES = {
    "en": "English",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "de": "German",
    "zh": "Chinese",
    "ru": "Russian",
}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


class Translator(Protocol):
    """Turns problems into problems in other languages; ``None`` where it cannot (or failed)."""

    name: str

    def translate(
        self, problems: Sequence[Problem], languages: Sequence[str]
    ) -> list[tuple[Problem | None, str]]:
        """(translation or None, why not) for each (problem, target language) pair."""
        ...


def translated_copy(problem: Problem, language: str, prompt: str, reference: str | None) -> Problem:
    """``problem`` in ``language``: same answer and tests, new id, provenance kept."""
    return problem.model_copy(
        update={
            "id": f"{problem.id}-{language}",
            "language": language,
            "prompt": prompt,
            "reference": reference,
            "translated_from": problem.id,
        }
    )


class TemplateTranslator:
    """The embedded math generator's templates: exact translations of its own problems."""

    name = "templates"

    def translate(
        self, problems: Sequence[Problem], languages: Sequence[str]
    ) -> list[tuple[Problem | None, str]]:
        out: list[tuple[Problem | None, str]] = []
        for problem, language in zip(problems, languages, strict=True):
            rendered = translate_math_problem(problem, language)
            if rendered is None:
                out.append((None, "not an embedded template problem"))
            else:
                out.append(
                    (translated_copy(problem, language, rendered.prompt, rendered.reference), "")
                )
        return out


def numbers_kept(original: str, translation: str) -> bool:
    """Whether every number of ``original`` appears in ``translation`` as often."""
    need = Counter(n.replace(",", ".") for n in _NUMBER.findall(original))
    have = Counter(n.replace(",", ".") for n in _NUMBER.findall(translation))
    return not need - have


class ModelTranslator:
    """A local model asked to translate; kept only if the language and the numbers check out."""

    name = "model"

    def __init__(
        self,
        generator: Generator,
        tokenizer: PreTrainedTokenizerBase,
        sampling: SamplingConfig,
        seed: int = 0,
    ) -> None:
        self.generator = generator
        self.tokenizer = tokenizer
        self.sampling = sampling
        self.seed = seed

    @staticmethod
    def instruction(problem: Problem, language: str) -> str:
        """What the model is asked: a faithful translation, numbers and LaTeX unchanged."""
        return (
            f"Translate this math problem into {LANGUAGE_NAMES[language]}. Keep every number and "
            "every LaTeX expression exactly as it is. Reply with the translation only.\n\n"
            + problem.prompt
        )

    def translate(
        self, problems: Sequence[Problem], languages: Sequence[str]
    ) -> list[tuple[Problem | None, str]]:
        texts = [
            build_prompt(self.tokenizer, self.instruction(p, lang), None)
            for p, lang in zip(problems, languages, strict=True)
        ]
        prompts = encode_prompts(self.tokenizer, texts)
        groups = self.generator.generate(prompts, 1, self.sampling, self.seed)
        out: list[tuple[Problem | None, str]] = []
        for problem, language, (sample,) in zip(problems, languages, groups, strict=True):
            text = sample.text.strip()
            detected, _ = language_of(text)
            if sample.finish_reason != "stop":
                out.append((None, "translation cut off at max_new_tokens"))
            elif detected != language:
                out.append((None, f"reads as {detected or 'nothing'!r}, not {language!r}"))
            elif not numbers_kept(problem.prompt, text):
                out.append((None, "numbers of the original missing from the translation"))
            else:
                out.append((translated_copy(problem, language, text, None), ""))
        return out


def plan_translations(
    problems: Sequence[Problem], fraction: float, languages: Sequence[str], seed: int
) -> list[tuple[int, str]]:
    """Which English math problems to translate, and into what: ``fraction`` of them drawn with
    ``seed``, the target languages dealt out evenly. Returns (index in ``problems``, language)."""
    candidates = [i for i, p in enumerate(problems) if p.kind == "math" and p.language == "en"]
    rng = random.Random(seed)
    chosen = sorted(rng.sample(candidates, round(fraction * len(candidates))))
    targets = [languages[i % len(languages)] for i in range(len(chosen))]
    rng.shuffle(targets)
    return list(zip(chosen, targets, strict=True))


def translate_problems(
    problems: Sequence[Problem],
    plan: Sequence[tuple[int, str]],
    translators: Sequence[Translator],
) -> tuple[list[Problem], list[dict[str, str]]]:
    """Replace each planned problem by its translation, trying ``translators`` in order; a problem
    none of them translates stays as it was. Returns the problems and one log row per plan entry
    (``problem_id``, ``language``, ``translator``, ``status``: translated / failed, ``detail``)."""
    out = list(problems)
    log = {
        index: {
            "problem_id": problems[index].id,
            "language": language,
            "translator": "",
            "status": "failed",
            "detail": "no translator",
        }
        for index, language in plan
    }
    pending = list(plan)
    for translator in translators:
        if not pending:
            break
        results = translator.translate(
            [problems[i] for i, _ in pending], [lang for _, lang in pending]
        )
        still = []
        for (index, language), (translation, why) in zip(pending, results, strict=True):
            row = {
                "problem_id": problems[index].id,
                "language": language,
                "translator": translator.name,
                "detail": why,
            }
            if translation is None:
                log[index] = {**row, "status": "failed"}
                still.append((index, language))
            else:
                log[index] = {**row, "status": "translated"}
                out[index] = translation
        pending = still
    return out, [log[i] for i, _ in plan]
