"""Which answers a generation job reuses instead of sampling (generation/answers.py):
answers whose settings digest and weight digests match the checkpoint as it is now.
A job for a run's checkpoints (generation.one_job_per_run) resumes from these, and each
mode reuses what the other made."""

from __future__ import annotations

import polars as pl
import pytest

from value_drifts.core.checkpoints import (
    KEPT_ANSWERS,
    WeightsDeletedError,
    delete_checkpoint_weights,
)
from value_drifts.core.integrity import shard_columns, shard_digests
from value_drifts.generation.answers import (
    CheckpointAnswers,
    after_answering,
    part_is_current,
    restored_answers,
    stamped,
)

ANSWERS = pl.DataFrame({"question_id": ["q1", "q2"], "sample": [0, 0],
                        "response": ["Yes.", "No."]})
MODEL = {"prompt_style": "chat", "tokenizer": None, "revision": None}


@pytest.fixture
def checkpoint(tmp_path):
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights of step 3")
    (folder / "config.json").write_text("{}")
    return CheckpointAnswers(step=3, path=str(folder), model=MODEL, delete_weights=True)


def _part(tmp_path, checkpoint, digest="settings-a"):
    weights = shard_columns(shard_digests(tmp_path / "checkpoint-3"))
    part = tmp_path / "parts" / "step-3.parquet"
    part.parent.mkdir(exist_ok=True)
    stamped(ANSWERS, digest, weights).write_parquet(part)
    return part


def test_answers_from_these_weights_and_settings_are_current(tmp_path, checkpoint):
    part = _part(tmp_path, checkpoint)
    assert part_is_current(part, checkpoint, "settings-a")


@pytest.mark.parametrize("change", ["settings", "weights", "missing", "unstamped"])
def test_answers_from_other_settings_or_weights_are_not(tmp_path, checkpoint, change):
    part = _part(tmp_path, checkpoint)
    digest = "settings-a"
    if change == "settings":
        digest = "settings-b"
    elif change == "weights":  # the checkpoint was retrained since
        (tmp_path / "checkpoint-3/model.safetensors").write_bytes(b"weights of a new run")
    elif change == "missing":
        part.unlink()
    else:  # written before answers recorded their settings
        ANSWERS.write_parquet(part)
    assert not part_is_current(part, checkpoint, digest)


def test_deleted_weights_give_back_the_kept_answers_of_the_same_settings(tmp_path, checkpoint):
    part = _part(tmp_path, checkpoint)
    after_answering(checkpoint, part)  # delete_weights: keeps a copy, then deletes
    folder = tmp_path / "checkpoint-3"
    assert not (folder / "model.safetensors").exists()
    assert (folder / KEPT_ANSWERS).read_bytes() == part.read_bytes()
    kept_time = (folder / KEPT_ANSWERS).stat().st_mtime_ns
    after_answering(checkpoint, part)  # again (a restored or resumed checkpoint): no-op
    assert (folder / KEPT_ANSWERS).stat().st_mtime_ns == kept_time
    assert restored_answers(checkpoint, "settings-a") == folder / KEPT_ANSWERS
    with pytest.raises(WeightsDeletedError, match="rerun its training"):
        restored_answers(checkpoint, "settings-b")  # other settings need the weights


def test_a_checkpoint_with_weights_restores_nothing(tmp_path, checkpoint):
    assert restored_answers(checkpoint, "settings-a") is None
    delete_checkpoint_weights(tmp_path / "checkpoint-3")
    with pytest.raises(WeightsDeletedError):
        restored_answers(checkpoint, "settings-a")  # no kept copy
