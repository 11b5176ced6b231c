"""Preference optimisation with TRL's trainers: DPO, SimPO (CPOTrainer with
loss_type="simpo"), and PPO with a reward model trained first.

Each function takes shared TrainerSettings plus the algorithm's own hyperparameters from
config, and resumes from the newest complete checkpoint in its output directory (see
``checkpoints.incomplete_reason``); each checkpoint gets a completion marker once saved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from value_drifts.core.checkpoints import (
    completion_marker_callback,
    newest_complete_step,
    resumable_checkpoint,
    resume_state_callback,
)
from value_drifts.training.common import TrainerSettings, model_dtype, trl_config


def _policy(model_path: str, settings: TrainerSettings):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=model_dtype(settings))
    return model, tokenizer


def _train(trainer, settings: TrainerSettings, callbacks=()):
    """Train from the newest complete checkpoint with optimizer state (a restart resumes
    optimizer, scheduler and RNG state), keeping that state in the newest checkpoint only
    and in none once training ends (``checkpoints.resume_state_callback``)."""
    trainer.add_callback(completion_marker_callback())
    trainer.add_callback(resume_state_callback())
    for callback in callbacks:
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=resumable_checkpoint(Path(settings.output_dir)))
    return trainer


def train_dpo(
    settings: TrainerSettings, hyper: Mapping[str, Any], pairs: list[dict[str, Any]],
    callbacks: Sequence[Any] = (),
):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    # Arguments first: under accelerate + ZeRO-3 they make the model load partitioned.
    args = trl_config(DPOConfig, settings, beta=hyper["beta"], max_length=settings.max_length)
    model, tokenizer = _policy(settings.model_path, settings)
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer
    )
    return _train(trainer, settings, callbacks)


def train_simpo(
    settings: TrainerSettings, hyper: Mapping[str, Any], pairs: list[dict[str, Any]],
    callbacks: Sequence[Any] = (),
):
    from datasets import Dataset
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    args = trl_config(
        CPOConfig,
        settings,
        loss_type="simpo",
        cpo_alpha=0.0,  # pure SimPO: no behaviour-cloning term
        beta=hyper["beta"],
        simpo_gamma=hyper["gamma"],
        max_length=settings.max_length,
        max_completion_length=hyper.get("max_response_length"),
    )
    model, tokenizer = _policy(settings.model_path, settings)
    trainer = CPOTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer
    )
    return _train(trainer, settings, callbacks)


def train_reward_model(
    settings: TrainerSettings, pairs: list[dict[str, Any]], callbacks: Sequence[Any] = ()
):
    """A one-logit sequence classifier on chosen vs rejected (TRL's RewardTrainer)."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    args = trl_config(RewardConfig, settings, max_length=settings.max_length)
    tokenizer = AutoTokenizer.from_pretrained(settings.model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        settings.model_path, num_labels=1, dtype=model_dtype(settings)
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer
    )
    return _train(trainer, settings, callbacks)


def ppo_prompts(pairs: list[dict[str, Any]], tokenizer, max_prompt_length: int):
    """PPO's dataset: each pair's prompt, chat-templated and tokenised (no padding yet)."""
    from datasets import Dataset

    rows = []
    for pair in pairs:
        ids = tokenizer.apply_chat_template(
            pair["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False
        )
        rows.append({"input_ids": list(ids)[-max_prompt_length:]})
    return Dataset.from_list(rows)


def train_ppo(
    settings: TrainerSettings,
    hyper: Mapping[str, Any],
    pairs: list[dict[str, Any]],
    reward_model_path: str,
    callbacks: Sequence[Any] = (),
):
    """PPO from the SFT policy, scored by the trained reward model, which also initialises
    the value model. The trainer saves the policy at each checkpoint.

    TRL's PPOTrainer has no ``resume_from_checkpoint``: after a crash, training restarts
    from the newest complete saved policy (a checkpoint cut short while saving is skipped,
    see ``checkpoints.incomplete_reason``) and runs only the remaining updates, numbering
    checkpoints on from where it stopped (value head and optimiser restart fresh).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    start_step = newest_complete_step(Path(settings.output_dir)) or 0
    policy_path = (
        f"{settings.output_dir}/checkpoint-{start_step}" if start_step else settings.model_path
    )
    # Arguments first: under accelerate + ZeRO-3 they make the models load partitioned.
    n_prompts = len(pairs)
    total_episodes = round(settings.epochs * n_prompts) - start_step * settings.global_batch_size
    # A restart reads only the policy, so optimizer state (for policy and value model, under
    # DeepSpeed ~12 bytes per parameter of each) would be written and never read.
    args = trl_config(
        PPOConfig,
        replace(settings, save_only_model=True),
        total_episodes=total_episodes,
        response_length=hyper.get("max_response_length", 53),
        kl_coef=hyper["kl_coef"],
        temperature=hyper.get("temperature", 0.7),
        missing_eos_penalty=hyper.get("missing_eos_penalty"),
        stop_token="eos",
        num_sample_generations=0,
    )
    model, _ = _policy(policy_path, settings)
    ref_model, _ = _policy(settings.model_path, settings)
    tokenizer = AutoTokenizer.from_pretrained(settings.model_path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def scorer():
        scorer_model = AutoModelForSequenceClassification.from_pretrained(
            reward_model_path, num_labels=1, dtype=model_dtype(settings)
        )
        scorer_model.config.pad_token_id = tokenizer.pad_token_id
        return scorer_model

    trainer = _ppo_trainer_class(PPOTrainer)(
        args=args,
        processing_class=tokenizer,
        model=model,
        ref_model=ref_model,
        reward_model=scorer(),
        value_model=scorer(),
        train_dataset=ppo_prompts(pairs, tokenizer, settings.max_length),
    )
    if start_step:
        trainer.add_callback(_step_offset_callback(start_step))
    trainer.add_callback(completion_marker_callback())
    for callback in callbacks:
        trainer.add_callback(callback)
    trainer.train()
    return trainer


def _ppo_trainer_class(ppo_trainer):
    """TRL's PPOTrainer, saving the policy correctly under DeepSpeed.

    TRL hands transformers' DeepSpeed save path the bare policy where it expects the
    engine, and every checkpoint save fails (``'LlamaConfig' object has no attribute
    'get'``; TRL 1.12, transformers 5.24). Here the engine's weights are gathered (ZeRO-3
    consolidates the shards on rank 0) and the policy's part saved on the main process.
    """

    class PolicySavingPPOTrainer(ppo_trainer):
        def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
            if not self.is_deepspeed_enabled:
                return super().save_model(output_dir, _internal_call)
            # Collective (every rank calls it); under ZeRO-3 only rank 0 gets the weights.
            state = self.accelerator.get_state_dict(self.deepspeed)
            if not self.args.should_save:
                return
            policy_state = {
                key.removeprefix("policy."): value
                for key, value in state.items()
                if key.startswith("policy.")
            }
            output_dir = output_dir or self.args.output_dir
            policy = self.accelerator.unwrap_model(self.deepspeed).policy
            policy.save_pretrained(output_dir, state_dict=policy_state)
            self.processing_class.save_pretrained(output_dir)

    return PolicySavingPPOTrainer


def _step_offset_callback(offset: int):
    """Continue step numbering after a restart, so checkpoint names match the plan."""
    from transformers import TrainerCallback

    class StepOffset(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            state.global_step += offset
            state.max_steps += offset

    return StepOffset()
