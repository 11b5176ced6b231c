"""The SLURM profile on a real one-node SLURM cluster on localhost.

The module fixture installs (apt, where missing) and starts the cluster with
tests/support/slurm/cluster.sh, and stops it at teardown. Site settings reach Snakemake the way
they do on a real cluster: the partition through $SLURM_PARTITION (read by the
profile's default-resources), the cluster through $SLURM_CONF (and, inside jobs, where
the executor's jobstep plugin drops SLURM_CONF, through cluster.sh's client wrappers
first on $PATH). The rules carry only what a job needs.

Needs root (slurmd runs jobs as the submitting user); skipped only where the Slurm
binaries are missing and cannot be installed (not root, or no apt-get).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.support.workflow import REPO

pytestmark = pytest.mark.slurm

CLUSTER_SH = REPO / "tests" / "support" / "slurm" / "cluster.sh"
REPO_PROFILE = REPO / "profiles" / "slurm"
# Not Slurm's usual "debug", so that a job landing in it shows the partition really came
# from the site setting.
PARTITION = "vdtest"
BINARIES = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo", "scontrol")

# Faster status polling than a real cluster needs; the rest comes from the profile. A job
# here takes 4-7 s from submission to its end; the executor adds 10 s to the interval after
# each check that finds nothing finished, so an interval just above a job's time is fastest.
POLL_SECONDS = 8
FAST_POLLING = [
    "--seconds-between-status-checks",
    str(POLL_SECONDS),
    "--slurm-init-seconds-before-status-checks",
    str(POLL_SECONDS),
    "--latency-wait",
    "5",
    "--retries",
    "0",
]

SNAKEFILE = r"""
# Two: both fit the node's CPUs at once (CI has 2 cores).
NUMBERS = [1, 2]


rule all:
    input:
        "total.txt",


rule number:
    output:
        "num/{i}.txt",
    resources:
        runtime=5,
        mem_mb=200,
    shell:
        "echo {wildcards.i} > {output}; echo \"${{SLURM_JOB_ID:-}}\" >> {output}"


rule total:
    input:
        expand("num/{i}.txt", i=NUMBERS),
    output:
        "total.txt",
    resources:
        runtime=5,
        mem_mb=200,
    shell:
        "awk 'FNR == 1 {{ s += $1 }} END {{ print s }}' {input} > {output}; "
        "echo \"${{SLURM_JOB_ID:-}}\" >> {output}"
"""

# The settings profiles/slurm/config.yaml needs on this cluster, with test-sized jobs.
TEST_PROFILE = {
    "executor": "slurm",
    "jobs": 4,
    "latency-wait": 5,
    "retries": 0,
    # No accounting here (sacct fails): status from squeue; MinJobAge is 600 s.
    "slurm-status-command": "squeue",
    "slurm-no-account": True,
    "slurm-init-seconds-before-status-checks": POLL_SECONDS,
    "seconds-between-status-checks": POLL_SECONDS,
    "slurm-keep-successful-logs": True,
    "default-resources": {
        "slurm_partition": "$SLURM_PARTITION",
        "runtime": 5,
        "mem_mb": 200,
    },
}


def _have_binaries() -> bool:
    return all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in BINARIES)


def _clean_env() -> dict[str, str]:
    """This process's environment without any SLURM job context it may run in."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cluster(cmd: str, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), cmd],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Session-wide: the test on the small run goes last (conftest.py), apart from this module.
