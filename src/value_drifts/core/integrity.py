"""Checkpoint integrity: a digest of each checkpoint's weights, per shard, and what a
series of them says about stale or mislabelled checkpoints.

Public checkpoint series have shipped steps whose weights do not match their labels (the
EleutherAI/pythia issue tracker has several); no evaluation tool checks. Each generation
job records its checkpoint's shard digests with the answers (``DIGEST_COLUMN``,
``SHARDS_COLUMN``, carried into the judgments); ``values`` compares the checkpoints of a
trajectory and the drift table, its markdown table (in the report) and the logs name
every step whose weights equal another step's, share a shard with one, or equal the
start model's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from value_drifts.core.checkpoints import HASHED_WEIGHT_SUFFIXES, TRAINING_STATE_PREFIXES
from value_drifts.core.io import file_sha256, recorded_value

DIGEST_COLUMN = "weights_digest"
SHARDS_COLUMN = "weight_shards"


def weight_files(checkpoint: Path) -> list[Path]:
    """The model-weight files of a checkpoint folder (or the file itself), sorted."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_file():
        return [checkpoint]
    return sorted(
        path for path in checkpoint.iterdir()
        if path.is_file() and path.name.endswith(HASHED_WEIGHT_SUFFIXES)
        and not path.name.startswith(TRAINING_STATE_PREFIXES)
    )


def tensor_layout(checkpoint: Path) -> dict[str, tuple[str, tuple[int, ...]]] | None:
    """``{tensor name: (dtype, shape)}`` of a checkpoint's weights, read from its
    safetensors headers only (the format: 8-byte little-endian header length, then a JSON
    header); None when a weight file is not safetensors or a header is unreadable."""
    layout: dict[str, tuple[str, tuple[int, ...]]] = {}
    files = weight_files(checkpoint)
    if not files or any(path.suffix != ".safetensors" for path in files):
        return None
    for path in files:
        try:
            with path.open("rb") as stream:
                header = json.loads(stream.read(int.from_bytes(stream.read(8), "little")))
            layout.update({
                name: (str(tensor["dtype"]), tuple(int(n) for n in tensor["shape"]))
                for name, tensor in header.items() if name != "__metadata__"
            })
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
    return layout


def shard_digests(checkpoint: Path) -> dict[str, str]:
    """``{file name: "sha256:<hex>"}`` for every weight file of ``checkpoint`` (the
    judge cache's file digest, ``judge.local.file_sha256``). Raises FileNotFoundError
    when there is none."""
    files = weight_files(checkpoint)
    if not files:
        raise FileNotFoundError(f"{checkpoint}: no weight files ({', '.join(HASHED_WEIGHT_SUFFIXES)})")
    return {path.name: "sha256:" + file_sha256(path) for path in files}


def weights_digest(shards: Mapping[str, str]) -> str:
    """One digest for a checkpoint's weights: sha256 over its shard digests, by name."""
    text = json.dumps(sorted(shards.items()))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def integrity_notes(shards_by_step: Mapping[int, Mapping[str, str] | None]) -> dict[int, str]:
    """``{step: note}`` for the checkpoints of one trajectory (step 0 its start model)
    whose weights say they are not what their step claims: the same weights as an earlier
    step (or as the start model), or a shard identical to one of an earlier step. Steps
    without recorded digests (``None``: answers made before digests were recorded) are
    skipped. Steps with nothing to report are absent."""
    notes: dict[int, list[str]] = {}
    seen: list[tuple[int, Mapping[str, str], str]] = []
    for step in sorted(shards_by_step):
        shards = shards_by_step[step]
        if not shards:
            continue
        digest = weights_digest(shards)
        for earlier, earlier_shards, earlier_digest in seen:
            if digest == earlier_digest:
                what = "the start model (step 0)" if earlier == 0 else f"step {earlier}"
                notes.setdefault(step, []).append(f"step {step} has the same weights as {what}")
                break
            shared = sorted(set(shards.values()) & set(earlier_shards.values()))
            if shared:
                names = sorted(name for name, d in shards.items() if d in shared)
                notes.setdefault(step, []).append(
                    f"step {step} shares {', '.join(names)} with step {earlier}")
                break
        seen.append((step, shards, digest))
    return {step: "; ".join(items) for step, items in notes.items()}


def recorded_shards(frame, step_label: str = "") -> dict[str, str] | None:
    """The shard digests a generations or judgments table records (None when it has
    none). Raises ValueError when one table records two checkpoints."""
    shards = recorded_value(frame, SHARDS_COLUMN, f"checkpoints' weights ({step_label})")
    return json.loads(shards) if shards else None


def shard_columns(shards: Mapping[str, str]) -> dict[str, str]:
    """The two columns a generations table records: the combined digest and the shards."""
    return {DIGEST_COLUMN: weights_digest(shards),
            SHARDS_COLUMN: json.dumps(dict(sorted(shards.items())))}


def steps_with_notes(notes: Mapping[int, str]) -> Sequence[str]:
    """The notes as log lines, by step."""
    return [f"checkpoint integrity: {notes[step]}" for step in sorted(notes)]
