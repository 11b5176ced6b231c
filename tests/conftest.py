import shutil
import tempfile

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
    """The small default run end to end once per session, in a copy of the repository."""
    workdir = copy_repo(tmp_path_factory.mktemp("run") / "value-drifts")
    # ~20-35 min on 2 cores; the limit leaves room for a slower machine within CI's 90 min.
    snakemake("--cores", "2", cwd=workdir, timeout=50 * 60)
    return workdir