@pytest.fixture(scope="session")
def slurm_env(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root: slurmd runs jobs as the submitting user (and apt-get install)")
    if not _have_binaries() and shutil.which("apt-get") is None:
        pytest.skip("slurm-wlm/munge are not installed and apt-get is not available")

    env = _clean_env()
    # Short path: the munge socket path must fit in 108 bytes.
    state = tempfile.mkdtemp(prefix="vd-slurm-", dir="/tmp")
    # Its own ports, so that it does not meet a cluster someone else started here.
    env.update(
        VD_SLURM_DIR=state,
        VD_SLURM_PARTITION=PARTITION,
        VD_SLURM_CTLD_PORT=str(_free_port()),
        VD_SLURM_SLURMD_PORT=str(_free_port()),
    )
    # The daemons' logs outlive the cluster, under pytest's basetemp.
    env["VD_SLURM_KEEP_LOGS"] = str(tmp_path_factory.mktemp("slurm-logs"))

    installed = _cluster("install", env, timeout=900)
    assert installed.returncode == 0, f"cluster.sh install failed:\n{installed.stderr}"
    try:
        started = _cluster("start", env, timeout=120)
        assert started.returncode == 0, (
            f"cluster.sh start failed:\n{started.stdout}\n{started.stderr}"
        )
        conf = re.search(r"^export SLURM_CONF=(\S+)$", started.stdout, re.M)
        bin_dir = re.search(r"^export PATH=(\S+):\$PATH$", started.stdout, re.M)
        assert conf and bin_dir, f"no SLURM_CONF/PATH in: {started.stdout!r}"
        env["SLURM_CONF"] = conf.group(1)
        env["PATH"] = f"{bin_dir.group(1)}:{env.get('PATH', '')}"
        # The site settings the profile reads.
        env["SLURM_PARTITION"] = PARTITION
        yield env
    finally:
        stopped = _cluster("stop", env, timeout=120)
        assert stopped.returncode == 0, f"cluster.sh stop failed:\n{stopped.stderr}"


def _run(cmd, env, cwd, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _snakemake(args, env, cwd, timeout=150) -> subprocess.CompletedProcess:
    """Run snakemake in its own process group; on timeout kill it and cancel its jobs."""
    # This interpreter's snakemake: `make test` runs pytest without activating the venv.
    cmd = [sys.executable, "-m", "snakemake", *args]
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        subprocess.run(["scancel", "--user", "root"], env=env, check=False)
        pytest.fail(f"snakemake did not finish within {timeout}s:\n{out[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _job_rows(env, job_ids) -> dict[str, tuple[str, str]]:
    """job id -> (partition, state), from squeue (finished jobs stay MinJobAge seconds)."""
    out = _run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%P|%T", "--jobs", ",".join(job_ids)],
        env,
        cwd=None,
    )
    assert out.returncode == 0, out.stderr
    rows = {}
    for line in out.stdout.split():
        job_id, partition, state = line.split("|")
        rows[job_id] = (partition, state)
    return rows


def _read_outputs(workdir: Path) -> tuple[str, list[str]]:
    """(the total, the SLURM job ids recorded by the jobs: total's first)."""
    total, total_job = (workdir / "total.txt").read_text().split("\n")[:2]
    job_ids = [total_job.strip()]
    for i in (1, 2):
        value, job = (workdir / "num" / f"{i}.txt").read_text().split("\n")[:2]
        assert value.strip() == str(i)
        job_ids.append(job.strip())
    return total.strip(), job_ids


def _local_total(tmp_path: Path) -> str:
    local = tmp_path / "local"
    local.mkdir()
    (local / "Snakefile").write_text(SNAKEFILE)
    res = _snakemake(["--cores", "1"], _clean_env(), local, timeout=120)
    assert res.returncode == 0, res.stdout[-6000:]
    total, job_ids = _read_outputs(local)
    assert job_ids == ["", "", ""], "the local run must not run inside SLURM"
    return total


def _assert_ran_through_slurm(env, job_ids):
    assert all(job_ids), f"a job did not run under SLURM (no SLURM_JOB_ID): {job_ids}"
    assert len(set(job_ids)) == len(job_ids), f"jobs share a SLURM job: {job_ids}"
    rows = _job_rows(env, job_ids)
    assert set(rows) == set(job_ids), f"squeue does not know all jobs: {rows}"
    for job_id, (partition, state) in rows.items():
        assert partition == PARTITION, f"job {job_id} ran in {partition!r}"
        assert state == "COMPLETED", f"job {job_id} is {state}"


def _sbatch(env, cwd, *args) -> str:
    """Submit a batch job, wait until it has ended (polling squeue), return its id."""
    res = _run(["sbatch", "--parsable", *args], env, cwd)
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = _job_rows(env, [job_id]).get(job_id, ("", ""))[1]
        if state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            return job_id
        time.sleep(0.2)
    pytest.fail(f"job {job_id} still {state} after 60 s")


def test_sbatch_wrap_runs(slurm_env, tmp_path):
    out = tmp_path / "hi.out"
    job_id = _sbatch(slurm_env, tmp_path, "--output", str(out), "--wrap", "echo hi $SLURM_JOB_ID")
    assert _job_rows(slurm_env, [job_id])[job_id] == (PARTITION, "COMPLETED")
    assert out.read_text().strip() == f"hi {job_id}"


def test_gpu_job_schedules(slurm_env, tmp_path):
    out = tmp_path / "gpu.out"
    job_id = _sbatch(
        slurm_env,
        tmp_path,
        "--gpus=1",
        "--output",
        str(out),
        "--wrap",
        "echo gpu $CUDA_VISIBLE_DEVICES",
    )
    assert _job_rows(slurm_env, [job_id])[job_id] == (PARTITION, "COMPLETED")
    # The node's one (fake) GPU was allocated to the job.
    assert out.read_text().strip() == "gpu 0"
    shown = _run(["scontrol", "show", "job", job_id], slurm_env, tmp_path)
    assert "TresPerJob=gres:gpu:1" in shown.stdout, shown.stdout


def test_memory_beyond_the_node_is_rejected(slurm_env, tmp_path):
    res = _run(["sbatch", "--mem=10000000", "--wrap", "true"], slurm_env, tmp_path)
    assert res.returncode != 0
    assert "Memory specification can not be satisfied" in res.stderr or (
        "Requested node configuration is not available" in res.stderr
    ), res.stderr


def test_snakemake_slurm_executor_matches_local(slurm_env, tmp_path):
    """A test profile with the settings the repo's profile needs on this cluster."""
    workdir = tmp_path / "slurm"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE)
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump(TEST_PROFILE, sort_keys=False))

    res = _snakemake(["--profile", str(profile)], slurm_env, workdir)
    assert res.returncode == 0, res.stdout[-6000:]
    total, job_ids = _read_outputs(workdir)
    _assert_ran_through_slurm(slurm_env, job_ids)
    assert total == _local_total(tmp_path) == "3"


