"""Traces: value drift of a checkpoint series trained elsewhere, with no training.

A trace (config ``traces.<name>``) is either a local folder of ``checkpoint-N`` folders
(the HF Trainer / TRL layout; steps read from the folder names), with an optional
``start`` model as step 0, or a hub model with a ``revisions`` mapping of step to
revision. Each checkpoint flows through the same generation, judging, values, drift,
figure and report as a trained phase, under ``results/traces/{name}/``
(``value_drifts.core.layout``). The series is read when the workflow starts, so the DAG stays
static; a folder that is not a complete checkpoint (``training.checkpoints
.incomplete_reason``, the one definition) is skipped with a warning naming it.

A trace never deletes or modifies the user's checkpoints: its generation jobs only read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from value_drifts.core.checkpoints import (
    CHECKPOINT_DIR,
    has_tokenizer,
    incomplete_reason,
    is_adapter_folder,
    tokenizer_problem,
)
from value_drifts.core.config import schema_default


class TraceError(ValueError):
    """A trace that cannot be read: a missing folder, no complete checkpoint, no tokenizer."""


# The schema's defaults for a trace's size (traces.<name>.gpus / params_b).
DEFAULT_GPUS = schema_default("traces", "-", "gpus")
DEFAULT_PARAMS_B = schema_default("traces", "-", "params_b")


@dataclass(frozen=True)
class TraceSeries:
    """One trace as read from disk (or config, for hub revisions)."""

    name: str
    checkpoints: Mapping[int, str]  # step -> local folder, or the hub id
    prompt_style: str
    revisions: Mapping[int, str] = field(default_factory=dict)  # step -> hub revision
    tokenizers: Mapping[int, str] = field(default_factory=dict)  # step -> tokenizer source
    skipped: Mapping[str, str] = field(default_factory=dict)  # folder -> why
    gpus: int = DEFAULT_GPUS
    params_b: float = DEFAULT_PARAMS_B

    @property
    def steps(self) -> tuple[int, ...]:
        return tuple(sorted(self.checkpoints))


def _tokenizer_source(folder: str, start: str | None, spec: Mapping[str, Any]) -> str | None:
    """The tokenizer of a checkpoint: its own folder's, else the start model's, else the
    trace's ``tokenizer`` key; an adapter folder without one uses its base model's."""
    for source in (folder, start):
        if has_tokenizer(source):
            return source
    return spec.get("tokenizer")


def _revisions(name: str, revisions: Mapping[Any, Any]) -> dict[int, str]:
    """step -> revision from the config's mapping; TraceError when two keys are one step
    (``100`` and ``'0100'``) or a key is not a step number."""
    steps: dict[int, list[str]] = {}
    for key in revisions:
        try:
            steps.setdefault(int(str(key), 10), []).append(str(key))
        except ValueError:
            raise TraceError(f"traces.{name}.revisions: key {key!r} is not a step number") from None
    doubled = {step: keys for step, keys in steps.items() if len(keys) > 1}
    if doubled:
        raise TraceError(f"traces.{name}.revisions: several keys for one step: " + "; ".join(
            f"step {step}: {', '.join(map(repr, keys))}" for step, keys in sorted(doubled.items())))
    return {int(str(step), 10): str(revision) for step, revision in revisions.items()}


def octal_key_problems(config_text: str) -> list[str]:
    """Revision keys YAML reads as another number than they spell: ``0100:`` is octal 64
    to YAML 1.1 (PyYAML, so Snakemake's config), ``0x10:`` hexadecimal 16. Only the file's
    text shows it, so the workflow checks each config file it was given. Each problem
    names the key and the number it was read as."""
    import yaml

    spelled = yaml.load(config_text, Loader=yaml.BaseLoader) or {}  # every scalar a string
    read = yaml.safe_load(config_text) or {}
    problems = []
    for name, spec in (spelled.get("traces") or {}).items():
        keys = list((spec or {}).get("revisions") or {})
        read_keys = list(((read.get("traces") or {}).get(name) or {}).get("revisions") or {})
        for text, value in zip(keys, read_keys, strict=False):
            if not isinstance(value, int) or (text.isdigit() and int(text, 10) == value):
                continue  # a quoted key, or a plain number read as itself
            problems.append(f"traces.{name}.revisions: key {text} is read by YAML as {value}; "
                            f"write the step as a plain number, or quote the key ('{text}')")
    return problems


def trace_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a trace (the schema's pattern for ``traces`` keys: it
    becomes a path), or None."""
    import re

    from value_drifts.core.config import _schema

    pattern = _schema()["properties"]["traces"]["propertyNames"]["pattern"]
    if re.match(pattern, name):
        return None
    return f"trace name {name!r} is not lower-case letters, digits and hyphens ({pattern})"


def read_trace(name: str, spec: Mapping[str, Any]) -> TraceSeries:
    """The checkpoints of trace ``name`` (config ``traces.<name>``). Raises TraceError."""
    common = {
        "name": name,
        "prompt_style": spec["prompt_style"],
        "gpus": int(spec.get("gpus", DEFAULT_GPUS)),
        "params_b": float(spec.get("params_b", DEFAULT_PARAMS_B)),
    }
    if "hub_id" in spec:
        revisions = _revisions(name, spec["revisions"])
        return TraceSeries(
            checkpoints={step: spec["hub_id"] for step in revisions},
            revisions=revisions,
            # without a tokenizer key, each revision's own tokenizer
            tokenizers={step: spec["tokenizer"] for step in revisions}
            if "tokenizer" in spec else {},
            **common,
        )
    folder = Path(spec["checkpoints"])
    if not folder.is_dir():
        raise TraceError(f"traces.{name}.checkpoints: {folder} is not a folder")
    checkpoints: dict[int, str] = {}
    skipped: dict[str, str] = {}
    folders: dict[int, list[str]] = {}
    for path in sorted(folder.iterdir()):
        match = CHECKPOINT_DIR.match(path.name)
        if match and path.is_dir():
            folders.setdefault(int(match.group(1)), []).append(path.name)
    doubled = {step: names for step, names in folders.items() if len(names) > 1}
    if doubled:
        raise TraceError(f"traces.{name}: several folders for one step in {folder}: " + "; ".join(
            f"step {step}: {', '.join(names)}" for step, names in sorted(doubled.items())))
    for path in sorted(folder.iterdir()):
        match = CHECKPOINT_DIR.match(path.name)
        if not match or not path.is_dir():
            continue
        reason = incomplete_reason(path) or tokenizer_problem(path)
        if reason:
            skipped[str(path)] = reason
        else:
            checkpoints[int(match.group(1))] = str(path)
    start = spec.get("start")
    if start is not None:
        if reason := incomplete_reason(Path(start)) or tokenizer_problem(Path(start)):
            raise TraceError(f"traces.{name}.start: {start} is not a complete model: {reason}")
        if 0 in checkpoints:
            raise TraceError(f"traces.{name}: both start and {folder}/checkpoint-0 are step 0")
        checkpoints[0] = str(start)
    if not [step for step in checkpoints if step > 0]:
        raise TraceError(
            f"traces.{name}: no complete checkpoint-N folder in {folder}"
            + (f" (skipped: {skipped})" if skipped else "")
        )
    tokenizers = {}
    for step, path in checkpoints.items():
        source = _tokenizer_source(path, start, spec)
        if source is None and not is_adapter_folder(Path(path)):
            raise TraceError(
                f"traces.{name}: {path} has no tokenizer, nor has the start model; "
                "give traces.<name>.tokenizer (a folder or hub id)"
            )
        tokenizers[step] = source or path
    return TraceSeries(checkpoints=checkpoints, tokenizers=tokenizers, skipped=skipped, **common)


def read_traces(config: Mapping[str, Any]) -> dict[str, TraceSeries]:
    """Every trace of the config, read once when the workflow starts."""
    return {name: read_trace(name, spec) for name, spec in (config.get("traces") or {}).items()}


def skipped_warnings(traces: Mapping[str, TraceSeries]) -> list[str]:
    """One line per skipped folder of every trace."""
    return [
        f"trace {series.name}: skipped {folder}: {reason}"
        for series in traces.values()
        for folder, reason in series.skipped.items()
    ]
