"""A restarted training job resumes only checkpoints saved from the same inputs: another
setting, data file or start model makes the run start over (its checkpoints removed before
any process trains), never resume one run's state under another's (launch.begin_run)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from value_drifts.core.checkpoints import (
    KEPT_ANSWERS,
    RUN_ENDED,
    delete_checkpoint_weights,
    ended_steps,
    incomplete_reason,
    record_run_end,
    saved_steps,
    write_completion_marker,
)
from value_drifts.training import launch
from value_drifts.training.common import TrainerSettings
from value_drifts.training.launch import RUN_FINGERPRINT, TrainingJob, begin_run, run_fingerprint

pytestmark = pytest.mark.gpu_path


def _checkpoint(output: Path, step: int) -> Path:
    folder = output / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights %d" % step)
    return folder


def _resumable(output: Path, step: int) -> Path:
    """A complete checkpoint with the HF Trainer's optimizer state: a restart resumes it."""
    import zipfile

    folder = _checkpoint(output, step)
    (folder / "config.json").write_text("{}")
    (folder / "trainer_state.json").write_text("{}")
    with zipfile.ZipFile(folder / "optimizer.pt", "w") as archive:
        archive.writestr("data.pkl", b"state")
    write_completion_marker(folder)
    return folder


@pytest.fixture
def job(tmp_path):
    model = tmp_path / "sft-model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"start weights")
    reward = tmp_path / "reward-model"
    reward.mkdir()
    (reward / "model.safetensors").write_bytes(b"reward weights")
    data = tmp_path / "pairs.parquet"
    data.write_bytes(b"rows")
    settings = TrainerSettings(
        model_path=str(model), output_dir=str(tmp_path / "run"), learning_rate=1e-3,
        global_batch_size=8, per_device_batch_size=2, epochs=1, save_steps=2, max_length=64)
    return TrainingJob(task="dpo", settings=settings, data=str(data), hyper={"beta": 0.1})


def _started_over(job: TrainingJob) -> bool:
    output = Path(job.settings.output_dir)
    if not (output / "checkpoint-2").exists():
        _checkpoint(output, 2)
    removed = begin_run(job)
    return removed == ["checkpoint-2"] and not (output / "checkpoint-2").exists()


def test_same_inputs_resume_and_throughput_settings_do_not_count(job):
    output = Path(job.settings.output_dir)
    assert begin_run(job) == []  # a fresh run records its fingerprint
    assert (output / RUN_FINGERPRINT).is_file()
    _resumable(output, 2)
    assert begin_run(job) == [] and (output / "checkpoint-2").is_dir()  # a restart resumes
    faster = replace(job, settings=replace(job.settings, threads=8, per_device_batch_size=4,
                                           save_only_model=True))
    assert run_fingerprint(faster) == run_fingerprint(job)
    assert begin_run(faster) == [] and (output / "checkpoint-2").is_dir()


@pytest.mark.parametrize("change", ["hyper", "setting", "data", "start model", "seed"])
def test_other_inputs_start_the_run_over(job, change):
    begin_run(job)
    if change == "hyper":
        job = replace(job, hyper={"beta": 0.5})
    elif change == "setting":
        job = replace(job, settings=replace(job.settings, learning_rate=5e-4))
    elif change == "seed":
        job = replace(job, settings=replace(job.settings, seed=1))
    elif change == "data":
        Path(job.data).write_bytes(b"other rows")
    else:
        (Path(job.settings.model_path) / "model.safetensors").write_bytes(b"retrained")
    assert _started_over(job)
    assert begin_run(job) == []  # recorded: the next restart resumes


def test_checkpoints_without_a_recorded_fingerprint_are_not_resumed(job):
    assert _started_over(job)


@pytest.mark.parametrize("task", ["sft", "dpo", "simpo", "reward"])
def test_a_run_with_no_checkpoint_to_resume_starts_over(job, task):
    """Same inputs, but no checkpoint its trainer resumes from (weights deleted after
    generation and answers kept beside them, as before a --forcerun of its training; or
    save_only_model): the old folders go before it trains, so no new checkpoint keeps the
    old attempt's deletion record or answers. One it resumes from stays."""
    job = replace(job, task=task)
    output = Path(job.settings.output_dir)
    begin_run(job)
    for step in (2, 4):
        folder = _checkpoint(output, step)
        (folder / "config.json").write_text("{}")
        (folder / KEPT_ANSWERS).write_bytes(b"answers of the old weights")
        delete_checkpoint_weights(folder)
    assert begin_run(job) == ["checkpoint-2", "checkpoint-4"] and saved_steps(output) == []
    _checkpoint(output, 2)  # weights alone: save_only_model
    assert begin_run(job) == ["checkpoint-2"]
    _resumable(output, 2)
    assert begin_run(job) == [] and saved_steps(output) == [2]


