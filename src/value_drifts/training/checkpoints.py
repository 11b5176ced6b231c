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

    The optimizer state is ``optimizer.pt`` from a single process, or DeepSpeed's
    ``global_step*/`` shards under accelerate (the trainer writes ``trainer_state.json``
    after either, so its presence means the save finished). A checkpoint saved with
    ``save_only_model``, cut short by a crash or whose weights were deleted after
    generation cannot resume training, so it is skipped rather than trusted.
    """
    for step in reversed(saved_steps(output_dir)):
        path = output_dir / f"checkpoint-{step}"
        optimizer = (path / "optimizer.pt").is_file() or any(path.glob("global_step*/"))
        if (path / "trainer_state.json").is_file() and optimizer:
            return str(path)
    return None


# What a checkpoint holds besides its config and tokenizer: model weights, optimizer,
# scheduler and RNG state, DeepSpeed shards.
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "global_step*")
DELETED_MARKER = "weights_deleted.json"


def keeps_weights(run: str, step: int, last_step: int, base_run: str = "base") -> bool:
    """Whether a checkpoint's weights stay after its generations exist: the base model,
    and each run's final checkpoint (the final SFT model starts preference optimisation)."""
    return run == base_run or step == last_step


def delete_checkpoint_weights(path: Path) -> list[str]:
    """Delete a checkpoint's weight files and DeepSpeed shards, keeping its config,
    tokenizer and trainer state; record what went in ``weights_deleted.json``. Returns
    the deleted names (none when already deleted)."""
    import json
    import shutil

    deleted, freed = [], 0
    for pattern in WEIGHT_PATTERNS:
        for item in sorted(path.glob(pattern)):
            if item.is_dir():
                freed += sum(f.stat().st_size for f in item.rglob("*") if f.is_file())
                shutil.rmtree(item)
            else:
                freed += item.stat().st_size
                item.unlink()
            deleted.append(item.name)
    if deleted:
        marker = path / DELETED_MARKER
        previous = json.loads(marker.read_text()) if marker.is_file() else {"deleted": []}
        marker.write_text(json.dumps(
            {"deleted": previous["deleted"] + deleted, "bytes_freed": previous.get("bytes_freed", 0) + freed}, indent=1
        ))
    return deleted


class WeightsDeletedError(FileNotFoundError):
    """A checkpoint's weights went after its generations were written; it cannot generate."""


def require_weights(path: Path) -> None:
    """Raise a clear error for a checkpoint whose weights were deleted, rather than the
    library's 'no file named model.safetensors' (a rerun of its generation, e.g. after a
    change of sampling settings, needs the training run again)."""
    marker = Path(path) / DELETED_MARKER
    if marker.is_file():
        raise WeightsDeletedError(
            f"{path} has no weights: they were deleted once its generations existed "
            f"(generation.delete_checkpoint_weights; see {marker}). To generate from it "
            "again, rerun its training, e.g. snakemake --forcerun <its training.json>"
        )
