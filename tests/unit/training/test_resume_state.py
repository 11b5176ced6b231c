"""DPO, SimPO, the reward model and SFT resume a cut run with its optimizer, scheduler and
RNG state (the default ``save_only_model: false``), PPO also with its value model and its
place in the prompts, while only the newest complete checkpoint keeps that state, and none
once the run ends (real TRL trainers, in-process, on a tiny random model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.tiny_model import build_tiny_model, support_pairs
from value_drifts.core.checkpoints import (
    COMPLETE_MARKER,
    DELETED_MARKER,
    KEPT_ANSWERS,
    PPO_PROMPT_ORDER,
    PPO_VALUE_MODEL,
    RESUME_STATE_PREFIXES,
    TRAINING_STATE_PREFIXES,
    checkpoint_steps,
    delete_checkpoint_weights,
    ended_steps,
    incomplete_reason,
    newest_complete_step,
    optimizer_state_problem,
    ppo_resume_problem,
    prune_resume_state,
    resumable_checkpoint,
    resume_state_files,
    saved_steps,
    strip_training_state,
    write_completion_marker,
)
from value_drifts.training.common import TrainerSettings

N_PAIRS, BATCH, SAVE = 16, 4, 2  # 4 steps, checkpoints at 2 and 4


# ---- stripping and pruning, on checkpoint folders as the HF Trainer and DeepSpeed write them


def _checkpoint(path: Path, deepspeed: bool = False, weights: bool = True,
                ppo: bool = False) -> Path:
    names = ["config.json", "tokenizer.json", "trainer_state.json", "training_args.bin",
             "scheduler.pt", "rng_state.pth"]
    names += ["model.safetensors"] if weights else []
    names += [PPO_PROMPT_ORDER, f"{PPO_VALUE_MODEL}/config.json",
              f"{PPO_VALUE_MODEL}/model.safetensors"] if ppo else []
    names += ["latest", "zero_to_fp32.py", "global_step2/zero_pp_rank_0_mp_rank_00_optim_states.pt",
              "global_step2/mp_rank_00_model_states.pt"] if deepspeed else ["optimizer.pt"]
    for name in names:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("{}" if name.endswith(".json") else "global_step2"
                                 if name == "latest" else "x")
    return path


def test_resume_state_is_what_only_a_resume_reads():
    assert set(RESUME_STATE_PREFIXES) < set(TRAINING_STATE_PREFIXES)


@pytest.mark.parametrize("deepspeed", [False, True])
def test_stripping_keeps_the_model_and_a_complete_marker(tmp_path, deepspeed):
    path = _checkpoint(tmp_path / "checkpoint-2", deepspeed)
    write_completion_marker(path)
    assert incomplete_reason(path) is None
    removed = strip_training_state(path)
    assert removed[0] == ("latest" if deepspeed else "optimizer.pt")  # what a resume looks for first
    assert {"scheduler.pt", "rng_state.pth"} <= set(removed)
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [COMPLETE_MARKER, "config.json", "model.safetensors", "tokenizer.json",
         "trainer_state.json", "training_args.bin"])
    assert incomplete_reason(path) is None  # the marker was rewritten without them
    assert optimizer_state_problem(path) is not None
    assert strip_training_state(path) == []  # idempotent


@pytest.mark.gpu_path
@pytest.mark.parametrize("deepspeed", [False, True])
def test_ppo_value_model_and_prompt_pass_are_resume_state(tmp_path, deepspeed):
    """PPO's value model folder and prompt-pass RNG state go with the rest of the resume
    state, after what a resume looks for first; neither is hashed as the checkpoint's
    weights, and deleting the weights after generation takes the value model too."""
    from value_drifts.core.integrity import weight_files

    path = _checkpoint(tmp_path / "checkpoint-2", deepspeed, ppo=True)
    items = [item.name for item in resume_state_files(path)]
    assert items[0] == ("latest" if deepspeed else "optimizer.pt")
    assert {PPO_PROMPT_ORDER, PPO_VALUE_MODEL} <= set(items)
    assert items.index(PPO_VALUE_MODEL) > items.index("scheduler.pt")
    assert [p.name for p in weight_files(path)] == ["model.safetensors"]
    write_completion_marker(path)
    removed = strip_training_state(path)
    assert {PPO_PROMPT_ORDER, PPO_VALUE_MODEL} <= set(removed)
    assert not (path / PPO_VALUE_MODEL).exists() and incomplete_reason(path) is None

    kept = _checkpoint(tmp_path / "checkpoint-4", deepspeed, ppo=True)
    assert PPO_VALUE_MODEL in delete_checkpoint_weights(kept)
    assert not (kept / PPO_VALUE_MODEL).exists()


@pytest.mark.gpu_path
def test_ppo_resume_needs_its_value_model_scheduler_and_prompt_pass(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "checkpoint-2"
    path.mkdir()
    (path / "trainer_state.json").write_text("{}")
    assert ppo_resume_problem(path) == "it has no optimizer state (saved with save_only_model)"
    torch.save({}, path / "optimizer.pt")
    assert ppo_resume_problem(path) == "it has no scheduler.pt"
    torch.save({}, path / "scheduler.pt")
    assert ppo_resume_problem(path) == f"it has no {PPO_PROMPT_ORDER}"
    torch.save({}, path / PPO_PROMPT_ORDER)
    assert ppo_resume_problem(path) == f"it has no value model ({PPO_VALUE_MODEL}/)"
    value = path / PPO_VALUE_MODEL
    value.mkdir()
    (value / "config.json").write_text("{}")
    save_file({"score.weight": torch.zeros(1, 4)}, value / "model.safetensors")
    assert ppo_resume_problem(path) is None
    (value / "model.safetensors").write_bytes((value / "model.safetensors").read_bytes()[:-3])
    assert "value model (value_model/) is incomplete: model.safetensors is truncated" in (
        ppo_resume_problem(path))


def test_zero3_shards_without_gathered_weights_are_the_model_and_stay(tmp_path):
    path = _checkpoint(tmp_path / "checkpoint-2", deepspeed=True, weights=False)
    strip_training_state(path)
    assert (path / "global_step2").is_dir() and not (path / "latest").exists()


def test_older_checkpoints_lose_their_state_once_a_newer_one_is_resumable(tmp_path):
    for step in (2, 4):
        write_completion_marker(_checkpoint(tmp_path / f"checkpoint-{step}"))
    (tmp_path / "checkpoint-6").mkdir()  # a save cut short: never the newest to keep
    (tmp_path / "checkpoint-6" / "config.json").write_text("{}")
    assert prune_resume_state(tmp_path, 6) == {}
    assert resume_state_files(tmp_path / "checkpoint-2")
    (tmp_path / "checkpoint-4" / "optimizer.pt").write_text("not a torch archive")
    assert prune_resume_state(tmp_path, 4) == {}  # the newest cannot resume: keep the older
    import torch

    torch.save({}, tmp_path / "checkpoint-4" / "optimizer.pt")
    write_completion_marker(tmp_path / "checkpoint-4")
    assert list(prune_resume_state(tmp_path, 4)) == [2]
    assert resume_state_files(tmp_path / "checkpoint-2") == []
    assert resumable_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")


# ---- real trainers: cut after the first checkpoint, resumed, stripped at the end --------


class Cut(Exception):
    """A preemption after the first checkpoint."""


def _callbacks(record: dict, cut: bool):
    from transformers import TrainerCallback

    class Observe(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):
            steps = [int(s["step"]) for s in optimizer.state.values() if "step" in s]
            record["begin"] = (state.global_step, lr_scheduler.last_epoch, max(steps, default=0),
                               lr_scheduler.get_last_lr()[0])

        def on_save(self, args, state, control, **kwargs):
            out = Path(args.output_dir)
            record.setdefault("saved", []).append(
                {step: bool(resume_state_files(out / f"checkpoint-{step}"))
                 for step in saved_steps(out)})
            if cut:
                raise Cut(f"cut after step {state.global_step}")

    return [Observe()]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _run(task: str, model: Path, out: Path, callbacks):
    from value_drifts.training import preference_trainers
    from value_drifts.training.sft import train_sft

    # save_only_model left to its default: checkpoints are resumable
    settings = TrainerSettings(
        model_path=str(model), output_dir=str(out), learning_rate=1e-3, global_batch_size=BATCH,
        per_device_batch_size=BATCH, epochs=1, save_steps=SAVE, max_length=64,
        warmup_ratio=0.0)  # fmt: skip
    pairs = support_pairs(N_PAIRS)
    if task == "sft":
        rows = [{"messages": [{"role": "user", "content": p["prompt"][0]["content"]},
                              p["chosen"][0]]} for p in pairs]  # fmt: skip
        return _sft_with_callbacks(settings, rows, callbacks, train_sft)
    if task == "reward":
        return preference_trainers.train_reward_model(settings, pairs, callbacks=callbacks)
    train = getattr(preference_trainers, f"train_{task}")
    return train(settings, {"beta": 0.1, "gamma": 0.5}, pairs, callbacks=callbacks)


def _sft_with_callbacks(settings, rows, callbacks, train_sft):
    """train_sft takes no callbacks: add them to every SFTTrainer it builds."""
    import trl

    class Observed(trl.SFTTrainer):
        def __init__(self, *args, **kwargs):
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), *callbacks]
            super().__init__(*args, **kwargs)

    original, trl.SFTTrainer = trl.SFTTrainer, Observed
    try:
        return train_sft(settings, rows)
    finally:
        trl.SFTTrainer = original


@pytest.mark.gpu_path
@pytest.mark.parametrize("task", ["dpo", "simpo", "reward", "sft"])
def test_a_cut_run_resumes_its_optimizer_and_ends_without_resume_state(tmp_path, tiny_model, task):
    out = tmp_path / "run"
    first: dict = {}
    with pytest.raises(Cut):
        _run(task, tiny_model, out, _callbacks(first, cut=True))
    assert first["begin"][:3] == (0, 0, 0)  # a fresh start
    assert first["saved"] == [{2: True}]  # cut with checkpoint-2 resumable
    assert resumable_checkpoint(out) == str(out / "checkpoint-2")
    assert ended_steps(out) is None  # cut mid-way: its training did not end

    second: dict = {}
    _run(task, tiny_model, out, _callbacks(second, cut=False))
    step, scheduler_step, adam_step, lr = second["begin"]
    # resumed at step 2 with the optimizer's and the scheduler's state, not restarted
    assert (step, scheduler_step, adam_step) == (2, 2, 2)
    assert lr < 1e-3  # the cosine schedule goes on from step 2
    # once checkpoint-4 was complete, checkpoint-2 had lost its resume state
    assert second["saved"] == [{2: False, 4: True}]
    # the run ended: no checkpoint keeps any, and each is a complete model
    assert saved_steps(out) == [2, 4]
    for checkpoint in (out / "checkpoint-2", out / "checkpoint-4"):
        assert resume_state_files(checkpoint) == []
        assert not list(checkpoint.glob("optimizer*")) and not list(checkpoint.glob("global_step*"))
        assert incomplete_reason(checkpoint) is None
        assert (checkpoint / "config.json").is_file() and (checkpoint / "tokenizer_config.json").is_file()
    assert json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4
    assert resumable_checkpoint(out) is None
    assert ended_steps(out) == [2, 4]  # recorded, so a cut job does not train it again


@pytest.mark.gpu_path
def test_a_job_cut_after_its_run_ended_trains_nothing_again(tmp_path, tiny_model, capsys):
    """The real job (``launch.run_training``, in-process): a run that ended, its job cut
    before the workflow recorded it, half-way through stripping (the last checkpoint
    still holds its optimizer state), is finished, not trained again: every checkpoint
    file but that state is byte for byte and time for time as it was."""
    import polars as pl

    from value_drifts.training.launch import TrainingJob, run_training

    pairs = support_pairs(N_PAIRS)
    data = tmp_path / "sft.parquet"
    pl.DataFrame({"messages": [[{"role": "user", "content": p["prompt"][0]["content"]},
                                p["chosen"][0]] for p in pairs]}).write_parquet(data)  # fmt: skip
    out = tmp_path / "run"
    settings = TrainerSettings(
        model_path=str(tiny_model), output_dir=str(out), learning_rate=1e-3,
        global_batch_size=BATCH, per_device_batch_size=BATCH, epochs=1, save_steps=SAVE,
        max_length=64, warmup_ratio=0.0)  # fmt: skip
    job = TrainingJob(task="sft", settings=settings, data=str(data))
    run_training(job, 0, None)
    assert ended_steps(out) == [2, 4]
    (out / "checkpoint-4" / "optimizer.pt").write_bytes(b"left by a strip cut short")
    write_completion_marker(out / "checkpoint-4")
    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("checkpoint-*/*")
             if p.is_file() and p.name not in ("optimizer.pt", COMPLETE_MARKER)}  # fmt: skip
    capsys.readouterr()
    run_training(job, 0, None)
    assert "its training ended in an earlier attempt" in capsys.readouterr().out
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == files
    assert not (out / "checkpoint-4" / "optimizer.pt").exists()
    assert incomplete_reason(out / "checkpoint-4") is None

    # Generation then deleted step 2's weights, keeping its answers beside them; its
    # training runs again (docs/cluster.md: to generate from it after a settings change).
    # It starts over, old folders removed first, so the new checkpoint-2 is whole: not
    # read as deleted, no old answers beside the new weights.
    weights = (out / "checkpoint-2" / "model.safetensors").read_bytes()
    (out / "checkpoint-2" / KEPT_ANSWERS).write_bytes(b"answers of the old weights")
    delete_checkpoint_weights(out / "checkpoint-2")
    run_training(job, 0, None)
    assert "training from the start" in capsys.readouterr().out
    assert incomplete_reason(out / "checkpoint-2") is None
    assert not (out / "checkpoint-2" / DELETED_MARKER).exists()
    assert not (out / "checkpoint-2" / KEPT_ANSWERS).exists()
    assert (out / "checkpoint-2" / "model.safetensors").read_bytes() == weights  # one CPU
    assert ended_steps(out) == [2, 4]


# ---- PPO: cut mid-way through its second pass over the prompts, resumed ----------------

PPO_PROMPTS, PPO_EPOCHS, PPO_SAVE = 12, 2, 4  # 3 batches of 4 per pass: 6 updates, saves at 4, 6
PPO_HYPER = {"kl_coef": 0.05, "max_response_length": 6, "temperature": 0.7}


@pytest.fixture(scope="module")
def scorer_model(tmp_path_factory, tiny_model):
    """A one-logit scorer on the tiny model (its head drawn at random): PPO's reward model,
    and the value model's start."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    path = tmp_path_factory.mktemp("scorer") / "model"
    model.save_pretrained(path)
    return path


