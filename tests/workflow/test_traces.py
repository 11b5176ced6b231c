"""Traces: a checkpoint series trained elsewhere, run through the real workflow.

One tiny study (a tiny random model copied in as a ``local`` model, SFT with TRL for two
checkpoints, a deterministic judge on a local OpenAI-protocol server) is trained and
evaluated; then its checkpoint folder is given back as a trace. The trace must give the
same drift table as the trained phase, never touch the folder, skip a half-written
checkpoint naming it, and flag a duplicated one.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.support.hash_judge import HashJudgeServer, hash_judge
from tests.support.tiny_model import build_tiny_model
from tests.support.workflow import REPO, copy_repo, snakemake
from value_drifts.commands.main import without_its_study

pytestmark = pytest.mark.slow  # real workflow runs


MODEL = "tiny"
RUN = "sft-opinionated"
PHASE = f"results/{MODEL}/{RUN}"
FOLDER = f"results/models/{MODEL}/{RUN}"


def _tiny_config(repo: Path, server, traces=None) -> Path:
    # what the trace command also leaves out of the small default
    config = without_its_study(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    config["models"] = {MODEL: {"source": "local", "path": str(repo / "tiny-base"),
                                "prompt_style": "chat", "gpus": 0, "params_b": 0.001}}
    config["sft_datasets"] = {"opinionated": {**config["sft_datasets"]["opinionated"],
                                              "size": 16, "save_steps": 1}}
    config["sft"] = {**config["sft"], "max_length": 64}
    config["questions"]["per_category"] = 2
    config["generation"] = {**config["generation"], "max_new_tokens": 6,
                            "delete_checkpoint_weights": False}
    config["judge"] = hash_judge(server)
    config["analysis"] = {**config["analysis"], "figure_topics": ["Abortion"],
                          "bootstrap_resamples": 100}
    if traces:
        config["traces"] = traces
    path = repo / ("traces.yaml" if traces else "tiny.yaml")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _tree(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("traces") / "value-drifts")
    build_tiny_model(repo / "tiny-base")
    with HashJudgeServer() as server:
        config = _tiny_config(repo, server)
        snakemake(f"{PHASE}/drift.parquet", "--cores", "2", "--configfile", str(config),
                  cwd=repo, timeout=900)
        yield repo, server


def test_the_tiny_study_trained_two_checkpoints(study):
    repo, _ = study
    assert sorted(p.name for p in (repo / FOLDER).glob("checkpoint-*")) == [
        "checkpoint-1", "checkpoint-2"]
    values = pl.read_parquet(repo / PHASE / "values.parquet")
    assert sorted(values["step"].unique().to_list()) == [0, 1, 2]


def test_a_trace_of_the_folder_gives_the_trained_phase_drift_table(study):
    repo, server = study
    folder = repo / FOLDER
    before = _tree(folder)
    traces = {"mine": {"checkpoints": str(folder), "start": str(repo / "results/models/tiny/base"),
                       "prompt_style": "chat"}}
    config = _tiny_config(repo, server, traces)
    result = snakemake("results/tables/trace_mine.md", "results/figures/trace_mine_abortion.pdf",
                       "results/traces/mine/judge_health.csv", "--cores", "2",
                       "--configfile", str(config), cwd=repo, timeout=900)
    trace = pl.read_parquet(repo / "results/traces/mine/drift.parquet")
    phase = pl.read_parquet(repo / PHASE / "drift.parquet")
    assert trace.height == phase.height > 0
    assert trace.equals(phase), (trace, phase)  # same checkpoints, seeds and judge
    assert _tree(folder) == before  # never modified, nothing added or deleted
    generations = pl.read_parquet(repo / "results/traces/mine/step-2/generations.parquet")
    trained = pl.read_parquet(repo / PHASE / "step-2/generations.parquet")
    assert generations["response"].to_list() == trained["response"].to_list()
    assert generations["weights_digest"][0] == trained["weights_digest"][0]
    markdown = (repo / "results/tables/trace_mine.md").read_text()
    assert "| Abortion |" in markdown and "mine support" in markdown
    assert (repo / "results/figures/trace_mine_abortion.png").read_bytes()[:4] == b"\x89PNG"
    assert "generate" in result.stdout + result.stderr


def test_a_half_written_checkpoint_is_skipped_and_a_duplicate_is_flagged(study):
    repo, server = study
    series = repo / "their-run"
    shutil.copytree(repo / FOLDER / "checkpoint-1", series / "checkpoint-10")
    shutil.copytree(repo / FOLDER / "checkpoint-2", series / "checkpoint-20")
    shutil.copytree(repo / FOLDER / "checkpoint-1", series / "checkpoint-30")  # mislabelled
    half = series / "checkpoint-40"
    shutil.copytree(repo / FOLDER / "checkpoint-2", half)
    (half / "checkpoint_complete.json").unlink()  # as a save cut short leaves it
    weights = half / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (series / "notes.txt").write_text("not a checkpoint")
    before = _tree(series)
    config = _tiny_config(repo, server, {
        "theirs": {"checkpoints": str(series), "prompt_style": "chat"}})
    result = snakemake("results/tables/trace_theirs.md", "--cores", "2", "--configfile",
                       str(config), cwd=repo, timeout=900)
    output = result.stdout + result.stderr
    assert f"trace theirs: skipped {half}" in output
    values = pl.read_parquet(repo / "results/traces/theirs/values.parquet")
    assert sorted(values["step"].unique().to_list()) == [10, 20, 30]
    drift = pl.read_parquet(repo / "results/traces/theirs/drift.parquet")
    assert set(drift["checkpoint_integrity"]) == {
        "checkpoint integrity: step 30 has the same weights as step 10"}
    assert "step 30 has the same weights as step 10" in (
        repo / "results/tables/trace_theirs.md").read_text()
    assert "checkpoint integrity: step 30 has the same weights as step 10" in (
        repo / "logs/aggregate/traces/theirs/values.log").read_text()
    assert _tree(series) == before


def test_a_trace_without_complete_checkpoints_stops_at_start(study, tmp_path):
    repo, server = study
    empty = tmp_path / "empty-run"
    (empty / "checkpoint-5").mkdir(parents=True)
    config = _tiny_config(repo, server, {"empty": {"checkpoints": str(empty),
                                                   "prompt_style": "chat"}})
    result = snakemake("-n", "--configfile", str(config), cwd=repo, check=False)
    assert result.returncode != 0
    assert f"traces.empty: no complete checkpoint-N folder in {empty}" in (
        result.stdout + result.stderr)


def test_a_trace_of_hub_revisions_reads_each_revision(study, monkeypatch):
    """Hub revisions through huggingface_hub's own cache (refs/<revision> -> snapshot), as
    a download leaves it, offline: the trained run's checkpoints 1 and 2 published as
    revisions "stage1-sft" and "step500" of org/tiny."""
    repo, server = study
    cache = repo / "hf/hub/models--org--tiny"
    for revision, step, commit in (("stage1-sft", 1, "1" * 40), ("step500", 2, "2" * 40)):
        (cache / "refs").mkdir(parents=True, exist_ok=True)
        (cache / "refs" / revision).write_text(commit)
        shutil.copytree(repo / FOLDER / f"checkpoint-{step}", cache / "snapshots" / commit)
    monkeypatch.setenv("HF_HOME", str(repo / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = _tiny_config(repo, server, {"olmo-like": {
        "hub_id": "org/tiny", "revisions": {0: "stage1-sft", 500: "step500"},
        "prompt_style": "chat"}})
    snakemake("results/tables/trace_olmo-like.md", "--cores", "2", "--configfile",
              str(config), cwd=repo, timeout=900)
    for trace_step, trained_step in ((0, 1), (500, 2)):
        ours = pl.read_parquet(repo / f"results/traces/olmo-like/step-{trace_step}/"
                               "generations.parquet")
        trained = pl.read_parquet(repo / PHASE / f"step-{trained_step}/generations.parquet")
        assert ours["response"].to_list() == trained["response"].to_list()
    values = pl.read_parquet(repo / "results/traces/olmo-like/values.parquet")
    assert sorted(values["step"].unique().to_list()) == [0, 500]
