"""Checkpoint steps, computed from config so the workflow's DAG is known before training."""

from __future__ import annotations

import math
import re
from pathlib import Path

CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


def total_steps(n_examples: int, global_batch_size: int, epochs: float) -> int:
    """Optimizer steps for a run, as the HF Trainer counts them (last partial batch kept)."""
    if n_examples <= 0 or global_batch_size <= 0 or epochs <= 0:
        raise ValueError("examples, batch size and epochs must be positive")
    return math.ceil(math.ceil(n_examples / global_batch_size) * epochs)


def ppo_total_steps(n_prompts: int, global_batch_size: int, epochs: float) -> int:
    """PPO updates as TRL's PPOTrainer counts them: episodes = epochs × prompts, one
    update per global batch of episodes (so epochs need not align with batches)."""
    if n_prompts <= 0 or global_batch_size <= 0 or epochs <= 0:
        raise ValueError("prompts, batch size and epochs must be positive")
    return math.ceil(round(epochs * n_prompts) / global_batch_size)


def checkpoint_steps(
    n_examples: int, global_batch_size: int, epochs: float, save_steps: int, ppo: bool = False
) -> list[int]:
    """Steps at which the trainer saves: every ``save_steps`` and always the last step."""
    count = ppo_total_steps if ppo else total_steps
    last = count(n_examples, global_batch_size, epochs)
    steps = list(range(save_steps, last + 1, save_steps))
    if not steps or steps[-1] != last:
        steps.append(last)
    return steps


def saved_steps(output_dir: Path) -> list[int]:
    """Steps of the checkpoint directories present in ``output_dir``."""
    if not output_dir.is_dir():
        return []
    return sorted(
        int(m.group(1)) for p in output_dir.iterdir() if (m := CHECKPOINT_DIR.match(p.name))
    )


def resumable_checkpoint(output_dir: Path) -> str | None:
    """Newest checkpoint that holds optimizer and trainer state, or None to start afresh.

    A checkpoint saved with ``save_only_model`` (or cut short by a crash) cannot resume
    training, so it is skipped rather than trusted.
    """
    for step in reversed(saved_steps(output_dir)):
        path = output_dir / f"checkpoint-{step}"
        if (path / "trainer_state.json").is_file() and (path / "optimizer.pt").is_file():
            return str(path)
    return None
