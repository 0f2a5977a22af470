"""Seeded generator of small stdin -> stdout programming problems.

Each family below knows how to state a problem, draw test inputs, compute the expected output, and
solve it in Python and in C++20. A problem is a family plus drawn parameters (a multiplier, a
divisor, a character...), so many distinct problems come out of a few families. Every problem has
``tests_per_problem`` (>= 20) tests and a reference completion (``<think>`` plan + Python block).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from magistral_kedro.tasks.schema import Problem, TestCase


@dataclass(frozen=True)
class _Family:
    """One kind of problem; ``k`` is the drawn parameter that makes each problem distinct."""

    name: str
    draw_k: Callable[[random.Random], int | str]
    statement: str
    plan: str
    input_generator: str
    solve: Callable[[str, int | str], str]
    python: str
    cpp: str


# Test inputs come from small Python programs: the generator runs them in-process (they are ours),
# curation runs them in the sandbox (as it would any source's) to add tests where too few.
_GENERATOR_MAIN = (
    "\nif __name__ == '__main__':\n    import random, sys\n"
    "    sys.stdout.write(generate(random.Random(int(sys.stdin.read()))))\n"
)


def _ints(low: int = -100, high: int = 100, max_n: int = 12) -> str:
    return (
        "def generate(rng):\n"
        f"    values = [rng.randint({low}, {high}) for _ in range(rng.randint(1, {max_n}))]\n"
        "    return f\"{len(values)}\\n{' '.join(map(str, values))}\\n\"\n"
    )


def _read_ints(text: str) -> list[int]:
    numbers = [int(tok) for tok in text.split()]
    return numbers[1 : 1 + numbers[0]]


_WORDS_LINE = (
    "WORDS = ('alpha', 'beta', 'gamma', 'delta', 'omega', 'kedro', 'level', 'noon', 'radar', "
    "'stats')\n\n\ndef generate(rng):\n"
    "    return ' '.join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) + '\\n'\n"
)

# Palindromes must be common enough to test both verdicts.
_WORD = (
    "def generate(rng):\n    if rng.random() < 0.4:\n"
    "        half = ''.join(rng.choice('abc') for _ in range(rng.randint(0, 4)))\n"
    "        middle = rng.choice(['', 'x'])\n"
    "        return half + middle + half[::-1] + '\\n' if half or middle else 'a\\n'\n"
    "    return ''.join(rng.choice('abcx') for _ in range(rng.randint(1, 9))) + '\\n'\n"
)


def input_sampler(program: str) -> Callable[[random.Random], str]:
    """The ``generate(rng)`` function of an input-generator program (trusted code only)."""
    namespace: dict[str, object] = {"__name__": "input_generator"}
    exec(program, namespace)  # the embedded families' own programs, not model output
    return namespace["generate"]  # type: ignore[return-value]


_CPP_READ = "int n; std::cin >> n; std::vector<long long> v(n); for (auto& x : v) std::cin >> x;"

FAMILIES: tuple[_Family, ...] = (
    _Family(
        name="scaled_sum",
        draw_k=lambda rng: rng.randint(2, 60),
        statement="The first line holds an integer n, the second n integers. "
        "Print their sum multiplied by {k}.",
        plan="Read the n numbers, add them up, multiply the sum by {k} and print it.",
        input_generator=_ints(),
        solve=lambda text, k: str(sum(_read_ints(text)) * int(k)),
        python="n = int(input())\nvalues = list(map(int, input().split()))\n"
        "print(sum(values[:n]) * {k})",
        cpp="#include <bits/stdc++.h>\nint main() {{ " + _CPP_READ + " "
        "long long s = 0; for (auto x : v) s += x; std::cout << s * {k} << '\\n'; }}",
    ),
    _Family(
        name="count_divisible",
        draw_k=lambda rng: rng.randint(2, 30),
        statement="The first line holds an integer n, the second n integers. "
        "Print how many of them are divisible by {k}.",
        plan="Count the numbers whose remainder modulo {k} is zero.",
        input_generator=_ints(-200, 200, 15),
        solve=lambda text, k: str(sum(1 for x in _read_ints(text) if x % int(k) == 0)),
        python="n = int(input())\nvalues = list(map(int, input().split()))\n"
        "print(sum(1 for x in values[:n] if x % {k} == 0))",
        cpp="#include <bits/stdc++.h>\nint main() {{ " + _CPP_READ + " "
        "int c = 0; for (auto x : v) if (x % {k} == 0) ++c; std::cout << c << '\\n'; }}",
    ),
    _Family(
        name="shifted_range",
        draw_k=lambda rng: rng.randint(1, 99),
        statement="The first line holds an integer n, the second n integers. "
        "Print the largest minus the smallest, plus {k}.",
        plan="Find the maximum and the minimum, subtract, then add {k}.",
        input_generator=_ints(),
        solve=lambda text, k: str(max(_read_ints(text)) - min(_read_ints(text)) + int(k)),
        python="n = int(input())\nvalues = list(map(int, input().split()))[:n]\n"
        "print(max(values) - min(values) + {k})",
        cpp="#include <bits/stdc++.h>\nint main() {{ " + _CPP_READ + " "
        "auto [lo, hi] = std::minmax_element(v.begin(), v.end()); "
        "std::cout << *hi - *lo + {k} << '\\n'; }}",
    ),
    _Family(
        name="prefix_sums_mod",
        draw_k=lambda rng: rng.randint(2, 97),
        statement="The first line holds an integer n, the second n non-negative integers. "
        "Print the n prefix sums, each taken modulo {k}, separated by spaces.",
        plan="Keep a running total modulo {k} and print it after each number.",
        input_generator=_ints(0, 1000),
        solve=lambda text, k: " ".join(
            str(sum(_read_ints(text)[: i + 1]) % int(k)) for i in range(len(_read_ints(text)))
        ),
        python="n = int(input())\nvalues = list(map(int, input().split()))[:n]\n"
        "total, out = 0, []\nfor x in values:\n    total = (total + x) % {k}\n"
        "    out.append(str(total))\nprint(' '.join(out))",
        cpp="#include <bits/stdc++.h>\nint main() {{ " + _CPP_READ + " "
        "long long t = 0; for (int i = 0; i < n; ++i) {{ t = (t + v[i]) % {k}; "
        "std::cout << t << (i + 1 < n ? ' ' : '\\n'); }} }}",
    ),
    _Family(
        name="fibonacci_mod",
        draw_k=lambda rng: rng.randint(2, 1000),
        statement="Read an integer n (0 <= n <= 90). Print the n-th Fibonacci number "
        "(F(0) = 0, F(1) = 1) modulo {k}.",
        plan="Iterate a, b = b, a + b modulo {k}, n times, and print a.",
        input_generator="def generate(rng):\n    return f'{rng.randint(0, 90)}\\n'\n",
        solve=lambda text, k: str(_fib(int(text)) % int(k)),
        python="n = int(input())\na, b = 0, 1\nfor _ in range(n):\n"
        "    a, b = b, (a + b) % {k}\nprint(a % {k})",
        cpp="#include <bits/stdc++.h>\nint main() {{ int n; std::cin >> n; long long a = 0, b = 1; "
        "for (int i = 0; i < n; ++i) {{ long long t = (a + b) % {k}; a = b; b = t; }} "
        "std::cout << a % {k} << '\\n'; }}",
    ),
    _Family(
        name="count_char",
        draw_k=lambda rng: rng.choice("aeiou"),
        statement="Read one line of lowercase words. Print how many times the letter '{k}' "
        "occurs in it.",
        plan="Count the occurrences of '{k}' in the line.",
        input_generator=_WORDS_LINE,
        solve=lambda text, k: str(text.count(str(k))),
        python="print(input().count('{k}'))",
        cpp="#include <bits/stdc++.h>\nint main() {{ std::string s; std::getline(std::cin, s); "
        "std::cout << std::count(s.begin(), s.end(), '{k}') << '\\n'; }}",
    ),
    _Family(
        name="reverse_words",
        draw_k=lambda rng: rng.choice(["-", "+", "|", ",", ";"]),
        statement="Read one line of words separated by spaces. Print the words in reverse order, "
        "joined by '{k}'.",
        plan="Split the line into words, reverse the list and join it with '{k}'.",
        input_generator=_WORDS_LINE,
        solve=lambda text, k: str(k).join(reversed(text.split())),
        python="print('{k}'.join(reversed(input().split())))",
        cpp="#include <bits/stdc++.h>\nint main() {{ std::vector<std::string> w; std::string s; "
        "while (std::cin >> s) w.push_back(s); for (size_t i = w.size(); i-- > 0;) "
        'std::cout << w[i] << (i ? "{k}" : "\\n"); }}',
    ),
    _Family(
        name="palindrome",
        draw_k=lambda rng: rng.choice(["YES/NO", "yes/no", "TRUE/FALSE", "1/0"]),
        statement="Read one word. Print '{yes}' if it reads the same backwards, '{no}' otherwise.",
        plan="Compare the word with its reverse and print '{yes}' or '{no}'.",
        input_generator=_WORD,
        solve=lambda text, k: str(k).split("/")[0 if text.strip() == text.strip()[::-1] else 1],
        python="w = input().strip()\nprint('{yes}' if w == w[::-1] else '{no}')",
        cpp="#include <bits/stdc++.h>\nint main() {{ std::string w; std::cin >> w; "
        'std::cout << (std::equal(w.begin(), w.end(), w.rbegin()) ? "{yes}" : "{no}") '
        "<< '\\n'; }}",
    ),
)


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _fill(template: str, k: int | str) -> str:
    yes, _, no = str(k).partition("/")
    return template.format(k=k, yes=yes, no=no)


def make_code_problem(
    index: int, family: _Family, rng: random.Random, tests_per_problem: int
) -> Problem:
    """One problem of ``family`` with ``tests_per_problem`` tests and reference solutions."""
    k = family.draw_k(rng)
    program = family.input_generator + _GENERATOR_MAIN
    make_input = input_sampler(program)
    inputs = [make_input(rng) for _ in range(tests_per_problem)]
    tests = [TestCase(input=text, output=family.solve(text, k) + "\n") for text in inputs]
    python = _fill(family.python, k)
    return Problem(
        id=f"code-{family.name}-{index:06d}",
        kind="code",
        language="en",
        difficulty=1,
        prompt=_fill(family.statement, k) + " Read from standard input, write to standard output.",
        tests=tests,
        solutions={"python": python, "cpp": _fill(family.cpp, k)},
        reference=f"<think>\n{_fill(family.plan, k)}\n</think>\n```python\n{python}\n```",
        source="embedded/code",
        input_generator=program,
    )


def generate_code_problems(n: int, seed: int, tests_per_problem: int = 24) -> list[Problem]:
    """``n`` problems cycling through the families with seeded parameters and tests."""
    if tests_per_problem < 1:
        raise ValueError(f"tests_per_problem must be >= 1, got {tests_per_problem}")
    rng = random.Random(seed)
    return [
        make_code_problem(i, FAMILIES[i % len(FAMILIES)], rng, tests_per_problem) for i in range(n)
    ]
