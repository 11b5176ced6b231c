import pytest
import yaml

from tests.workflow import REPO, copy_repo, snakemake


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
    snakemake("--cores", "2", cwd=workdir, timeout=40 * 60)
    return workdir
