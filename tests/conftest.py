import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.support.background import BackgroundBuild
from tests.support.vllm_cpu import installed_info, vllm_disabled_reason
from tests.support.workflow import REPO, SNAKEMAKE, copy_repo, snakemake, snakemake_env

SMALL_RUN_TIMEOUT_S = 50 * 60  # ~16 min on 2 cores alone; room for a slower, busier machine
# Builds started when collection ends (see tests/support/background.py), by name.
BUILDS: dict[str, BackgroundBuild] = {}


def _free_disk() -> str:
    places = {"repository": REPO, "temporary files": tempfile.gettempdir()}
    return ", ".join(
        f"{name} {shutil.disk_usage(path).free / 2**30:.1f} GiB free"
        for name, path in places.items()
    )


# What the whole suite (CI=true) takes at its peak, measured on a clean clone (2-core CPU,
# 2026-12-05): 7.1 GB in the clone (.venv, the vllm-cpu venv, the base model) and 7.3 GB
# of temporary files (the small run's checkpoints above all). docs/benchmarks.md.
FULL_SUITE_PEAK_GB = 14.4


def pytest_report_header(config):
    # Model checkpoints, the vLLM venv and workflow copies take several GB: a full disk
    # shows up as odd failures late in the run (torch's "unexpected pos" mid-save), so say
    # what there was at the start and what the suite needs.
    return f"disk: {_free_disk()}; the full suite peaks at about {FULL_SUITE_PEAK_GB} GB"


def _uses_small_run(item) -> bool:
    return "small_run" in getattr(item, "fixturenames", ())


def _uses_vllm_venv(item) -> bool:
    return item.get_closest_marker("slow") is not None and "vllm" in item.nodeid


def pytest_collection_modifyitems(session, config, items):
    # The tests on the small run go last (in their own order), so that every other test
    # runs while the small run builds in the background.
    items.sort(key=_uses_small_run)


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    items = session.items
    if any(map(_uses_small_run, items)) and not os.environ.get("VALUE_DRIFTS_SMALL_RUN"):
        workdir = copy_repo(session.config._tmp_path_factory.mktemp("run") / "value-drifts")
        BUILDS["small_run"] = BackgroundBuild(
            "the small default run", [*SNAKEMAKE, "--cores", "2"], cwd=workdir,
            log_path=workdir.parent / "snakemake.log",
            env=snakemake_env(workdir),
            timeout_s=SMALL_RUN_TIMEOUT_S,
        )
    if (any(map(_uses_vllm_venv, items)) and vllm_disabled_reason() is None
            and installed_info() is None):
        # ensure_vllm_venv holds a lock: a fixture that needs the venv waits for this build,
        # and builds it itself if this one failed.
        log_dir = session.config._tmp_path_factory.mktemp("vllm-venv")
        BUILDS["vllm_venv"] = BackgroundBuild(
            "the vllm-cpu venv", [sys.executable, "-m", "tests.support.vllm_cpu"], cwd=REPO,
            log_path=log_dir / "build.log", timeout_s=30 * 60,
        )


def pytest_sessionfinish(session, exitstatus):
    for build in BUILDS.values():
        build.stop()


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
        snakemake("--cores", "2", cwd=Path(existing), timeout=SMALL_RUN_TIMEOUT_S)
        return Path(existing)
    build = BUILDS.get("small_run")
    if build is None:  # a test that asked for it outside collection's view
        workdir = copy_repo(tmp_path_factory.mktemp("run") / "value-drifts")
        snakemake("--cores", "2", cwd=workdir, timeout=SMALL_RUN_TIMEOUT_S)
        return workdir
    seconds = build.wait()
    print(f"small run built in the background in {seconds / 60:.1f} min")
    return build.cwd
