"""judge.reference and judge.audit in dry runs: editing only the reference judge (or
the prompt audit) reruns only its jobs and what reads them; the main judge's settings
file and judgments stay as they are.

The finished tree is made without running anything: every output the plan lists
(``snakemake --summary``) is created empty and then marked up to date (``snakemake
--touch``), so the dry run of the unedited config plans nothing (rerun trigger: mtime
only, docs/reruns.md).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml

from tests.support.workflow import copy_repo, dry_run_jobs, snakemake

# What may rerun when only the reference judge changes: its jobs, the agreement that
# reads them, the report's run configuration (the config itself) and the target rule.
REFERENCE_JOBS = {"reference_judge", "judge_reference_agreement", "run_configuration", "all"}
AUDIT_JOBS = {"judge_prompt_audit", "run_configuration", "all"}


@pytest.fixture(scope="module")
def finished_tree(tmp_path_factory):
    workdir = copy_repo(tmp_path_factory.mktemp("reference") / "value-drifts")
    summary = snakemake("--summary", "--nolock", "--cores", "1", cwd=workdir).stdout
    for line in summary.splitlines()[1:]:
        path = workdir / line.split("\t")[0]
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:  # a model or checkpoint directory
            path.mkdir(parents=True, exist_ok=True)
    # every output up to date, in the plan's order, with Snakemake's metadata
    snakemake("--touch", "--nolock", "--cores", "1", cwd=workdir)
    assert dry_run_jobs(cwd=workdir) == {}
    return workdir


@contextlib.contextmanager
def edited_reference(workdir: Path, **changes):
    path = workdir / "config/config.yaml"
    text = path.read_text()
    config = yaml.safe_load(text)
    config["judge"]["reference"].update(changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        yield
    finally:
        path.write_text(text)


def main_judge_state(workdir: Path) -> dict[str, tuple[bytes, int]]:
    """The main judge's settings file and every judgments file: bytes and time."""
    paths = [workdir / "results/settings/judge.json",
             *sorted((workdir / "results").glob("*/*/step-*/judgments.parquet"))]
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


def test_the_small_default_plans_the_reference_judge(finished_tree):
    jobs = dry_run_jobs("--forceall", cwd=finished_tree)
    assert jobs["reference_judge"] == jobs["judge"] == 10
    assert jobs["judge_reference_agreement"] == 7  # one per phase
    assert jobs["judge_prompt_audit"] == 1
    assert "reference" not in (finished_tree / "results/settings/judge.json").read_text()


@pytest.mark.parametrize("change", ["prompt", "model"])
def test_editing_only_the_reference_judge_reruns_only_its_jobs(finished_tree, change):
    before = main_judge_state(finished_tree)
    assert len(before) == 1 + 10
    left = set(dry_run_jobs(cwd=finished_tree))  # left scheduled by an earlier set-back
    assert left <= REFERENCE_JOBS | AUDIT_JOBS
    if change == "prompt":
        prompt = finished_tree / "config/prompts/reference_prompt.txt"
        prompt.write_text((finished_tree / "config/prompts/judge_response.txt").read_text()
                          + "\nAnswer with one word.\n")
        edit = {"prompt": str(prompt.relative_to(finished_tree))}
    else:
        edit = {"model": "adapted"}
    with edited_reference(finished_tree, **edit):
        jobs = dry_run_jobs(cwd=finished_tree)
    assert set(jobs) - left <= REFERENCE_JOBS, jobs
    assert jobs["reference_judge"] == 10 and jobs["judge_reference_agreement"] == 7
    assert main_judge_state(finished_tree) == before
    # set back (a touched tree holds no input checksums, so the reference jobs stay
    # scheduled; docs/reruns.md covers a set-back on a real run): still no main judge job
    assert set(dry_run_jobs(cwd=finished_tree)) - left <= REFERENCE_JOBS
    assert main_judge_state(finished_tree) == before


def test_without_a_reference_the_main_judge_settings_are_the_same(finished_tree, tmp_path):
    before = main_judge_state(finished_tree)
    config = yaml.safe_load((finished_tree / "config/config.yaml").read_text())
    del config["judge"]["reference"]
    path = tmp_path / "no_reference.yaml"
    path.write_text(yaml.safe_dump(config))
    jobs = dry_run_jobs("--configfile", str(path), cwd=finished_tree)
    assert not {"reference_judge", "judge_reference_agreement", "judge"} & set(jobs)
    assert main_judge_state(finished_tree) == before


def test_editing_only_the_prompt_audit_reruns_only_the_audit(finished_tree):
    before = main_judge_state(finished_tree)
    left = set(dry_run_jobs(cwd=finished_tree))  # left scheduled by an earlier set-back
    assert left <= REFERENCE_JOBS | AUDIT_JOBS
    path = finished_tree / "config/config.yaml"
    text = path.read_text()
    config = yaml.safe_load(text)
    config["judge"]["audit"] = config["judge"]["audit"][:1]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        jobs = dry_run_jobs(cwd=finished_tree)
    finally:
        path.write_text(text)
    assert set(jobs) - left <= AUDIT_JOBS, jobs
    assert jobs["judge_prompt_audit"] == 1
    assert main_judge_state(finished_tree) == before
