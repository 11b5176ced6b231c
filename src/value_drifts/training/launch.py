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


def datasets_cache_dir(output_dir: str) -> Path:
    """Where a training run keeps the Arrow files of its data and of the trainer's
    tokenisation (``training_dataset``): node-local temporary space (``$TMPDIR``, which
    Slurm jobs often get per job), named after the run, not the shared results
    filesystem, whose file locks (datasets' ``FileLock``) not every NFS or Lustre mount
    supports. Removed once the run has trained (``remove_datasets_cache``)."""
    import hashlib
    import tempfile

    name = hashlib.sha256(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "value-drifts-datasets" / name


def training_dataset(path: str, output_dir: str, columns: list[str] | None = None):
    """The rows of the parquet file ``path`` as a ``datasets.Dataset`` backed by Arrow files
    in ``datasets_cache_dir(output_dir)`` (``Dataset.from_parquet``; ranks loading at once
    wait on datasets' file lock).

    Backed by files, every ``map`` a TRL trainer runs on it is cached under its
    fingerprint: the trainers tokenise inside ``PartialState().main_process_first()``
    (SFTTrainer, DPOTrainer, RewardTrainer, CPOTrainer; TRL 1.12; PPO's prompts,
    ``preference_trainers.ppo_prompts``), so rank 0 tokenises and the other ranks of its
    node read its cache files instead of each tokenising the whole set again (an
    in-memory ``Dataset.from_list`` has no cache). Ranks of other nodes tokenise for
    themselves, as before."""
    from datasets import Dataset

    cache = datasets_cache_dir(output_dir)
    return Dataset.from_parquet(path, columns=columns, cache_dir=str(cache))


def remove_datasets_cache(trainer, output_dir: str) -> None:
    """Once every rank has trained, each node's main process removes the run's cache."""
    import shutil

    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_local_main_process:
        shutil.rmtree(datasets_cache_dir(output_dir), ignore_errors=True)


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


# Beside a run's checkpoints: what decided them (``run_fingerprint``).
RUN_FINGERPRINT = "run_fingerprint.json"


def run_fingerprint(job: TrainingJob) -> dict[str, Any]:
    """What decides a training run's trajectory: its task, trainer settings and
    hyperparameters less throughput keys (``job_settings.output_settings``: threads,
    per-device batch, save_only_model) and paths, the sha256 of its data file and the
    weights of the models it starts from (``integrity.shard_digests``: its start model;
    PPO's reward model). Reading them costs a pass over those files once per job start
    (an 8B model's 16 GB: seconds to a minute)."""
    from value_drifts.core.integrity import shard_digests, weights_digest
    from value_drifts.core.io import file_sha256
    from value_drifts.core.job_settings import output_settings

    settings = {key: value for key, value in asdict(job.settings).items()
                if key not in ("model_path", "output_dir")}
    models = {"start": job.settings.model_path}
    if job.reward_model_path:
        models["reward_model"] = job.reward_model_path
    return {
        "task": job.task,
        "settings": output_settings(settings),
        "hyper": output_settings(job.hyper),
        "data": "sha256:" + file_sha256(Path(job.data)),
        "models": {name: weights_digest(shard_digests(Path(path)))
                   for name, path in models.items()},
    }


def begin_run(job: TrainingJob) -> list[str]:
    """Before any process trains (in the job's own process, so no rank races another):
    a run whose saved checkpoints were made from other inputs (``run_fingerprint``
    differs or was never recorded) starts over, its checkpoints removed, rather than
    resuming one run's state with another's settings, data or start model; so does a run
    whose training did not end (``ended_run``) with no checkpoint it resumes from
    (``resumes_nothing``): its trainer would save into the old folders, beside that
    attempt's files (a weights-deleted record, answers kept there). Records the
    fingerprint; returns the removed folders' names (``preference_trainers.start_over``)."""
    from value_drifts.core.io import write_json
    from value_drifts.training.preference_trainers import start_over

    output_dir = Path(job.settings.output_dir)
    fingerprint = run_fingerprint(job)
    file = output_dir / RUN_FINGERPRINT
    recorded = json.loads(file.read_text()) if file.is_file() else None
    removed: list[str] = []
    if recorded != fingerprint and any(output_dir.glob("checkpoint-*")):
        print(f"{output_dir}: its checkpoints were saved from other inputs "
              f"({RUN_FINGERPRINT} differs); the run starts over", flush=True)
        removed = start_over(output_dir)
    elif ended_run(job) is None and resumes_nothing(job):
        removed = start_over(output_dir)
    write_json(file, fingerprint)
    return removed


def resumes_nothing(job: TrainingJob) -> bool:
    """True when ``job``'s run has saved checkpoints but none its trainer resumes from: for
    PPO none holding its resume state (``preference_trainers.ppo_needs_start_over``), for
    the others none complete with optimizer state (``checkpoints.resumable_checkpoint``:
    the run ended and trains again, ``save_only_model: true``, weights deleted after
    generation, a save cut short)."""
    from value_drifts.core.checkpoints import resumable_checkpoint, saved_steps
    from value_drifts.training.preference_trainers import ppo_needs_start_over

    output_dir = Path(job.settings.output_dir)
    if job.task == "ppo":
        return ppo_needs_start_over(output_dir)
    return bool(saved_steps(output_dir)) and resumable_checkpoint(output_dir) is None


def ended_run(job: TrainingJob) -> list[int] | None:
    """The saved steps of ``job``'s run when an earlier attempt's training ended and its
    checkpoints are all still there and complete (``checkpoints.ended_steps``); call it
    after ``begin_run``, which removes checkpoints made from other inputs. None for the
    reward model: its job ends by saving the final model, which a restart redoes (one
    epoch, ``workflow_scripts/train_reward_model.py``)."""
    from value_drifts.core.checkpoints import ended_steps

    if job.task == "reward":
        return None
    return ended_steps(Path(job.settings.output_dir))


def finish_ended_run(job: TrainingJob, steps: list[int]) -> None:
    """An ended run, not trained again: what its end had left to do, stripping every
    checkpoint's resume state (``strip_all_resume_state``; a cut job may have stopped
    half-way), is done."""
    from value_drifts.core.checkpoints import strip_all_resume_state

    output_dir = Path(job.settings.output_dir)
    stripped = strip_all_resume_state(output_dir)
    print(f"{output_dir}: its training ended in an earlier attempt (checkpoints {steps}, "
          f"complete); nothing is trained again"
          + (f", resume state removed from {sorted(stripped)}" if stripped else ""), flush=True)


def run_training(job: TrainingJob, gpus: int, accelerate_config: str | None,
                 checkpoint_disk_mb: int | None = None) -> None:
    """Run ``job`` here (no GPUs) or under ``accelerate launch`` on ``gpus`` GPUs; the
    launched processes write to this process's stdout (the job's log under ``logged``).
    First ``begin_run``: checkpoints saved from other inputs are removed, never resumed.
    A run whose training ended in an earlier attempt of the job, from the same inputs, is
    not trained again (``ended_run``); to train it again, delete its folder. Raises
    RuntimeError at once when the job sees fewer GPUs than it asked for
    (``gpu_problem``).

    ``checkpoint_disk_mb``: the run's peak checkpoint disk (its rule's resource). Where
    the disk has less room than that (``checkpoint_disk.disk_shortfall``) the log says so
    before training, and the error of a training that then fails gets a note naming the
    disk (``disk_note``; a write error such as torch's ``unexpected pos``)."""
    from value_drifts.core.checkpoint_disk import disk_shortfall
    from value_drifts.core.checkpoints import forget_run_end

    if gpus and (problem := gpu_problem(gpus)):
        raise RuntimeError(problem)
    begin_run(job)
    if (steps := ended_run(job)) is not None:
        finish_ended_run(job, steps)
        return
    output_dir = Path(job.settings.output_dir)
    forget_run_end(output_dir)
    if checkpoint_disk_mb and (shortfall := disk_shortfall(output_dir, checkpoint_disk_mb)):
        print(f"WARNING: too little disk: {shortfall}", flush=True)
    try:
        _train_here_or_launched(job, gpus, accelerate_config)
    except Exception as error:
        if checkpoint_disk_mb and (note := disk_note(error, output_dir, checkpoint_disk_mb)):
            error.add_note(note)
        raise


def disk_note(error: BaseException, output_dir: Path, checkpoint_disk_mb: int) -> str | None:
    """What a failed training's error gets added (``add_note``; its type and message stay)
    about the disk: the room short of the run's peak (``disk_shortfall``), or that the
    disk is full where an ``OSError`` in the error's chain says so (ENOSPC, EDQUOT); None
    otherwise, or when the disk cannot be read."""
    import errno

    from value_drifts.core.checkpoint_disk import disk_shortfall

    try:
        shortfall = disk_shortfall(output_dir, checkpoint_disk_mb)
    except OSError:
        shortfall = None
    if shortfall:
        return (f"the disk has too little room for this run: {shortfall}. Where the error "
                "is a write error, that is why.")
    chain, seen = error, set()
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, OSError) and chain.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"the disk or quota holding {output_dir} is full."
        chain = chain.__cause__ or chain.__context__
    return None


def _train_here_or_launched(job: TrainingJob, gpus: int, accelerate_config: str | None) -> None:
    if gpus == 0:
        run_job(job)
        return
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
