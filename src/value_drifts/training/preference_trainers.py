"""Preference optimisation with TRL's trainers: DPO, SimPO (CPOTrainer with
loss_type="simpo"), and PPO with a reward model trained first.

Each function takes shared TrainerSettings plus the algorithm's own hyperparameters from
config, and resumes from the newest complete checkpoint in its output directory (see
``checkpoints.incomplete_reason``); each checkpoint gets a completion marker once saved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from value_drifts.core.checkpoints import (
    PPO_PROMPT_ORDER,
    PPO_VALUE_MODEL,
    completion_marker_callback,
    forget_run_end,
    newest_complete_step,
    resumable_checkpoint,
    resume_state_callback,
    saved_steps,
)
from value_drifts.training.common import TrainerSettings, as_dataset, model_dtype, trl_config


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
    from trl import DPOConfig, DPOTrainer

    # Arguments first: under accelerate + ZeRO-3 they make the model load partitioned.
    args = trl_config(DPOConfig, settings, beta=hyper["beta"], max_length=settings.max_length)
    model, tokenizer = _policy(settings.model_path, settings)
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=as_dataset(pairs), processing_class=tokenizer
    )
    return _train(trainer, settings, callbacks)


def train_simpo(
    settings: TrainerSettings, hyper: Mapping[str, Any], pairs: list[dict[str, Any]],
    callbacks: Sequence[Any] = (),
):
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
        model=model, args=args, train_dataset=as_dataset(pairs), processing_class=tokenizer
    )
    return _train(trainer, settings, callbacks)


def train_reward_model(
    settings: TrainerSettings, pairs: list[dict[str, Any]], callbacks: Sequence[Any] = ()
):
    """A one-logit sequence classifier on chosen vs rejected (TRL's RewardTrainer)."""
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
        model=model, args=args, train_dataset=as_dataset(pairs), processing_class=tokenizer
    )
    return _train(trainer, settings, callbacks)


