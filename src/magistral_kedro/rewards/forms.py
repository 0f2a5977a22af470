"""Answers written in words or in another numeral system, read as the values they name.

* **Scale words**: ``3 million``, ``2.5\\text{ billion}``, ``5 thousand`` are 3000000, 2500000000
  and 5000 (a multiplier, never a unit word to drop).
* **Degrees inside a trigonometric function**: ``\\sin 30^\\circ`` is sin(pi/6); a bare angle
  keeps the first round's rule (``30^\\circ`` is 30).
* **Roman numerals**, when the reference is one: ``XIV`` is 14, read by value (``XVI`` is not
  ``XIV``); a single ``C`` or ``D`` is a choice letter, not a numeral.
* **Base subscripts**: ``1011_2``, ``(1011)_2``, ``13_{8}``, ``B_{16}`` are eleven; an answer
  with no subscript is read in the reference's base (the problem asked for that base).
* **Number words**: ``five``, ``twenty-one``, ``one hundred twenty``.
* **Text answers**: compared word by word (case, articles and ``\\text`` aside); "no solution",
  "none", ``\\emptyset`` and their kin all say the answer set is empty.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SCALES = {"hundred": 2, "thousand": 3, "million": 6, "billion": 9, "trillion": 12}
_SCALE = r"(hundred|thousand|million|billion|trillion)s?(?![A-Za-z])"
_SCALED_NUMBER = r"(?<![\d.])(\d+(?:\.\d+)?)"
_TEXT_OPEN = r"\\(?:text|mathrm|mbox|textbf|textit)\s*\{"


def _scaled(number: str, scale: str) -> str:
    try:
        value = Decimal(number).scaleb(_SCALES[scale.lower()])
    except InvalidOperation:
        return number
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def expand_scale_words(text: str) -> str:
    """``3\\text{ million}`` -> ``3000000``; ``12 \\text{million dollars}`` -> ``12000000
    \\text{dollars}`` (the unit stays for the unit rule); ``2.5 billion`` -> ``2500000000``."""
    if not re.search(_SCALE, text, flags=re.IGNORECASE) or len(text) > 2000:
        return text

    def in_text(match: re.Match[str]) -> str:
        rest = match[3].strip()
        return _scaled(match[1], match[2]) + (f" \\text{{{rest}}}" if rest else "")

    flags = re.IGNORECASE
    text = re.sub(
        _SCALED_NUMBER + r"\s*" + _TEXT_OPEN + r"\s*" + _SCALE + r"([^{}]*)\}",
        in_text,
        text,
        flags=flags,
    )
    return re.sub(
        _SCALED_NUMBER + r"\s*" + _SCALE, lambda m: _scaled(m[1], m[2]), text, flags=flags
    )


_TRIG = re.compile(r"\\?(?:arc)?(?:sin|cos|tan|cot|sec|csc)h?(?![a-z])")
_DEGREES = re.compile(r"(\d+(?:\.\d+)?)\s*(?:\^\s*\{?\s*\\circ\s*\}?|°)")


def degrees_in_functions(text: str) -> str:
    """Angles in degrees inside trigonometric functions as radians: ``\\sin 30^\\circ`` ->
    ``\\sin(\\frac{30\\pi}{180})``. Without a trigonometric function the text is unchanged."""
    if not _TRIG.search(text):
        return text
    return _DEGREES.sub(r"(\\frac{\1\\pi}{180})", text)


_ROMAN = re.compile(r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def roman_value(text: str) -> int | None:
    """The value of a Roman numeral written the standard way (``XIV``, ``xiv``, ``MCMXCIV``);
    None for anything else, for a lone ``C`` or ``D`` (choice letters), two of ``C``, ``D``,
    ``M`` (a segment) or a lone lowercase letter (a variable)."""
    word = text.strip()
    if not word or len(word) > 20 or not (word.isupper() or (word.islower() and len(word) > 1)):
        return None
    word = word.upper()
    if word in ("C", "D") or not _ROMAN.fullmatch(word):
        return None
    if len(word) == 2 and set(word) <= set("CDM"):
        return None  # CD, DC, CM, MC, MD: a segment's name far likelier than 400 or 600
    values = [_ROMAN_VALUES[char] for char in word]
    return sum(-v if i + 1 < len(values) and v < values[i + 1] else v for i, v in enumerate(values))


_BASE_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
               "nine": 9, "ten": 10, "twelve": 12, "sixteen": 16}  # fmt: skip
_BASED = re.compile(
    r"\(?([0-9A-Za-z]{1,200})\)?_\{?\(?(\d{1,2}|" + "|".join(_BASE_WORDS) + r")\)?\}?"
)


def based_number(text: str) -> tuple[int, int] | None:
    """(value, base) of a number written with a base subscript (``1011_2``, ``(1011)_{2}``,
    ``B_{16}``, ``17_{\\text{eight}}`` normalised); None when ``text`` is none. The digits must
    hold a numeral, or be capital letters in base 16, so ``a_{16}`` stays a sequence term."""
    match = _BASED.fullmatch(text.strip())
    if not match:
        return None
    digits, base_text = match[1], match[2]
    base = int(base_text) if base_text.isdigit() else _BASE_WORDS[base_text]
    if not 2 <= base <= 36 or not (any(c.isdigit() for c in digits) or
                                   (base == 16 and digits.isupper())):  # fmt: skip
        return None
    try:
        return int(digits, base), base
    except ValueError:
        return None


_UNITS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}  # fmt: skip
_BIG = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}


def number_from_words(text: str) -> int | None:
    """The integer an English number phrase names (``twenty-one``, ``one hundred and five``,
    ``negative three``); None when ``text`` is not one."""
    words = re.sub(r"[-\s,]+", " ", text.strip().lower()).split()
    sign = -1 if words and words[0] in ("negative", "minus") else 1
    words = [w for w in words[1 if sign < 0 else 0 :] if w != "and"]
    if not words or len(words) > 20:
        return None
    total = current = 0
    for word in words:
        if word in _UNITS:
            current += _UNITS.index(word)
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word in _BIG:
            total += max(current, 1) * _BIG[word]
            current = 0
        else:
            return None
    return sign * (total + current)


_EMPTY = re.compile(
    r"(?:there\s+(?:is|are)\s+|it\s+has\s+)?(?:no(?:\s+real)?\s+(?:solutions?|roots?|answers?|"
    r"such\s+\w+|values?)(?:\s+exists?)?|none|the\s+empty\s+set|empty\s+set|\\emptyset|"
    r"\\varnothing|\\\{\s*\\\}|∅)"
)


#: Phrases that say the same thing, as one spelling.
_SAME_PHRASES = (
    (r"^(?:dne|doesn't exist|does not exists?|it does not exist|not exist)$", "does not exist"),
    (r"^infinitely many \w+$", "infinitely many"),
)
_DENOMINATORS = {"half": 2, "halves": 2, "third": 3, "quarter": 4, "fourth": 4, "fifth": 5,
                 "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10,
                 "hundredth": 100, "thousandth": 1000}  # fmt: skip


def fraction_from_words(words: str) -> str | None:
    """``one half``, ``two thirds``, ``three quarters`` as ``\\frac{p}{q}``; None otherwise (a
    lone ``third`` is an ordinal)."""
    *numerator, last = words.split() or [""]
    denominator = _DENOMINATORS.get(last) or _DENOMINATORS.get(last.removesuffix("s"))
    if denominator is None or (not numerator and last != "half"):
        return None
    count = number_from_words(" ".join(numerator)) if numerator else 1
    return None if count is None else f"\\frac{{{count}}}{{{denominator}}}"


def plain_words(text: str) -> str | None:
    """A text answer as lowercase words (``\\text{}``, articles, final punctuation and case
    aside), or None when ``text`` holds anything but words."""
    inner = re.sub(_TEXT_OPEN + r"([^{}]*)\}", r" \1 ", text).replace("$", " ")
    inner = inner.strip().rstrip(".!").lower()
    if not re.fullmatch(r"[a-z][a-z' \-]*", inner) and not _EMPTY.fullmatch(inner):
        return None
    words = [w for w in re.split(r"[\s\-]+", inner) if w and w not in ("a", "an", "the")]
    phrase = " ".join(words)
    for pattern, same in _SAME_PHRASES:
        phrase = re.sub(pattern, same, phrase)
    return phrase


def says_empty(text: str) -> bool:
    """Whether an answer says there is no solution (``no solution``, ``none``, ``\\emptyset``,
    ``\\{\\}``, ``no real roots``...)."""
    inner = re.sub(_TEXT_OPEN + r"([^{}]*)\}", r" \1 ", text).replace("$", " ")
    inner = re.sub(r"\s+", " ", inner.strip().rstrip(".!").lower())
    return bool(_EMPTY.fullmatch(inner))
