"""What is current is decided by content: real runs of the question-selection job with
its recorded settings edited, run and reverted; and edited and reverted without a run."""

from __future__ import annotations

import polars as pl
import yaml

from tests.support.workflow import REPO, copy_repo, job_counts, snakemake

TARGET = "results/data/questions.parquet"


def _config(tmp_path, per_category):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["questions"]["per_category"] = per_category
    path = tmp_path / f"q{per_category}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _questions(repo) -> int:
    return pl.read_parquet(repo / TARGET).height


def test_edit_run_revert_makes_the_edited_output_stale(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    first, edited = _config(tmp_path, 3), _config(tmp_path, 2)
    snakemake(TARGET, "--cores", "1", "--configfile", first, cwd=repo)
    assert _questions(repo) == 15 and job_counts(
        snakemake("-n", TARGET, "--configfile", first, cwd=repo).stdout) == {}
    snakemake(TARGET, "--cores", "1", "--configfile", edited, cwd=repo)  # edit, run
    assert _questions(repo) == 10
    reverted = snakemake("-n", TARGET, "--configfile", first, cwd=repo)  # revert
    assert job_counts(reverted.stdout) == {"select_questions": 1}
    snakemake(TARGET, "--cores", "1", "--configfile", first, cwd=repo)
    assert _questions(repo) == 15


def test_an_edit_reverted_before_any_run_is_current(tmp_path, monkeypatch):
    import hashlib

    from value_drifts.core.checkpoints import input_changed, recorded_input_checksum

    repo = copy_repo(tmp_path / "repo")
    first, edited = _config(tmp_path, 3), _config(tmp_path, 2)
    snakemake(TARGET, "--cores", "1", "--configfile", first, cwd=repo)
    # the workflow's own guards read Snakemake's record of what the output was made from
    settings = "results/settings/data/questions.json"
    monkeypatch.chdir(repo)
    assert recorded_input_checksum(TARGET, settings) == hashlib.sha256(
        (repo / settings).read_bytes()).hexdigest()
    assert job_counts(snakemake("-n", TARGET, "--configfile", edited, cwd=repo).stdout) == {
        "select_questions": 1}
    assert job_counts(snakemake("-n", TARGET, "--configfile", first, cwd=repo).stdout) == {}
    assert not input_changed(settings, TARGET)  # newer, but the bytes it was made from
