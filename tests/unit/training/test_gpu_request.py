"""A training job that asked for GPUs and sees fewer stops at once, naming what it sees,
instead of training on the CPU until its time limit; only an explicit switch runs the GPU
path on CPU processes (the DeepSpeed tests use it)."""

from __future__ import annotations

import pytest

from value_drifts.training.common import TrainerSettings
from value_drifts.training.launch import GPU_JOBS_ON_CPU, TrainingJob, gpu_problem, run_training

pytestmark = pytest.mark.gpu_path


def test_a_gpu_job_on_a_machine_without_them_fails_naming_what_it_sees(monkeypatch, tmp_path):
    import torch

    monkeypatch.delenv(GPU_JOBS_ON_CPU, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    if torch.cuda.device_count() >= 4:
        pytest.skip("this machine has the GPUs")
    problem = gpu_problem(4)
    assert f"asked for 4 GPU(s) and sees {torch.cuda.device_count()}" in problem
    assert f"torch {torch.__version__}" in problem and "CUDA_VISIBLE_DEVICES=0,1" in problem
    job = TrainingJob(task="sft", data="unused.parquet", hyper={}, settings=TrainerSettings(
        model_path="m", output_dir=str(tmp_path / "out"), learning_rate=1e-3,
        global_batch_size=8, per_device_batch_size=2, epochs=1, save_steps=2, max_length=8))
    with pytest.raises(RuntimeError, match="asked for 4 GPU"):
        run_training(job, gpus=4, accelerate_config="config/accelerate/zero2.yaml")
    assert not (tmp_path / "out").exists()  # nothing started


def test_no_gpus_asked_or_the_explicit_switch_pass(monkeypatch):
    monkeypatch.delenv(GPU_JOBS_ON_CPU, raising=False)
    assert gpu_problem(0) is None
    monkeypatch.setenv(GPU_JOBS_ON_CPU, "1")
    assert gpu_problem(8) is None
