"""Helpers for tests that drive the real Snakemake command line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".cache", "results", "logs", ".snakemake", "__pycache__", ".pytest_cache",
    "*.egg-info",
    "*.tsv",  # Snakemake benchmark files: their mtimes would count as outputs
)


def copy_repo(destination: Path) -> Path:
    """A working copy of the workflow, so a test's results never touch the user's."""
    shutil.copytree(REPO, destination, ignore=IGNORED)
    (destination / "benchmarks").mkdir(exist_ok=True)
    return destination


def snakemake_env(cwd: Path) -> dict[str, str]:
    """The environment Snakemake runs in for the working copy ``cwd``: its own code first."""
    return {**os.environ, "PYTHONPATH": str(cwd / "src")}


def snakemake(*args: str, cwd: Path = REPO, check: bool = True, timeout: int = 1800):
    result = subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, env=snakemake_env(cwd),
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def job_counts(output: str) -> dict[str, int]:
    """The 'job count' table Snakemake prints for a (dry) run."""
    counts: dict[str, int] = {}
    in_table = False
    for line in output.splitlines():
        if re.match(r"^job\s+count\s*$", line):
            in_table = True
            continue
        if in_table:
            if line.startswith("total"):
                break
            match = re.match(r"^(\w+)\s+(\d+)\s*$", line)
            if match:
                counts[match.group(1)] = int(match.group(2))
    return counts


def dry_run_jobs(*args: str, cwd: Path = REPO) -> dict[str, int]:
    result = snakemake("-n", "--nolock", *args, cwd=cwd)
    return job_counts(result.stdout + result.stderr)
