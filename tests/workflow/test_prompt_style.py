"""The prompt style belongs to the phase: on the paper grid (base models) the base model's
step 0 is prompted with "Response:", every SFT and preference-optimisation checkpoint with
its chat template; the small default (an instruct model, chat throughout) keeps the one
generation settings file it had."""

from __future__ import annotations

import json
import re

from tests.support.workflow import copy_repo, snakemake

# a checkpoint's job (rule generate), or a run's (rule generate_run: one_job_per_run, on
# in config/paper.yaml; its step is "")
GENERATE = re.compile(r"rule generate(?:_run)?:\n(?:    .*\n)*?    input: ([^\n]*)\n(?:    .*\n)*?"
                      r"    output: (results/[^/]+/([^/]+)/(?:step-(\d+)/generations\.parquet"
                      r"|generations-by-step))")


def _generate_jobs(stdout: str) -> list[tuple[str, str, str]]:
    """(settings file, run, step) of every generate or generate_run job of a dry run."""
    jobs = []
    for inputs, _, run, step in GENERATE.findall(stdout):
        settings = next(p for p in inputs.split(", ") if "settings/generation/" in p)
        jobs.append((settings, run, step))
    return jobs


def test_paper_checkpoints_are_prompted_by_phase(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    result = snakemake("-n", "--forceall", "--configfile", "config/paper.yaml", cwd=repo)
    jobs = _generate_jobs(result.stdout)
    assert all(step == "" for _, _, step in jobs)  # one job per run
    assert len(jobs) > 50 and sum(run == "base" for _, run, _ in jobs) == 4
    for settings, run, _ in jobs:
        style = json.loads((repo / settings).read_text())["settings"]["prompt_style"]
        assert style == ("base" if run == "base" else "chat"), (settings, run)
        assert settings.endswith(".chat.json") == (run != "base")


def test_the_small_default_keeps_one_generation_settings_file(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    result = snakemake("-n", "--forceall", cwd=repo)
    jobs = _generate_jobs(result.stdout)
    assert len(jobs) == 10
    assert {settings for settings, _, _ in jobs} == {
        "results/settings/generation/smollm2-135m.json"}
    files = sorted(p.name for p in (repo / "results/settings/generation").iterdir()
                   if not p.name.startswith("."))
    assert files == ["smollm2-135m.json"]
