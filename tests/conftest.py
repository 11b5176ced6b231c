import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.workflow import REPO, copy_repo, snakemake


def _free_disk() -> str:
    places = {"repository": REPO, "temporary files": tempfile.gettempdir()}
    return ", ".join(
        f"{name} {shutil.disk_usage(path).free / 2**30:.1f} GiB free"
        for name, path in places.items()
    )


def pytest_report_header(config):
    # Model checkpoints, the vLLM venv and workflow copies take several GB: a full disk
    # shows up as odd failures late in the run, so say what there was at the start.
    return f"disk: {_free_disk()}"


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"disk at the end: {_free_disk()}")


@pytest.fixture
def small_config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.fixture
def paper_config():
    return yaml.safe_load((REPO / "config" / "paper.yaml").read_text())


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """The small default run end to end once per session, in a copy of the repository.

    VALUE_DRIFTS_SMALL_RUN=DIR uses a finished run instead (e.g. the tree left by
    `benchmarks/small_default.py --keep DIR`), brought up to date first; some tests edit
    and restore it.
    """
    if existing := os.environ.get("VALUE_DRIFTS_SMALL_RUN"):
        snakemake("--cores", "2", cwd=Path(existing), timeout=50 * 60)
        return Path(existing)
    workdir = copy_repo(tmp_path_factory.mktemp("run") / "value-drifts")
    # ~20-35 min on 2 cores; the limit leaves room for a slower machine within CI's 90 min.
    snakemake("--cores", "2", cwd=workdir, timeout=50 * 60)
    return workdir