def test_a_retrained_reward_model_starts_ppo_over(job, tmp_path):
    ppo = replace(job, task="ppo", reward_model_path=str(tmp_path / "reward-model"),
                  hyper={"kl_coef": 0.05})
    begin_run(ppo)
    (tmp_path / "reward-model" / "model.safetensors").write_bytes(b"retrained reward")
    assert _started_over(ppo)


def test_a_ppo_run_whose_checkpoints_hold_no_resume_state_starts_over(job, tmp_path):
    """Same inputs, but its checkpoints keep the policy alone (the run ended, or
    save_only_model: true): resuming from them would splice, so it starts over."""
    ppo = replace(job, task="ppo", reward_model_path=str(tmp_path / "reward-model"),
                  hyper={"kl_coef": 0.05})
    begin_run(ppo)
    folder = _checkpoint(Path(ppo.settings.output_dir), 2)
    (folder / "config.json").write_text("{}")
    assert _started_over(ppo)


# ---- a run whose training ended, its job cut before the workflow recorded it -----------


def _ended(job: TrainingJob, steps=(2, 4)) -> dict[str, bytes]:
    """The run as a job cut while stripping leaves it: its training ended
    (``record_run_end``), checkpoints complete, the last still holding optimizer state.
    Returns every checkpoint's weights."""
    output = Path(job.settings.output_dir)
    begin_run(job)
    for step in steps:
        folder = _checkpoint(output, step)
        (folder / "config.json").write_text("{}")
        if step == steps[-1]:
            (folder / "optimizer.pt").write_bytes(b"resume state")
        write_completion_marker(folder)
    assert record_run_end(output) == list(steps)
    return {str(p.relative_to(output)): p.read_bytes() for p in output.rglob("model.safetensors")}


def _train_calls(monkeypatch) -> list[TrainingJob]:
    trained: list[TrainingJob] = []
    monkeypatch.setattr(launch, "run_job", trained.append)
    return trained


@pytest.mark.parametrize("task", ["sft", "dpo", "simpo", "ppo"])
def test_a_run_whose_training_ended_is_not_trained_again(job, tmp_path, monkeypatch, task):
    """PPO too, though none of its checkpoints holds resume state any more (which would
    otherwise start it over): the stripping cut short is finished, nothing else."""
    job = replace(job, task=task, reward_model_path=str(tmp_path / "reward-model")
                  if task == "ppo" else None)  # fmt: skip
    output = Path(job.settings.output_dir)
    weights = _ended(job)
    trained = _train_calls(monkeypatch)
    for _ in range(2):
        launch.run_training(job, 0, None)
        assert trained == []
        assert saved_steps(output) == [2, 4] and ended_steps(output) == [2, 4]
        assert {str(p.relative_to(output)): p.read_bytes()
                for p in output.rglob("model.safetensors")} == weights  # fmt: skip
        assert not (output / "checkpoint-4" / "optimizer.pt").exists()
        assert incomplete_reason(output / "checkpoint-4") is None


def _weights_deleted(output: Path) -> None:
    delete_checkpoint_weights(output / "checkpoint-2")


def _another_checkpoint(output: Path) -> None:
    _checkpoint(output, 6)


def _a_save_cut_short(output: Path) -> None:
    (output / "checkpoint-4" / "model.safetensors").write_bytes(b"half")


def _never_recorded(output: Path) -> None:
    (output / RUN_ENDED).unlink()


@pytest.mark.parametrize("task", ["dpo", "ppo"])
@pytest.mark.parametrize("change", [_weights_deleted, _another_checkpoint, _a_save_cut_short,
                                    _never_recorded])
