"""One training job, run in this process on CPU or under ``accelerate launch`` on GPUs.

A workflow script describes the job (``TrainingJob``) and calls ``run_training``. With no
GPUs the job runs here, in-process. With GPUs the job is written to JSON and
``accelerate launch --config_file <ZeRO config> --num_processes <gpus> -m
value_drifts.training.launch <job.json>`` starts one process per GPU, each running
``run_job``; accelerate sets ``WORLD_SIZE``, from which the trainer arguments derive the
gradient accumulation (``common.training_arguments``). Resuming works the same in both
cases: the trainer starts from the newest complete checkpoint in the output directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from value_drifts.training.common import TrainerSettings

TASKS = ("sft", "dpo", "simpo", "ppo", "reward")


@dataclass(frozen=True)
class TrainingJob:
    task: str  # one of TASKS
    settings: TrainerSettings
    data: str  # parquet: SFT rows (``messages``) or preference pairs
    hyper: dict[str, Any] = field(default_factory=dict)
    reward_model_path: str | None = None  # PPO
    final_model_dir: str | None = None  # reward model: where the trained model is saved

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown training task {self.task!r}; expected one of {TASKS}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> TrainingJob:
        data = json.loads(text)
        return cls(**{**data, "settings": TrainerSettings(**data["settings"])})


def launch_command(
    job_file: str, gpus: int, accelerate_config: str, port: int, accelerate: str = "accelerate"
) -> list[str]:
    """``accelerate launch`` of ``run_job`` on ``gpus`` processes of one node."""
    if gpus < 1:
        raise ValueError("accelerate launch needs at least one GPU; run CPU jobs in-process")
    return [
        accelerate, "launch",
        "--config_file", accelerate_config,
        "--num_processes", str(gpus),
        "--num_machines", "1",
        "--main_process_port", str(port),
        "-m", "value_drifts.training.launch",
        job_file,
    ]  # fmt: skip


def free_port() -> int:
    """A TCP port free right now, so two jobs on one node do not share a rendezvous port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Under a training run's output directory: the Arrow files of its data and of the trainer's
# tokenisation (``training_dataset``), removed once the run has trained.
DATASETS_CACHE = "datasets_cache"


def training_dataset(path: str, output_dir: str, columns: list[str] | None = None):
    """The rows of the parquet file ``path`` as a ``datasets.Dataset`` backed by Arrow files
    in ``<output_dir>/datasets_cache`` (``Dataset.from_parquet``; ranks loading at once wait
    on datasets' file lock).

    Backed by files, every ``map`` a TRL trainer runs on it is cached under its
    fingerprint: the trainers tokenise inside ``PartialState().main_process_first()``
    (SFTTrainer, DPOTrainer, RewardTrainer, CPOTrainer; TRL 1.12), so rank 0 tokenises
    and the other ranks of an ``accelerate launch`` read its cache files instead of each
    tokenising the whole set again (an in-memory ``Dataset.from_list`` has no cache)."""
    from datasets import Dataset

    cache = Path(output_dir) / DATASETS_CACHE
    return Dataset.from_parquet(path, columns=columns, cache_dir=str(cache))


def remove_datasets_cache(trainer, output_dir: str) -> None:
    """Once every rank has trained, the main process removes the run's datasets cache."""
    import shutil

    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        shutil.rmtree(Path(output_dir) / DATASETS_CACHE, ignore_errors=True)


def run_job(job: TrainingJob):
    """Train; under accelerate every process runs this (the trainer shards the work)."""
    trainer = _train_job(job)
    remove_datasets_cache(trainer, job.settings.output_dir)
    return trainer


def _train_job(job: TrainingJob):
    from value_drifts.training import preference_trainers
    from value_drifts.training.sft import train_sft

    if job.task == "sft":
        return train_sft(
            job.settings, training_dataset(job.data, job.settings.output_dir, ["messages"]))
    pairs = training_dataset(job.data, job.settings.output_dir)
    if job.task == "dpo":
        return preference_trainers.train_dpo(job.settings, job.hyper, pairs)
    if job.task == "simpo":
        return preference_trainers.train_simpo(job.settings, job.hyper, pairs)
    if job.task == "ppo":
        return preference_trainers.train_ppo(
            job.settings, job.hyper, pairs, reward_model_path=job.reward_model_path
        )
    trainer = preference_trainers.train_reward_model(job.settings, pairs)
    trainer.save_model(job.final_model_dir)  # every process: ZeRO-3 gathers the weights
    return trainer


def _file_or_none(stream):
    """``stream`` if it is a real file (a subprocess can write to it), else None."""
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return stream


# Set to 1 only to run a GPU training job on CPU processes on purpose (the DeepSpeed tests).
GPU_JOBS_ON_CPU = "VALUE_DRIFTS_GPU_JOBS_ON_CPU"


def gpu_problem(gpus: int) -> str | None:
    """Why a job that asked for ``gpus`` GPUs must not start (None when it sees them): it
    sees fewer, and would otherwise train on the CPU until its time limit (a CPU build of
    torch from the wrong environment, an old driver, a node without them). Names what it
    sees: ``torch.cuda.device_count()``, the torch build, ``CUDA_VISIBLE_DEVICES``."""
    import torch

    if gpus == 0 or os.environ.get(GPU_JOBS_ON_CPU) == "1":
        return None
    seen = torch.cuda.device_count()
    if seen >= gpus:
        return None
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU build"
    return (f"this training job asked for {gpus} GPU(s) and sees {seen}: torch "
            f"{torch.__version__} ({build}), CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}. Run the workflow with "
            "--sdm conda (the train env's CUDA torch) or a site env with a CUDA torch "
            "(docs/cluster.md); it never falls back to the CPU.")


# Slurm reads these as srun's input variables (--account, --partition). docs/cluster.md has a
# site export them for the profile (sbatch ignores them); an srun started inside the job's
# allocation with them (a launcher, a user's hook) would ask for that account and partition
# again, or an empty one. The launched training processes never see them.
SITE_SRUN_VARIABLES = ("SLURM_ACCOUNT", "SLURM_PARTITION")


def launch_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment ``accelerate launch`` starts the training processes in: this job's,
    less ``SITE_SRUN_VARIABLES``."""
    return {key: value for key, value in environ.items() if key not in SITE_SRUN_VARIABLES}


def run_training(job: TrainingJob, gpus: int, accelerate_config: str | None) -> None:
    """Run ``job`` here (no GPUs) or under ``accelerate launch`` on ``gpus`` GPUs; the
    launched processes write to this process's stdout (the job's log under ``logged``).
    Raises RuntimeError at once when the job sees fewer GPUs than it asked for
    (``gpu_problem``)."""
    if gpus == 0:
        run_job(job)
        return
    if problem := gpu_problem(gpus):
        raise RuntimeError(problem)
    if accelerate_config is None:
        raise ValueError("a GPU training job needs an accelerate config")
    job_file = Path(job.settings.output_dir) / "training_job.json"
    job_file.parent.mkdir(parents=True, exist_ok=True)
    job_file.write_text(job.to_json())
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    command = launch_command(str(job_file), gpus, accelerate_config, free_port(), accelerate)
    print("launching:", " ".join(command), flush=True)
    output = _file_or_none(sys.stdout)
    subprocess.run(
        command, check=True, stdout=output, stderr=subprocess.STDOUT if output else None,
        env=launch_environment(os.environ),
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m value_drifts.training.launch JOB.json")
    run_job(TrainingJob.from_json(Path(args[0]).read_text()))


if __name__ == "__main__":
    main()
