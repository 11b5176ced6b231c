"""The settings each job's output depends on, recorded as files the workflow reads.

Why files: the workflow reruns a job only when an input is newer than its output
(``rerun-triggers: mtime``, set in the profiles; see docs/reruns.md). Snakemake's
default ``params`` and ``code`` triggers would rerun every generation job of a cluster run
after an edit of a batch size or an upgrade of this project, and a checkpoint whose weights
were deleted after generation cannot be regenerated: the rerun would delete its answers and
fail. So a job's output-affecting settings are an input file, ``results/settings/<name>.json``:

- written when the workflow starts (or when a job's input function first asks for it);
- created with modification time 0 when missing, so a results tree made before the file
  existed stays up to date;
- rewritten with the current time whenever its settings change, a revert included, and
  with exactly the bytes it had when it last held those settings (kept in a hidden
  ``.<name>.forms`` file beside it): Snakemake reruns a job whose input is newer than its
  output only when the input's checksum differs from the one recorded with the output
  (its metadata), so after an edit, a run and a revert the outputs made under the edit
  rerun, while an edit reverted before any run reruns nothing. What is current is decided
  by content; the time only asks Snakemake to look;
- left as it is when it holds the same settings in an earlier form (recorded before the
  schema's defaults were filled in: ``record_settings(..., earlier_forms)``), or holds
  them with keys that have become throughput keys since (``save_only_model``).

Throughput settings (``THROUGHPUT_KEYS``: batch sizes, concurrency, retries, timeouts,
prices, caches, GPU counts, weight deletion, gates) never change an output and are left out.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from value_drifts.core.layout import SETTINGS_DIR

# The column of a generations table (carried into its judgments) holding what its answers
# were made from besides the weights (``answers_digest``): values checks a trajectory has
# one.
SETTINGS_COLUMN = "generation_settings"

# Keys, at any depth of a settings mapping, that change how fast or where a job runs but
# not what it writes. The judge's own list of output-affecting keys is
# value_drifts.judge.run.JUDGE_OUTPUT_KEYS.
THROUGHPUT_KEYS = frozenset({
    "batch_size",  # generation, downstream, V-PRISM embeddings: padding only
    "per_device_batch_size",  # training: the global batch is fixed, accumulation fills it
    "gpus", "params_b", "threads", "num_workers",
    "concurrency", "request_timeout_s", "max_retries", "retries", "cache", "batch",
    "prices", "max_enqueued_tokens", "poll_interval_s",
    "delete_checkpoint_weights",
    "one_job_per_run",  # one engine for a run's checkpoints: the same answers (tested)
    "max_unreadable_share",  # a gate: a job passes or fails, its output does not change
    "save_only_model",  # whether checkpoints also hold what a resume reads: same weights
    "cluster",  # the config section of what jobs ask a cluster for
})


def output_settings(value: Any) -> Any:
    """``value`` without the throughput keys (``THROUGHPUT_KEYS``), at every depth."""
    if isinstance(value, Mapping):
        return {
            str(key): output_settings(item)
            for key, item in value.items()
            if key not in THROUGHPUT_KEYS
        }
    if isinstance(value, (list, tuple)):
        return [output_settings(item) for item in value]
    return value


def settings_digest(value: Any) -> str:
    """sha256 (first 16 hex digits) of ``value`` as canonical JSON (sorted keys)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def settings_path(name: str) -> str:
    """Where the settings called ``name`` (e.g. ``generation/smollm2-135m``) live."""
    return f"{SETTINGS_DIR}/{name}.json"


def _forms_path(path: Path) -> Path:
    """The hidden file beside a settings file that keeps its earlier forms' exact text."""
    return path.with_name(f".{path.name}.forms")


def _read_forms(path: Path) -> dict[str, str]:
    try:
        forms = json.loads(_forms_path(path).read_text())
        return {str(k): str(v) for k, v in forms.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_atomically(path: Path, text: str, mtime: float | None = None) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    if mtime is not None:
        os.utime(temporary, (mtime, mtime))
    os.replace(temporary, path)


# The digest each settings file held when this process recorded it (``record_settings``):
# what this workflow's jobs were planned with, whatever another process (a dry run of an
# edited config, started while this run goes on) writes into the file afterwards.
_RECORDED_HERE: dict[str, str] = {}


def record_settings(
    path: str | Path, settings: Any, now: float | None = None, earlier_forms: Sequence[Any] = ()
) -> str:
    """Write ``settings`` to ``path`` as described in the module docstring; returns the
    path. The file holds ``{"digest", "settings"}`` (files written by earlier versions
    also a ``recorded`` history, kept as it is). Safe to call many times and from many
    processes: an unchanged file is only read.

    ``earlier_forms``: the same settings as earlier versions of this project recorded
    them (before the schema's defaults were filled in: ``config.with_defaults``). A file
    holding one of them is current and left as it is, digest included, so the digests
    recorded with answers made from it (``answers_digest``) still match; returning to
    such settings after an edit gives back that digest and that file's exact text."""
    path = Path(path)
    forms: dict[str, Any] = {}  # digest -> the settings in that form, the current one first
    for form in (settings, *earlier_forms):
        forms.setdefault(settings_digest(form), form)
    digest = settings_digest(settings)
    texts: dict[str, str] = {}  # digest -> the file's exact text when it held that digest
    if path.exists():
        texts = _read_forms(path)
        try:
            text = path.read_text()
            stored = json.loads(text)
            # current: the same settings, or the same once keys that became throughput
            # keys since it was written are left out (a tree made before stays current)
            if stored.get("digest") in forms or settings_digest(
                    output_settings(stored.get("settings"))) in forms:
                _RECORDED_HERE[str(path)] = str(stored["digest"])
                return str(path)
            texts.setdefault(str(stored["digest"]), text)
        except (ValueError, AttributeError, TypeError, KeyError):
            pass  # unreadable: rewrite it
        # back to settings recorded before: that digest, its form and its exact text
        digest = next((form for form in forms if form in texts), digest)
        mtime = time.time() if now is None else now
    else:
        mtime = 0.0
    text = texts.get(digest) or json.dumps(
        {"digest": digest, "settings": forms[digest]}, indent=1, sort_keys=True, default=str
    ) + "\n"
    texts[digest] = text
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(_forms_path(path), json.dumps(texts, indent=1, sort_keys=True) + "\n")
    _write_atomically(path, text, mtime)
    _RECORDED_HERE[str(path)] = digest
    return str(path)


def recorded_settings_of(path: str | Path) -> Any:
    """The settings a settings file holds, in the form its digest was taken of (an
    earlier form stays as it was recorded)."""
    return json.loads(Path(path).read_text())["settings"]


def recorded_digest(path: str | Path) -> str:
    """The digest a settings file holds: as this process recorded it (``record_settings``)
    when it did, else as the file holds it now."""
    if str(path) in _RECORDED_HERE:
        return _RECORDED_HERE[str(path)]
    return json.loads(Path(path).read_text())["digest"]


def answers_digest(settings_path: str | Path, questions_path: str | Path) -> str:
    """What a checkpoint's answers are made from besides its weights: the generation
    settings file's digest and the questions file's sha256 (None while it does not exist),
    as one digest. Recorded with every generations file (``SETTINGS_COLUMN``)."""
    questions = Path(questions_path)
    return settings_digest({
        "settings": recorded_digest(settings_path),
        "questions": hashlib.sha256(questions.read_bytes()).hexdigest()
        if questions.is_file() else None,
    })
