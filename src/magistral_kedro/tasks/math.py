"""Seeded generator of multilingual chained-arithmetic problems with worked traces.

A problem is a chain of k operations on a starting number; k is its difficulty (1 to 6)::

    Start with 17. Add 8. Multiply by 3. Subtract 4. What is the result?

Its reference completion, in the Magistral format and the problem's language, works the chain
out in *segments*. Each segment applies one or more consecutive operations and writes the value
they reach, so a trace writes some, all or none of the chain's k - 1 intermediate results::

    <think>
    We compute 17 + 8 = 25.
    Then we compute 25 × 3 - 4 = 71.
    </think>
    So the answer is $\\boxed{71}$.

How many intermediate results a reference writes is drawn at random, independent of k and of
the prompt: a share q, uniform on [0, 1], per problem, then each intermediate result written
with probability q (so their count is uniform on 0..k-1). SFT sees every length at every
difficulty, and nothing in the prompt says how much to write: how much a model writes is its
own choice, and whether writing more pays is for the benchmarks to measure
(``benchmarks/dynamics.py``), not built in.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterable, Mapping, Sequence

from magistral_kedro.tasks.math_templates import TEMPLATES, Language
from magistral_kedro.tasks.schema import LANGUAGES, Problem

#: Difficulty levels: the number of operations in the chain.
LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
SYMBOLS = {"add": "+", "sub": "-", "mul": "×"}
#: Every value on a chain's way stays in 1..MAX_VALUE (two digits) and every operand is one
#: digit, so that each step is within reach of the tiny default model's SFT budget: what
#: makes a chain hard is its length, not its numbers.
MAX_VALUE = 99

Operation = tuple[str, int]  # ("add" | "sub" | "mul", operand)


def _apply(value: int, operation: Operation) -> int:
    kind, n = operation
    return value + n if kind == "add" else value - n if kind == "sub" else value * n


def _draw_chain(k: int, rng: random.Random) -> tuple[int, list[Operation]]:
    """A starting number and ``k`` operations with one-digit operands; every value on the way
    is in 1..MAX_VALUE."""
    value = rng.randint(2, 20)
    start, operations = value, []
    for _ in range(k):
        kinds = ["add"] if value + 9 <= MAX_VALUE else []
        kinds += ["sub"] if value > 1 else []
        kinds += ["mul"] if value * 3 <= MAX_VALUE else []
        kind = rng.choice(kinds)
        if kind == "add":
            n = rng.randint(1, 9)
        elif kind == "sub":
            n = rng.randint(1, min(9, value - 1))
        else:
            n = rng.randint(2, 3)
        operations.append((kind, n))
        value = _apply(value, (kind, n))
    return start, operations


def _expression(value: int, operations: Sequence[Operation]) -> str:
    """``value`` then ``operations`` as one expression, bracketed where precedence needs it:
    ``(17 + 8) × 3 - 4``."""
    text, additive = str(value), False
    for kind, n in operations:
        if kind == "mul" and additive:
            text = f"({text})"
        text += f" {SYMBOLS[kind]} {n}"
        additive = kind != "mul"
    return text


def _trace(
    lang: Language, start: int, operations: Sequence[Operation], written: Sequence[bool]
) -> str:
    """The thoughts: one sentence per segment; ``written[i]``: the value after operation ``i``
    (of the first k - 1) ends a segment."""
    sentences: list[str] = []
    value, segment_start, segment = start, start, []
    for i, operation in enumerate(operations):
        segment.append(operation)
        value = _apply(value, operation)
        if i == len(operations) - 1 or written[i]:
            template = lang.then if sentences else lang.first
            sentences.append(template.format(expr=_expression(segment_start, segment), value=value))
            segment_start, segment = value, []
    return "\n".join(sentences)


def _render(
    problem_id: str,
    language: str,
    start: int,
    operations: Sequence[Operation],
    written: Sequence[bool],
) -> Problem:
    """One problem from its drawn parts, written in ``language``."""
    lang = TEMPLATES[language]
    answer = functools.reduce(_apply, operations, start)
    prompt = lang.start.format(n=start)
    prompt += "".join(lang.operations[kind].format(n=n) for kind, n in operations)
    thoughts = _trace(lang, start, operations, written)
    return Problem(
        id=problem_id,
        kind="math",
        language=language,
        difficulty=len(operations),
        prompt=prompt + lang.question,
        answer=str(answer),
        reference=f"<think>\n{thoughts}\n</think>\n{lang.summary.format(r=answer)}",
        source="embedded/math",
    )


def make_math_problem(index: int, language: str, level: int, rng: random.Random) -> Problem:
    """One problem in ``language`` with ``level`` operations; its reference writes each
    intermediate result with a probability drawn uniformly for this problem."""
    check_known("difficulty level", [level], LEVELS)
    start, operations = _draw_chain(level, rng)
    share = rng.random()
    written = [rng.random() < share for _ in range(level - 1)]
    return _render(f"math-{language}-{level}-{index:06d}", language, start, operations, written)


def _thoughts(completion: str) -> str:
    start = completion.find("<think>")
    thoughts = completion[start + len("<think>") :] if start >= 0 else completion
    return thoughts.split("</think>")[0]


def steps_written(completion: str) -> int:
    """How many intermediate results the thoughts of ``completion`` write: every result is
    written as ``= value``, the last one being the answer's."""
    return max(0, _thoughts(completion).count("=") - 1)


