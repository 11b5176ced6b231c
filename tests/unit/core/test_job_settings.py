"""Settings files: what makes a job rerun (value_drifts.core.job_settings), and the check that a
rerun would lose answers that cannot be made again (training.checkpoints)."""

from __future__ import annotations

import json
import os

import polars as pl

from value_drifts.core.checkpoints import (
    DELETED_MARKER,
    KEPT_ANSWERS,
    SETTINGS_COLUMN,
    kept_answers,
    lost_answers_reason,
    upstream_change,
)
from value_drifts.core.job_settings import (
    THROUGHPUT_KEYS,
    answers_digest,
    output_settings,
    record_settings,
    recorded_digest,
    recorded_settings_of,
    settings_digest,
)


def test_throughput_keys_go_at_every_depth_and_the_rest_stays():
    settings = {
        "generation": {"temperature": 0.7, "batch_size": 48, "delete_checkpoint_weights": True,
                       "vllm_engine_args": {"dtype": "bfloat16"}},
        "judge": {"model": "gpt-4o", "concurrency": 16, "prices": {"input": 2.5},
                  "batch": {"state_dir": "x"}, "max_unreadable_share": 0.05},
        "trainer": [{"per_device_batch_size": 4, "global_batch_size": 128}],
    }
    assert output_settings(settings) == {
        "generation": {"temperature": 0.7, "vllm_engine_args": {"dtype": "bfloat16"}},
        "judge": {"model": "gpt-4o"},
        "trainer": [{"global_batch_size": 128}],
    }
    assert {"batch_size", "concurrency", "prices", "gpus"} <= THROUGHPUT_KEYS
    assert "temperature" not in THROUGHPUT_KEYS and "global_batch_size" not in THROUGHPUT_KEYS


def test_digest_ignores_key_order_and_sees_values():
    assert settings_digest({"a": 1, "b": 2}) == settings_digest({"b": 2, "a": 1})
    assert settings_digest({"a": 1}) != settings_digest({"a": 1.5})
    assert len(settings_digest({})) == 16


def test_a_new_file_is_older_than_every_output(tmp_path):
    path = tmp_path / "settings/generation/m.json"
    record_settings(path, {"temperature": 0.7}, now=1000.0)
    assert path.stat().st_mtime == 0
    stored = json.loads(path.read_text())
    assert stored["settings"] == {"temperature": 0.7}
    assert recorded_digest(path) == settings_digest({"temperature": 0.7})


def test_unchanged_settings_leave_the_file_alone(tmp_path):
    path = tmp_path / "s.json"
    record_settings(path, {"t": 1}, now=1000.0)
    os.utime(path, (500, 500))
    record_settings(path, {"t": 1}, now=2000.0)
    assert path.stat().st_mtime == 500


def test_every_change_dates_the_file_now_and_a_revert_gives_back_its_exact_bytes(tmp_path):
    """A revert is a change (outputs made under the edit must rerun), dated now; it gives
    back the file's bytes, so the checksum Snakemake recorded with outputs made before the
    edit matches again and those stay current."""
    path = tmp_path / "s.json"
    record_settings(path, {"t": 0.7}, now=1000.0)
    first = path.read_bytes()
    record_settings(path, {"t": 0.9}, now=2000.0)
    second = path.read_bytes()
    assert path.stat().st_mtime == 2000 and recorded_digest(path) == settings_digest({"t": 0.9})
    record_settings(path, {"t": 0.7}, now=3000.0)
    assert path.stat().st_mtime == 3000 and path.read_bytes() == first
    record_settings(path, {"t": 0.9}, now=4000.0)
    assert path.stat().st_mtime == 4000 and path.read_bytes() == second
    record_settings(path, {"t": 1.1}, now=5000.0)
    assert path.stat().st_mtime == 5000
    assert sorted(p.name for p in tmp_path.iterdir()) == [".s.json.forms", "s.json"]


def test_a_file_written_by_an_earlier_version_is_given_back_byte_for_byte(tmp_path):
    path = tmp_path / "s.json"
    old = '{"digest": "%s", "recorded": {"%s": 0.0}, "settings": {"t": 0.7}}\n' % (
        (settings_digest({"t": 0.7}),) * 2)
    path.write_text(old)
    record_settings(path, {"t": 0.9}, now=2000.0)
    record_settings(path, {"t": 0.7}, now=3000.0)
    assert path.read_text() == old and path.stat().st_mtime == 3000


