"""Real SFT dataset loaders: hub ids through ``datasets.load_dataset``, converted once into
chat rows (``messages``: a list of ``{role, content}``), split 90/10 with a seed, with
malformed rows counted by reason (never silently dropped).

Formats: ``wildchat`` (allenai/WildChat-1M: a ``conversation`` column of turns with
``role``/``content`` among other fields, and a conversation-level ``language``),
``alpaca`` (tatsu-lab/alpaca: ``instruction``/``input``/``output``/``text``), and TRL's own
layouts for your data: ``messages`` (a list of ``{role, content}``) and
``prompt_completion`` (``prompt`` and ``completion``, each a string or a message list),
read by value_drifts.data.trl_format with configurable column names (``messages_column``,
``prompt_column``, ``completion_column``).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from tqdm.auto import tqdm

from value_drifts.data.trl_format import FormatError, conversation_text_messages, text_messages

SPEAKERS = ("user", "assistant")
ROLES = {*SPEAKERS, "system"}
# Reasons a row is rejected (keys of counts["rejected"]).
MISSING_FIELD = "missing field"
EMPTY_CONVERSATION = "empty conversation"
EMPTY_TURN = "empty turn"
WRONG_ROLE = "wrong role"
NON_ALTERNATING = "non-alternating roles"
NO_FINAL_ASSISTANT = "no final assistant turn"
# A TRL-format row the reader cannot read is counted as this prefix and the FormatError's
# message, which names the value's shape ("a string, not a message list",
# "non-text content (image)"), never its text.
MALFORMED = "malformed row: "


class MissingField(KeyError):
    """A row lacks a field its format needs (absent or null)."""


def _field(row: Mapping[str, Any], name: str) -> Any:
    value = row.get(name)
    if value is None:
        raise MissingField(name)
    return value


def conversation_problem(messages: Any) -> str | None:
    """Why a conversation cannot be trained on, or None when it can.

    A trainable conversation is an optional leading system turn, then user and assistant
    turns alternating from a user turn, ending with an assistant turn, none empty.
    """
    if not isinstance(messages, list) or not messages:
        return EMPTY_CONVERSATION
    for turn in messages:
        if not isinstance(turn, Mapping) or turn.get("role") is None or turn.get("content") is None:
            return MISSING_FIELD
        if turn["role"] not in ROLES:
            return WRONG_ROLE
        if not isinstance(turn["content"], str) or not turn["content"].strip():
            return EMPTY_TURN
    dialogue = messages[1:] if messages[0]["role"] == "system" else messages
    if not dialogue:
        return NO_FINAL_ASSISTANT
    if any(turn["role"] != SPEAKERS[i % 2] for i, turn in enumerate(dialogue)):
        return NON_ALTERNATING
    if dialogue[-1]["role"] != "assistant":
        return NO_FINAL_ASSISTANT
    return None


def alpaca_messages(row: Mapping[str, Any]) -> list[dict[str, str]]:
    """tatsu-lab/alpaca row -> one user turn (instruction, then input if any) and the output."""
    prompt = _field(row, "instruction")
    if row.get("input"):
        prompt = f"{prompt}\n\n{row['input']}"
    return [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": _field(row, "output")},
    ]


def wildchat_messages(row: Mapping[str, Any]) -> list[dict[str, str]]:
    """allenai/WildChat-1M row -> its turns with only role and content kept."""
    turns = _field(row, "conversation")
    return [{"role": turn.get("role"), "content": turn.get("content")} for turn in turns]


def trl_messages(row: Mapping[str, Any], messages_column: str = "messages") -> list[dict[str, str]]:
    """TRL conversational row (a list of ``{role, content}``; content a string or text
    parts) -> its turns as text. Raises FormatError for a value that is not a message list
    and for content parts that are not text (an image)."""
    return conversation_text_messages(_field(row, messages_column))


def trl_prompt_completion(
    row: Mapping[str, Any], prompt_column: str = "prompt", completion_column: str = "completion"
) -> list[dict[str, str]]:
    """TRL prompt-completion row -> the prompt's turns then the completion's. A string
    prompt is one user turn, a string completion one assistant turn; message lists are kept."""
    return (text_messages(_field(row, prompt_column), "user")
            + text_messages(_field(row, completion_column), "assistant"))


CONVERTERS: dict[str, Callable[[Mapping[str, Any]], list[dict[str, str]]]] = {
    "wildchat": wildchat_messages,
    "alpaca": alpaca_messages,
    "messages": trl_messages,
    "prompt_completion": trl_prompt_completion,
}
# The hub columns each format reads; the rest (moderation, headers, ...) is never decoded.
COLUMNS = {"wildchat": ("conversation", "language"), "alpaca": ("instruction", "input", "output")}
# TRL formats: the spec keys naming their columns, with TRL's names as defaults.
TRL_COLUMNS = {
    "messages": {"messages_column": "messages"},
    "prompt_completion": {"prompt_column": "prompt", "completion_column": "completion"},
}


def column_names(spec: Mapping[str, Any], defaults: Mapping[str, str]) -> dict[str, str]:
    """The spec's column-name keys (``prompt_column``, ...), TRL's names where absent."""
    return {key: spec.get(key) or default for key, default in defaults.items()}


def check_columns(spec: Mapping[str, Any], wanted: Iterable[str], present: Sequence[str]) -> None:
    """Raise ValueError naming the columns the spec's format needs that the data lacks."""
    missing = [name for name in wanted if name not in present]
    if missing:
        raise ValueError(
            f"{spec.get('data_files') or spec['hub_id']}: missing column(s) {missing} for format "
            f"{spec['format']!r}; the data has {sorted(present)} (name others with the "
            "*_column keys)"
        )