def ppo_prompts(pairs, tokenizer, max_prompt_length: int):
    """PPO's dataset: each pair's prompt, chat-templated and tokenised (no padding yet), its
    last ``max_prompt_length`` tokens. ``pairs``: a list of dicts or a ``datasets.Dataset``
    (``launch.training_dataset``'s, backed by files): tokenised on the main process first,
    as TRL's other trainers do, so the other ranks read its cache (``Dataset.map``)."""
    from accelerate import PartialState

    dataset = as_dataset(pairs)

    def encode(pair):
        ids = tokenizer.apply_chat_template(
            pair["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False
        )
        return {"input_ids": list(ids)[-max_prompt_length:]}

    with PartialState().main_process_first():
        return dataset.map(encode, remove_columns=dataset.column_names,
                           desc="Tokenizing PPO prompts")


class PPOResumeError(RuntimeError):
    """A restarted PPO run whose saved checkpoints hold nothing it can resume from: going on
    from a saved policy alone would splice two runs."""


def train_ppo(
    settings: TrainerSettings,
    hyper: Mapping[str, Any],
    pairs: list[dict[str, Any]],
    reward_model_path: str,
    callbacks: Sequence[Any] = (),
):
    """PPO from the SFT policy, scored by the trained reward model, which also initialises
    the value model. Every checkpoint holds the policy; with ``save_only_model: false`` (the
    default) also what a resume reads, kept in the newest complete checkpoint only and in
    none once the run ends (``checkpoints.resume_state_callback``).

    A restart resumes from the newest complete checkpoint holding that state
    (``checkpoints.ppo_resume_problem``; one cut short while saving is skipped) and goes on
    as the uninterrupted run would have (on one CPU process bit for bit, see
    ``tests/unit/training/test_resume_state.py``):

    - the policy, and the value model from the checkpoint's ``value_model/``, not again
      from the reward model;
    - the optimizer of both, Adam's moments and step counts (``optimizer.pt``; under
      DeepSpeed the engine's own checkpoint, ``global_step*/``, which loads both models'
      parameters and the optimizer's partitions);
    - the warm-up and cosine schedule, built for the whole run's updates and loaded at its
      step (``scheduler.pt``); the loop runs the remaining updates;
    - step and episode numbers and the log history (``trainer_state.json``), so
      checkpoints keep their planned names;
    - the prompts: the pass over them that was under way is drawn again from the RNG state
      that shuffled it (``checkpoints.PPO_PROMPT_ORDER``) and its used batches skipped;
    - every process's RNG state (sampling, minibatch shuffles: ``rng_state*.pth``).

    Not continued: the logged throughput ``eps`` divides all the run's episodes by the time
    since the restart. On GPUs, non-deterministic kernels make the continuation
    statistically, not bitwise, the same.
    Checkpoints saved from other inputs (settings, data, SFT or reward model) never get
    here: ``launch.begin_run`` removes them before the job trains. Where no checkpoint
    holds resume state (a run that ended and runs again, or ``save_only_model: true``),
    the run starts over from the SFT policy, its old checkpoints removed first
    (``start_over``): going on from a saved policy alone, with a fresh value model,
    optimizer and schedule, is never done. A checkpoint saved by another number of
    processes, or for a run of another length, is refused: ``PPOResumeError``.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    output_dir = Path(settings.output_dir)
    start_step = newest_complete_step(output_dir, ppo=True)
    if start_step is None and saved_steps(output_dir):  # direct calls; launch.begin_run did
        start_over(output_dir)
    checkpoint = output_dir / f"checkpoint-{start_step}" if start_step else None
    # Arguments first: under accelerate + ZeRO-3 they make the models load partitioned.
    args = trl_config(
        PPOConfig,
        settings,
        total_episodes=round(settings.epochs * len(pairs)),  # the whole run, resumed or not
        response_length=hyper.get("max_response_length", 53),
        kl_coef=hyper["kl_coef"],
        temperature=hyper.get("temperature", 0.7),
        missing_eos_penalty=hyper.get("missing_eos_penalty"),
        stop_token="eos",
        num_sample_generations=0,
    )
    set_seed(settings.seed)  # PPOTrainer seeds torch alone; its minibatch shuffles use numpy
    model, _ = _policy(str(checkpoint) if checkpoint else settings.model_path, settings)
    ref_model, _ = _policy(settings.model_path, settings)
    tokenizer = AutoTokenizer.from_pretrained(settings.model_path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def scorer(path):
        scorer_model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, dtype=model_dtype(settings)
        )
        scorer_model.config.pad_token_id = tokenizer.pad_token_id
        return scorer_model

    trainer = _ppo_trainer_class(PPOTrainer)(
        args=args,
        processing_class=tokenizer,
        model=model,
        ref_model=ref_model,
        reward_model=scorer(reward_model_path),
        value_model=scorer(checkpoint / PPO_VALUE_MODEL if checkpoint else reward_model_path),
        train_dataset=ppo_prompts(pairs, tokenizer, settings.max_length),
    )
    trainer.add_callback(completion_marker_callback())
    trainer.add_callback(resume_state_callback())
    for callback in callbacks:
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=checkpoint)
    return trainer


def ppo_needs_start_over(output_dir: Path) -> bool:
    """True when a PPO run has saved checkpoints but none holds what a resume reads (a run
    that ended and runs again, or ``save_only_model: true``): it must start over."""
    return newest_complete_step(output_dir, ppo=True) is None and bool(saved_steps(output_dir))


def start_over(output_dir: Path) -> list[str]:
    """Remove a run's checkpoints before it trains again from its start, so no old
    checkpoint stays beside the new run's. Called before any training process starts
    (``launch.begin_run``); ``train_ppo`` called directly (one process) does it too.
    Raises OSError when a folder cannot be removed. Returns the removed folders' names."""
    import shutil

    forget_run_end(output_dir)
    removed = sorted(path.name for path in output_dir.glob("checkpoint-*"))
    for name in removed:
        shutil.rmtree(output_dir / name)
    if removed:
        print(f"{output_dir}: training from the start, its old {removed} removed", flush=True)
    return removed


def _cannot_resume(checkpoint: Path, problem: str) -> str:
    output_dir = checkpoint.parent
    return (
        f"PPO cannot resume {output_dir} from {checkpoint.name}: {problem}. Going on from it "
        "would splice two different runs, so nothing was trained. To train this run from "
        f"the start, delete {output_dir} and run again."
    )


def _ppo_trainer_class(ppo_trainer):
    """TRL's PPOTrainer, saving the policy correctly under DeepSpeed, and saving and
    resuming a whole run (``train_ppo``).

    TRL hands transformers' DeepSpeed save path the bare policy where it expects the
    engine, and every checkpoint save fails (``'LlamaConfig' object has no attribute
    'get'``; TRL 1.12, transformers 5.24). Here the engine's weights are gathered (ZeRO-3
    consolidates the shards on rank 0) and the policy's part saved on the main process.

    Without ``save_only_model`` a checkpoint also gets the value model (``value_model/``,
    from the same gathered weights under DeepSpeed) and the RNG state its pass over the
    prompts started from; transformers adds the optimizer, scheduler and RNG state (under
    DeepSpeed the engine's checkpoint). ``train(resume_from_checkpoint=...)`` loads them
    (the caller built the policy and value model from the checkpoint) and runs the
    remaining updates; TRL's ``train`` takes no checkpoint.
    """
    import json

    import torch

    class ResumablePPOTrainer(ppo_trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.dataloader = _PromptPasses(self.dataloader)

        def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
            output_dir = output_dir or self.args.output_dir
            # Trainer._save_checkpoint's call: the checkpoint keeps what a resume reads
            keep_value_model = _internal_call and not self.args.save_only_model
            if not self.is_deepspeed_enabled:
                super().save_model(output_dir, _internal_call)
                if keep_value_model and self.args.should_save:
                    value_model = self.accelerator.unwrap_model(self.model).value_model
                    value_model.save_pretrained(Path(output_dir) / PPO_VALUE_MODEL)
                return
            # Collective (every rank calls it); under ZeRO-3 only rank 0 gets the weights.
            state = self.accelerator.get_state_dict(self.deepspeed)
            if not self.args.should_save:
                return
            wrapper = self.accelerator.unwrap_model(self.deepspeed)
            parts = {"policy": Path(output_dir)}
            if keep_value_model:
                parts["value_model"] = Path(output_dir) / PPO_VALUE_MODEL
            for name, folder in parts.items():
                part = {key.removeprefix(f"{name}."): value
                        for key, value in state.items() if key.startswith(f"{name}.")}
                getattr(wrapper, name).save_pretrained(folder, state_dict=part)
            self.processing_class.save_pretrained(output_dir)

        def _save_rng_state(self, output_dir: str) -> None:
            super()._save_rng_state(output_dir)
            if self.args.should_save:
                torch.save({**self.dataloader.pass_start,
                            "processes": self.accelerator.num_processes},
                           Path(output_dir) / PPO_PROMPT_ORDER)

        def train(self, resume_from_checkpoint: str | Path | None = None):
            if resume_from_checkpoint is not None:
                self._resume(Path(resume_from_checkpoint))
            return super().train()

        def _resume(self, checkpoint: Path) -> None:
            saved = json.loads((checkpoint / "trainer_state.json").read_text())
            prompt_pass = torch.load(checkpoint / PPO_PROMPT_ORDER, weights_only=True)
            if saved["max_steps"] != self.args.num_total_batches:
                raise PPOResumeError(_cannot_resume(checkpoint, (
                    f"it was saved by a run of {saved['max_steps']} updates, this run has "
                    f"{self.args.num_total_batches} (its settings or data changed)")))
            if prompt_pass["processes"] != self.accelerator.num_processes:
                raise PPOResumeError(_cannot_resume(checkpoint, (
                    f"it was saved by {prompt_pass['processes']} processes, this run has "
                    f"{self.accelerator.num_processes} (each keeps its own shard of the "
                    "prompts and RNG state)")))
            if self.is_deepspeed_enabled:
                from transformers.integrations.deepspeed import deepspeed_load_checkpoint

                # the engine's module (policy and value model) and optimizer partitions
                deepspeed_load_checkpoint(self.model, str(checkpoint))
            else:
                self.optimizer.load_state_dict(torch.load(
                    checkpoint / "optimizer.pt", map_location="cpu", weights_only=True))
            self.lr_scheduler.load_state_dict(
                torch.load(checkpoint / "scheduler.pt", weights_only=True))
            # The schedule was built for the whole run; the loop runs what is left of it.
            self.args.num_total_batches -= saved["global_step"]
            # First, so every other callback sees the resumed step.
            self.callback_handler.callbacks.insert(0, _resumed_state_callback(saved))
            self.dataloader.replay(prompt_pass, updates=saved["global_step"])
            self._load_rng_state(str(checkpoint))  # after the replay, which draws from it

    return ResumablePPOTrainer


class _PromptPasses:
    """PPO's prompt loader, remembering the RNG state each pass over the prompts started
    from: on one process the pass's shuffle is drawn from torch's global RNG, on several
    from the loader's own generator (accelerate's ``synchronized_generator``), so a
    resumed run can draw the pass that was under way again (``replay``)."""

    def __init__(self, loader):
        self.loader = loader
        self.pass_start: dict[str, Any] | None = None
        self._replayed = None  # the replayed pass, part-way through

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if self._replayed is not None:
            replayed, self._replayed = self._replayed, None
            yield from replayed
            return
        self.pass_start = self._rng_state()
        yield from self.loader

    def _rng_state(self) -> dict[str, Any]:
        import torch

        generator = getattr(self.loader, "synchronized_generator", None)
        return {"cpu": torch.random.get_rng_state(),
                "generator": None if generator is None else generator.get_state()}

    def replay(self, pass_start: dict[str, Any], updates: int) -> None:
        """Start again the pass a run was in after ``updates`` updates (one batch each),
        from the RNG state it started from, and skip the batches it used: the next batch
        is the one the run would have taken next."""
        import torch

        passes, used = divmod(updates - 1, len(self.loader))
        torch.random.set_rng_state(pass_start["cpu"])
        generator = getattr(self.loader, "synchronized_generator", None)
        if generator is not None:
            generator.set_state(pass_start["generator"])
        if hasattr(self.loader, "iteration"):
            self.loader.iteration = passes  # accelerate's pass counter (set_epoch)
        self.pass_start = {key: pass_start[key] for key in ("cpu", "generator")}
        iterator = iter(self.loader)
        for _ in range(used + 1):
            next(iterator)
        self._replayed = iterator


def _resumed_state_callback(saved: Mapping[str, Any]):
    """Continue a resumed run's step and episode numbers, step count and log history (from
    its checkpoint's ``trainer_state.json``), so checkpoint names match the plan."""
    from transformers import TrainerCallback

    class ResumedState(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            state.global_step = saved["global_step"]
            state.episode = saved["episode"]
            state.max_steps += saved["global_step"]
            state.log_history = list(saved["log_history"])

    return ResumedState()
