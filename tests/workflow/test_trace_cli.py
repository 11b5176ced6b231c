"""``value-drifts trace FOLDER``: a folder of checkpoints to a drift table with no YAML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.hash_judge import HashJudgeServer, hash_judge
from tests.support.tiny_model import build_tiny_model

pytestmark = pytest.mark.slow  # real workflow runs



@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A tiny model as step 0 and two checkpoints with other weights."""
    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("cli")
    start = build_tiny_model(root / "start")
    folder = root / "My_Run"
    for step, scale in ((100, 0.5), (200, 2.0)):
        model = AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(scale)
        model.save_pretrained(folder / f"checkpoint-{step}")
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            (folder / f"checkpoint-{step}" / name).write_bytes((start / name).read_bytes())
    return root, start, folder


# The console script `make setup` installs beside the interpreter (pyproject's scripts).
COMMAND = Path(sys.executable).parent / "value-drifts"


def _cli(*args, cwd):
    assert COMMAND.is_file(), f"{COMMAND} missing: make setup installs it"
    return subprocess.run([str(COMMAND), "trace", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={"PATH": "/usr/bin:/bin"})


def test_without_a_judge_it_says_the_numbers_are_for_smoke_tests(series):
    root, start, folder = series
    result = _cli(str(folder), "--start", str(start), "--dry-run", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "for smoke tests only" in result.stderr
    config = yaml.safe_load((root / "value-drifts-my-run/trace.yaml").read_text())
    assert config["judge"]["model"] == "adapted"
    assert config["traces"]["my-run"] == {"checkpoints": str(folder), "prompt_style": "chat",
                                          "start": str(start)}
    assert "adapt_local_judge" in result.stdout + result.stderr


def test_a_folder_and_a_judge_give_a_drift_table(series):
    root, start, folder = series
    with HashJudgeServer() as server:
        judge_file = root / "judge.yaml"
        judge_file.write_text(yaml.safe_dump({"judge": hash_judge(server)}))
        result = _cli(str(folder), "--start", str(start), "--judge", str(judge_file),
                      "--directory", str(root / "out"), cwd=root)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert "smoke tests" not in result.stderr
    assert "| Immigration Policies |" in result.stdout and "my-run support" in result.stdout
    table = (root / "out/results/tables/trace_my-run.md").read_text()
    assert table in result.stdout
    import polars as pl

    values = pl.read_parquet(root / "out/results/traces/my-run/values.parquet")
    assert sorted(values["step"].unique().to_list()) == [0, 100, 200]
    assert (root / "out/results/figures/trace_my-run_abortion.png").read_bytes()[:4] == b"\x89PNG"
