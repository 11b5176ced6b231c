"""The codebase's shape holds: ruff passes, and each stage of the package imports only the
stages below it (the import-linter ``layers`` contract in pyproject.toml, which ``make
lint`` also runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.workflow import REPO

LINT_IMPORTS = ("-c", "import sys; from importlinter.cli import lint_imports_command; "
                      "sys.argv[0] = 'lint-imports'; sys.exit(lint_imports_command())")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the package under ``root``/src, with ``root``'s pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([sys.executable, *LINT_IMPORTS, "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_ruff_passes():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stages_import_only_the_stages_below_them():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract can fail: core importing analysis, and judge importing training (two
    siblings of one layer), are each reported."""
    shutil.copytree(REPO / "src", tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    core = tmp_path / "src/value_drifts/core/layout.py"
    core.write_text(core.read_text() + "\nfrom value_drifts.analysis import metrics  # noqa\n")
    judge = tmp_path / "src/value_drifts/judge/prompt.py"
    judge.write_text(judge.read_text() + "\nfrom value_drifts.training import common  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout
    assert "BROKEN" in result.stdout
    assert "value_drifts.core.layout -> value_drifts.analysis.metrics" in result.stdout
    assert "value_drifts.judge.prompt -> value_drifts.training.common" in result.stdout