def _ppo(model: Path, scorer: Path, out: Path, callbacks=(), epochs: float = PPO_EPOCHS):
    from value_drifts.training.preference_trainers import train_ppo

    # save_only_model left to its default: checkpoints are resumable
    settings = TrainerSettings(
        model_path=str(model), output_dir=str(out), learning_rate=1e-3, global_batch_size=BATCH,
        per_device_batch_size=BATCH, epochs=epochs, save_steps=PPO_SAVE, max_length=64,
        warmup_ratio=0.0)  # fmt: skip
    return train_ppo(settings, PPO_HYPER, support_pairs(PPO_PROMPTS), str(scorer),
                     callbacks=callbacks)


def _ppo_callbacks(record: dict, cut: bool):
    """Record the value model, optimizer and scheduler when training begins and at each
    save; with ``cut``, stop after the first save, as a preemption would."""
    import copy

    from transformers import TrainerCallback

    def snapshot(state, model, optimizer, lr_scheduler):
        return {"step": state.global_step, "max_steps": state.max_steps,
                "value_model": copy.deepcopy(model.value_model.state_dict()),
                "optimizer": copy.deepcopy(optimizer.state_dict()),
                "scheduler_step": lr_scheduler.last_epoch}  # fmt: skip

    class Observe(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None,
                           lr_scheduler=None, **kwargs):
            record["begin"] = snapshot(state, model, optimizer, lr_scheduler)

        def on_save(self, args, state, control, model=None, optimizer=None,
                    lr_scheduler=None, **kwargs):
            out = Path(args.output_dir)
            record.setdefault("saved", []).append(
                snapshot(state, model, optimizer, lr_scheduler)
                | {"resume_state": {step: sorted(p.name for p in
                                                 resume_state_files(out / f"checkpoint-{step}"))
                                    for step in saved_steps(out)}})  # fmt: skip
            if cut:
                raise Cut(f"cut after step {state.global_step}")

    return [Observe()]


