"""The ``value-gap`` command: clear errors for bad input, and a real run on the shipped sample
with a stand-in judge (the local OpenAI-protocol test server) through make_backend."""

import json
import math
import os
import subprocess
import sys
import tomllib

import numpy as np
import polars as pl
import pytest
import yaml

from tests.judge_test_server import FakeOpenAIServer
from tests.workflow import REPO
from value_drifts.value_gap_cli import as_text, main

SAMPLE = REPO / "resources" / "value_gap_sample.jsonl"


def _cli(*args, cwd=REPO):
    """The command as a user runs it, in a subprocess (exit code, stdout, stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "value_drifts.value_gap_cli", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ('{"prompt": "a", "answer": "b"}\n', [], "missing column(s) ['chosen', 'rejected']"),
        ("", [], "is empty"),
        ("{not json\n", [], "cannot read"),
        ('{"prompt": "q", "chosen": "", "rejected": "x"}\n', [], "no usable pairs"),
        ('{"q": "a", "c": "b", "r": "c"}\n', ["--prompt-column", "q"],
         "missing column(s) ['chosen'"),
    ],
)
def test_bad_input_fails_with_one_clear_line(tmp_path, capsys, content, args, message):
    data = tmp_path / "pairs.jsonl"
    data.write_text(content)
    assert main([str(data), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("value-gap: error:")


def test_missing_unknown_and_empty_files(tmp_path, capsys):
    assert main([str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("hello")
    assert main([str(tmp_path / "x.txt")]) == 2
    assert "unknown file type" in capsys.readouterr().err
    pl.DataFrame({"prompt": [], "chosen": [], "rejected": []},
                 schema={c: pl.Utf8 for c in ("prompt", "chosen", "rejected")}).write_parquet(
        tmp_path / "empty.parquet")
    assert main([str(tmp_path / "empty.parquet")]) == 2
    assert "has no rows" in capsys.readouterr().err


def test_missing_judge_model_is_a_clear_error(tmp_path):
    judge = tmp_path / "judge.yaml"
    judge.write_text(yaml.safe_dump({"backend": "transformers", "model": "adapted",
                                     "prompt": "config/prompts/judge_response.txt"}))
    code, _, err = _cli(SAMPLE, "--judge-config", judge, "--judge-model", tmp_path / "none")
    assert code == 2 and "does not exist" in err and "Traceback" not in err


def test_message_lists_become_text():
    turns = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    assert as_text(turns, "prompt") == "Q?" and as_text(turns, "chosen") == "A."
    assert as_text("plain", "chosen") == "plain" and as_text(None, "prompt") is None


def test_console_script_points_at_main():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["value-gap"] == "value_drifts.value_gap_cli:main"


def test_sample_run_prints_a_summary_per_topic_and_writes_the_histogram(tmp_path):
    with FakeOpenAIServer() as server:
        judge = tmp_path / "judge.yaml"
        judge.write_text(yaml.safe_dump({
            "backend": "openai", "model": "fake-judge", "base_url": server.base_url,
            "require_api_key": False, "prompt": str(REPO / "config/prompts/judge_response.txt"),
            "cache": str(tmp_path / "cache.sqlite"), "top_logprobs": 20,
        }))
        code, out, err = _cli(
            SAMPLE, "--judge-config", judge, "--output", tmp_path / "gap.png",
            "--pairs-output", tmp_path / "pairs.parquet", "--threshold", "0.3", cwd=REPO,
        )
    assert code == 0, err
    pairs = pl.read_parquet(tmp_path / "pairs.parquet")
    # The 4 task-like prompts match no question; the 12 value-laden ones do.
    assert "16 rows, 16 pairs, 12 with a topic (4 without a question" in out
    assert pairs.height == 12 and pairs["similarity"].min() >= 0.5
    chosen = pairs.select("chosen_p_support", "chosen_p_neutral", "chosen_p_oppose").to_numpy()
    rejected = pairs.select(
        "rejected_p_support", "rejected_p_neutral", "rejected_p_oppose").to_numpy()
    np.testing.assert_allclose(pairs["distance"], np.linalg.norm(chosen - rejected, axis=1))
    assert (pairs["distance"] <= math.sqrt(2)).all()
    overall = next(line for line in out.splitlines() if line.startswith("All topics"))
    assert overall.split()[2] == "12"
    assert overall.split()[3] == f"{pairs['distance'].mean():.3f}"
    assert overall.split()[4] == f"{(pairs['distance'] > 0.3).mean():.1%}"
    immigration = next(line for line in out.splitlines() if line.startswith("Immigration"))
    assert immigration.split()[2] == str(
        pairs.filter(pl.col("category") == "Immigration Policies").height)
    assert (tmp_path / "gap.png").stat().st_size > 5000


def test_sample_file_is_valid():
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    assert len(rows) == 16 and all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)
