"""What every trainer run shares: one dataclass and the TrainingArguments it maps to."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from value_drifts.core.config import schema_default

# The optional keys of a trainer section, whose defaults the schema gives.
TRAINER_DEFAULT_KEYS = ("warmup_ratio", "lr_scheduler", "weight_decay", "save_only_model",
                        "gradient_checkpointing", "precision")


@dataclass(frozen=True)
class TrainerSettings:
    model_path: str
    output_dir: str
    learning_rate: float
    global_batch_size: int
    per_device_batch_size: int
    epochs: float
    save_steps: int
    max_length: int
    # Optional keys of a trainer section: their defaults are the schema's (``$defs.trainer``),
    # asked for here for code that builds settings without a filled config (tests).
    warmup_ratio: float = schema_default("sft", "warmup_ratio")
    lr_scheduler: str = schema_default("sft", "lr_scheduler")
    weight_decay: float = schema_default("sft", "weight_decay")
    seed: int = 0
    # False: checkpoints hold optimizer, scheduler and RNG state, so a cut run resumes;
    # only the newest complete checkpoint keeps it while the run goes on, none once it ends
    # (core.checkpoints.resume_state_callback). True: weights only, a restart starts over.
    save_only_model: bool = schema_default("sft", "save_only_model")
    threads: int = 1
    gradient_checkpointing: bool = schema_default("sft", "gradient_checkpointing")
    # fp32 or bf16 (the paper config on GPUs): configured and recorded, never chosen at run
    # time from the machine, since it changes the checkpoints.
    precision: str = schema_default("sft", "precision")
    # Further fields of the TRL config class, passed through unchanged (``trl_config``).
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls, trainer: Mapping[str, Any], model_path: str, output_dir: str, save_steps: int,
        seed: int, threads: int,
    ) -> TrainerSettings:
        """Settings from a config trainer section (keys as in the schema's ``trainer``;
        an optional key the section leaves out, in a section not filled with the schema's
        defaults, takes the schema's default)."""
        optional = TRAINER_DEFAULT_KEYS
        return cls(
            model_path=model_path,
            output_dir=output_dir,
            learning_rate=trainer["learning_rate"],
            global_batch_size=trainer["global_batch_size"],
            per_device_batch_size=trainer["per_device_batch_size"],
            epochs=trainer["epochs"],
            save_steps=save_steps,
            max_length=trainer["max_length"],
            seed=seed,
            threads=threads,
            extra=dict(trainer.get("extra") or {}),
            **{key: trainer[key] for key in optional if key in trainer},
        )


def gradient_accumulation(global_batch: int, per_device: int, world_size: int) -> int:
    """Accumulation steps that make per-device batch × devices × accumulation = global batch."""
    per_step = per_device * world_size
    if global_batch % per_step:
        raise ValueError(
            f"global batch {global_batch} is not a multiple of per-device batch {per_device}"
            f" × {world_size} device(s)"
        )
    return global_batch // per_step


def threads_per_process(job_threads: int, local_processes: int) -> int:
    """A training process's share of its job's CPU threads: under ``accelerate launch``
    each of the node's ``local_processes`` (one per GPU) gets ``job_threads`` divided
    among them, at least 1, so the ranks together use the CPUs the job asked for."""
    return max(1, job_threads // max(local_processes, 1))


def training_arguments(settings: TrainerSettings) -> dict[str, Any]:
    """Keyword arguments common to SFTConfig, DPOConfig, CPOConfig, RewardConfig, PPOConfig.
    Sets this process's torch threads (``threads_per_process``; accelerate and torchrun
    give each rank ``LOCAL_WORLD_SIZE``)."""
    import torch

    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(threads_per_process(settings.threads, local_processes))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    on_gpu = torch.cuda.is_available()
    return dict(
        output_dir=settings.output_dir,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=gradient_accumulation(
            settings.global_batch_size, settings.per_device_batch_size, world_size
        ),
        num_train_epochs=settings.epochs,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,  # a float in [0, 1) is a ratio in transformers 5
        weight_decay=settings.weight_decay,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_only_model=settings.save_only_model,
        bf16=settings.precision == "bf16",  # configured: TRL's own default is bf16
        use_cpu=not on_gpu,
        gradient_checkpointing=settings.gradient_checkpointing,
        logging_steps=1,
        report_to="none",
        seed=settings.seed,
        data_seed=settings.seed,
        dataloader_num_workers=0,
    )


def trl_config(config_class, settings: TrainerSettings, **arguments: Any):
    """``config_class(...)`` (SFTConfig, DPOConfig, CPOConfig, RewardConfig, PPOConfig) from
    the shared training arguments, the trainer's own ``arguments`` and the config's
    ``extra`` mapping, whose keys must be fields of ``config_class`` (TRL's docs list them)
    that the workflow does not set itself. Raises ValueError naming any other key."""
    arguments = {**training_arguments(settings), **arguments}
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(settings.extra) - known)
    if unknown:
        raise ValueError(
            f"trainer extra: {unknown} are not fields of {config_class.__name__} "
            "(see its TRL documentation)")
    managed = sorted(set(settings.extra) & set(arguments))
    if managed:
        raise ValueError(
            f"trainer extra: {managed} are set by the workflow for {config_class.__name__}; "
            "use the trainer section's own keys (learning_rate, global_batch_size, ...)")
    return config_class(**arguments, **settings.extra)


def model_dtype(settings: TrainerSettings):
    """The dtype models load in for training: bfloat16 for ``precision: bf16`` (under
    DeepSpeed the optimizer keeps an fp32 master copy), float32 otherwise."""
    import torch

    return torch.bfloat16 if settings.precision == "bf16" else torch.float32



def as_dataset(rows):
    """``rows`` as a ``datasets.Dataset``: one as is (``launch.training_dataset``'s, backed by
    files, whose tokenisation other ranks read from its cache), a list of dicts through
    ``Dataset.from_list``."""
    from datasets import Dataset

    return rows if isinstance(rows, Dataset) else Dataset.from_list(list(rows))