def test_a_run_whose_recorded_end_no_longer_holds_trains_again(job, tmp_path, monkeypatch,
                                                                 task, change):
    """Not the checkpoints the end recorded, each complete: the job trains (resuming or
    starting over as before), the record dropped first."""
    job = replace(job, task=task, reward_model_path=str(tmp_path / "reward-model")
                  if task == "ppo" else None)  # fmt: skip
    output = Path(job.settings.output_dir)
    _ended(job)
    change(output)
    trained = _train_calls(monkeypatch)
    launch.run_training(job, 0, None)
    assert trained == [job]
    assert not (output / RUN_ENDED).exists()
    if change is _weights_deleted:  # nothing it resumes from: it starts over
        assert saved_steps(output) == []


def test_other_inputs_start_an_ended_run_over_and_the_reward_model_trains_again(
        job, monkeypatch):
    output = Path(job.settings.output_dir)
    _ended(job)
    trained = _train_calls(monkeypatch)
    changed = replace(job, hyper={"beta": 0.5})
    launch.run_training(changed, 0, None)
    assert trained == [changed] and saved_steps(output) == []
    assert not (output / RUN_ENDED).exists()

    reward = replace(job, task="reward", final_model_dir=str(output.parent / "reward-final"))
    _ended(reward)
    launch.run_training(reward, 0, None)  # its job ends by saving its final model: again
    assert trained == [changed, reward]


# ---- a disk with too little room for the run's checkpoints -----------------------------


def _free_disk(monkeypatch, free_bytes: int) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**13, 0, free_bytes))


def test_disk_shortfall_counts_what_the_run_already_holds(tmp_path, monkeypatch):
    from value_drifts.core.checkpoint_disk import RESOURCE, disk_shortfall

    run = tmp_path / "not" / "made" / "yet"
    _free_disk(monkeypatch, 3_000_000_000)
    assert disk_shortfall(run, 3_000) is None  # 3 GB free, 3 GB needed
    short = disk_shortfall(run, 3_001)
    assert short.startswith(f"{run}: 3.0 GB free") and "up to 3.0 GB more, 1 MB short" in short
    assert f"{RESOURCE}=3,001" in short
    # A resumed run's checkpoints are part of its peak already on disk.
    (run / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoint-2" / "model.safetensors").write_bytes(b"x" * 2_000_000)
    (run / "training.log").write_bytes(b"x" * 5_000_000)  # not a checkpoint's: not counted
    (run / "checkpoint-2" / "linked").symlink_to(run / "training.log")
    assert disk_shortfall(run, 3_002) is None
    assert "1 MB short" in disk_shortfall(run, 3_003)
    assert "need up to 4.0 GB more" in disk_shortfall(run, 4_003)
    _free_disk(monkeypatch, 0)
    assert "0 MB free" in disk_shortfall(run, 3_002)


@pytest.mark.parametrize("free_bytes, named", [(10**6, True), (10**12, False)])
def test_a_training_that_fails_on_a_full_disk_says_so(job, monkeypatch, capsys, free_bytes,
                                                      named):
    """Short of room: a warning before training, and the failure raised again naming the
    disk, chained to the write error; with room, the error itself, untouched."""
    def full_disk_save(job):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 336275264")

    monkeypatch.setattr(launch, "run_job", full_disk_save)
    _free_disk(monkeypatch, free_bytes)
    with pytest.raises(RuntimeError) as raised:
        launch.run_training(job, 0, None, checkpoint_disk_mb=1_620)
    log = capsys.readouterr().out
    assert str(raised.value).startswith("[enforce fail")  # the error itself, noted
    notes = getattr(raised.value, "__notes__", [])
    if named:
        assert "WARNING: too little disk" in log and "1.6 GB more, 1.6 GB short" in log
        assert len(notes) == 1 and "the disk has too little room for this run" in notes[0]
    else:
        assert "too little disk" not in log and notes == []


def test_a_full_disk_named_by_the_error_is_noted_whatever_the_estimate(job, monkeypatch):
    import errno

    def full_disk_save(job):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as error:
            raise RuntimeError("basic_ios::clear: iostream error") from error

    monkeypatch.setattr(launch, "run_job", full_disk_save)
    _free_disk(monkeypatch, 10**12)  # room enough by the estimate: another job filled it
    with pytest.raises(RuntimeError, match="iostream error") as raised:
        launch.run_training(job, 0, None, checkpoint_disk_mb=1_620)
    assert raised.value.__notes__ == [f"the disk or quota holding {job.settings.output_dir} is full."]