def _written_after(reference: str, k: int) -> list[bool] | None:
    """Which of a reference's first k - 1 operations end a segment (read from the number of
    operators of each sentence); None if its sentences do not add up to ``k`` operations."""
    sizes = [
        len(re.findall(r" [-+×] ", line.split("=")[0]))
        for line in _thoughts(reference).strip().splitlines()
    ]
    if sum(sizes) != k or 0 in sizes:
        return None
    ends = {sum(sizes[: i + 1]) - 1 for i in range(len(sizes))}
    return [i in ends for i in range(k - 1)]


def _english_chain(prompt: str) -> tuple[int, list[Operation]] | None:
    """The start and operations of an English prompt the generator wrote, else None."""
    en = TEMPLATES["en"]

    def pattern(template: str, name: str) -> str:
        return re.escape(template).replace(re.escape("{n}"), f"(?P<{name}>[0-9]+)")

    operation = "|".join(pattern(text, kind) for kind, text in en.operations.items())
    match = re.fullmatch(
        f"{pattern(en.start, 'start')}(?P<body>(?:{operation})+){re.escape(en.question)}", prompt
    )
    if match is None:
        return None
    operations = [
        next((kind, int(n)) for kind, n in step.groupdict().items() if n is not None)
        for step in re.finditer(operation, match["body"])
    ]
    return int(match["start"]), operations


def translate_math_problem(problem: Problem, language: str) -> Problem | None:
    """The same embedded English problem (its chain, and which intermediate results its
    reference writes) in ``language``; ``None`` when ``problem`` is not one the generator wrote
    in English."""
    check_known("language code", [language], LANGUAGES)
    if problem.kind != "math" or problem.language != "en" or problem.source != "embedded/math":
        return None
    chain = _english_chain(problem.prompt)
    if chain is None:
        return None
    start, operations = chain
    written = _written_after(problem.reference or "", len(operations))
    if written is None:
        return None
    translated = _render(f"{problem.id}-{language}", language, start, operations, written)
    return translated.model_copy(update={"translated_from": problem.id})


def _pick(weights: Mapping[str, float] | Mapping[int, float], rng: random.Random) -> list:
    keys = list(weights)
    return rng.choices(keys, weights=[float(weights[k]) for k in keys])  # type: ignore[index]


def check_known(what: str, given: Iterable[object], known: Sequence[object]) -> None:
    """Raise ValueError naming every value of ``given`` that is not in ``known``."""
    unknown = sorted({str(value) for value in given} - {str(value) for value in known})
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {list(known)}")


def generate_math_problems(
    n: int, seed: int, languages: Mapping[str, float], levels: Mapping[int, float]
) -> list[Problem]:
    """``n`` problems, each language and level drawn with the given weights; same seed, same list.

    Args:
        n: number of problems.
        seed: the random seed; the whole list is a function of it.
        languages: weight per language code (a subset of :data:`LANGUAGES`).
        levels: weight per difficulty level, the chain's number of operations (a subset of
            :data:`LEVELS`).
    """
    check_known("language code", languages, LANGUAGES)
    check_known("difficulty level", levels, LEVELS)
    rng = random.Random(seed)
    problems = []
    for index in range(n):
        (language,) = _pick(languages, rng)
        (level,) = _pick(levels, rng)
        problems.append(make_math_problem(index, language, int(level), rng))
    return problems
