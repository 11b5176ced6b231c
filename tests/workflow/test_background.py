"""The background builds that long session fixtures wait on (tests/support/background.py)."""

import sys
import time

import pytest

from tests.support.background import BackgroundBuild


def _build(tmp_path, code, **kwargs):
    return BackgroundBuild("a build", [sys.executable, "-c", code], cwd=tmp_path,
                           log_path=tmp_path / "build.log", **kwargs)


def test_a_finished_build_returns_and_keeps_its_output(tmp_path):
    build = _build(tmp_path, "open('made', 'w').write('1'); print('built')")
    assert build.wait() >= 0
    assert (tmp_path / "made").read_text() == "1"
    assert "built" in build.tail()
    build.stop()


def test_a_failed_build_fails_the_waiting_fixture_with_its_log(tmp_path):
    build = _build(tmp_path, "import sys; print('no space left'); sys.exit(3)")
    with pytest.raises(AssertionError, match=r"exit code 3:\n(.|\n)*no space left"):
        build.wait()
    build.stop()


def test_the_timeout_counts_from_the_start_and_stops_the_build(tmp_path):
    build = _build(tmp_path, "import time; time.sleep(60)", timeout_s=1.5)
    time.sleep(1.0)
    started = time.monotonic()
    with pytest.raises(AssertionError, match="ran past"):
        build.wait()
    assert time.monotonic() - started < 5  # waited what was left of 1.5 s, not 1.5 s more
    assert build.process.poll() is not None


def test_stop_ends_the_whole_process_group(tmp_path):
    # the build starts a child of its own, as Snakemake starts jobs
    build = _build(tmp_path, "import subprocess, sys, time; "
                   "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
                   " print(p.pid, flush=True); time.sleep(60)")
    for _ in range(100):
        if build.tail().strip():
            break
        time.sleep(0.1)
    child = int(build.tail().split()[0])
    build.stop()
    assert build.process.poll() is not None
    for _ in range(50):
        try:
            with open(f"/proc/{child}/stat") as stat:
                state = stat.read().split()[2]
        except FileNotFoundError:
            break
        if state == "Z":  # ended, waiting for its parent's init to reap it
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the build's child {child} still runs")