def test_repo_slurm_profile_on_the_cluster(slurm_env, tmp_path):
    """profiles/slurm itself, with only status polling made faster on the command line."""
    config = yaml.safe_load((REPO_PROFILE / "config.yaml").read_text())
    assert config.get("executor") == "slurm"
    # Without it the executor polls sacct, which fails without accounting, and waits forever.
    assert config.get("slurm-status-command") == "squeue", (
        "profiles/slurm/config.yaml must set `slurm-status-command: squeue`"
    )
    workdir = tmp_path / "repo_profile"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE)
    env = dict(slurm_env)
    # An account the profile may read from the environment: none on this cluster.
    env.setdefault("SLURM_ACCOUNT", "")

    res = _snakemake(["--profile", str(REPO_PROFILE), *FAST_POLLING], env, workdir)
    assert res.returncode == 0, res.stdout[-6000:]
    total, job_ids = _read_outputs(workdir)
    _assert_ran_through_slurm(slurm_env, job_ids)
    assert total == "3"


@pytest.mark.slow
def test_small_default_jobs_through_slurm_equal_the_local_run(slurm_env, small_run, tmp_path):
    """Real workflow jobs (base model conversion, generation) submitted with the repo's
    profile, and a local rule between them, give the same files as the local run."""
    from tests.support.workflow import copy_repo

    workdir = copy_repo(tmp_path / "value-drifts")
    env = {**slurm_env, "PYTHONPATH": str(workdir / "src")}
    env.setdefault("SLURM_ACCOUNT", "")
    target = "results/smollm2-135m/base/step-0/generations.parquet"
    res = _snakemake(
        ["--profile", "slurm", target, *FAST_POLLING], env, workdir, timeout=900
    )
    assert res.returncode == 0, res.stdout[-6000:]
    # prepare_base_model and generate, each its own sbatch job; select_questions is light,
    # a local rule run by Snakemake itself
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", res.stdout)
    assert len(job_ids) == 2, res.stdout[-6000:]
    assert "localrule select_questions" in res.stdout, res.stdout[-6000:]
    _assert_ran_through_slurm(slurm_env, job_ids)
    import polars as pl

    ours = pl.read_parquet(workdir / target)
    local = pl.read_parquet(small_run / target)
    assert ours.equals(local)
