"""Training under ``accelerate launch`` + DeepSpeed for real, on two CPU processes.

The shipped ZeRO configs run unchanged except for what a CPU lacks (bf16, a GPU): DeepSpeed
falls back to its CPU accelerator and gloo. Two processes with the accumulation the trainer
derives must train the same weights as one process in-process (the global batch is kept),
a preempted ZeRO run must resume from DeepSpeed's shards, and the reward model and PPO
must save loadable models.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import yaml
from benchmarks.gpu_smoke import PREEMPT_AFTER_FIRST_SAVE

from tests.support.tiny_model import build_tiny_model, support_pairs
from tests.support.workflow import REPO
from value_drifts.core import cluster_requests as res
from value_drifts.core.checkpoints import (
    PPO_VALUE_MODEL,
    ppo_resume_problem,
    resumable_checkpoint,
    resume_state_files,
    saved_steps,
)
from value_drifts.training.common import TrainerSettings
from value_drifts.training.launch import (
    GPU_JOBS_ON_CPU,
    TrainingJob,
    datasets_cache_dir,
    run_training,
)

# One rerun: a launch of this suite failed once in CI (2-core container) and passed in every
# rerun here, its cause hidden by the truncated log. A real regression fails both attempts;
# the failure's first line carries the launched processes' error lines either way.
pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=1)]

PROCESSES = 2
N_ROWS, GLOBAL_BATCH, PER_DEVICE, SAVE = 32, 8, 2, 2  # 4 steps; accumulation 2 on 2 processes


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepspeed")
    model = build_tiny_model(root / "model")
    sft = [{"messages": [{"role": "user", "content": f"Question {i}?"},
                         {"role": "assistant", "content": f"Answer number {i} is fine."}]}
           for i in range(N_ROWS)]  # fmt: skip
    pl.DataFrame(sft).write_parquet(root / "sft.parquet")
    pl.DataFrame(support_pairs(N_ROWS)).write_parquet(root / "pairs.parquet")
    return {"model": str(model), "sft": str(root / "sft.parquet"),
            "pairs": str(root / "pairs.parquet")}  # fmt: skip


def cpu_accelerate_config(stage: int, directory: Path) -> str:
    """The shipped ZeRO config with only bf16 and the GPU switched off."""
    config = yaml.safe_load((REPO / res.ACCELERATE_CONFIGS[stage]).read_text())
    assert config["distributed_type"] == "DEEPSPEED"
    assert config["deepspeed_config"]["zero_stage"] == stage
    config.update(mixed_precision="no", use_cpu=True)
    path = directory / f"cpu_zero{stage}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(autouse=True)
def gpu_jobs_on_cpu_processes(monkeypatch):
    """These tests run the GPU path (accelerate launch, ZeRO) on CPU processes on purpose,
    and say so: a real job that sees fewer GPUs than it asked for stops (launch.gpu_problem)."""
    monkeypatch.setenv(GPU_JOBS_ON_CPU, "1")


def _job(data, task: str, output_dir: Path, **settings) -> TrainingJob:
    trainer = TrainerSettings(
        model_path=data["model"], output_dir=str(output_dir), learning_rate=1e-3,
        global_batch_size=GLOBAL_BATCH, per_device_batch_size=PER_DEVICE, epochs=1,
        save_steps=SAVE, max_length=64, warmup_ratio=0.0, **{"save_only_model": False, **settings},
    )  # fmt: skip
    rows = data["sft"] if task == "sft" else data["pairs"]
    hyper = {"beta": 0.1, "kl_coef": 0.05, "max_response_length": 8, "temperature": 0.7}
    return TrainingJob(task=task, settings=trainer, data=rows, hyper=hyper)


ERROR_LINE = re.compile(r"Error|Exception|error:|Killed|Signal|SIGSEGV|SIGBUS|Traceback")


def _launch(job: TrainingJob, config: str, capfd) -> None:
    """``run_training`` on the DeepSpeed processes; a failed launch raises with the processes'
    last error lines in its first line, so a truncated CI log still says why."""
    try:
        run_training(job, gpus=PROCESSES, accelerate_config=config)
    except subprocess.CalledProcessError as failure:
        captured = capfd.readouterr()
        sys.stdout.write(captured.out)  # the whole output stays in the test's report
        sys.stderr.write(captured.err)
        lines = (captured.out + captured.err).splitlines()
        errors = [line.strip() for line in lines if ERROR_LINE.search(line)
                  and "Warning" not in line]  # fmt: skip
        summary = " | ".join(errors[-4:])[-600:] or "no error line in its output"
        raise AssertionError(f"launch exited {failure.returncode}: {summary}") from failure


def _launch_preempted(job: TrainingJob, config: str, capfd, monkeypatch, tmp_path) -> None:
    """``_launch`` with every process stopped right after the first checkpoint's save
    callbacks (``PREEMPT_AFTER_FIRST_SAVE`` on their PYTHONPATH), as a preempted job."""
    hook = tmp_path / "preempt"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PREEMPT_AFTER_FIRST_SAVE)
    with monkeypatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
        with pytest.raises(AssertionError, match="launch exited"):
            _launch(job, config, capfd)


def _weights(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(checkpoint / "model.safetensors")


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[key] - b[key]).abs().max()) for key in a)


@pytest.mark.gpu_path
@pytest.mark.parametrize(("task", "stage"), [("sft", 2), ("dpo", 3)])
def test_zero_training_on_two_processes_matches_one_process(data, tmp_path, task, stage, capfd):
    single = _job(data, task, tmp_path / "single")
    run_training(single, gpus=0, accelerate_config=None)
    capfd.readouterr()  # the in-process run's output
    sharded = replace(single, settings=replace(single.settings, output_dir=str(tmp_path / "zero")))
    _launch(sharded, cpu_accelerate_config(stage, tmp_path), capfd)
    launched = capfd.readouterr()
    sys.stdout.write(launched.out)
    sys.stderr.write(launched.err)

    zero = tmp_path / "zero"
    assert saved_steps(zero) == [2, 4]
    # Tokenised once: rank 0 under TRL's main_process_first, the other rank read its cache
    # (launch.training_dataset); the run's datasets cache went when it ended.
    output = launched.out + launched.err
    assert len(re.findall(r"Tokenizing train dataset:\s+0%", output)) == 1, output[-3000:]
    for run in (zero, tmp_path / "single"):
        assert not datasets_cache_dir(str(run)).exists()
    # The run ended: DeepSpeed's shards (resume state) went from every checkpoint, the
    # gathered weights stayed (core.checkpoints.resume_state_callback).
    assert not list(zero.glob("checkpoint-*/global_step*")) and resumable_checkpoint(zero) is None

    base = _weights(Path(data["model"]))
    trained_single = _weights(tmp_path / "single" / "checkpoint-4")
    trained_zero = _weights(zero / "checkpoint-4")
    assert _max_difference(trained_single, base) > 1e-3  # it trained
    # Same samples per optimizer step, same loss normalisation: only float rounding differs.
    assert _max_difference(trained_zero, trained_single) < 1e-6


def test_preempted_zero_run_resumes_from_its_shards(data, tmp_path, monkeypatch, capfd):
    job = _job(data, "sft", tmp_path / "run")
    config = cpu_accelerate_config(2, tmp_path)
    whole = replace(job, settings=replace(job.settings, output_dir=str(tmp_path / "whole")))
    _launch(whole, config, capfd)
    uninterrupted = _weights(tmp_path / "whole" / "checkpoint-4")

    # A job preempted right after its step-2 checkpoint (every process stops there).
    _launch_preempted(job, config, capfd, monkeypatch, tmp_path)
    run = tmp_path / "run"
    assert saved_steps(run) == [2]
    # DeepSpeed's optimizer shards, one per process, so the checkpoint can resume.
    shards = sorted(p.name for p in (run / "checkpoint-2" / "global_step2").glob("*optim*"))
    assert shards == [f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in range(PROCESSES)]
    assert resumable_checkpoint(run) == str(run / "checkpoint-2")
    # The requeued job runs the same command.
    capfd.readouterr()
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # the trainer says where it resumes
    _launch(job, config, capfd)
    output = capfd.readouterr().out
    assert f"Attempting to resume from {tmp_path / 'run' / 'checkpoint-2'}" in output
    assert "Resuming training from checkpoint with epoch 0 and global step 2" in output
    assert "Gradient Accumulation steps = 2" in output  # 8 = 2 per process × 2 processes × 2
    assert saved_steps(tmp_path / "run") == [2, 4]
    assert _max_difference(_weights(tmp_path / "run" / "checkpoint-4"), uninterrupted) == 0.0
    assert not list(run.glob("checkpoint-*/global_step*"))  # the run ended: shards gone


@pytest.mark.gpu_path
def test_reward_model_then_ppo_under_zero3_save_loadable_models_and_resume(
    data, tmp_path, monkeypatch, capfd
):
    """As in the workflow: the reward model's final save gathers ZeRO-3's shards, and PPO
    (scored by it) saves the policy alone at every checkpoint, beside what a resume reads
    while it runs; preempted after its first checkpoint, PPO resumes from DeepSpeed's
    engine checkpoint (policy, value model and optimizer partitions), its value model and
    its schedule, and ends where the uninterrupted run ends."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    config = cpu_accelerate_config(3, tmp_path)
    reward = replace(_job(data, "reward", tmp_path / "reward", save_only_model=True),
                     final_model_dir=str(tmp_path / "reward_model"))  # fmt: skip
    _launch(reward, config, capfd)
    scorer = AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "reward_model", dtype=torch.float32
    )
    assert scorer.config.num_labels == 1
    base = AutoModelForCausalLM.from_pretrained(data["model"], dtype=torch.float32)
    trunk = {k: v for k, v in scorer.state_dict().items() if k.startswith("model.")}
    assert _max_difference(trunk, {k: base.state_dict()[k] for k in trunk}) > 1e-4

    # As in config/paper.yaml (save_only_model: false): resumable while it runs.
    ppo = replace(_job(data, "ppo", tmp_path / "ppo", save_only_model=False),
                  reward_model_path=str(tmp_path / "reward_model"))  # fmt: skip
    capfd.readouterr()
    _launch(ppo, config, capfd)
    launched = capfd.readouterr()
    sys.stdout.write(launched.out)
    sys.stderr.write(launched.err)
    assert saved_steps(tmp_path / "ppo") == [2, 4]
    # Its prompts tokenised once, by rank 0; the other rank read the cache.
    assert len(re.findall(r"Tokenizing PPO prompts:\s+0%", launched.out + launched.err)) == 1
    for step in (2, 4):
        checkpoint = tmp_path / "ppo" / f"checkpoint-{step}"
        policy = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
        # The run ended: no resume state (engine checkpoint, value model) is left.
        assert not list(checkpoint.glob("global_step*")) and resume_state_files(checkpoint) == []
        # The policy alone (no value head), with every weight present and trained.
        assert policy.state_dict().keys() == base.state_dict().keys()
        assert _max_difference(policy.state_dict(), base.state_dict()) > 1e-4

    # A job preempted right after its step-2 checkpoint (every process stops there).
    cut = replace(ppo, settings=replace(ppo.settings, output_dir=str(tmp_path / "cut")))
    _launch_preempted(cut, config, capfd, monkeypatch, tmp_path)
    saved = tmp_path / "cut" / "checkpoint-2"
    assert ppo_resume_problem(saved) is None
    # DeepSpeed's tag counts its optimizer steps (several per PPO update), not updates.
    tag = (saved / "latest").read_text().strip()
    assert sorted(p.name for p in (saved / tag).glob("*optim*")) == [
        f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in range(PROCESSES)]
    value_model = AutoModelForSequenceClassification.from_pretrained(
        saved / PPO_VALUE_MODEL, dtype=torch.float32)  # fmt: skip
    assert _max_difference(value_model.state_dict(), scorer.state_dict()) > 1e-4  # it trained
    first_save = (saved / "model.safetensors").stat().st_mtime_ns
    # The requeued job runs the same command.
    capfd.readouterr()
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    _launch(cut, config, capfd)
    assert f"Attempting to resume from {saved}" in capfd.readouterr().out  # the engine's
    assert saved_steps(tmp_path / "cut") == [2, 4]
    assert (saved / "model.safetensors").stat().st_mtime_ns == first_save  # resumed, not redone
    history = [json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
               for run in (tmp_path / "ppo", tmp_path / "cut")]  # fmt: skip
    assert [e["lr"] for e in history[1]] == [e["lr"] for e in history[0]]  # the schedule went on
    difference = _max_difference(_weights(tmp_path / "cut" / "checkpoint-4"),
                                 _weights(tmp_path / "ppo" / "checkpoint-4"))  # fmt: skip
    assert difference < 1e-6, difference
