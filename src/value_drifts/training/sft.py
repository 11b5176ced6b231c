"""Supervised fine-tuning with TRL's SFTTrainer: the trainer owns the loop, checkpointing
and resuming."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from value_drifts.core.chat_template import end_of_turn_token, stop_token_ids
from value_drifts.core.checkpoints import (
    completion_marker_callback,
    resumable_checkpoint,
    resume_state_callback,
)
from value_drifts.training.common import TrainerSettings, as_dataset, model_dtype, trl_config


def train_sft(run: TrainerSettings, rows: list[dict[str, Any]] | Any):
    """Fine-tune ``run.model_path`` on conversational ``rows`` (TRL's ``messages`` or
    ``prompt``/``completion`` format; a list of dicts, or a ``datasets.Dataset`` such as
    ``launch.training_dataset``'s, whose tokenisation other ranks read from its cache),
    saving a checkpoint every ``save_steps`` and at the end, each with a completion
    marker; resumes from the newest complete checkpoint with optimizer state in
    ``output_dir``, the only one that keeps it while the run goes on (none once it ends:
    ``checkpoints.resume_state_callback``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(run.model_path)
    # Checkpoints end their turn where the chat template does: that token becomes their eos
    # (TRL sets the tokenizer's) and a stop token of their generation config, and the pad
    # token stays another one, so end-of-turn is never masked as padding
    # (core.chat_template).
    turn_end = end_of_turn_token(tokenizer)
    special = {}
    if turn_end is not None and turn_end != tokenizer.eos_token:
        special["eos_token"] = turn_end
        if tokenizer.pad_token in (None, turn_end):
            special["pad_token"] = tokenizer.eos_token  # the base eos: no turn ends with it
    # Arguments before the model: under accelerate + ZeRO-3 they make it load partitioned.
    args = trl_config(SFTConfig, run, max_length=run.max_length, **special)
    model = AutoModelForCausalLM.from_pretrained(run.model_path, dtype=model_dtype(run))
    if "eos_token" in special:
        tokenizer.pad_token = special.get("pad_token", tokenizer.pad_token)
        stops = stop_token_ids(tokenizer, model.generation_config)
        model.generation_config.eos_token_id = stops
        model.generation_config.pad_token_id = tokenizer.convert_tokens_to_ids(
            special.get("pad_token", tokenizer.pad_token))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=as_dataset(rows),
        processing_class=tokenizer,
        callbacks=[completion_marker_callback(), resume_state_callback()],
    )
    trainer.train(resume_from_checkpoint=resumable_checkpoint(Path(run.output_dir)))
    return trainer
