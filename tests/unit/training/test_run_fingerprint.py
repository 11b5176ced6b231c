"""A restarted training job resumes only checkpoints saved from the same inputs: another
setting, data file or start model makes the run start over (its checkpoints removed before
any process trains), never resume one run's state under another's (launch.begin_run)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from value_drifts.training.common import TrainerSettings
from value_drifts.training.launch import RUN_FINGERPRINT, TrainingJob, begin_run, run_fingerprint

pytestmark = pytest.mark.gpu_path


def _checkpoint(output: Path, step: int) -> Path:
    folder = output / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights %d" % step)
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
    _checkpoint(output, 2)
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
