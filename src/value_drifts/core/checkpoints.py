"""Checkpoint steps, computed from config so the workflow's DAG is known before training;
which saved checkpoints are complete, and where a restarted run picks up."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import zipfile
from collections.abc import Collection
from pathlib import Path

from value_drifts.core.io import write_json
from value_drifts.core.job_settings import SETTINGS_COLUMN

log = logging.getLogger(__name__)

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


# ---- which files of a checkpoint folder are which: three lists, three purposes ----------
# PPO's resume state besides the HF Trainer's: the value model (a model folder inside the
# checkpoint) and the RNG state its current pass over the prompts started from, which drew
# that pass's shuffle (training.preference_trainers.train_ppo).
PPO_VALUE_MODEL = "value_model"
PPO_PROMPT_ORDER = "rng_state_prompt_pass.pth"
# What deleting a checkpoint's weights removes (delete_checkpoint_weights): everything it
# holds besides its config and tokenizer: model weights, optimizer, scheduler and RNG
# state, DeepSpeed shards, PPO's value model.
DELETED_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "global_step*",
                           PPO_VALUE_MODEL)
# What a loader reads (incomplete_reason checks them): the weights transformers loads from a
# folder, in the order it looks for them (modeling_utils: SAFE_WEIGHTS_NAME,
# SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME), and PEFT's adapter weights.
LOADED_MODEL_WEIGHTS = (
    "model.safetensors", "model.safetensors.index.json",
    "pytorch_model.bin", "pytorch_model.bin.index.json",
)
LOADED_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# What integrity hashes (core.integrity.weight_files): files holding a model's weights, full
# models (one file or shards), PEFT adapters, GGUF; files named with a training-state prefix
# (optimizer, scheduler and RNG state; DeepSpeed's global_step* folders and PPO's
# value_model/ are not files) are not the model and are left out, here and from a local
# judge's identity (judge.local.model_files).
HASHED_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
TRAINING_STATE_PREFIXES = ("optimizer", "scheduler", "rng_state", "training_args", "trainer_state")

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
    for pattern in DELETED_WEIGHT_PATTERNS:
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
        record = {"deleted": previous["deleted"] + deleted,
                  "bytes_freed": previous.get("bytes_freed", 0) + freed}
        marker.write_text(json.dumps(record, indent=1))
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
            f"again, rerun its training: remove the run's folder {Path(path).parent} and "
            "run the workflow again"
        )


# A copy of a checkpoint's answers, kept in the checkpoint folder when its weights go. The
# workflow's own copy (results/.../generations.parquet) is removed by Snakemake whenever
# the job reruns; this one never is, so a rerun can put the answers back (same settings)
# or fail without losing them (other settings).
KEPT_ANSWERS = "generations.parquet"


def weights_deleted(path: Path) -> bool:
    """Whether ``path`` is a checkpoint whose weights went after generation."""
    return (Path(path) / DELETED_MARKER).is_file()


def kept_answers(path: Path, digest: str) -> Path | None:
    """The answers kept beside a checkpoint whose weights went, when they were made with
    the settings of ``digest``; else None."""
    import polars as pl

    kept = Path(path) / KEPT_ANSWERS
    if not kept.is_file():
        return None
    recorded = pl.read_parquet_schema(kept)
    if SETTINGS_COLUMN not in recorded:
        return None
    digests = pl.read_parquet(kept, columns=[SETTINGS_COLUMN])[SETTINGS_COLUMN].unique()
    return kept if digests.to_list() == [digest] else None


def lost_answers_reason(
    checkpoint: Path, output: Path, inputs: list[Path], digest: str,
    upstream: str | None = None,
) -> str | None:
    """Why regenerating the answers ``output`` of ``checkpoint`` is impossible without
    losing them, or None. The reason is given when the checkpoint's weights are gone and
    an input will be rebuilt first (``upstream``, see ``upstream_change``), or no kept copy
    was made from the current settings and questions (``digest``,
    ``job_settings.answers_digest``) and the answers are missing or older than one of
    ``inputs`` (the job would rerun: Snakemake's mtime rule)."""
    if not weights_deleted(checkpoint):
        return None
    if upstream:
        return f"its inputs will change first: {upstream}"
    if kept_answers(checkpoint, digest) is not None:
        return None
    output = Path(output)
    if not output.exists():
        return "its answers are missing"
    newer = [str(p) for p in inputs if input_changed(p, output)]
    if newer:
        return f"its answers are older than {', '.join(newer)}"
    return None


# Snakemake's own record of each output (its file persistence): the checksums of the small
# inputs the output was made from, which its mtime rule compares before rerunning a job.
SNAKEMAKE_METADATA = Path(".snakemake/metadata")


def recorded_input_checksum(output: str | Path, source: str | Path,
                            metadata: Path = SNAKEMAKE_METADATA) -> str | None:
    """The sha256 (hex) Snakemake recorded for input ``source`` when it made ``output``
    (``.snakemake/metadata/<urlsafe base64 of the path>``, ``input_checksums``); None
    without a record."""
    from base64 import urlsafe_b64encode

    name = urlsafe_b64encode(str(output).encode()).decode()
    parts = [name[i:i + 254] for i in range(0, len(name), 254)]  # as Snakemake splits it
    record = Path(metadata, *["@" + part for part in parts[:-1]], parts[-1])
    try:
        checksums = json.loads(record.read_text()).get("input_checksums") or {}
    except (OSError, ValueError, AttributeError):
        return None
    value = checksums.get(str(source))
    return value.split(":", 1)[-1] if isinstance(value, str) else None


def input_changed(source: str | Path, output: str | Path) -> bool:
    """Whether Snakemake's mtime rule reruns what made ``output`` for input ``source``:
    ``source`` is newer and its content is not the one recorded with ``output`` (a settings
    file dated now by a revert, with the bytes it had, is not a change)."""
    source, output = Path(source), Path(output)
    if not source.exists() or source.stat().st_mtime <= output.stat().st_mtime:
        return False
    recorded = recorded_input_checksum(output, source)
    if recorded is None or not source.is_file():
        return True
    return hashlib.sha256(source.read_bytes()).hexdigest() != recorded


def upstream_change(path: str | Path, sources) -> str | None:
    """Why a job input ``path`` made by another job will be rebuilt before the job runs
    (it is missing, or one of ``sources``, the inputs it is made from, changed since:
    ``input_changed``), or None. One level up: what the evaluation questions are made
    from."""
    path = Path(path)
    if not path.exists():
        return f"{path} will be made"
    newer = [str(s) for s in sources if input_changed(s, path)]
    return f"{path} will be rebuilt ({', '.join(newer)} changed)" if newer else None


# ---- complete checkpoints ----------------------------------------------------------------

# Written by our trainers once a checkpoint's save finished (completion_marker_callback):
# every file the save wrote, with its size, so a later save into the same folder that is cut
# short shows as a size that no longer matches.
COMPLETE_MARKER = "checkpoint_complete.json"
SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own limit


def write_completion_marker(path: Path, leaving_out: Collection[Path] = ()) -> None:
    """Record in ``path/COMPLETE_MARKER`` (atomically, so it is whole or absent) every file
    the checkpoint holds and its size in bytes: call it once the save has finished. Files
    in ``leaving_out`` (files, or folders and all they hold) are not listed: what is about
    to be deleted (``strip_training_state``)."""
    path = Path(path)
    left_out = [Path(item) for item in leaving_out]
    files = {
        str(item.relative_to(path)): item.stat().st_size
        for item in sorted(path.rglob("*"))
        if item.is_file() and not item.name.startswith(COMPLETE_MARKER)
        and not any(item == out or out in item.parents for out in left_out)
    }
    write_json(path / COMPLETE_MARKER, {"files": files})


def completion_marker_callback():
    """A transformers ``TrainerCallback`` that writes the completion marker into each
    checkpoint after its save: ``Trainer`` and TRL's ``PPOTrainer`` both call ``on_save``
    right after ``_save_checkpoint`` has written the weights, optimizer, RNG and trainer
    state. Under several processes it first waits for all of them (each writes its own
    optimizer shards and RNG state), then the saving process writes the marker."""
    from transformers import TrainerCallback

    class CompletionMarker(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.barrier()
            if args.should_save:
                write_completion_marker(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    return CompletionMarker()


def incomplete_reason(path: Path) -> str | None:
    """Why checkpoint folder ``path`` cannot be loaded as it stands, or None when it is
    complete. This is the one definition every restart uses:

    - weights deleted by the workflow after generation (``DELETED_MARKER``): incomplete;
    - with our trainers' ``COMPLETE_MARKER``: complete when every file it lists is there
      with the size it records;
    - otherwise (a save cut short before the marker, or a checkpoint from outside the
      workflow): complete when its config (``config.json``, or PEFT's
      ``adapter_config.json`` for an adapter-only folder) parses as a JSON object and the
      first weights file transformers would load (``LOADED_MODEL_WEIGHTS``, or
      ``LOADED_ADAPTER_WEIGHTS`` for an adapter) is readable: a safetensors file whose size is
      exactly its header and the data its tensors' offsets span (the safetensors format:
      8-byte little-endian header length, JSON header, data), a torch ``.bin`` that is a
      whole zip archive (``torch.save``'s format since torch 1.6), or an index whose
      ``weight_map`` names only shards that are themselves readable.

    Optimizer state is not part of it (see ``resumable_checkpoint`` and
    ``ppo_resume_problem`` for what resuming a run needs).
    """
    path = Path(path)
    if not path.is_dir():
        return f"{path} is not a directory"
    if (path / DELETED_MARKER).is_file():
        return f"its weights were deleted after generation ({DELETED_MARKER})"
    if (path / COMPLETE_MARKER).is_file():
        return _marker_problem(path)
    adapter = is_adapter_folder(path)
    config, weights = (
        ("adapter_config.json", LOADED_ADAPTER_WEIGHTS) if adapter else ("config.json", LOADED_MODEL_WEIGHTS)
    )
    if problem := _json_object_problem(path / config):
        return problem
    for name in weights:
        if (path / name).exists():
            return _weights_file_problem(path / name)
    return f"it has no weights (none of {', '.join(weights)})"


def is_adapter_folder(path: Path) -> bool:
    """Whether ``path`` holds a PEFT adapter alone (``adapter_config.json``, no model
    ``config.json``)."""
    path = Path(path)
    return not (path / "config.json").exists() and (path / "adapter_config.json").is_file()


def is_complete(path: Path) -> bool:
    """Whether checkpoint folder ``path`` is complete (see ``incomplete_reason``)."""
    return incomplete_reason(path) is None


def optimizer_state_problem(path: Path) -> str | None:
    """Why checkpoint ``path`` cannot resume its optimizer, or None when it can: the HF
    Trainer needs ``trainer_state.json`` (written after everything else it saves) and the
    optimizer state, either ``optimizer.pt`` from a single process or DeepSpeed's shards,
    found through the ``latest`` file DeepSpeed writes last, naming the ``global_step*/``
    folder whose ``*optim_states.pt`` files hold them. Each must be a whole torch archive."""
    path = Path(path)
    if not (path / "trainer_state.json").is_file():
        return "it has no trainer_state.json"
    if (path / "optimizer.pt").exists():
        return _torch_archive_problem(path / "optimizer.pt", path)
    if not any(path.glob("global_step*")):
        return "it has no optimizer state (saved with save_only_model)"
    latest = path / "latest"
    if not latest.is_file():
        return "it has DeepSpeed global_step* folders but no 'latest' file naming one"
    tag = latest.read_text().strip()
    shards = sorted((path / tag).glob("*optim_states.pt"))
    if not shards:
        return f"DeepSpeed's latest tag {tag!r} names no folder of optimizer shards"
    for shard in shards:
        if problem := _torch_archive_problem(shard, path):
            return problem
    return None


def newest_complete_step(output_dir: Path, optimizer: bool = False,
                         ppo: bool = False) -> int | None:
    """Step of the newest complete checkpoint in ``output_dir`` (with resumable optimizer
    state too when ``optimizer``, with all of PPO's resume state when ``ppo``: see
    ``ppo_resume_problem``), or None; logs each newer one skipped and why."""
    for step in reversed(saved_steps(Path(output_dir))):
        path = Path(output_dir) / f"checkpoint-{step}"
        reason = incomplete_reason(path)
        if reason is None and ppo:
            reason = ppo_resume_problem(path)
        elif reason is None and optimizer:
            reason = optimizer_state_problem(path)
        if reason is None:
            return step
        log.warning("Not restarting from %s: %s", path, reason)
    return None


def ppo_resume_problem(path: Path) -> str | None:
    """Why PPO checkpoint ``path`` cannot resume its run, or None when it can: besides the
    optimizer state of policy and value model (``optimizer_state_problem``) it needs the
    scheduler state (``scheduler.pt``), the RNG state its pass over the prompts started
    from (``PPO_PROMPT_ORDER``) and the value model (``PPO_VALUE_MODEL``, a model folder,
    complete as ``incomplete_reason`` says)."""
    path = Path(path)
    if problem := optimizer_state_problem(path):
        return problem
    for name in ("scheduler.pt", PPO_PROMPT_ORDER):
        if not (path / name).is_file():
            return f"it has no {name}"
        if problem := _torch_archive_problem(path / name, path):
            return problem
    if not (path / PPO_VALUE_MODEL).is_dir():
        return f"it has no value model ({PPO_VALUE_MODEL}/)"
    if problem := incomplete_reason(path / PPO_VALUE_MODEL):
        return f"its value model ({PPO_VALUE_MODEL}/) is incomplete: {problem}"
    return None


def resumable_checkpoint(output_dir: Path) -> str | None:
    """Newest checkpoint the HF Trainer can resume from (complete, with its optimizer and
    trainer state), or None to start afresh. A checkpoint saved with ``save_only_model``,
    cut short by a crash or whose weights were deleted after generation is skipped."""
    step = newest_complete_step(output_dir, optimizer=True)
    return None if step is None else str(Path(output_dir) / f"checkpoint-{step}")


# ---- resume state: kept in the newest complete checkpoint only --------------------------
# Of TRAINING_STATE_PREFIXES, the files only a resume reads (the HF Trainer's optimizer.pt,
# scheduler.pt, rng_state*.pth); trainer_state.json and training_args.bin stay (small; the
# step and the arguments a checkpoint was made with). DeepSpeed's resume state: the
# ``latest`` file naming its ``global_step*/`` folder of shards, and the script it writes
# beside them to consolidate those shards. PPO's: its value model folder (its RNG state of
# the prompt pass is an ``rng_state*`` file).
RESUME_STATE_PREFIXES = ("optimizer", "scheduler", "rng_state")
DEEPSPEED_RESUME_FILES = ("latest", "zero_to_fp32.py")


def resume_state_files(path: Path) -> list[Path]:
    """What of checkpoint ``path`` only a resume reads, in the order it is deleted: first
    what ``optimizer_state_problem`` looks for (``optimizer*``, DeepSpeed's ``latest``), so
    a deletion cut short leaves a checkpoint no restart tries to resume from; then the
    scheduler and RNG state, PPO's value model folder (``PPO_VALUE_MODEL``) and DeepSpeed's
    ``global_step*/`` folders. The DeepSpeed folders stay when the checkpoint has no
    weights a loader reads (ZeRO-3 without gathered weights: they are the model)."""
    path = Path(path)
    items = sorted(path.glob("optimizer*")) + [
        path / name for name in DEEPSPEED_RESUME_FILES if (path / name).exists()
    ]
    items += sorted(item for prefix in RESUME_STATE_PREFIXES[1:] for item in path.glob(f"{prefix}*"))
    if (path / PPO_VALUE_MODEL).is_dir():
        items.append(path / PPO_VALUE_MODEL)
    if any((path / name).is_file() for name in LOADED_MODEL_WEIGHTS + LOADED_ADAPTER_WEIGHTS):
        items += sorted(item for item in path.glob("global_step*") if item.is_dir())
    return items


def strip_training_state(path: Path) -> list[str]:
    """Delete checkpoint ``path``'s resume state (``resume_state_files``), keeping its
    weights, config, tokenizer and trainer state; returns the deleted names. Its completion
    marker, where it has one, is rewritten first without them, so the checkpoint stays
    complete (``incomplete_reason``) however far the deletion got."""
    import shutil

    path = Path(path)
    items = resume_state_files(path)
    if not items:
        return []
    if (path / COMPLETE_MARKER).is_file():
        write_completion_marker(path, leaving_out=items)
    for item in items:
        shutil.rmtree(item) if item.is_dir() else item.unlink()
    return [item.name for item in items]


def prune_resume_state(output_dir: Path, newest: int) -> dict[int, list[str]]:
    """Once checkpoint ``newest`` of ``output_dir`` is complete with resumable optimizer
    state, strip the resume state of every older checkpoint: a restart needs the newest
    alone. Returns {step: deleted names}; nothing while ``newest`` cannot be resumed."""
    output_dir = Path(output_dir)
    path = output_dir / f"checkpoint-{newest}"
    if incomplete_reason(path) or optimizer_state_problem(path):
        return {}
    stripped = {step: strip_training_state(output_dir / f"checkpoint-{step}")
                for step in saved_steps(output_dir) if step < newest}
    return {step: names for step, names in stripped.items() if names}


def strip_all_resume_state(output_dir: Path) -> dict[int, list[str]]:
    """Strip the resume state of every checkpoint of a run that ended: {step: names}."""
    output_dir = Path(output_dir)
    stripped = {step: strip_training_state(output_dir / f"checkpoint-{step}")
                for step in saved_steps(output_dir)}
    return {step: names for step, names in stripped.items() if names}


# ---- a run whose training ended -------------------------------------------------------
# Beside a run's checkpoints, written when its training loop ended, before their resume
# state is stripped: the steps it saved. A job cut after that (a time limit or preemption
# while stripping, or before the workflow recorded the run) would otherwise find no
# checkpoint to resume from and train the whole run again; ``launch.run_training`` finds
# it trained instead (``ended_steps``).
RUN_ENDED = "run_ended.json"


def record_run_end(output_dir: Path) -> list[int]:
    """Write ``RUN_ENDED`` in ``output_dir``: the steps saved when its training ended.
    Returns them."""
    steps = saved_steps(Path(output_dir))
    write_json(Path(output_dir) / RUN_ENDED, {"steps": steps})
    return steps


def ended_steps(output_dir: Path) -> list[int] | None:
    """The steps of the run in ``output_dir`` when its training ended (``RUN_ENDED``) and
    those are still the checkpoints there, each complete (``incomplete_reason``: weights
    not deleted, nothing cut short); otherwise None (never ended, unreadable record,
    another checkpoint beside them, one incomplete)."""
    output_dir = Path(output_dir)
    try:
        steps = json.loads((output_dir / RUN_ENDED).read_text())["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(steps, list) or not steps or steps != saved_steps(output_dir):
        return None
    if any(incomplete_reason(output_dir / f"checkpoint-{step}") for step in steps):
        return None
    return steps


def forget_run_end(output_dir: Path) -> None:
    """Remove ``RUN_ENDED`` before the run trains again, so a run cut mid-way never reads
    as ended with a mix of two attempts' checkpoints."""
    (Path(output_dir) / RUN_ENDED).unlink(missing_ok=True)


def resume_state_callback():
    """A transformers ``TrainerCallback`` keeping a run resumable at the least disk: after
    each save (add it after ``completion_marker_callback``, whose marker it needs) the older
    checkpoints lose their resume state (``prune_resume_state``), and when training ends
    (``on_train_end``, called only when the loop finished) the run's end is recorded
    (``record_run_end``) and then every checkpoint loses it (``strip_all_resume_state``).
    The saving process does it, once every process has saved (the marker callback waits
    for them)."""
    from transformers import TrainerCallback

    class ResumeState(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if args.should_save:
                for step, names in prune_resume_state(Path(args.output_dir),
                                                      state.global_step).items():
                    log.info("checkpoint-%d: resume state removed (%s)", step, ", ".join(names))

        def on_train_end(self, args, state, control, **kwargs):
            if args.should_save:
                record_run_end(Path(args.output_dir))
                stripped = strip_all_resume_state(Path(args.output_dir))
                log.info("run ended: resume state removed from checkpoints %s", sorted(stripped))

    return ResumeState()


def _marker_problem(path: Path) -> str | None:
    try:
        files = json.loads((path / COMPLETE_MARKER).read_text())["files"]
        recorded = {str(name): int(size) for name, size in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return f"its {COMPLETE_MARKER} is unreadable ({error})"
    for name, size in recorded.items():
        item = path / name
        if not item.is_file():
            return f"{name}, listed in {COMPLETE_MARKER}, is missing"
        if (actual := item.stat().st_size) != size:
            return (
                f"{name} is {actual} bytes where the finished save wrote {size} "
                "(a later save into it was cut short)"
            )
    return None


def _json_object_problem(file: Path) -> str | None:
    if not file.is_file():
        return f"{file.name} is missing"
    try:
        value = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return f"{file.name} is not readable JSON ({error})"
    return None if isinstance(value, dict) else f"{file.name} is not a JSON object"


def _weights_file_problem(file: Path) -> str | None:
    if file.name.endswith(".index.json"):
        return _index_problem(file)
    if file.suffix == ".safetensors":
        return _safetensors_problem(file, file.parent)
    return _torch_archive_problem(file, file.parent)


def _index_problem(index: Path) -> str | None:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        return f"{index.name} has no readable weight_map ({error})"
    if not shards:
        return f"{index.name} names no shards"
    for shard in shards:
        file = index.parent / shard
        if not file.is_file():
            return f"{shard}, named by {index.name}, is missing"
        check = _safetensors_problem if file.suffix == ".safetensors" else _torch_archive_problem
        if problem := check(file, index.parent):
            return problem
    return None


def _safetensors_problem(file: Path, root: Path) -> str | None:
    name = str(file.relative_to(root))
    unreadable = (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError,
                  IndexError)  # fmt: skip
    try:
        size = file.stat().st_size
        if size < 8:
            return f"{name} is {size} bytes, shorter than the safetensors header length"
        with file.open("rb") as stream:
            length = int.from_bytes(stream.read(8), "little")
            if length > SAFETENSORS_MAX_HEADER:
                return f"{name} declares a {length}-byte header, over safetensors' limit"
            if 8 + length > size:
                return f"{name} is truncated: {size} bytes, its header alone would be {8 + length}"
            header = json.loads(stream.read(length))
        ends = [int(t["data_offsets"][1]) for key, t in header.items() if key != "__metadata__"]
        expected = 8 + length + max(ends, default=0)
    except unreadable as error:
        return f"{name} has an unreadable safetensors header ({error})"
    if size != expected:
        state = "truncated" if size < expected else "longer than its tensors"
        return f"{name} is {state}: {size} bytes where its header describes {expected}"
    return None


def _torch_archive_problem(file: Path, root: Path) -> str | None:
    # A zip archive's central directory comes last, so a file cut short has none.
    if file.is_file() and zipfile.is_zipfile(file):
        return None
    return f"{file.relative_to(root)} is not a whole torch archive (no zip directory at its end)"


# Files that make a folder hold its own tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def has_tokenizer(folder: str | Path | None) -> bool:
    """Whether ``folder`` holds a tokenizer (one of ``TOKENIZER_FILES``)."""
    return folder is not None and any((Path(folder) / name).is_file() for name in TOKENIZER_FILES)


# JSON files of a tokenizer; tokenizer.json can be tens of MB, so it is checked by its end.
TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json")


def tokenizer_problem(folder: Path) -> str | None:
    """Why ``folder``'s tokenizer files cannot be read (None when they can, or there are
    none): an empty JSON file, one cut short (not ending its JSON object), or a
    tokenizer_config.json that does not parse. Checked when the workflow starts, so a cut
    copy stops it there, naming the file, instead of failing a generation job with a bare
    JSONDecodeError."""
    for name in TOKENIZER_JSON:
        file = Path(folder) / name
        if not file.is_file():
            continue
        size = file.stat().st_size
        with open(file, "rb") as handle:
            handle.seek(max(0, size - 64))
            tail = handle.read().rstrip()
        if not tail.endswith(b"}"):
            return f"{file} is empty or cut short (it does not end its JSON object)"
        if name == "tokenizer_config.json" and (problem := _json_object_problem(file)):
            return problem
    return None

