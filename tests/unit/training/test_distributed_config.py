"""Training under accelerate + DeepSpeed: the ZeRO configs load with accelerate's own
loader, the launch line parses with accelerate's own parser, gradient accumulation keeps
the global batch for 1, 4 and 8 GPUs, and resuming finds DeepSpeed checkpoints."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.workflow import REPO
from value_drifts.core import cluster_requests as res
from value_drifts.training import launch
from value_drifts.training.common import TrainerSettings, training_arguments
from value_drifts.training.launch import TrainingJob, launch_command, run_training


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_configs_load_with_accelerates_loader(stage):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(REPO / res.ACCELERATE_CONFIGS[stage]))
    assert config.distributed_type == DistributedType.DEEPSPEED
    assert config.mixed_precision == "bf16"
    assert config.deepspeed_config["zero_stage"] == stage
    assert config.num_machines == 1
    # Accumulation must come from the trainer (global batch), never from the file.
    assert "gradient_accumulation_steps" not in config.deepspeed_config
    if stage == 3:
        assert config.deepspeed_config["zero3_init_flag"] is True
        assert config.deepspeed_config["zero3_save_16bit_model"] is True


@pytest.mark.parametrize("gpus", [1, 4, 8])
def test_launch_line_parses_with_accelerates_parser(gpus):
    from accelerate.commands.launch import launch_command_parser

    command = launch_command("out/training_job.json", gpus, res.ACCELERATE_CONFIGS[3], 29601)
    assert command[:2] == ["accelerate", "launch"]
    args = launch_command_parser().parse_args(command[2:])
    assert args.config_file == "config/accelerate/zero3.yaml"
    assert args.num_processes == gpus
    assert args.num_machines == 1
    assert args.main_process_port == 29601
    assert args.module is True
    assert args.training_script == "value_drifts.training.launch"
    assert args.training_script_args == ["out/training_job.json"]


def test_no_launch_line_without_gpus():
    with pytest.raises(ValueError, match="at least one GPU"):
        launch_command("job.json", 0, "config/accelerate/zero2.yaml", 1)


def _settings(global_batch, per_device, **extra):
    return TrainerSettings(
        model_path="m", output_dir="o", learning_rate=1e-5, global_batch_size=global_batch,
        per_device_batch_size=per_device, epochs=1, save_steps=10, max_length=64, **extra,
    )


@pytest.mark.parametrize(
    ("global_batch", "per_device", "gpus", "accumulation"),
    [(128, 4, 1, 32), (128, 4, 4, 8), (128, 4, 8, 4), (32, 1, 1, 32), (32, 1, 4, 8), (32, 1, 8, 4)],
)
def test_accumulation_keeps_the_global_batch(monkeypatch, global_batch, per_device, gpus, accumulation):
    monkeypatch.setenv("WORLD_SIZE", str(gpus))  # set by accelerate launch in each process
    args = training_arguments(_settings(global_batch, per_device))
    assert args["gradient_accumulation_steps"] == accumulation
    assert args["per_device_train_batch_size"] * accumulation * gpus == global_batch


def test_indivisible_global_batch_fails_clearly(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match=r"global batch 128 is not a multiple of per-device batch 4 × 3"):
        training_arguments(_settings(128, 4))


def test_config_check_names_the_trainer_and_model(paper_config):
    sft_models = list(paper_config["models"])
    res.check_global_batches(paper_config, {"sft": sft_models})  # the paper's grid divides
    paper_config["models"]["llama3-8b"]["gpus"] = 6
    with pytest.raises(ValueError, match=r"sft.global_batch_size: 128 .* 4 × 6 GPU\(s\) of model llama3-8b"):
        res.check_global_batches(paper_config, {"sft": sft_models})


def test_job_round_trips_through_json():
    job = TrainingJob(task="ppo", settings=_settings(32, 1), data="d.parquet",
                      hyper={"kl_coef": 0.05}, reward_model_path="rm")
    assert TrainingJob.from_json(job.to_json()) == job
    with pytest.raises(ValueError, match="unknown training task"):
        TrainingJob(task="rlhf", settings=_settings(32, 1), data="d")


def test_cpu_runs_in_process_and_gpu_runs_under_accelerate(monkeypatch, tmp_path):
    ran, launched, began = [], [], []
    # the GPU job below is faked on this CPU machine on purpose, and says so
    monkeypatch.setenv(launch.GPU_JOBS_ON_CPU, "1")
    monkeypatch.setattr(launch, "run_job", ran.append)
    # its checkpoints' inputs are checked first, in this process (test_run_fingerprint.py)
    monkeypatch.setattr(launch, "begin_run", began.append)
    monkeypatch.setattr(subprocess, "run", lambda command, **kw: launched.append(command))
    settings = TrainerSettings(
        model_path="m", output_dir=str(tmp_path / "run"), learning_rate=1e-5,
        global_batch_size=128, per_device_batch_size=4, epochs=1, save_steps=10, max_length=64,
    )
    job = TrainingJob(task="sft", settings=settings, data="d.parquet")
    run_training(job, gpus=0, accelerate_config=None)
    assert ran == [job] and launched == []

    run_training(job, gpus=8, accelerate_config="config/accelerate/zero2.yaml")
    (command,) = launched
    assert command[1:3] == ["launch", "--config_file"]
    assert command[command.index("--num_processes") + 1] == "8"
    job_file = Path(command[-1])
    assert job_file == tmp_path / "run" / "training_job.json"
    assert TrainingJob.from_json(job_file.read_text()) == job  # what every rank runs
    assert began == [job, job]


def test_module_entry_point_runs_the_job(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(launch, "run_job", seen.append)
    job = TrainingJob(task="dpo", settings=_settings(32, 1), data="d.parquet", hyper={"beta": 0.1})
    path = tmp_path / "job.json"
    path.write_text(job.to_json())
    launch.main([str(path)])
    assert seen == [job]


def test_zero_stage_by_model_and_task():
    cluster = res.ClusterSettings()
    small, large = res.ModelSize(gpus=4, params_b=3.2), res.ModelSize(gpus=8, params_b=8.0)
    assert res.zero_stage(small, "sft", cluster) == 2
    assert res.zero_stage(large, "sft", cluster) == 2  # 16 + 14 = 30 GB of 80
    assert res.zero_stage(small, "ppo", cluster) == 3  # policy, value, reference, reward
    assert res.accelerate_config(small, "ppo", cluster) == "config/accelerate/zero3.yaml"
    assert res.accelerate_config(res.ModelSize(gpus=0, params_b=0.135), "sft", cluster) is None
    assert json.loads(json.dumps(res.ACCELERATE_CONFIGS))  # plain paths
    for path in res.ACCELERATE_CONFIGS.values():
        assert (REPO / path).is_file()
