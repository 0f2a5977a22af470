import json
import subprocess
import sys

from magistral_kedro.tasks import generate_math_problems


def _cli(tmp_path):
    return subprocess.run(
        [sys.executable, "-m", "magistral_kedro.rewards", "score",
         "--problems", str(tmp_path / "p.jsonl"), "--completions", str(tmp_path / "c.jsonl"),
         "--out", str(tmp_path / "r.jsonl")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_rescoring_from_the_command_line(tmp_path):
    problems = generate_math_problems(4, seed=0, languages={"en": 1.0}, levels={1: 1.0})
    (tmp_path / "p.jsonl").write_text("\n".join(p.model_dump_json() for p in problems))
    completions = [
        {"id": problems[0].id, "completion": problems[0].reference, "n_tokens": 30},
        {"id": problems[1].id, "completion": "no think tags \\boxed{1}"},
    ]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(c) for c in completions))
    result = _cli(tmp_path)
    assert result.returncode == 0, result.stderr
    rewards = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["total"] for r in rewards] == [1.1, 0.0]
    assert "does not start with <think>" in rewards[1]["reason"]
    assert "math/en" in result.stdout and "all" in result.stdout


def test_unknown_ids_are_named(tmp_path):
    (tmp_path / "p.jsonl").write_text("")
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "nope", "completion": "x"}))
    result = _cli(tmp_path)
    assert result.returncode != 0 and "nope" in result.stderr


def test_every_option_has_a_help_text():
    from magistral_kedro.rewards.__main__ import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    score = commands.choices["score"]
    options = {a.dest: a for a in score._actions if a.option_strings and a.dest != "help"}
    assert set(options) == {"problems", "completions", "out", "workers", "l_max", "l_cache"}
    assert all(len(action.help or "") > 20 for action in options.values()), options
    assert commands.help and "score completions of known problems" in parser.format_help()
    text = score.format_help()
    assert "(default: 20480)" in text and "(default: 2)" in text
