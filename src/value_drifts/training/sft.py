"""Supervised fine-tuning with TRL's SFTTrainer: one dataclass per run, the trainer owns
the loop, checkpointing and resuming."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from value_drifts.training.checkpoints import resumable_checkpoint


@dataclass(frozen=True)
class SFTRun:
    model_path: str
    output_dir: str
    learning_rate: float
    global_batch_size: int
    per_device_batch_size: int
    epochs: float
    save_steps: int
    max_length: int
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    seed: int = 0
    save_only_model: bool = True
    threads: int = 1
    # TRL turns it on by default; it saves memory on big models but slows small ones ~1.5x.
    gradient_checkpointing: bool = False


def gradient_accumulation(global_batch: int, per_device: int, world_size: int) -> int:
    """Accumulation steps that make per-device batch × devices × accumulation = global batch."""
    per_step = per_device * world_size
    if global_batch % per_step:
        raise ValueError(
            f"global batch {global_batch} is not a multiple of per-device batch {per_device}"
            f" × {world_size} device(s)"
        )
    return global_batch // per_step


def train_sft(run: SFTRun, rows: list[dict[str, Any]]):
    """Fine-tune ``run.model_path`` on conversational ``rows`` (TRL's ``messages`` or
    ``prompt``/``completion`` format), saving a checkpoint every ``save_steps`` and at
    the end; resumes from the newest complete checkpoint in ``output_dir``."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(run.threads)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    tokenizer = AutoTokenizer.from_pretrained(run.model_path)
    model = AutoModelForCausalLM.from_pretrained(run.model_path, dtype=torch.float32)
    args = SFTConfig(
        output_dir=run.output_dir,
        learning_rate=run.learning_rate,
        per_device_train_batch_size=run.per_device_batch_size,
        gradient_accumulation_steps=gradient_accumulation(
            run.global_batch_size, run.per_device_batch_size, world_size
        ),
        num_train_epochs=run.epochs,
        lr_scheduler_type=run.lr_scheduler,
        warmup_steps=run.warmup_ratio,  # a float in [0, 1) is a ratio in transformers 5
        weight_decay=run.weight_decay,
        save_strategy="steps",
        save_steps=run.save_steps,
        save_only_model=run.save_only_model,
        max_length=run.max_length,
        bf16=torch.cuda.is_available(),  # TRL defaults to bf16, which CPUs here lack
        use_cpu=not torch.cuda.is_available(),
        logging_steps=1,
        gradient_checkpointing=run.gradient_checkpointing,
        report_to="none",
        seed=run.seed,
        data_seed=run.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=resumable_checkpoint(Path(run.output_dir)))
    return trainer