def _equal_states(a: dict, b: dict) -> bool:
    import torch

    if a.keys() != b.keys():
        return False
    return all(_equal_states(a[k], b[k]) if isinstance(a[k], dict)
               else torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor)
               else a[k] == b[k] for k in a)  # fmt: skip


def _learning_rates(checkpoint: Path) -> list[tuple[int, float]]:
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return [(entry["step"], entry["lr"]) for entry in history if "lr" in entry]


@pytest.mark.slow
@pytest.mark.gpu_path
def test_a_cut_ppo_run_resumes_its_value_model_optimizer_and_schedule(
    tmp_path, tiny_model, scorer_model
):
    """Cut after its step-4 checkpoint (one batch into its second pass over the prompts),
    a PPO run resumes with the saved value model (not the reward model again), Adam's
    state, the cosine schedule of the whole run and its place in the prompts and RNG
    streams: on one CPU process it ends bit for bit where the uninterrupted run ends."""
    import torch
    from safetensors.torch import load_file

    from value_drifts.training.preference_trainers import PPOResumeError

    assert checkpoint_steps(PPO_PROMPTS, BATCH, PPO_EPOCHS, PPO_SAVE, ppo=True) == [4, 6]
    whole = _ppo(tiny_model, scorer_model, tmp_path / "whole")
    assert ended_steps(tmp_path / "whole") == [4, 6]

    out = tmp_path / "run"
    first: dict = {}
    with pytest.raises(Cut):
        _ppo(tiny_model, scorer_model, out, _ppo_callbacks(first, cut=True))
    saved = first["saved"][0]
    assert saved["step"] == 4 and saved["max_steps"] == 6
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", PPO_PROMPT_ORDER,
            PPO_VALUE_MODEL} <= set(saved["resume_state"][4])  # fmt: skip
    assert newest_complete_step(out, ppo=True) == 4
    assert ended_steps(out) is None

    # A run of another length (settings changed) is refused before it trains.
    with pytest.raises(PPOResumeError, match="saved by a run of 6 updates, this run has 3"):
        _ppo(tiny_model, scorer_model, out, epochs=1)

    second: dict = {}
    resumed = _ppo(tiny_model, scorer_model, out, _ppo_callbacks(second, cut=False))
    begin = second["begin"]
    # step numbering, the value model and the optimizer go on from the checkpoint
    assert (begin["step"], begin["max_steps"], begin["scheduler_step"]) == (4, 6, 4)
    assert _equal_states(begin["value_model"], saved["value_model"])
    reward = load_file(scorer_model / "model.safetensors")
    assert not torch.equal(begin["value_model"]["score.weight"], reward["score.weight"])
    assert _equal_states(begin["optimizer"], saved["optimizer"])
    adam_steps = {int(s["step"]) for s in begin["optimizer"]["state"].values()}
    assert adam_steps == {4 * 4}  # 4 updates × 4 PPO epochs of one minibatch each
    # once checkpoint-6 was complete, checkpoint-4 had lost its resume state
    assert second["saved"][0]["resume_state"][4] == []

    # The cosine schedule went on (one rebuilt for the 2 updates left would give steps 5
    # and 6 1e-3 and 5e-4), the log history was kept, and the run ends where the
    # uninterrupted one does.
    rates = _learning_rates(out / "checkpoint-6")
    assert rates == _learning_rates(tmp_path / "whole" / "checkpoint-6")
    assert [step for step, _ in rates] == [1, 2, 3, 4, 5, 6]
    assert rates[4][1] == pytest.approx(2.5e-4)
    for step in (4, 6):
        assert _equal_states(load_file(out / f"checkpoint-{step}" / "model.safetensors"),
                             load_file(tmp_path / "whole" / f"checkpoint-{step}" /
                                       "model.safetensors"))  # fmt: skip
    assert _equal_states(resumed.model.value_model.state_dict(),
                         whole.model.value_model.state_dict())

    # The run ended: no checkpoint keeps resume state. Run again (an input changed), it is
    # never spliced onto a saved policy: it starts over, its old checkpoints removed first,
    # and trains the whole run again (here, the same inputs: the same weights).
    for step in (4, 6):
        assert resume_state_files(out / f"checkpoint-{step}") == []
        assert incomplete_reason(out / f"checkpoint-{step}") is None
    (out / "checkpoint-6" / "left-from-the-old-run").write_text("")
    third: dict = {}
    _ppo(tiny_model, scorer_model, out, _ppo_callbacks(third, cut=False))
    assert (third["begin"]["step"], third["begin"]["scheduler_step"]) == (0, 0)
    assert not (out / "checkpoint-6" / "left-from-the-old-run").exists()
    assert _learning_rates(out / "checkpoint-6") == _learning_rates(
        tmp_path / "whole" / "checkpoint-6")
    assert _equal_states(load_file(out / "checkpoint-6" / "model.safetensors"),
                         load_file(tmp_path / "whole" / "checkpoint-6" / "model.safetensors"))


