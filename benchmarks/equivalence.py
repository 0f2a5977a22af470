"""How often ``math_equal`` agrees with a careful grader, and how fast: the public graders' cases
(``answer_equivalence.jsonl``, their regression set, kept outside the repository and scored when
present at ``SHARED``; debatable rows left out) and the project's own cases by category
(tests/rewards).

    python -m benchmarks.equivalence

Prints agreement, false accepts (a wrong answer graded right: the worse error, it teaches a
wrong habit), false rejects, and the slowest case; writes ``equivalence.json`` beside the other
benchmarks' figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from benchmarks._common import OUT, ROOT, code_version
from magistral_kedro.rewards.math import math_equal_in_process
from tests.support.rewards.equivalence_cases import ALL_CASES
from tests.support.rewards.judge_cases import ALL_JUDGE_CASES

SHARED = ROOT.parent / "shared" / "data" / "answer_equivalence.jsonl"


def _score(cases: Iterable[tuple[str, str, bool, str]]) -> dict[str, object]:
    """Agreement over (pred, gold, expected, name) cases, the errors named, the slowest case."""
    verdicts, slowest = [], (0.0, "")
    for pred, gold, expected, name in cases:
        began = time.perf_counter()
        got = math_equal_in_process(pred, gold)
        seconds = time.perf_counter() - began
        slowest = max(slowest, (seconds, name))
        verdicts.append((got, expected, name))
    agree = sum(got == expected for got, expected, _ in verdicts) / len(verdicts)
    return {
        "cases": len(verdicts),
        "agreement": agree,
        "false_accepts": [name for got, expected, name in verdicts if got and not expected],
        "false_rejects": [name for got, expected, name in verdicts if expected and not got],
        "slowest_s": slowest[0],
        "slowest_case": slowest[1],
    }


def _public() -> list[tuple[str, str, bool, str]]:
    rows = [json.loads(line) for line in SHARED.read_text().splitlines()]
    return [(r["pred"], r["gold"], r["equal"], r["id"]) for r in rows if not r["debatable"]]


def main() -> int:
    sets = {"own cases": [(p, g, e, f"{p} vs {g}") for p, g, e in ALL_CASES + ALL_JUDGE_CASES]}
    if SHARED.is_file():
        sets["public graders' cases"] = _public()
    results = {name: _score(cases) for name, cases in sets.items()}
    print("== math_equal against a careful grader")
    for name, r in results.items():
        print(
            f"{name:<22} {r['cases']:>4} cases  agreement {r['agreement']:.1%}  "
            f"false accepts {len(r['false_accepts'])}  false rejects "
            f"{len(r['false_rejects'])}  slowest {r['slowest_s']:.2f} s"
        )
        for kind in ("false_accepts", "false_rejects"):
            for case in r[kind]:  # type: ignore[attr-defined]
                print(f"    {kind[:-1].replace('_', ' ')}: {case}")
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"code_version": code_version(), **results}
    (OUT / "equivalence.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
