"""The embedded math problems' text, per language: the sentences of a chain's prompt and of its
worked trace (see :mod:`magistral_kedro.tasks.math`)."""

from __future__ import annotations

from dataclasses import dataclass

from magistral_kedro.tasks.schema import LANGUAGES


@dataclass(frozen=True)
class Language:
    """Everything one language needs. Prompt sentences hold ``{n}`` (a number) and end with
    the space that separates them (none in Chinese); trace sentences hold ``{expr}`` (the
    operations of one segment) and ``{value}`` (what they reach)."""

    start: str
    operations: dict[str, str]  # add, sub, mul
    question: str
    #: The first segment of a trace, and every later one.
    first: str
    then: str
    summary: str  # {r}: the answer


TEMPLATES: dict[str, Language] = {
    "en": Language(
        start="Start with {n}. ",
        operations={"add": "Add {n}. ", "sub": "Subtract {n}. ", "mul": "Multiply by {n}. "},
        question="What is the result?",
        first="We compute {expr} = {value}.",
        then="Then we compute {expr} = {value}.",
        summary="So the answer is $\\boxed{{{r}}}$.",
    ),
    "fr": Language(
        start="Commence par {n}. ",
        operations={"add": "Ajoute {n}. ", "sub": "Soustrais {n}. ", "mul": "Multiplie par {n}. "},
        question="Quel est le résultat ?",
        first="Nous calculons {expr} = {value}.",
        then="Ensuite, nous calculons {expr} = {value}.",
        summary="La réponse est donc $\\boxed{{{r}}}$.",
    ),
    "es": Language(
        start="Empieza con {n}. ",
        operations={"add": "Suma {n}. ", "sub": "Resta {n}. ", "mul": "Multiplica por {n}. "},
        question="¿Cuál es el resultado?",
        first="Hacemos la cuenta {expr} = {value}.",
        then="Después calculamos {expr} = {value}.",
        summary="Por lo tanto, la respuesta es $\\boxed{{{r}}}$.",
    ),
    "it": Language(
        start="Parti da {n}. ",
        operations={"add": "Aggiungi {n}. ", "sub": "Sottrai {n}. ", "mul": "Moltiplica per {n}. "},
        question="Qual è il risultato?",
        first="Calcoliamo {expr} = {value}.",
        then="Poi calcoliamo {expr} = {value}.",
        summary="Quindi la risposta è $\\boxed{{{r}}}$.",
    ),
    "de": Language(
        start="Beginne mit {n}. ",
        operations={
            "add": "Addiere {n}. ",
            "sub": "Subtrahiere {n}. ",
            "mul": "Multipliziere mit {n}. ",
        },
        question="Was ist das Ergebnis?",
        first="Wir rechnen {expr} = {value}.",
        then="Dann rechnen wir {expr} = {value}.",
        summary="Die Antwort ist also $\\boxed{{{r}}}$.",
    ),
    "zh": Language(
        start="从{n}开始。",
        operations={"add": "加上{n}。", "sub": "减去{n}。", "mul": "乘以{n}。"},
        question="结果是多少？",
        first="我们计算 {expr} = {value}。",
        then="然后计算 {expr} = {value}。",
        summary="所以答案是 $\\boxed{{{r}}}$。",
    ),
    "ru": Language(
        start="Начни с {n}. ",
        operations={"add": "Прибавь {n}. ", "sub": "Вычти {n}. ", "mul": "Умножь на {n}. "},
        question="Какой получится результат?",
        first="Считаем: {expr} = {value}.",
        then="Затем считаем: {expr} = {value}.",
        summary="Итак, ответ: $\\boxed{{{r}}}$.",
    ),
}
assert set(TEMPLATES) == set(LANGUAGES)