def test_a_file_in_an_earlier_form_is_current_and_keeps_its_digest(tmp_path):
    """A settings file recorded before the schema's defaults were filled in (the config as
    written) is the same settings: nothing reruns, and its digest, which the answers made
    from it carry, stays."""
    path = tmp_path / "s.json"
    written = {"generation": {"temperature": 0.7}}
    filled = {"generation": {"temperature": 0.7, "base_prompt_suffix": "\nResponse:"}}
    record_settings(path, written, now=1000.0)
    os.utime(path, (500, 500))
    before = path.read_bytes()
    record_settings(path, filled, now=2000.0, earlier_forms=[written])
    assert path.read_bytes() == before and path.stat().st_mtime == 500
    assert recorded_digest(path) == settings_digest(written)
    assert recorded_settings_of(path) == written
    # without the earlier form the same call would date the file now: every job reruns
    control = tmp_path / "control.json"
    record_settings(control, written, now=1000.0)
    record_settings(control, filled, now=2000.0)
    assert control.stat().st_mtime == 2000


def test_an_edit_after_the_migration_reruns_and_its_revert_gives_back_the_old_digest(tmp_path):
    path = tmp_path / "s.json"
    written, filled = {"t": 0.7}, {"t": 0.7, "suffix": "R"}
    record_settings(path, written, now=1000.0)  # an earlier version: mtime 0
    record_settings(path, {"t": 0.9, "suffix": "R"}, now=2000.0, earlier_forms=[{"t": 0.9}])
    assert path.stat().st_mtime == 2000
    assert recorded_digest(path) == settings_digest({"t": 0.9, "suffix": "R"})
    record_settings(path, filled, now=3000.0, earlier_forms=[written])  # reverted
    assert path.stat().st_mtime == 3000 and recorded_digest(path) == settings_digest(written)
    # the body is the form that digest was taken of: what the judge fingerprints
    assert recorded_settings_of(path) == written
    record_settings(path, filled, now=4000.0, earlier_forms=[written])  # and stays so
    assert path.stat().st_mtime == 3000


def test_a_new_file_records_the_filled_form(tmp_path):
    path = tmp_path / "s.json"
    record_settings(path, {"t": 1, "d": 2}, now=1000.0, earlier_forms=[{"t": 1}])
    assert recorded_digest(path) == settings_digest({"t": 1, "d": 2})
    assert recorded_settings_of(path) == {"t": 1, "d": 2}
    assert path.stat().st_mtime == 0


def test_an_unreadable_file_is_rewritten(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    record_settings(path, {"t": 1}, now=1000.0)
    assert recorded_digest(path) == settings_digest({"t": 1}) and path.stat().st_mtime == 1000


def _checkpoint(tmp_path, deleted=True):
    checkpoint = tmp_path / "models/m/sft-x/checkpoint-2"
    checkpoint.mkdir(parents=True)
    if deleted:
        (checkpoint / DELETED_MARKER).write_text('{"deleted": ["model.safetensors"]}')
    else:
        (checkpoint / "model.safetensors").write_bytes(b"weights")
    return checkpoint


def _answers(path, digest):
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"question_id": ["q1"], "response": ["yes"],
                  SETTINGS_COLUMN: [digest]}).write_parquet(path)
    return path


def test_answers_are_lost_only_without_weights_and_without_a_matching_copy(tmp_path):
    settings = tmp_path / "settings.json"
    record_settings(settings, {"t": 0.7})
    output = _answers(tmp_path / "results/step-2/generations.parquet", "d1")
    os.utime(output, (100, 100))
    # weights present: a rerun can regenerate
    assert lost_answers_reason(_checkpoint(tmp_path / "a", deleted=False), output,
                               [settings], "d1") is None
    checkpoint = _checkpoint(tmp_path / "b")
    # up to date: nothing reruns
    assert lost_answers_reason(checkpoint, output, [settings], "d1") is None
    # settings changed since the answers were made
    os.utime(settings, (200, 200))
    reason = lost_answers_reason(checkpoint, output, [settings], "d2")
    assert reason == f"its answers are older than {settings}"
    # a kept copy made with other settings does not help; one with these settings does
    _answers(checkpoint / KEPT_ANSWERS, "d1")
    assert kept_answers(checkpoint, "d2") is None
    assert lost_answers_reason(checkpoint, output, [settings], "d2") is not None
    assert kept_answers(checkpoint, "d1") == checkpoint / KEPT_ANSWERS
    assert lost_answers_reason(checkpoint, output, [settings], "d1") is None
    # answers missing altogether
    output.unlink()
    assert lost_answers_reason(checkpoint, output, [settings], "d2") == "its answers are missing"


