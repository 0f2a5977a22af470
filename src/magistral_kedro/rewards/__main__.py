"""Re-score any model's output with the Magistral reward.

    python -m magistral_kedro.rewards score --problems P.jsonl --completions C.jsonl --out R.jsonl

``P.jsonl`` holds problems in the project's schema; ``C.jsonl`` one completion per line:
``{"id": <problem id>, "completion": <text>, "n_tokens": <optional int>}`` (without ``n_tokens``
the length is counted in whitespace-separated words). Prints a summary table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from magistral_kedro.rewards.score import RewardConfig, score_batch
from magistral_kedro.tasks.schema import Problem, validate_rows


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise SystemExit(f"{path}:{number}: not valid JSON ({error.msg})") from error
    return rows


def _score(args: argparse.Namespace) -> int:
    problems, rejects = validate_rows(_read_jsonl(args.problems))
    if rejects:
        first = rejects[0]
        print(
            f"warning: {len(rejects)} problem row(s) fail the schema and are skipped; first: "
            f"row {first['row_index']}: {first['reject_reason']}",
            file=sys.stderr,
        )
    by_id: dict[str, Problem] = {p.id: p for p in problems}
    completions = _read_jsonl(args.completions)
    unknown = [c.get("id") for c in completions if c.get("id") not in by_id]
    if unknown:
        raise SystemExit(
            f"{len(unknown)} completion(s) name unknown problem ids, e.g. {unknown[:3]}"
        )
    texts = [str(c.get("completion", "")) for c in completions]
    n_tokens = [
        int(c.get("n_tokens", len(t.split()))) for c, t in zip(completions, texts, strict=True)
    ]
    cfg = RewardConfig(l_max=args.l_max, l_cache=args.l_cache)
    problems_of = [by_id[c["id"]] for c in completions]
    with tqdm(total=len(texts), desc="scoring", unit="completion", file=sys.stderr) as bar:
        rewards = score_batch(
            texts, problems_of, n_tokens, cfg, n_workers=args.workers, on_done=bar.update
        )
    with args.out.open("w") as out:
        for completion, reward in zip(completions, rewards, strict=True):
            out.write(json.dumps({"id": completion["id"], **reward.__dict__}) + "\n")
    groups: dict[str, list] = defaultdict(list)
    for completion, reward in zip(completions, rewards, strict=True):
        problem = by_id[completion["id"]]
        groups[f"{problem.kind}/{problem.language}"].append(reward)
        groups["all"].append(reward)
    print(f"{'group':<12}{'n':>6}{'format':>9}{'correct':>9}{'language':>10}{'reward':>9}")
    for name in sorted(groups, key=lambda g: (g == "all", g)):
        rows = groups[name]
        n = len(rows)
        print(
            f"{name:<12}{n:>6}{sum(r.format > 0 for r in rows) / n:>9.3f}"
            f"{sum(r.correct > 0 for r in rows) / n:>9.3f}"
            f"{sum(r.language > 0 for r in rows) / n:>10.3f}"
            f"{sum(r.total for r in rows) / n:>9.3f}"
        )
    print(f"wrote {len(rewards)} rewards to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command, ``score``, every option with its help."""
    parser = argparse.ArgumentParser(
        prog="python -m magistral_kedro.rewards",
        description="Score model outputs with the Magistral reward (format, correctness, "
        "length, language).",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (one command so far)"
    )
    cmd = commands.add_parser(
        "score",
        help="score completions of known problems",
        description="Score every completion of C.jsonl against its problem in P.jsonl, write the "
        "reward breakdowns to R.jsonl and print a summary by kind and language.",
    )
    cmd.add_argument(
        "--problems",
        type=Path,
        required=True,
        metavar="P.jsonl",
        help="problems in the project's schema, one a line (id, kind, prompt, answer or tests)",
    )
    cmd.add_argument(
        "--completions",
        type=Path,
        required=True,
        metavar="C.jsonl",
        help='JSON Lines, one completion a line: {"id": <problem id>, "completion": <text>, '
        '"n_tokens": <optional int>}',
    )
    cmd.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="R.jsonl",
        help="where to write one reward breakdown per completion (JSON Lines, same order)",
    )
    cmd.add_argument(
        "--workers",
        type=int,
        default=2,
        help="sandboxed worker processes that verify in parallel (default: 2)",
    )
    cmd.add_argument(
        "--l-max",
        type=int,
        default=RewardConfig().l_max,
        help="maximum completion length, in tokens: the length penalty is full from there "
        "(default: %(default)s)",
    )
    cmd.add_argument(
        "--l-cache",
        type=int,
        default=RewardConfig().l_cache,
        help="tokens before --l-max over which the length penalty grows from 0 "
        "(default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for path in (args.problems, args.completions):
        if not path.is_file():
            parser.error(f"no such file: {path}")
    return _score(args)


if __name__ == "__main__":
    sys.exit(main())