def sft_converter(spec: Mapping[str, Any]) -> tuple[Callable, tuple[str, ...]]:
    """The spec format's row converter and the columns it reads."""
    fmt = spec["format"]
    if fmt not in TRL_COLUMNS:
        return CONVERTERS[fmt], COLUMNS[fmt]
    columns = column_names(spec, TRL_COLUMNS[fmt])
    language = ("language",) if spec.get("language") else ()
    return partial(CONVERTERS[fmt], **columns), (*columns.values(), *language)


def convert_conversations(
    rows: Iterable[Mapping[str, Any]], convert: Callable, total: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Chat rows from hub rows, keeping trainable ones and counting the rest by reason."""
    kept, rejected = [], Counter()
    for row in tqdm(rows, total=total, desc="converting", unit="row", mininterval=5):
        try:
            messages = convert(row)
        except (MissingField, TypeError, AttributeError):
            # Absent or null fields, or a field of the wrong shape (turns that are no mappings).
            rejected[MISSING_FIELD] += 1
            continue
        except FormatError as error:  # TRL formats: a value in no TRL shape, or non-text parts
            rejected[MALFORMED + str(error)] += 1
            continue
        problem = conversation_problem(messages)
        if problem:
            rejected[problem] += 1
        else:
            kept.append({"messages": messages})
    return kept, dict(sorted(rejected.items()))


def split_rows(
    rows: Sequence[dict[str, Any]], validation_share: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Seeded train/validation split; validation gets ceil(share × n) rows, as
    ``datasets.Dataset.train_test_split`` does (52,002 Alpaca rows -> 46,801 / 5,201)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_validation = math.ceil(len(rows) * validation_share) if rows else 0
    validation = [rows[i] for i in sorted(order[:n_validation])]
    train = [rows[i] for i in sorted(order[n_validation:])]
    return train, validation


def size_warnings(counts: Mapping[str, Any], expected: Mapping[str, int]) -> list[str]:
    """One message per count that differs from the expected (paper) number."""
    return [
        f"{key}: expected {want:,} (paper), found {counts.get(key, 0):,}"
        for key, want in expected.items()
        if counts.get(key) != want
    ]


def check_expected_sizes(counts: dict[str, Any], spec: Mapping[str, Any]) -> None:
    """Compare counts with ``spec['expected_counts']`` when the full data was loaded.

    Mismatches are printed as warnings (the log) and stored in ``counts['size_warnings']``;
    with a ``limit`` the check is skipped and ``counts['size_check']`` says so.
    """
    expected = spec.get("expected_counts")
    if not expected:
        return
    if spec.get("limit"):
        counts["size_check"] = "skipped: limit configured"
        return
    warnings = size_warnings(counts, expected)
    counts["size_check"] = "mismatch" if warnings else "ok"
    if warnings:
        counts["size_warnings"] = warnings
        for warning in warnings:
            print(f"WARNING: {spec.get('hub_id')}: {warning}")


def load_hub(spec: Mapping[str, Any], columns: Sequence[str] = ()):
    """``datasets.load_dataset`` on the spec's hub id (or a builder such as ``json`` or
    ``parquet`` with local ``data_files``), reduced to the ``columns`` that exist."""
    from datasets import load_dataset

    try:
        dataset = load_dataset(
            spec["hub_id"],
            spec.get("hub_config"),
            data_files=spec.get("data_files"),
            split=spec.get("split", "train"),
        )
    except StopIteration:  # datasets' json builder on an empty file
        raise ValueError(f"{spec['hub_id']} data_files {spec.get('data_files')}: no rows") from None
    keep = [c for c in columns if c in dataset.column_names]
    if keep:
        dataset = dataset.select_columns(keep)
    return dataset


def limited(dataset, limit: int | None, seed: int):
    """A seeded sample of ``limit`` rows of a ``datasets.Dataset`` (all when fewer)."""
    if not limit or len(dataset) <= limit:
        return dataset
    return dataset.shuffle(seed=seed).select(range(limit))


def load_hub_sft_dataset(spec: Mapping[str, Any], seed: int):
    """Load, filter by language, convert, validate and split (seeded) an SFT dataset.

    Returns (train rows, validation rows, counts). The training rows are downsampled
    (seeded) to ``spec['size']`` when there are more, since the checkpoint steps were
    planned from it (not at all without a size: ``counted_sizes`` counts them so).
    Counts: ``loaded``, ``other_language``, ``valid``, ``rejected`` by
    reason, ``train``/``validation`` and, when downsampled, ``train_before_downsample``.
    """

    convert, columns = sft_converter(spec)
    dataset = load_hub(spec, columns)
    if spec["format"] in TRL_COLUMNS:
        check_columns(spec, columns, dataset.column_names)
    counts: dict[str, Any] = {"loaded": len(dataset)}
    language = spec.get("language")
    if language:
        if "language" not in dataset.column_names:
            raise ValueError(f"{spec['hub_id']} has no 'language' column to keep {language!r}")
        dataset = dataset.filter(
            lambda values: [v == language for v in values], input_columns="language", batched=True
        )
        counts["other_language"] = counts["loaded"] - len(dataset)
    dataset = limited(dataset, spec.get("limit"), seed)
    if spec.get("limit"):
        counts["limit"] = spec["limit"]
    rows, rejected = convert_conversations(dataset, convert, total=len(dataset))
    counts.update(valid=len(rows), rejected=rejected)
    train, validation = split_rows(rows, spec.get("validation_share", 0.1), seed)
    counts.update(train=len(train), validation=len(validation))
    check_expected_sizes(counts, spec)
    size = spec.get("size")  # None while the workflow counts it (data.counted_sizes)
    if size is not None and len(train) > size:
        counts["train_before_downsample"] = len(train)
        train = downsample(train, size, seed)
        counts["train"] = len(train)
    return train, validation, counts


def downsample(rows: Sequence[dict[str, Any]], size: int, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of ``size`` rows (all rows, in order, when there are fewer)."""
    if len(rows) <= size:
        return list(rows)
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), size))]
