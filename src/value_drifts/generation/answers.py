"""A checkpoint's answers as the workflow writes them, from one checkpoint's job
(``rule generate``) or from one job for a run's checkpoints (``rule generate_run``,
``generation.one_job_per_run``): what is restored instead of sampled, what the table
records beside the answers, and what happens to the weights afterwards.

Every answers table records what it was made from besides the weights (its settings
digest, ``SETTINGS_COLUMN``) and the weights themselves (their shard digests,
``core.integrity.shard_columns``), so which answers are current is decided by content.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from value_drifts.core.checkpoints import (
    KEPT_ANSWERS,
    SETTINGS_COLUMN,
    delete_checkpoint_weights,
    kept_answers,
    require_weights,
    weights_deleted,
)
from value_drifts.core.integrity import DIGEST_COLUMN, shard_columns, shard_digests
from value_drifts.generation.sampling import (
    SamplingSettings,
    VLLMCheckpoint,
    generate_transformers,
    generate_vllm_series,
)


@dataclass(frozen=True)
class CheckpointAnswers:
    """One checkpoint a generation job answers from: its ``step``, folder (or hub id)
    ``path``, ``model`` (prompt style, tokenizer source, hub revision:
    rules/inputs.smk's generation_model), whether its weights go once answered and where
    the workflow keeps its answers (``answers``)."""

    step: int
    path: str
    model: Mapping[str, Any]
    delete_weights: bool = False
    # another copy of its answers the workflow made (one job per checkpoint's or one per
    # run's), reused while current (``reusable_answers``)
    answers: str | None = None


def sampling_settings(generation: Mapping[str, Any], seed: int, prompt_style: str
                      ) -> SamplingSettings:
    """The sampling settings of a checkpoint from the config's ``generation`` section."""
    return SamplingSettings(
        samples=generation["samples"],
        temperature=generation["temperature"],
        max_new_tokens=generation["max_new_tokens"],
        seed=seed,
        prompt_style=prompt_style,
        base_prompt_suffix=generation["base_prompt_suffix"],
    )


def restored_answers(checkpoint: CheckpointAnswers, digest: str) -> Path | None:
    """The answers kept in the folder of a checkpoint whose weights went, when made with
    the settings of ``digest``; else None (and a checkpoint without weights raises
    ``WeightsDeletedError``, naming how to get them back)."""
    folder = Path(checkpoint.path)
    if weights_deleted(folder):
        kept = kept_answers(folder, digest)
        if kept is not None:
            print(f"step {checkpoint.step}: weights deleted; restored the answers kept in {kept}")
            return kept
        require_weights(folder)
    return None


def part_is_current(part: Path, checkpoint: CheckpointAnswers, digest: str) -> bool:
    """Whether ``part`` (answers an interrupted job wrote) holds ``checkpoint``'s answers
    under the settings of ``digest`` and from the weights now in its folder."""
    if not part.is_file():
        return False
    recorded = pl.read_parquet(part, n_rows=1)
    if recorded.is_empty() or SETTINGS_COLUMN not in recorded.columns:
        return False
    if recorded[SETTINGS_COLUMN][0] != digest:
        return False
    if not Path(checkpoint.path).exists():  # a hub revision: named by the hub
        return DIGEST_COLUMN not in recorded.columns
    try:
        weights = shard_columns(shard_digests(Path(checkpoint.path)))
    except FileNotFoundError:
        return False
    return all(recorded[name][0] == value if name in recorded.columns else False
               for name, value in weights.items())


def reusable_answers(checkpoint: CheckpointAnswers, digest: str,
                     copies: Sequence[str | Path | None]) -> Path | None:
    """Answers of ``checkpoint`` a job copies instead of sampling: those kept beside its
    deleted weights (``restored_answers``), else the first of ``copies`` (None: none)
    that is current (``part_is_current``); None when it must be sampled."""
    if (kept := restored_answers(checkpoint, digest)) is not None:
        return kept
    for copy in copies:
        if copy is not None and part_is_current(Path(copy), checkpoint, digest):
            print(f"step {checkpoint.step}: current answers in {copy}")
            return Path(copy)
    return None


def stamped(answers: pl.DataFrame, digest: str, weights: Mapping[str, str]) -> pl.DataFrame:
    """``answers`` with the settings digest and the weights' digest columns."""
    return answers.with_columns(
        pl.lit(digest).alias(SETTINGS_COLUMN),
        *[pl.lit(value).alias(name) for name, value in weights.items()],
    )


def write_answers(answers: pl.DataFrame, path: Path) -> None:
    """Write ``answers`` whole or not at all (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.writing")
    answers.write_parquet(temporary)
    os.replace(temporary, path)


def copy_answers(source: str | Path, path: Path) -> None:
    """Copy an answers file byte for byte, whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.writing")
    shutil.copyfile(source, temporary)
    os.replace(temporary, path)


def after_answering(checkpoint: CheckpointAnswers, answers: Path) -> None:
    """Keep a copy of ``answers`` in the checkpoint's folder and delete its weights, where
    ``checkpoint.delete_weights`` says so (``generation.delete_checkpoint_weights``) and
    they are still there."""
    if checkpoint.delete_weights and not weights_deleted(Path(checkpoint.path)):
        shutil.copyfile(answers, Path(checkpoint.path) / KEPT_ANSWERS)
        deleted = delete_checkpoint_weights(Path(checkpoint.path))
        print(f"step {checkpoint.step}: deleted checkpoint weights: {deleted}")


def sampled_answers(
    checkpoints: Sequence[CheckpointAnswers],
    questions: pl.DataFrame,
    generation: Mapping[str, Any],
    seed: int,
    digest: str,
    gpus: int = 0,
    threads: int = 1,
) -> Iterator[tuple[CheckpointAnswers, pl.DataFrame]]:
    """Sample each checkpoint's answers in turn, stamped (``stamped``), in order.

    vLLM (``generation.backend: vllm``) samples them with one engine per run of
    checkpoints that can share one (``sampling.generate_vllm_series``); transformers loads
    each in the same process. Each checkpoint's weights are hashed in a thread while the
    engine loads and samples it (hashlib releases the GIL), so an 8B checkpoint's 16 GB do
    not delay its answers; a hub revision is named by the hub, not hashed."""
    for checkpoint in checkpoints:
        require_weights(Path(checkpoint.path))

    def settings(checkpoint: CheckpointAnswers) -> SamplingSettings:
        return sampling_settings(generation, seed, checkpoint.model["prompt_style"])

    if generation["backend"] == "vllm":
        series = generate_vllm_series(
            [VLLMCheckpoint(c.path, settings(c), c.model["tokenizer"], c.model["revision"])
             for c in checkpoints],
            questions,
            tensor_parallel_size=max(gpus, 1),
            engine_args=generation.get("vllm_engine_args"),
        )
    else:
        series = (
            generate_transformers(
                c.path, questions, settings(c), batch_size=generation["batch_size"],
                threads=threads, tokenizer_path=c.model["tokenizer"],
                revision=c.model["revision"])
            for c in checkpoints
        )
    series = iter(series)
    with ThreadPoolExecutor(max_workers=1) as pool:
        for checkpoint in checkpoints:
            # hashed while this checkpoint is loaded and sampled, never ahead: a failed job
            # does not first hash every checkpoint after it
            folder = Path(checkpoint.path)
            hashing = pool.submit(shard_digests, folder) if folder.exists() else None
            answers = next(series)
            weights = shard_columns(hashing.result()) if hashing else {}
            yield checkpoint, stamped(answers, digest, weights)


def parts_dir(run_answers: str | Path) -> Path:
    """Where ``rule generate_run`` writes each checkpoint's answers as soon as they exist:
    beside its output, which Snakemake empties before a job starts; renamed to the output
    once every checkpoint is answered."""
    run_answers = Path(run_answers)
    return run_answers.with_name(f"{run_answers.name}.parts")
