"""The job that judges every checkpoint of a run (workflow_scripts/judge_run.py, rule
judge_run, judge.one_job_per_run): run as Snakemake runs a script, on the tiny model as a
transformers judge. It writes each checkpoint's judgments exactly as one job per checkpoint
(workflow_scripts/judge.py) does, with one backend for the run: each prompt is scored once
and the model loaded once."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

from tests.support.tiny_model import build_tiny_model
from value_drifts.generation.sampling import SamplingSettings, generate_transformers

SCRIPTS = Path(__file__).resolve().parents[3] / "workflow_scripts"
REPO = SCRIPTS.parent
QUESTIONS = pl.DataFrame({
    "question_id": ["q1", "q2", "q3"], "category": ["Abortion", "Abortion", "Immigration Policies"],
    "question": ["Should abortion be legal?", "Is it murder?", "Open borders?"]})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def answers(tiny, tmp_path_factory):
    """Three checkpoints' answers; the third repeats the first (a checkpoint that did not
    move): one job per run scores its prompts once."""
    folder = tmp_path_factory.mktemp("answers")
    paths = []
    for step, seed in ((1, 0), (2, 1), (3, 0)):
        settings = SamplingSettings(samples=2, temperature=0.9, max_new_tokens=4, seed=seed,
                                    prompt_style="chat")
        path = folder / f"step-{step}.parquet"
        generate_transformers(str(tiny), QUESTIONS, settings).write_parquet(path)
        paths.append(str(path))
    return paths


def _judge(tiny, cache: Path) -> dict:
    return {"backend": "transformers", "model": str(tiny), "prompt": "config/prompts/judge_response.txt",
            "top_logprobs": 5, "batch_size": 4, "cache": str(cache), "min_label_mass": 0.0,
            "max_unreadable_share": 1.0}  # a random tiny model reads nothing: no gate


def _inputs(answers):
    return dict(prompt=str(REPO / "config/prompts/judge_response.txt"),
                topics=str(REPO / "config/topics.yaml"))


def test_one_job_per_run_judges_each_checkpoint_as_its_own_job_would(tiny, answers, tmp_path):
    # one job per checkpoint, with their own cache
    per_checkpoint = {}
    for step, generations in zip((1, 2, 3), answers, strict=True):
        out = tmp_path / f"own-{step}"
        job = SimpleNamespace(
            log=[str(out / "log.txt")],
            input=SimpleNamespace(generations=generations, **_inputs(answers)),
            output=SimpleNamespace(judgments=str(out / "judgments.parquet"),
                                   counts=str(out / "judge_counts.json")),
            params=SimpleNamespace(judge=_judge(tiny, tmp_path / "own.sqlite"),
                                   fingerprint_settings=None, model_path=str(tiny),
                                   batch_state=str(out / "batch.json")),
            threads=1)
        runpy.run_path(str(SCRIPTS / "judge.py"), init_globals={"snakemake": job})
        per_checkpoint[step] = out
    # one job for the run, with a fresh cache of its own
    run = tmp_path / "judgments-by-step"
    job = SimpleNamespace(
        log=[str(tmp_path / "run.log")], output=[str(run)],
        input=SimpleNamespace(generations=answers, **_inputs(answers)),
        params=SimpleNamespace(judge=_judge(tiny, tmp_path / "run.sqlite"),
                               fingerprint_settings=None, model_path=str(tiny),
                               steps=["1", "2", "3"], batch_state=str(tmp_path / "b.json")),
        threads=1)
    runpy.run_path(str(SCRIPTS / "judge_run.py"), init_globals={"snakemake": job},
                   run_name="__main__")
    assert sorted(p.name for p in run.iterdir()) == [
        f"step-{s}.{kind}" for s in (1, 2, 3) for kind in ("judge_counts.json", "parquet")]
    for step, own in per_checkpoint.items():
        ours = pl.read_parquet(run / f"step-{step}.parquet")
        assert ours.equals(pl.read_parquet(own / "judgments.parquet")), step
        counts = json.loads((run / f"step-{step}.judge_counts.json").read_text())
        alone = json.loads((own / "judge_counts.json").read_text())
        assert counts["health"] == alone["health"] and counts["judged"] == alone["judged"] == 6
        assert counts["judge_fingerprint"] == alone["judge_fingerprint"]
    # the third checkpoint repeats the first's answers: the run's backend scores none again
    third = json.loads((run / "step-3.judge_counts.json").read_text())
    assert third["requests_sent"] == 0 and third["cache_hits"] == 6
    third_table = pl.read_parquet(run / "step-3.parquet")
    assert third_table.equals(pl.read_parquet(run / "step-1.parquet"))
    assert third_table["label_mass"].is_finite().all()  # real readings, compared exactly


def _run_job(tiny, answers, tmp_path, **judge):
    job = SimpleNamespace(
        log=[str(tmp_path / "run.log")], output=[str(tmp_path / "judgments-by-step")],
        input=SimpleNamespace(generations=answers, **_inputs(answers)),
        params=SimpleNamespace(judge={**_judge(tiny, tmp_path / "run.sqlite"), **judge},
                               fingerprint_settings=None, model_path=str(tiny),
                               steps=["1", "2", "3"], batch_state=str(tmp_path / "b.json")),
        threads=1)
    runpy.run_path(str(SCRIPTS / "judge_run.py"), init_globals={"snakemake": job},
                   run_name="__main__")


def test_the_judge_sees_every_checkpoints_prompts_before_it_judges_any(
        tiny, answers, tmp_path, monkeypatch):
    """A vLLM judge sizes its engine to the longest prompt it is shown (prepare): shown all
    of a run's prompts first, it starts once instead of again, larger, at a checkpoint
    with a longer prompt."""
    from value_drifts.judge.local import CachedLocalJudge

    events = []
    original = CachedLocalJudge.batches
    monkeypatch.setattr(CachedLocalJudge, "prepare",
                        lambda self, prompts: events.append(("prepare", len(prompts))))
    monkeypatch.setattr(CachedLocalJudge, "batches", lambda self, prompts: (
        events.append(("judge", len(prompts))) or original(self, prompts)))
    _run_job(tiny, answers, tmp_path)
    assert events == [("prepare", 18), ("judge", 6), ("judge", 6), ("judge", 6)]


def test_unreadable_checkpoints_are_named_together_after_judging_the_rest(
        tiny, answers, tmp_path):
    from value_drifts.judge.stance import UnreadableJudgeError

    with pytest.raises(UnreadableJudgeError) as error:
        _run_job(tiny, answers, tmp_path, max_unreadable_share=0.05)
    assert str(error.value).count("judge answers are unreadable") == 3
