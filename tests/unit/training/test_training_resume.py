"""Preference training killed mid-way resumes from its last checkpoint and ends at the
planned step count (real TRL trainers on a tiny random model)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.tiny_model import build_tiny_model, support_pairs
from tests.support.workflow import REPO
from value_drifts.core.checkpoints import (
    COMPLETE_MARKER,
    checkpoint_steps,
    incomplete_reason,
    ppo_resume_problem,
    saved_steps,
)

pytestmark = pytest.mark.slow

N_PAIRS, BATCH, SAVE = 16, 4, 2  # 4 steps, checkpoints at 2 and 4


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.json"
    path.write_text(json.dumps(support_pairs(N_PAIRS)))
    return path


TRAIN_SCRIPT = f"""
import json, sys
from value_drifts.training.common import TrainerSettings
from value_drifts.training import preference_trainers
model, out, algorithm, pairs_path, reward = sys.argv[1:6]
settings = TrainerSettings(model_path=model, output_dir=out, learning_rate=1e-3,
    global_batch_size={BATCH}, per_device_batch_size={BATCH}, epochs=1, save_steps={SAVE},
    max_length=64, warmup_ratio=0.0, save_only_model=False)
pairs = json.load(open(pairs_path))
hyper = dict(beta=0.1, gamma=0.5, kl_coef=0.05, max_response_length=8, temperature=0.7)
if algorithm == "ppo":
    preference_trainers.train_ppo(settings, hyper, pairs, reward_model_path=reward)
elif algorithm == "reward":
    preference_trainers.train_reward_model(settings, pairs).save_model(out + "/final")
else:
    getattr(preference_trainers, "train_" + algorithm)(settings, hyper, pairs)
"""


def _train(args, kill_after_checkpoint=None, timeout=600):
    """Run a training in a subprocess; optionally SIGKILL it once a checkpoint is on disk."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, *map(str, args)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    if kill_after_checkpoint:
        while not (kill_after_checkpoint / "trainer_state.json").exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(0.5)  # let the checkpoint's last files land, as after a real preemption
        process.send_signal(signal.SIGKILL)
        process.wait()
        return
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output


def _global_step(checkpoint: Path) -> int:
    return json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]


@pytest.mark.parametrize("algorithm", ["dpo", "simpo"])
def test_killed_run_resumes_from_its_checkpoint(tmp_path, tiny_model, pairs_file, algorithm):
    out = tmp_path / "run"
    _train([tiny_model, out, algorithm, pairs_file, ""], kill_after_checkpoint=out / "checkpoint-2")
    assert saved_steps(out) == [2]
    first_checkpoint = (out / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns
    _train([tiny_model, out, algorithm, pairs_file, ""])
    assert saved_steps(out) == checkpoint_steps(N_PAIRS, BATCH, 1, SAVE) == [2, 4]
    assert _global_step(out / "checkpoint-4") == 4
    # resumed, not restarted: the first checkpoint was not written again
    assert (out / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns == first_checkpoint


def test_killed_ppo_run_resumes_from_its_last_complete_checkpoint_and_keeps_step_numbers(
    tmp_path, tiny_model, pairs_file
):
    """Killed after its first checkpoint and again while saving the next, PPO resumes from
    the complete one with its value model, optimizer and schedule
    (``test_resume_state.test_a_cut_ppo_run_resumes_its_value_model_optimizer_and_schedule``
    checks what continues)."""
    reward_dir = tmp_path / "reward"
    _train([tiny_model, reward_dir, "reward", pairs_file, ""])
    out = tmp_path / "ppo"
    args = [tiny_model, out, "ppo", pairs_file, reward_dir / "final"]
    _train(args, kill_after_checkpoint=out / "checkpoint-2")
    assert saved_steps(out) == [2]
    assert (out / "checkpoint-2" / COMPLETE_MARKER).is_file()
    assert ppo_resume_problem(out / "checkpoint-2") is None
    first_checkpoint = (out / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns
    # As if killed while saving checkpoint-4: its config written, its weights cut short.
    half = out / "checkpoint-4"
    half.mkdir()
    shutil.copy(out / "checkpoint-2" / "config.json", half)
    weights = (out / "checkpoint-2" / "model.safetensors").read_bytes()
    (half / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    assert incomplete_reason(half).startswith("model.safetensors is truncated")
    _train(args)
    assert saved_steps(out) == checkpoint_steps(N_PAIRS, BATCH, 1, SAVE, ppo=True) == [2, 4]
    assert _global_step(out / "checkpoint-4") == 4
    assert incomplete_reason(out / "checkpoint-4") is None
    assert (out / "checkpoint-4" / COMPLETE_MARKER).is_file()
    # resumed from checkpoint-2, which was not written again
    assert (out / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns == first_checkpoint
