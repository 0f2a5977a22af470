"""The embedded math problems' text: per language, the people, the items, one problem and one
worked-trace template per kind of problem (see :mod:`magistral_kedro.tasks.math`)."""

from __future__ import annotations

from dataclasses import dataclass

from magistral_kedro.tasks.schema import LANGUAGES


@dataclass(frozen=True)
class Language:
    """Everything one language needs: who, what, one problem/trace template per level, the
    sentence that states the answer, and the opening of a quick question."""

    people: tuple[dict[str, str], ...]
    items: tuple[dict[str, str], ...]
    problems: dict[str, str]
    steps: dict[str, str]
    summary: str
    #: What a problem asked as a quick question opens with (``Quick question: ``).
    quick: str


# Placeholders: {name} (and {gen}, Russian genitive), {item} (and {m}, Chinese measure word),
# numbers {a} {b} {c}, intermediate results {s} {p} {d}, the result {r}, its plain text {rt}
# (numerator/denominator) and {plain} (the result as it is said: "33", "-3", "3/5").
TEMPLATES: dict[str, Language] = {
    "en": Language(
        people=({"name": "Emma"}, {"name": "Noah"}, {"name": "Olivia"}, {"name": "Liam"}),
        items=({"item": "apples"}, {"item": "books"}, {"item": "marbles"}, {"item": "pencils"}),
        problems={
            "add": "{name} has {a} {item}. {name} gets {b} more {item}. "
            "How many {item} does {name} have now?",
            "sub": "{name} has {a} {item}. {name} gives away {b} {item}. "
            "How many {item} does {name} have left?",
            "add_sub": "{name} has {a} {item}, buys {b} more and then gives away {c}. "
            "How many {item} does {name} have now?",
            "mul_add": "{name} buys {a} boxes of {b} {item} and already has {c} {item}. "
            "How many {item} does {name} have in total?",
            "linear": "A number is multiplied by {a} and then {b} is added. The result is {c}. "
            "What is the number?",
            "fraction": "A number multiplied by {a} equals {b}. What is the number?",
        },
        steps={
            "add": "{name} starts with {a} and gets {b} more, so we add: {a} + {b} = {r}.",
            "sub": "{name} starts with {a} and gives away {b}, so we subtract: {a} - {b} = {r}.",
            "add_sub": "First we add: {a} + {b} = {s}. Then we subtract: {s} - {c} = {r}.",
            "mul_add": "First we multiply: {a} × {b} = {p}. Then we add: {p} + {c} = {r}.",
            "linear": "Let the number be x. Then {a}x + {b} = {c}, so {a}x = {c} - {b} = {d}, "
            "and x = {d} / {a} = {r}.",
            "fraction": "Let the number be x. Then {a}x = {b}, so x = {b}/{a}, "
            "which simplifies to {rt}.",
        },
        summary="So the answer is $\\boxed{{{r}}}$.",
        quick="Quick question: ",
    ),
    "fr": Language(
        people=({"name": "Marie"}, {"name": "Hugo"}, {"name": "Chloé"}, {"name": "Louis"}),
        items=({"item": "pommes"}, {"item": "livres"}, {"item": "billes"}, {"item": "crayons"}),
        problems={
            "add": "{name} a {a} {item}. {name} en reçoit {b} de plus. "
            "Combien de {item} a {name} maintenant ?",
            "sub": "{name} a {a} {item}. {name} en donne {b}. "
            "Combien de {item} reste-t-il à {name} ?",
            "add_sub": "{name} a {a} {item}, en achète {b} de plus, puis en donne {c}. "
            "Combien de {item} a {name} maintenant ?",
            "mul_add": "{name} achète {a} boîtes de {b} {item} et possède déjà {c} {item}. "
            "Combien de {item} a {name} en tout ?",
            "linear": "On multiplie un nombre par {a}, puis on ajoute {b}. Le résultat est {c}. "
            "Quel est ce nombre ?",
            "fraction": "Un nombre multiplié par {a} donne {b}. Quel est ce nombre ?",
        },
        steps={
            "add": "{name} commence avec {a} et en reçoit {b}, donc on additionne : "
            "{a} + {b} = {r}.",
            "sub": "{name} commence avec {a} et en donne {b}, donc on soustrait : {a} - {b} = {r}.",
            "add_sub": "D'abord on additionne : {a} + {b} = {s}. "
            "Ensuite on soustrait : {s} - {c} = {r}.",
            "mul_add": "D'abord on multiplie : {a} × {b} = {p}. "
            "Ensuite on additionne : {p} + {c} = {r}.",
            "linear": "Soit x le nombre. Alors {a}x + {b} = {c}, donc {a}x = {c} - {b} = {d}, "
            "et x = {d} / {a} = {r}.",
            "fraction": "Soit x le nombre. Alors {a}x = {b}, donc x = {b}/{a}, "
            "ce qui se simplifie en {rt}.",
        },
        summary="La réponse est donc $\\boxed{{{r}}}$.",
        quick="Question rapide : ",
    ),
    "es": Language(
        people=({"name": "Lucía"}, {"name": "Pablo"}, {"name": "Sofía"}, {"name": "Mateo"}),
        items=(
            {"item": "libros"},
            {"item": "lápices"},
            {"item": "caramelos"},
            {"item": "cuadernos"},
        ),
        problems={
            "add": "{name} tiene {a} {item}. {name} recibe {b} {item} más. "
            "¿Cuántos {item} tiene {name} ahora?",
            "sub": "{name} tiene {a} {item}. {name} regala {b} {item}. "
            "¿Cuántos {item} le quedan a {name}?",
            "add_sub": "{name} tiene {a} {item}, compra {b} más y luego regala {c}. "
            "¿Cuántos {item} tiene {name} ahora?",
            "mul_add": "{name} compra {a} cajas de {b} {item} y ya tiene {c} {item}. "
            "¿Cuántos {item} tiene {name} en total?",
            "linear": "Un número se multiplica por {a} y luego se le suma {b}. "
            "El resultado es {c}. ¿Cuál es el número?",
            "fraction": "Un número multiplicado por {a} es igual a {b}. ¿Cuál es el número?",
        },
        steps={
            "add": "{name} empieza con {a} y recibe {b}, así que sumamos: {a} + {b} = {r}.",
            "sub": "{name} empieza con {a} y regala {b}, así que restamos: {a} - {b} = {r}.",
            "add_sub": "Primero sumamos: {a} + {b} = {s}. Después restamos: {s} - {c} = {r}.",
            "mul_add": "Primero multiplicamos: {a} × {b} = {p}. Después sumamos: {p} + {c} = {r}.",
            "linear": "Sea x el número. Entonces {a}x + {b} = {c}, así que {a}x = {c} - {b} = {d}, "
            "y x = {d} / {a} = {r}.",
            "fraction": "Sea x el número. Entonces {a}x = {b}, así que x = {b}/{a}, "
            "que se simplifica a {rt}.",
        },
        summary="Por lo tanto, la respuesta es $\\boxed{{{r}}}$.",
        quick="Pregunta rápida: ",
    ),
    "it": Language(
        people=({"name": "Giulia"}, {"name": "Marco"}, {"name": "Sofia"}, {"name": "Luca"}),
        items=(
            {"item": "libri"},
            {"item": "quaderni"},
            {"item": "biscotti"},
            {"item": "palloncini"},
        ),
        problems={
            "add": "{name} ha {a} {item}. {name} ne riceve altri {b}. "
            "Quanti {item} ha {name} adesso?",
            "sub": "{name} ha {a} {item}. {name} ne regala {b}. Quanti {item} restano a {name}?",
            "add_sub": "{name} ha {a} {item}, ne compra altri {b} e poi ne regala {c}. "
            "Quanti {item} ha {name} adesso?",
            "mul_add": "{name} compra {a} scatole da {b} {item} e ha già {c} {item}. "
            "Quanti {item} ha {name} in tutto?",
            "linear": "Un numero viene moltiplicato per {a} e poi si aggiunge {b}. "
            "Il risultato è {c}. Qual è il numero?",
            "fraction": "Un numero moltiplicato per {a} dà {b}. Qual è il numero?",
        },
        steps={
            "add": "{name} parte da {a} e ne riceve {b}, quindi sommiamo: {a} + {b} = {r}.",
            "sub": "{name} parte da {a} e ne regala {b}, quindi sottraiamo: {a} - {b} = {r}.",
            "add_sub": "Prima sommiamo: {a} + {b} = {s}. Poi sottraiamo: {s} - {c} = {r}.",
            "mul_add": "Prima moltiplichiamo: {a} × {b} = {p}. Poi sommiamo: {p} + {c} = {r}.",
            "linear": "Sia x il numero. Allora {a}x + {b} = {c}, quindi {a}x = {c} - {b} = {d}, "
            "e x = {d} / {a} = {r}.",
            "fraction": "Sia x il numero. Allora {a}x = {b}, quindi x = {b}/{a}, "
            "che si semplifica in {rt}.",
        },
        summary="Quindi la risposta è $\\boxed{{{r}}}$.",
        quick="Domanda veloce: ",
    ),
    "de": Language(
        people=({"name": "Anna"}, {"name": "Lukas"}, {"name": "Mia"}, {"name": "Felix"}),
        items=({"item": "Äpfel"}, {"item": "Bücher"}, {"item": "Murmeln"}, {"item": "Stifte"}),
        problems={
            "add": "{name} hat {a} {item}. {name} bekommt {b} weitere {item}. "
            "Wie viele {item} hat {name} jetzt?",
            "sub": "{name} hat {a} {item}. {name} verschenkt {b} {item}. "
            "Wie viele {item} hat {name} noch?",
            "add_sub": "{name} hat {a} {item}, kauft {b} dazu und verschenkt dann {c}. "
            "Wie viele {item} hat {name} jetzt?",
            "mul_add": "{name} kauft {a} Schachteln mit je {b} {item} und hat schon {c} {item}. "
            "Wie viele {item} hat {name} insgesamt?",
            "linear": "Eine Zahl wird mit {a} multipliziert, dann wird {b} addiert. "
            "Das Ergebnis ist {c}. Wie lautet die Zahl?",
            "fraction": "Eine Zahl mal {a} ergibt {b}. Wie lautet die Zahl?",
        },
        steps={
            "add": "{name} beginnt mit {a} und bekommt {b} dazu, also addieren wir: "
            "{a} + {b} = {r}.",
            "sub": "{name} beginnt mit {a} und verschenkt {b}, also subtrahieren wir: "
            "{a} - {b} = {r}.",
            "add_sub": "Zuerst addieren wir: {a} + {b} = {s}. Dann subtrahieren wir: "
            "{s} - {c} = {r}.",
            "mul_add": "Zuerst multiplizieren wir: {a} × {b} = {p}. Dann addieren wir: "
            "{p} + {c} = {r}.",
            "linear": "Sei x die Zahl. Dann gilt {a}x + {b} = {c}, also {a}x = {c} - {b} = {d} "
            "und x = {d} / {a} = {r}.",
            "fraction": "Sei x die Zahl. Dann gilt {a}x = {b}, also x = {b}/{a}, gekürzt {rt}.",
        },
        summary="Die Antwort ist also $\\boxed{{{r}}}$.",
        quick="Kurze Frage: ",
    ),
    "zh": Language(
        people=({"name": "小明"}, {"name": "小红"}, {"name": "李华"}, {"name": "王芳"}),
        items=(
            {"item": "苹果", "m": "个"},
            {"item": "书", "m": "本"},
            {"item": "铅笔", "m": "支"},
            {"item": "糖", "m": "颗"},
        ),
        problems={
            "add": "{name}有{a}{m}{item}，又得到了{b}{m}。{name}现在有多少{m}{item}？",
            "sub": "{name}有{a}{m}{item}，送给别人{b}{m}。{name}还剩多少{m}{item}？",
            "add_sub": "{name}有{a}{m}{item}，又买了{b}{m}，然后送给别人{c}{m}。"
            "{name}现在有多少{m}{item}？",
            "mul_add": "{name}买了{a}盒{item}，每盒{b}{m}，另外还有{c}{m}。"
            "{name}一共有多少{m}{item}？",
            "linear": "一个数乘以{a}，再加上{b}，结果是{c}。这个数是多少？",
            "fraction": "一个数乘以{a}等于{b}。这个数是多少？",
        },
        steps={
            "add": "{name}原来有{a}{m}，又得到{b}{m}，所以用加法：{a} + {b} = {r}。",
            "sub": "{name}原来有{a}{m}，送出{b}{m}，所以用减法：{a} - {b} = {r}。",
            "add_sub": "先做加法：{a} + {b} = {s}。再做减法：{s} - {c} = {r}。",
            "mul_add": "先做乘法：{a} × {b} = {p}。再做加法：{p} + {c} = {r}。",
            "linear": "设这个数为x。那么{a}x + {b} = {c}，所以{a}x = {c} - {b} = {d}，"
            "x = {d} / {a} = {r}。",
            "fraction": "设这个数为x。那么{a}x = {b}，所以x = {b}/{a}，化简得{rt}。",
        },
        summary="所以答案是 $\\boxed{{{r}}}$。",
        quick="快问：",
    ),
    "ru": Language(
        # Amounts in roubles ("руб.") keep the noun out of Russian number agreement.
        people=(
            {"name": "Маша", "gen": "Маши"},
            {"name": "Петя", "gen": "Пети"},
            {"name": "Аня", "gen": "Ани"},
            {"name": "Ваня", "gen": "Вани"},
        ),
        items=({},),
        problems={
            "add": "У {gen} есть {a} руб. {name} получает ещё {b} руб. "
            "Сколько рублей у {gen} теперь?",
            "sub": "У {gen} есть {a} руб. {name} тратит {b} руб. Сколько рублей у {gen} осталось?",
            "add_sub": "У {gen} есть {a} руб. {name} получает ещё {b} руб., а потом тратит "
            "{c} руб. Сколько рублей у {gen} теперь?",
            "mul_add": "{name} продаёт {a} шт. тетрадей по {b} руб. за штуку, и у {gen} уже "
            "есть {c} руб. Сколько рублей у {gen} будет всего?",
            "linear": "Число умножили на {a} и прибавили {b}. Получилось {c}. Какое это число?",
            "fraction": "Число, умноженное на {a}, равно {b}. Какое это число?",
        },
        steps={
            "add": "Сначала было {a}, добавилось {b}, поэтому складываем: {a} + {b} = {r}.",
            "sub": "Сначала было {a}, потрачено {b}, поэтому вычитаем: {a} - {b} = {r}.",
            "add_sub": "Сначала складываем: {a} + {b} = {s}. Потом вычитаем: {s} - {c} = {r}.",
            "mul_add": "Сначала умножаем: {a} × {b} = {p}. Потом складываем: {p} + {c} = {r}.",
            "linear": "Пусть x — это число. Тогда {a}x + {b} = {c}, значит {a}x = {c} - {b} = {d}, "
            "и x = {d} / {a} = {r}.",
            "fraction": "Пусть x — это число. Тогда {a}x = {b}, значит x = {b}/{a}, "
            "после сокращения {rt}.",
        },
        summary="Итак, ответ: $\\boxed{{{r}}}$.",
        quick="Быстрый вопрос: ",
    ),
}
assert set(TEMPLATES) == set(LANGUAGES)
