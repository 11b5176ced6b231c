"""Real SFT dataset loaders: hub ids through ``datasets.load_dataset``, converted to chat
rows, with malformed rows counted by reason (never silently dropped)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

ROLES = {"user", "assistant", "system"}


def conversation_problem(messages: Any) -> str | None:
    """Why a conversation cannot be trained on, or None when it can."""
    if not isinstance(messages, list) or not messages:
        return "empty conversation"
    for turn in messages:
        if not isinstance(turn, Mapping) or "role" not in turn or "content" not in turn:
            return "turn without role or content"
        if turn["role"] not in ROLES:
            return "unknown role"
        if not isinstance(turn["content"], str) or not turn["content"].strip():
            return "empty turn"
    if messages[-1]["role"] != "assistant":
        return "no final assistant turn"
    return None


def alpaca_messages(row: Mapping[str, Any]) -> list[dict[str, str]]:
    prompt = row.get("instruction") or ""
    if row.get("input"):
        prompt = f"{prompt}\n\n{row['input']}"
    return [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": row.get("output") or ""},
    ]


def wildchat_messages(row: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        {"role": turn.get("role"), "content": turn.get("content")}
        for turn in row.get("conversation") or []
    ]


def to_messages(row: Mapping[str, Any]) -> list[dict[str, str]]:
    if "conversation" in row:
        return wildchat_messages(row)
    if "instruction" in row:
        return alpaca_messages(row)
    return row.get("messages")


def load_hub_sft_dataset(spec: Mapping[str, Any], seed: int):
    """Load, filter by language, convert, validate and split (seeded) an SFT dataset.

    Returns the training rows and counts: kept rows per split and rejects by reason.
    """
    from datasets import load_dataset

    dataset = load_dataset(spec["hub_id"], spec.get("hub_config"), split=spec.get("split", "train"))
    if spec.get("language") and "language" in dataset.column_names:
        dataset = dataset.filter(lambda row: row["language"] == spec["language"])
    rejected: Counter[str] = Counter()
    rows = []
    for row in dataset:
        messages = to_messages(row)
        problem = conversation_problem(messages)
        if problem:
            rejected[problem] += 1
            continue
        rows.append({"messages": messages})
    share = spec.get("validation_share", 0.1)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_validation = round(len(rows) * share)
    train = [rows[i] for i in order[n_validation:]]
    counts = {"train": len(train), "validation": n_validation, "rejected": dict(rejected)}
    return train, counts