def test_a_trajectory_answered_with_two_settings_is_an_error():
    import pytest

    from value_drifts.judge.run import MixedGenerationsError, check_one_generation

    check_one_generation({"step-0": "d1", "step-2": "d1"})
    check_one_generation({"step-0": None, "step-2": None})  # made before the digest existed
    with pytest.raises(MixedGenerationsError, match="settings d2: step-2") as error:
        check_one_generation({"step-0": "d1", "step-2": "d2", "step-4": "d1"})
    assert "settings d1: step-0, step-4" in str(error.value)
    with pytest.raises(MixedGenerationsError, match="none recorded: step-0"):
        check_one_generation({"step-0": None, "step-2": "d2"})


def test_judgments_carry_the_generation_settings_digest():
    from value_drifts.judge.run import judge_generations

    class Backend:
        def batches(self, prompts):
            yield len(prompts), [{"support": -0.1, "neutral": -3.0, "oppose": -4.0}
                                 for _ in prompts]

    generations = pl.DataFrame({
        "question_id": ["q1", "q2"], "category": ["Abortion"] * 2, "question": ["?"] * 2,
        "sample": [0, 0], "response": ["yes", "no"], SETTINGS_COLUMN: ["d1", "d1"]})
    judgments, _ = judge_generations(generations, {"Abortion": "abortion"},
                                     "{question} {response} {topic}", Backend())
    assert judgments[SETTINGS_COLUMN].to_list() == ["d1", "d1"]
    older, _ = judge_generations(generations.drop(SETTINGS_COLUMN), {"Abortion": "abortion"},
                                 "{question} {response} {topic}", Backend())
    assert SETTINGS_COLUMN not in older.columns


def test_the_answers_digest_covers_settings_and_questions(tmp_path):
    settings = tmp_path / "settings.json"
    record_settings(settings, {"t": 0.7})
    questions = tmp_path / "questions.parquet"
    missing = answers_digest(settings, questions)
    questions.write_bytes(b"q1")
    first = answers_digest(settings, questions)
    questions.write_bytes(b"q2")
    second = answers_digest(settings, questions)
    record_settings(settings, {"t": 0.9})
    third = answers_digest(settings, questions)
    assert len({missing, first, second, third}) == 4


def test_rebuilt_questions_lose_the_answers_of_deleted_checkpoints(tmp_path):
    questions = tmp_path / "questions.parquet"
    source = tmp_path / "questions.csv"
    source.write_text("q")
    assert upstream_change(questions, [source]) == f"{questions} will be made"
    questions.write_bytes(b"x")
    os.utime(source, (100, 100))
    os.utime(questions, (200, 200))
    assert upstream_change(questions, [source]) is None
    os.utime(source, (300, 300))
    change = upstream_change(questions, [source])
    assert change == f"{questions} will be rebuilt ({source} changed)"
    checkpoint = _checkpoint(tmp_path / "b")
    output = _answers(tmp_path / "results/step-2/generations.parquet", "d1")
    _answers(checkpoint / KEPT_ANSWERS, "d1")  # even a matching kept copy: questions change
    assert lost_answers_reason(checkpoint, output, [], "d1", upstream=change) == (
        f"its inputs will change first: {change}")
    assert lost_answers_reason(_checkpoint(tmp_path / "c", deleted=False), output, [], "d1",
                               upstream=change) is None


def test_a_run_keeps_the_digest_it_recorded_when_a_dry_run_rewrites_the_file(tmp_path):
    """A dry run of an edited config, started while a run goes on, rewrites a settings
    file; the run's jobs still record what the run was planned with (answers_digest reads
    the digest this process recorded), while a process that recorded nothing reads the
    file."""
    import subprocess
    import sys

    from value_drifts.core.job_settings import answers_digest, record_settings, recorded_digest

    path = tmp_path / "generation" / "m.json"
    record_settings(path, {"temperature": 0.7})
    mine = recorded_digest(path)
    questions = tmp_path / "questions.parquet"
    questions.write_bytes(b"q")
    before = answers_digest(path, questions)
    code = ("import sys; from value_drifts.core.job_settings import record_settings, "
            "recorded_digest; record_settings(sys.argv[1], {'temperature': 1.5}); "
            "print(recorded_digest(sys.argv[1]))")
    other = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert other != mine
    assert recorded_digest(path) == mine and answers_digest(path, questions) == before
    fresh = subprocess.run(
        [sys.executable, "-c", "import sys; from value_drifts.core.job_settings import "
         "recorded_digest; print(recorded_digest(sys.argv[1]))", str(path)],
        capture_output=True, text=True, check=True).stdout.strip()
    assert fresh == other