# ---- recorded settings: save_only_model is a throughput key -----------------------------


def test_save_only_model_reruns_nothing_and_an_earlier_record_stays_current(tmp_path):
    """It changes what a checkpoint holds besides its weights, never the weights: editing
    it reruns no training, and a settings file recorded while it was an output setting
    (the small default's SFT records ``save_only_model: true``) stays current, its digest
    and time unchanged."""
    from value_drifts.core.job_settings import (
        THROUGHPUT_KEYS,
        output_settings,
        record_settings,
        recorded_digest,
    )

    assert "save_only_model" in THROUGHPUT_KEYS
    trainer = {"learning_rate": 1e-4, "epochs": 1, "save_only_model": True}
    path = tmp_path / "training" / "m" / "sft-taskish.json"
    record_settings(path, {"trainer": trainer, "seed": 0})  # as recorded before
    before, digest = path.read_bytes(), recorded_digest(path)
    for value in (True, False):
        current = output_settings({"trainer": {**trainer, "save_only_model": value}, "seed": 0})
        assert "save_only_model" not in current["trainer"]
        record_settings(path, current, now=1000.0)
        assert path.read_bytes() == before and path.stat().st_mtime == 0
        assert recorded_digest(path) == digest
    record_settings(path, output_settings({"trainer": {**trainer, "epochs": 2}, "seed": 0}),
                    now=2000.0)
    assert path.stat().st_mtime == 2000.0  # an output setting still reruns it
