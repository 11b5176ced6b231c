"""Supervised fine-tuning with TRL's SFTTrainer: the trainer owns the loop, checkpointing
and resuming."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from value_drifts.core.checkpoints import completion_marker_callback, resumable_checkpoint
from value_drifts.training.common import TrainerSettings, trl_config


def train_sft(run: TrainerSettings, rows: list[dict[str, Any]]):
    """Fine-tune ``run.model_path`` on conversational ``rows`` (TRL's ``messages`` or
    ``prompt``/``completion`` format), saving a checkpoint every ``save_steps`` and at
    the end, each with a completion marker; resumes from the newest complete checkpoint
    with optimizer state in ``output_dir``."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    # Arguments first: under accelerate + ZeRO-3 they make the model load partitioned.
    args = trl_config(SFTConfig, run, max_length=run.max_length)
    tokenizer = AutoTokenizer.from_pretrained(run.model_path)
    model = AutoModelForCausalLM.from_pretrained(run.model_path, dtype=torch.float32)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[completion_marker_callback()],
    )
    trainer.train(resume_from_checkpoint=resumable_checkpoint(Path(run.output_dir)))
    return trainer
