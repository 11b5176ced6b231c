"""When a finished small default reruns what (docs/reruns.md).

Edits the shared small run's config and dry-runs it: throughput settings schedule nothing,
an output-affecting setting schedules exactly the jobs that read it, and a change that
would regenerate checkpoints whose weights are gone stops the workflow before anything
runs, removing nothing. Every edit is undone, and the run is left as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from pathlib import Path

import pytest
import yaml

from tests.support.workflow import dry_run_jobs, snakemake

pytestmark = pytest.mark.slow

# dotted config key -> a new value that changes only how fast or where a job runs
THROUGHPUT_EDITS = {
    "generation.batch_size": 5,
    "generation.delete_checkpoint_weights": False,
    "judge.batch_size": 3,
    "judge.concurrency": 4,
    "judge.max_unreadable_share": 0.3,
    "judge.prices": {"input_per_million_usd": 9.0, "output_per_million_usd": 9.0},
    "sft.per_device_batch_size": 4,
    "downstream.batch_size": 2,
    "models.smollm2-135m.params_b": 0.2,
}


@contextlib.contextmanager
def edited_config(workdir: Path, key: str, value):
    path = workdir / "config/config.yaml"
    text = path.read_text()
    config = yaml.safe_load(text)
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        yield
    finally:
        path.write_text(text)


def _generations(workdir: Path) -> dict[str, tuple[str, int]]:
    """Every generations file: sha256 and modification time."""
    return {
        str(path.relative_to(workdir)): (hashlib.sha256(path.read_bytes()).hexdigest(),
                                         path.stat().st_mtime_ns)
        for path in sorted((workdir / "results").glob("*/*/step-*/generations.parquet"))
    }


def _deleted_checkpoints(workdir: Path) -> set[str]:
    """'model run step' of every checkpoint whose weights were deleted."""
    return {
        f"{marker.parts[-4]} {marker.parts[-3]} step {marker.parts[-2].split('-')[1]}"
        for marker in (workdir / "results/models").glob("*/*/checkpoint-*/weights_deleted.json")
    }


def test_the_finished_run_schedules_nothing(small_run):
    assert dry_run_jobs(cwd=small_run) == {}


@pytest.mark.parametrize("key", sorted(THROUGHPUT_EDITS))
def test_a_throughput_edit_schedules_nothing(small_run, key):
    with edited_config(small_run, key, THROUGHPUT_EDITS[key]):
        assert dry_run_jobs(cwd=small_run) == {}, key


def test_an_analysis_edit_reruns_only_the_analysis(small_run):
    with edited_config(small_run, "analysis.ci_level", 0.9):
        jobs = dry_run_jobs(cwd=small_run)
    runs = 7  # 2 SFT and 5 PO phases
    assert jobs.pop("values") == jobs.pop("drift") == jobs.pop("calibrated_values") == runs
    # and the configuration the report shows: it changed
    assert jobs.pop("run_configuration") == 1
    assert set(jobs) <= {"sft_drift_table", "po_drift_table", "figure_sft_trajectories",
                         "figure_po_trajectories", "figure_po_setups", "contrast_table",
                         "judge_reference_agreement", "all"}, jobs
    assert dry_run_jobs(cwd=small_run) == {}  # undone: the earlier outputs are current again


def test_a_judge_reading_edit_rejudges_without_generating(small_run):
    with edited_config(small_run, "judge.min_label_mass", 0.45):
        jobs = dry_run_jobs(cwd=small_run)
    assert jobs["judge"] == 10 and jobs["judge_agreement"] == 1
    assert jobs["dataset_stances"] == 2 and jobs["value_gap_pairs"] == 2
    assert not {"generate", "adapt_local_judge", "train_sft", "train_preference_optimisation",
                "downstream_eval"} & set(jobs), jobs
    assert dry_run_jobs(cwd=small_run) == {}


def test_regenerating_deleted_checkpoints_stops_before_anything_runs(small_run):
    before = _generations(small_run)
    deleted = _deleted_checkpoints(small_run)
    assert len(deleted) == 2 and "smollm2-135m sft-taskish step 3" in deleted
    with edited_config(small_run, "generation.temperature", 0.9):
        dry = snakemake("-n", cwd=small_run, check=False)
        run = snakemake("--cores", "1", cwd=small_run, check=False)
    for result in (dry, run):
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "Stopped before running anything" in output
        named = {line.strip().split(":")[0] for line in output.splitlines()
                 if "its answers are older than" in line}
        assert named == deleted  # each one, and no checkpoint that still has weights
        assert "revert the change" in output and "Nothing was removed" in output
    assert _generations(small_run) == before  # nothing removed, nothing rewritten
    # reverting gives the settings file back its first time: nothing is stale any more
    assert dry_run_jobs(cwd=small_run) == {}


def test_new_questions_stop_before_anything_runs_too(small_run):
    """The questions are rebuilt before generation: a changed sample would regenerate
    every checkpoint, so the deleted ones stop the workflow although their settings and
    kept answers are unchanged."""
    before = _generations(small_run)
    with edited_config(small_run, "questions.per_category", 3):
        dry = snakemake("-n", cwd=small_run, check=False)
    output = dry.stdout + dry.stderr
    assert dry.returncode != 0 and "Stopped before running anything" in output
    named = {line.strip().split(":")[0] for line in output.splitlines()
             if "results/data/questions.parquet will be rebuilt" in line}
    assert named == _deleted_checkpoints(small_run)
    assert _generations(small_run) == before
    assert dry_run_jobs(cwd=small_run) == {}


def test_answers_kept_beside_a_deleted_checkpoint_come_back(small_run):
    """A deleted checkpoint's answers, removed from results/, are restored from the copy
    kept in its folder (same settings) instead of failing for want of weights."""
    target = small_run / "results/smollm2-135m/sft-taskish/step-3/generations.parquet"
    kept = small_run / "results/models/smollm2-135m/sft-taskish/checkpoint-3/generations.parquet"
    original, stat = target.read_bytes(), target.stat()
    assert kept.read_bytes() == original
    target.unlink()
    jobs = dry_run_jobs(str(target.relative_to(small_run)), cwd=small_run)
    assert jobs == {"generate": 1}
    snakemake("--cores", "1", str(target.relative_to(small_run)), cwd=small_run)
    assert target.read_bytes() == original
    log = (small_run / "logs/generate/smollm2-135m/sft-taskish/step-3.log").read_text()
    assert "restored the answers kept in" in log
    import os

    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # leave the run current
    assert dry_run_jobs(cwd=small_run) == {}


def test_a_tree_copied_without_its_times_stops_and_restore_times_makes_it_current(small_run):
    """cp -r gives every file the time of the copy, in copy order: the finished small run
    with its results' times so rewritten stops at start naming the cause and the command,
    running nothing; that command gives the times back and nothing is planned."""
    import os
    import subprocess
    import sys
    import time

    from tests.support.workflow import snakemake_env

    results = small_run / "results"
    assert (results / ".file_times.json").is_file()  # written at the end of the run
    files = sorted(p for p in results.rglob("*") if p.is_file() and not p.is_symlink()
                   and p.name != ".file_times.json")
    kept = {p: p.stat().st_mtime_ns for p in files}
    start = time.time()
    try:
        for i, path in enumerate(files):  # as cp -r would, in copy order
            os.utime(path, (start + i * 1e-3, start + i * 1e-3))
        result = snakemake("-n", cwd=small_run, check=False)
        assert result.returncode != 0
        assert "looks copied without its file times" in result.stdout + result.stderr
        assert "value-drifts restore-times" in result.stdout + result.stderr
        restored = subprocess.run(
            [sys.executable, "-m", "value_drifts.commands.main", "restore-times"],
            cwd=small_run, env=snakemake_env(small_run), capture_output=True, text=True)
        assert restored.returncode == 0, restored.stderr
        import json

        recorded = json.loads((results / ".file_times.json").read_text())
        present = sum(1 for name, (size, _) in recorded.items()
                      if (results / name).is_file() and (results / name).stat().st_size == size)
        assert present > 0.9 * len(files)  # files made since the last run's end stay as they are
        assert f"results: {present} file(s) given back" in restored.stdout
        assert dry_run_jobs(cwd=small_run) == {}
    finally:
        for path, mtime_ns in kept.items():
            os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.mark.gpu_path
def test_one_job_per_run_samples_only_missing_answers_and_both_modes_reuse_each_other(small_run):
    """generation.one_job_per_run (the paper's vLLM path: one engine per run) on the finished
    run: one generate_run job per run and a local copy per checkpoint; it reuses every
    current answer (none sampled), samples a checkpoint whose answers are gone exactly as
    its own job did, and switching back reuses its answers. No answer changes a byte."""
    import shutil

    before = {path: sha for path, (sha, _) in _generations(small_run).items()}
    runs = sorted({path.split("/")[2] for path in before})
    by_run = [f"results/smollm2-135m/{run}/generations-by-step" for run in runs]
    sampled = small_run / "results/smollm2-135m/sft-opinionated/step-6/generations.parquet"
    with edited_config(small_run, "generation.one_job_per_run", True):
        # every run's job and every checkpoint's copy, whatever ran here before
        forced = [*by_run, *before, "--forcerun", "generate_step"]
        jobs = dry_run_jobs(*forced, cwd=small_run)
        assert jobs == {"generate_run": len(runs), "generate_step": len(before)}, jobs
        sampled.unlink()  # gone everywhere: its weights are kept (a run's final checkpoint)
        snakemake("--cores", "2", *forced, cwd=small_run)
        assert {path: sha for path, (sha, _) in _generations(small_run).items()} == before
        logs = {run: (small_run / f"logs/generate/smollm2-135m/{run}/run.log").read_text()
                for run in runs}
        assert "1 of 2 checkpoints to sample" in logs.pop("sft-opinionated")
        assert all(re.search(r"^0 of \d checkpoints to sample", log, re.M)
                   for log in logs.values()), logs
    snakemake("--cores", "2", *before, "--forcerun", "generate", cwd=small_run)
    log = (small_run / "logs/generate/smollm2-135m/sft-opinionated/step-6.log").read_text()
    assert "current answers in results/smollm2-135m/sft-opinionated/generations-by-step" in log
    assert {path: sha for path, (sha, _) in _generations(small_run).items()} == before
    for folder in (small_run / "results").glob("*/*/generations-by-step"):
        shutil.rmtree(folder)
    assert dry_run_jobs(cwd=small_run) == {}  # judgments and everything after stay current
