"""The job that answers every checkpoint of a run (workflow_scripts/generate_run.py, rule
generate_run): run as Snakemake runs a script, with the object Snakemake hands it, on
copies of the tiny model. A job cut short resumes at the first checkpoint without answers,
reusing what it wrote (and the answers it kept beside weights it deleted), and leaves
exactly the run's checkpoints in its output."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

from tests.support.tiny_model import build_tiny_model
from value_drifts.core.checkpoints import KEPT_ANSWERS, weights_deleted

SCRIPT = Path(__file__).resolve().parents[3] / "workflow_scripts" / "generate_run.py"
QUESTIONS = pl.DataFrame({"question_id": ["q1", "q2"], "category": ["Abortion"] * 2,
                          "question": ["Should abortion be legal?", "Is it murder?"]})
GENERATION = {"backend": "transformers", "samples": 1, "temperature": 0.7,
              "max_new_tokens": 3, "batch_size": 2, "base_prompt_suffix": "\nResponse:"}
MODEL = {"prompt_style": "chat", "tokenizer": None, "revision": None}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _job(tmp_path: Path, tiny: Path, steps=(1, 2, 3)):
    run = tmp_path / "training"
    for step in steps:
        if not (run / f"checkpoint-{step}").exists():
            shutil.copytree(tiny, run / f"checkpoint-{step}")
    QUESTIONS.write_parquet(tmp_path / "questions.parquet")
    checkpoints = [{"step": step, "path": str(run / f"checkpoint-{step}"), "model": MODEL,
                    "delete_weights": step != steps[-1], "answers": None} for step in steps]
    return SimpleNamespace(
        log=[str(tmp_path / "run.log")], output=[str(tmp_path / "generations-by-step")],
        input=SimpleNamespace(questions=str(tmp_path / "questions.parquet")),
        params=SimpleNamespace(checkpoints=checkpoints, answers_digest="digest-a",
                               settings=GENERATION, seed=0),
        resources=SimpleNamespace(gpu=0), threads=1,
    )


def _run(job) -> str:
    runpy.run_path(str(SCRIPT), init_globals={"snakemake": job}, run_name="__main__")
    return Path(job.log[0]).read_text()


def test_a_job_cut_short_resumes_at_the_first_checkpoint_without_answers(tmp_path, tiny):
    job = _job(tmp_path, tiny)
    second = Path(job.params.checkpoints[1]["path"])
    config = (second / "config.json").read_text()
    (second / "config.json").write_text("{ cut short")  # the job fails at step 2
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever transformers raises
        _run(job)
    parts = tmp_path / "generations-by-step.parts"
    assert sorted(p.name for p in parts.iterdir()) == ["step-1.parquet"]
    first = Path(job.params.checkpoints[0]["path"])
    assert weights_deleted(first)  # answered, kept beside it, then its weights went
    assert (first / KEPT_ANSWERS).read_bytes() == (parts / "step-1.parquet").read_bytes()
    answered = (parts / "step-1.parquet").read_bytes()

    (second / "config.json").write_text(config)
    (parts / "step-9.parquet").write_bytes(answered)  # a step no longer evaluated
    (tmp_path / "generations-by-step").mkdir()  # what an earlier run left
    log = _run(job)
    assert "restored the answers kept in" in log and "2 of 3 checkpoints to sample" in log
    output = tmp_path / "generations-by-step"
    assert sorted(p.name for p in output.iterdir()) == [
        "step-1.parquet", "step-2.parquet", "step-3.parquet"]
    assert (output / "step-1.parquet").read_bytes() == answered
    assert not parts.exists()
    tables = {step: pl.read_parquet(output / f"step-{step}.parquet") for step in (1, 2, 3)}
    assert all(t.height == 2 and t["generation_settings"].unique().to_list() == ["digest-a"]
               for t in tables.values())
    # the same weights and seed give the same answers, whichever job or attempt made them
    assert tables[2]["response"].to_list() == tables[1]["response"].to_list()
    assert weights_deleted(second) and not weights_deleted(
        Path(job.params.checkpoints[2]["path"]))  # a run's last checkpoint keeps its weights


def test_a_part_from_other_weights_is_sampled_again(tmp_path, tiny):
    job = _job(tmp_path, tiny, steps=(1, 2))
    for checkpoint in job.params.checkpoints:
        checkpoint["delete_weights"] = False
    _run(job)
    output = tmp_path / "generations-by-step"
    parts = tmp_path / "generations-by-step.parts"
    shutil.copytree(output, parts)  # as if the job had been cut before its rename
    log = _run(job)
    assert "0 of 2 checkpoints to sample" in log
    assert log.count(f"current answers in {parts}/step-") == 2  # the earlier attempt's
    shutil.copytree(output, parts)
    # step 2 retrained since (other weights): its part is not current
    from safetensors.torch import load_file, save_file

    weights_file = Path(job.params.checkpoints[1]["path"]) / "model.safetensors"
    weights = load_file(weights_file)
    save_file({name: value * 1.5 for name, value in weights.items()}, weights_file,
              metadata={"format": "pt"})
    log = _run(job)
    assert "1 of 2 checkpoints to sample" in log
    digests = {step: pl.read_parquet(output / f"step-{step}.parquet")["weights_digest"][0]
               for step in (1, 2)}
    assert digests[1] != digests[2]
