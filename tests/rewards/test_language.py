import pytest

from magistral_kedro.rewards import language_of, strip_non_language

SENTENCES = {
    "en": "First we add the two numbers, then we subtract the third one.",
    "fr": "D'abord on additionne les deux nombres, ensuite on soustrait le troisième.",
    "es": "Primero sumamos los dos números y después restamos el tercero.",
    "it": "Prima sommiamo i due numeri, poi sottraiamo il terzo.",
    "de": "Zuerst addieren wir die beiden Zahlen, dann subtrahieren wir die dritte.",
    "zh": "先把两个数相加，再减去第三个数。",
    "ru": "Сначала складываем два числа, потом вычитаем третье.",
}


@pytest.mark.parametrize("language", list(SENTENCES))
def test_language_of_with_math_and_code_around(language):
    text = f"{SENTENCES[language]} $x = \\frac{{1}}{{2}}$ 12 + 7 = 19\n```python\nprint(1)\n```"
    code, confidence = language_of(text)
    assert code == language
    assert 0.5 < confidence <= 1.0


def test_stripping_leaves_only_words():
    text = "We get $\\frac{3}{4}$ and \\(x^2\\) so 3 + 4 = 7.\n```cpp\nint main(){}\n```"
    assert strip_non_language(text) == "We get and so ."


def test_nothing_to_classify():
    assert language_of("$x^2$ 12 + 7 = 19") == ("", 0.0)
