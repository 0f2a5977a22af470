"""Seeded generator of multilingual arithmetic and algebra word problems with worked traces.

Difficulty levels (1 easiest):

1. one addition or subtraction;  2. an addition then a subtraction;  3. a product plus a sum;
4. a linear equation ``a*x + b = c`` with an integer root;  5. ``a*x = b`` with a fractional root.

Every problem carries its exact answer (an integer, or ``\\frac{p}{q}`` in lowest terms) and a
reference completion in the Magistral format, written in the problem's language::

    <think>
    <reasoning>
    </think>
    <one-sentence summary with $\\boxed{answer}$>

The reasoning comes in one of two styles (:data:`STYLES`): ``full`` writes every step out
("First we add: 6 + 46 = 52. Then we subtract: 52 - 19 = 33."), ``hurried`` thinks only the
answer ("33"), the way a hurried solver blurts it out. Which one a reference takes follows the
prompt (:class:`StyleMix`): a share of the problems are asked as a quick question ("Quick
question: Emma has..."), and those are mostly answered hurried, the others mostly in full. So
the style is a function of the problem a model can read, not a coin to toss: greedy decoding
writes quick questions hurried and the rest in full, seed after seed, while sampling still draws
the other style now and then. A small model that answers at once is right far less often than
one that writes the computation out, so GRPO, rewarded for right answers alone, learns to write
the steps out even when asked to be quick, and answers grow as reward grows. That growth is built
into this task, not evidence of the paper's length dynamics (docs/results.md). Hurried thoughts
hold no words, so the language reward has nothing to judge in them and neither helps nor hurts
the style.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Annotated

from pydantic import Field

from magistral_kedro.config import config
from magistral_kedro.tasks.math_templates import TEMPLATES
from magistral_kedro.tasks.schema import LANGUAGES, Problem

LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)
#: How a reference trace is written: every step out, or the answer at once.
STYLES: tuple[str, ...] = ("full", "hurried")


Share = Annotated[float, Field(ge=0, le=1)]


@config
class StyleMix:
    """Which problems are asked as quick questions, and how often each kind of prompt gets a
    hurried reference (``curation.math.styles``). The default, no quick questions and no
    hurried traces, writes every reference in full."""

    quick_share: Share = 0.0
    hurried_if_quick: Share = 0.0
    hurried_if_plain: Share = 0.0

    def draw(self, rng: random.Random) -> tuple[bool, str]:
        """(asked as a quick question, reference style) of one problem."""
        quick = rng.random() < self.quick_share
        hurried = rng.random() < (self.hurried_if_quick if quick else self.hurried_if_plain)
        return quick, "hurried" if hurried else "full"


#: No quick questions, every reference written in full.
ALL_FULL = StyleMix()


def _draw(level: int, rng: random.Random) -> tuple[str, dict[str, int]]:
    """Draw the numbers of one problem at ``level``: (template key, a / b / c)."""
    if level == 1:
        a, b = rng.randint(2, 99), rng.randint(1, 99)
        if rng.random() < 0.5:
            return "add", {"a": a, "b": b}
        return "sub", {"a": max(a, b), "b": min(a, b)}
    if level == 2:
        a, b = rng.randint(2, 50), rng.randint(1, 50)
        return "add_sub", {"a": a, "b": b, "c": rng.randint(1, a + b)}
    if level == 3:
        return "mul_add", {
            "a": rng.randint(2, 12),
            "b": rng.randint(2, 12),
            "c": rng.randint(0, 50),
        }
    if level == 4:
        a, x, b = rng.randint(2, 9), rng.randint(1, 20), rng.randint(1, 30)
        return "linear", {"a": a, "b": b, "c": a * x + b}
    if level == 5:
        a = rng.randint(2, 9)
        return "fraction", {"a": a, "b": rng.choice([n for n in range(1, 31) if n % a])}
    raise ValueError(f"difficulty level must be one of {LEVELS}, got {level}")


def _solve(key: str, n: Mapping[str, int]) -> tuple[dict[str, int], Fraction]:
    """The intermediate results a trace shows ({s}, {p}, {d}) and the exact answer."""
    a, b, c = n["a"], n["b"], n.get("c", 0)
    if key == "add":
        return {}, Fraction(a + b)
    if key == "sub":
        return {}, Fraction(a - b)
    if key == "add_sub":
        return {"s": a + b}, Fraction(a + b - c)
    if key == "mul_add":
        return {"p": a * b}, Fraction(a * b + c)
    if key == "linear":
        return {"d": c - b}, Fraction(c - b, a)
    return {}, Fraction(b, a)  # fraction


def format_answer(value: Fraction) -> str:
    """The canonical LaTeX form of an exact answer: ``19``, ``-3`` or ``\\frac{5}{2}``."""
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def _render(
    problem_id: str,
    language: str,
    level: int,
    key: str,
    numbers: Mapping[str, int],
    person: int,
    item: int,
    style: str,
    quick: bool,
) -> Problem:
    """One problem from its drawn parts, written in ``language`` (as a quick question if
    ``quick``) with its reference completion in ``style``."""
    check_known("trace style", [style], STYLES)
    lang = TEMPLATES[language]
    derived, answer = _solve(key, numbers)
    answer_tex = format_answer(answer)
    fields = {
        **lang.people[person % len(lang.people)],
        **lang.items[item % len(lang.items)],
        **numbers,
        **derived,
        "r": answer_tex,
        "rt": f"{answer.numerator}/{answer.denominator}",
        "plain": str(answer),
    }
    thoughts = lang.steps[key].format(**fields) if style == "full" else fields["plain"]
    return Problem(
        id=problem_id,
        kind="math",
        language=language,
        difficulty=level,
        prompt=(lang.quick if quick else "") + lang.problems[key].format(**fields),
        answer=answer_tex,
        reference=f"<think>\n{thoughts}\n</think>\n{lang.summary.format(**fields)}",
        source="embedded/math",
    )


def make_math_problem(
    index: int,
    language: str,
    level: int,
    rng: random.Random,
    style: str = "full",
    quick: bool = False,
) -> Problem:
    """One problem in ``language`` at difficulty ``level`` (a quick question if ``quick``), with
    its reference completion written in ``style`` (one of :data:`STYLES`)."""
    lang = TEMPLATES[language]
    key, numbers = _draw(level, rng)
    person, item = rng.randrange(len(lang.people)), rng.randrange(len(lang.items))
    problem_id = f"math-{language}-{level}-{index:06d}"
    return _render(problem_id, language, level, key, numbers, person, item, style, quick)


def trace_style(completion: str) -> str:
    """``hurried`` if the thoughts of ``completion`` hold no words and no equation (at most a
    number), else ``full``: how a reference, or a model's answer, was written."""
    start = completion.find("<think>")
    thoughts = completion[start + len("<think>") :] if start >= 0 else completion
    thoughts = thoughts.split("</think>")[0]
    working = "=" in thoughts or any(ch.isalpha() for ch in thoughts)
    return "full" if working else "hurried"


