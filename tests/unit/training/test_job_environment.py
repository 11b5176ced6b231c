"""What a training job's processes get from their job: each rank its share of the job's
CPUs, and no Slurm site variable an srun inside the allocation would read."""

from __future__ import annotations

import pytest

from value_drifts.training.common import TrainerSettings, threads_per_process, training_arguments
from value_drifts.training.launch import SITE_SRUN_VARIABLES, launch_environment

pytestmark = pytest.mark.gpu_path


@pytest.mark.parametrize(("job", "ranks", "expected"), [
    (64, 8, 8), (32, 4, 8), (8, 1, 8), (2, 4, 1), (1, 8, 1), (2, 0, 2)])
def test_each_rank_uses_its_share_of_the_jobs_cpus(job, ranks, expected):
    assert threads_per_process(job, ranks) == expected


@pytest.mark.parametrize(("local_world_size", "expected"), [("8", 8), ("4", 16), (None, 64)])
def test_training_sets_the_ranks_share_of_threads(monkeypatch, tmp_path, local_world_size, expected):
    """A job of 8 GPUs asks for 64 CPUs (cpus_per_gpu 8): each of its 8 ranks takes 8
    threads, not 64 (8 × 64 threads on 64 cores)."""
    import torch

    if local_world_size is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world_size)
    before = torch.get_num_threads()
    try:
        settings = TrainerSettings(
            model_path="m", output_dir=str(tmp_path), learning_rate=1e-5, global_batch_size=8,
            per_device_batch_size=1, epochs=1, save_steps=1, max_length=8, threads=64)
        training_arguments(settings)
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)


def test_the_launched_processes_do_not_inherit_the_site_variables():
    """The profile has a site export SLURM_ACCOUNT and SLURM_PARTITION (the main process
    passes them to the SLURM plugin as resources); srun reads both as its own options, so
    an srun inside the job's allocation would ask for that account and partition again.
    The job's own variables stay."""
    environ = {"SLURM_ACCOUNT": "proj", "SLURM_PARTITION": "gpu", "SLURM_JOB_ID": "7",
               "CUDA_VISIBLE_DEVICES": "0,1", "PATH": "/bin"}
    assert set(SITE_SRUN_VARIABLES) == {"SLURM_ACCOUNT", "SLURM_PARTITION"}
    assert launch_environment(environ) == {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "0,1",
                                           "PATH": "/bin"}


def test_run_training_starts_accelerate_without_them(monkeypatch, tmp_path):
    import subprocess

    from value_drifts.training import launch

    seen = {}
    monkeypatch.setattr(subprocess, "run", lambda command, **kw: seen.update(kw))
    monkeypatch.setattr(launch, "gpu_problem", lambda gpus: None)
    monkeypatch.setattr(launch, "begin_run", lambda job: [])  # no model or data here
    monkeypatch.setenv("SLURM_PARTITION", "gpu")
    monkeypatch.setenv("SLURM_ACCOUNT", "")
    settings = TrainerSettings(model_path="m", output_dir=str(tmp_path), learning_rate=1e-5,
                               global_batch_size=8, per_device_batch_size=1, epochs=1,
                               save_steps=1, max_length=8)
    launch.run_training(launch.TrainingJob("sft", settings, "d.parquet"), 2, "zero2.yaml")
    assert "SLURM_PARTITION" not in seen["env"] and "SLURM_ACCOUNT" not in seen["env"]
    assert seen["env"]["PATH"]
