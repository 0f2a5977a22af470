"""Translation for the language reward: templates, a model behind checks, and the plan."""

import re
from collections import Counter

import pytest

from magistral_kedro.curation.translation import (
    ModelTranslator,
    TemplateTranslator,
    numbers_kept,
    plan_translations,
    translate_problems,
)
from magistral_kedro.generation import SamplingConfig
from magistral_kedro.generation.base import Sample
from magistral_kedro.rewards import check_format, language_of, math_equal
from magistral_kedro.tasks import Problem, generate_math_problems
from magistral_kedro.tasks.math import steps_written, translate_math_problem

ENGLISH = generate_math_problems(
    60, seed=5, languages={"en": 1.0}, levels=dict.fromkeys(range(1, 7), 1.0)
)
OTHERS = ("fr", "es", "it", "de", "zh", "ru")


@pytest.mark.parametrize("language", OTHERS)
def test_templates_translate_every_embedded_problem_exactly(language):
    for problem in ENGLISH:
        translated = translate_math_problem(problem, language)
        assert translated is not None, problem.prompt
        assert translated.answer == problem.answer and translated.difficulty == problem.difficulty
        assert translated.language == language and translated.translated_from == problem.id
        assert numbers_kept(problem.prompt, translated.prompt)
        assert check_format(translated.reference, "math").ok
        # The trace is in the new language too (what the language reward looks at).
        assert math_equal(translated.reference, problem.answer)


@pytest.mark.parametrize("language", OTHERS)
def test_templates_keep_what_the_reference_writes_out(language):
    """The same intermediate results written, the same equations; the prompt reads as the new
    language (what the language reward expects of the answer)."""
    read_as = []
    for problem in ENGLISH:
        translated = translate_math_problem(problem, language)
        assert translated is not None
        assert steps_written(translated.reference) == steps_written(problem.reference)
        assert _equations(translated.reference) == _equations(problem.reference)
        read_as.append(language_of(translated.prompt)[0] == language)
    assert sum(read_as) / len(read_as) >= 0.9


def _equations(reference: str) -> list[str]:
    return re.findall(r"[-+×()0-9 ]+= [0-9]+", reference)


def test_templates_leave_other_problems_alone():
    outsider = ENGLISH[0].model_copy(update={"source": "user", "prompt": "What is 2+2?"})
    french = generate_math_problems(1, seed=0, languages={"fr": 1.0}, levels={1: 1.0})[0]
    edited = ENGLISH[0].model_copy(update={"prompt": ENGLISH[0].prompt + " Explain."})
    assert translate_math_problem(outsider, "fr") is None
    assert translate_math_problem(french, "de") is None
    assert translate_math_problem(edited, "de") is None


def user_problem(problem_id: str, prompt: str, answer: str, **extra: str) -> Problem:
    return Problem(
        id=problem_id,
        kind="math",
        language="en",
        difficulty=0,
        source="user",
        prompt=prompt,
        answer=answer,
        **extra,
    )


class EchoGenerator:
    """Answers every translation request with a fixed text per target language."""

    def __init__(self, replies: dict[str, tuple[str, str]], tokenizer):
        self.replies = replies
        self.tokenizer = tokenizer

    def generate(self, prompts, n, sampling, seed):
        out = []
        for i, prompt_ids in enumerate(prompts):
            prompt = self.tokenizer.decode(prompt_ids)
            key = next(k for k in self.replies if k in prompt)
            text, finish = self.replies[key]
            out.append([Sample(i, [1], [0.0], text, finish)])
        return out


def test_the_model_translator_keeps_only_checked_translations(tokenizer):
    problem = user_problem(
        "u1",
        "A farmer has 12 cows and buys 7 more. How many cows now?",
        "19",
        reference="<think>12 + 7</think> $\\boxed{19}$",
    )
    french = "Un fermier a 12 vaches et en achète 7 de plus. Combien de vaches a-t-il maintenant ?"
    generator = EchoGenerator(
        {
            "French": (french, "stop"),
            "German": ("A farmer has 12 cows and buys 7 more. How many cows now?", "stop"),
            "Spanish": (
                "Un granjero tiene 12 vacas y compra más. ¿Cuántas vacas tiene ahora?",
                "stop",
            ),
            "Italian": ("Un contadino ha 12 mucche e ne compra 7 in più. Quante", "length"),
        },
        tokenizer,
    )
    translator = ModelTranslator(generator, tokenizer, SamplingConfig(temperature=0.0))
    results = translator.translate([problem] * 4, ["fr", "de", "es", "it"])
    good, why = results[0]
    assert why == "" and good.prompt == french and good.answer == "19" and good.language == "fr"
    assert good.reference is None and good.translated_from == "u1" and good.id == "u1-fr"
    assert [r[0] for r in results[1:]] == [None, None, None]
    assert "not 'de'" in results[1][1]
    assert "numbers" in results[2][1]
    assert "cut off" in results[3][1]


def test_the_plan_takes_the_fraction_of_english_math_and_deals_languages_evenly():
    code = Problem(
        id="c",
        kind="code",
        language="en",
        difficulty=0,
        prompt="p",
        tests=[{"input": "", "output": ""}],
        source="t",
    )
    problems = [*ENGLISH, code]
    plan = plan_translations(problems, 0.5, OTHERS, seed=1)
    assert len(plan) == 30 and len({i for i, _ in plan}) == 30
    assert all(problems[i].kind == "math" for i, _ in plan)
    assert set(Counter(lang for _, lang in plan).values()) == {5}
    assert plan == plan_translations(problems, 0.5, OTHERS, seed=1)
    assert plan != plan_translations(problems, 0.5, OTHERS, seed=2)


def test_translators_are_tried_in_order_and_failures_keep_the_original(tokenizer):
    user = user_problem("u", "What is 6 times 7?", "42")
    problems = [ENGLISH[0], user]
    plan = [(0, "fr"), (1, "de")]
    # Templates only: the user problem stays in English, logged as a failure with the reason.
    out, log = translate_problems(problems, plan, [TemplateTranslator()])
    assert out[0].language == "fr" and out[1] == user
    assert [row["status"] for row in log] == ["translated", "failed"]
    assert log[1]["detail"] == "not an embedded template problem"
    # A model after the templates translates what they could not.
    german = "Was ist 6 mal 7?"
    model = ModelTranslator(
        EchoGenerator({"German": (german, "stop")}, tokenizer),
        tokenizer,
        SamplingConfig(temperature=0.0),
    )
    out, log = translate_problems(problems, plan, [TemplateTranslator(), model])
    assert out[1].prompt == german and log[1]["translator"] == "model"
    assert language_of(german)[0] == "de"