def _english_pattern(key: str) -> re.Pattern[str]:
    """The English template of ``key`` as a regex that recovers its person, item and numbers."""
    lang = TEMPLATES["en"]
    choices = {
        "name": "|".join(re.escape(p["name"]) for p in lang.people),
        "item": "|".join(re.escape(i["item"]) for i in lang.items),
    }
    pattern, seen = f"(?P<quick>{re.escape(lang.quick)})?", set()
    for literal, name in re.findall(r"([^{]*)(?:\{(\w+)\})?", lang.problems[key]):
        pattern += re.escape(literal)
        if name and name in seen:
            pattern += f"(?P={name})"
        elif name:
            seen.add(name)
            pattern += f"(?P<{name}>{choices.get(name, r'-?[0-9]+')})"
    return re.compile(pattern + "$")


def translate_math_problem(problem: Problem, language: str) -> Problem | None:
    """The same embedded English problem (numbers, person, item, quick or not) written in
    ``language``, with its trace in the same style; ``None`` when ``problem`` is not one the
    English templates produce."""
    check_known("language code", [language], LANGUAGES)
    if problem.kind != "math" or problem.language != "en" or problem.source != "embedded/math":
        return None
    en = TEMPLATES["en"]
    for key in en.problems:
        match = _english_pattern(key).match(problem.prompt)
        if match is None:
            continue
        numbers = {k: int(v) for k, v in match.groupdict().items() if k in ("a", "b", "c")}
        names = [p["name"] for p in en.people]
        items = [i["item"] for i in en.items]
        person = names.index(match["name"]) if "name" in match.groupdict() else 0
        item = items.index(match["item"]) if "item" in match.groupdict() else 0
        style = trace_style(problem.reference or "")
        quick = match["quick"] is not None
        translated = _render(
            f"{problem.id}-{language}",
            language,
            problem.difficulty,
            key,
            numbers,
            person,
            item,
            style,
            quick,
        )
        return translated.model_copy(update={"translated_from": problem.id})
    return None


def _pick(weights: Mapping[str, float] | Mapping[int, float], rng: random.Random) -> list:
    keys = list(weights)
    return rng.choices(keys, weights=[float(weights[k]) for k in keys])  # type: ignore[index]


def check_known(what: str, given: Iterable[object], known: Sequence[object]) -> None:
    """Raise ValueError naming every value of ``given`` that is not in ``known``."""
    unknown = sorted({str(value) for value in given} - {str(value) for value in known})
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {list(known)}")


def generate_math_problems(
    n: int,
    seed: int,
    languages: Mapping[str, float],
    levels: Mapping[int, float],
    styles: StyleMix = ALL_FULL,
) -> list[Problem]:
    """``n`` problems, each language and level drawn with the given weights; same seed, same list.

    Args:
        n: number of problems.
        seed: the random seed; the whole list is a function of it.
        languages: weight per language code (a subset of :data:`LANGUAGES`).
        levels: weight per difficulty level (a subset of :data:`LEVELS`).
        styles: which problems are quick questions and which references hurried. Drawn from a
            stream of their own, so the problems' numbers do not depend on it.
    """
    check_known("language code", languages, LANGUAGES)
    check_known("difficulty level", levels, LEVELS)
    rng, style_rng = random.Random(seed), random.Random(f"styles-{seed}")
    problems = []
    for index in range(n):
        (language,) = _pick(languages, rng)
        (level,) = _pick(levels, rng)
        quick, style = styles.draw(style_rng)
        problems.append(make_math_problem(index, language, int(level), rng, style, quick))
    return problems
