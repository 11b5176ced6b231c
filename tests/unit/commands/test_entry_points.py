"""One ``value-drifts`` command with subcommands, and the older entry points still answer
with the same code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.workflow import REPO


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("subcommand", "usage"), [
    ("value-gap", "usage: value-gap"),
    ("cost-plan", "--configfile"),
    ("check-envs", "usage: value-drifts check-envs"),
    ("trace", "usage: value-drifts trace"),
])
def test_each_subcommand_answers(subcommand, usage):
    result = run("-m", "value_drifts.commands.main", subcommand, "--help")
    assert result.returncode == 0, result.stderr
    assert usage in result.stdout


def test_the_command_lists_its_subcommands():
    result = run("-m", "value_drifts.commands.main", "--help")
    assert all(name in result.stdout for name in ("trace", "value-gap", "cost-plan", "check-envs"))


@pytest.mark.parametrize(("old", "new"), [
    (["-m", "value_drifts.judge.plan_cost"], ["-m", "value_drifts.commands.main", "cost-plan"]),
    (["-m", "value_drifts.envs"], ["-m", "value_drifts.commands.main", "check-envs"]),
    (["-m", "value_drifts.commands.value_gap"], ["-m", "value_drifts.commands.main", "value-gap"]),
])
def test_an_old_entry_point_runs_the_same_code(old, new):
    before, after = run(*old, "--help"), run(*new, "--help")
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    # the same options (argparse names the program after how it was called)
    assert before.stdout.split("\n\n", 1)[-1] == after.stdout.split("\n\n", 1)[-1]


def test_the_cost_plan_of_the_paper_config_is_the_same_through_both(tmp_path):
    args = ["--configfile", str(REPO / "config/paper.yaml"), "--results", str(tmp_path)]
    old = run("-m", "value_drifts.judge.plan_cost", *args)
    new = run("-m", "value_drifts.commands.main", "cost-plan", *args)
    assert old.returncode == new.returncode == 0, old.stderr + new.stderr
    assert old.stdout == new.stdout and "judge calls" in new.stdout
