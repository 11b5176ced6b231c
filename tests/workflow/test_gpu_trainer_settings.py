"""The paper grid's training jobs run as GPUs need: the trainer sections the rules pass
(each job's params.trainer, from a dry run of the paper config) give bf16 and gradient
checkpointing for SFT, the reward model, PPO, DPO and SimPO, and SFT keeps optimizer state;
precision is recorded in each training job's settings file. The small default stays fp32
without checkpointing."""

from __future__ import annotations

import json

import pytest

from tests.support.workflow import copy_repo, snakemake
from value_drifts.training.common import TrainerSettings, model_dtype, training_arguments

pytestmark = pytest.mark.gpu_path


def _trainer_settings_files(repo):
    return sorted((repo / "results/settings/training").rglob("*.json"))


def _sections(path):
    """The trainer sections a training settings file records: SFT's ``trainer``, a
    preference run's ``hyper`` and, for PPO, its ``reward_model``."""
    settings = json.loads(path.read_text())["settings"]
    if "trainer" in settings:
        return [settings["trainer"]]
    hyper = settings["hyper"]
    return [hyper] + ([hyper["reward_model"]] if "reward_model" in hyper else [])


def test_paper_training_jobs_get_bf16_and_gradient_checkpointing(tmp_path):
    import torch

    repo = copy_repo(tmp_path / "repo")
    snakemake("-n", "--configfile", "config/paper.yaml", "--quiet", cwd=repo)
    files = _trainer_settings_files(repo)
    assert len(files) >= 8 + 57 + 16  # SFT runs, PO runs, reward models
    for path, trainer in ((p, t) for p in files for t in _sections(p)):
        assert trainer["precision"] == "bf16", path
        assert trainer["gradient_checkpointing"] is True, path
        # the recorded section leaves throughput keys out: give the one from_config needs
        run = TrainerSettings.from_config({**trainer, "per_device_batch_size": 1}, "m",
                                          str(tmp_path / "o"), 10, 0, 1)
        arguments = training_arguments(run)
        assert arguments["bf16"] is True and arguments["gradient_checkpointing"] is True
        assert model_dtype(run) == torch.bfloat16
        # a preempted SFT, DPO, SimPO or reward-model job resumes (PPO saves its policy
        # alone whatever this says: preference_trainers.train_ppo)
        assert arguments["save_only_model"] is False


def test_the_small_default_trains_in_fp32(tmp_path):
    import torch

    repo = copy_repo(tmp_path / "repo")
    snakemake("-n", "--quiet", cwd=repo)
    files = _trainer_settings_files(repo)
    assert files
    for path, trainer in ((p, t) for p in files for t in _sections(p)):
        # the schema's default, recorded (a tree recorded before it was filled in stays
        # current: tests/workflow/test_config_defaults.py)
        assert trainer["precision"] == "fp32", path
        # the recorded section leaves throughput keys out: give the one from_config needs
        run = TrainerSettings.from_config({**trainer, "per_device_batch_size": 1}, "m",
                                          str(tmp_path / "o"), 10, 0, 1)
        assert training_arguments(run)["bf16"] is False and model_dtype(run) == torch.float32
