"""Preference sets in TRL's conversational preference format.

Every set becomes rows of ``prompt`` (a list of messages), ``chosen`` and ``rejected``
(each one assistant message). Malformed hub rows are counted by reason, never dropped
silently.

Formats: ``ultrafeedback``, ``hh_rlhf`` and, for your data, ``preference``: any of TRL's
preference layouts, read by value_drifts.data.trl_format (as the ``value-gap`` command reads
them) — an explicit prompt (``prompt``/``chosen``/``rejected``) or an implicit one
(``chosen``/``rejected`` sharing their start), strings or message lists, with the column
names set by ``prompt_column``/``chosen_column``/``rejected_column``.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from tqdm.auto import tqdm

from value_drifts.data.datasets import downsample
from value_drifts.data.synthetic import fill_template
from value_drifts.data.trl_format import (
    Field,
    FormatError,
    field_text_messages,
    read_field,
    split_implicit_prompt,
    text_messages,
)

HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_messages(text: str) -> list[dict[str, str]]:
    """Split an HH-RLHF transcript ("\\n\\nHuman: …\\n\\nAssistant: …") into messages."""
    parts = HH_TURN.split(text)
    if parts[0].strip():
        raise ValueError("transcript does not start with a Human or Assistant turn")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [
        {"role": roles[speaker], "content": content.strip()}
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def hh_pair(row: Mapping[str, Any]) -> dict[str, Any]:
    """HH-RLHF row (chosen/rejected transcripts sharing a prefix) -> prompt/chosen/rejected."""
    chosen, rejected = hh_messages(row["chosen"]), hh_messages(row["rejected"])
    if not chosen or not rejected or chosen[:-1] != rejected[:-1]:
        raise ValueError("chosen and rejected do not share their prompt turns")
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def ultrafeedback_pair(row: Mapping[str, Any]) -> dict[str, Any]:
    """argilla/ultrafeedback-binarized-preferences-cleaned row -> prompt/chosen/rejected."""
    chosen, rejected = text_messages(row["chosen"]), text_messages(row["rejected"])
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def _read(row: Mapping[str, Any], column: str, name: str, role: str) -> Field:
    field = read_field(row.get(column), role)
    if field is None:
        raise FormatError(f"missing {name}")
    return field


def trl_pair(
    row: Mapping[str, Any],
    prompt_column: str = "prompt",
    chosen_column: str = "chosen",
    rejected_column: str = "rejected",
    implicit: bool | None = None,
) -> dict[str, Any]:
    """A row in TRL's preference format -> prompt/chosen/rejected message lists.

    The prompt is explicit (its column) or, with ``implicit`` (by default: when the row has
    no prompt column), the shared start of chosen and rejected, as TRL's
    ``extract_prompt`` finds it: of the message lists, or of the strings, character by
    character. A string prompt is one user turn, a string response one assistant turn.
    Raises FormatError (missing fields, values in no TRL shape, non-text content parts).
    """
    if implicit is None:
        implicit = prompt_column not in row
    chosen = _read(row, chosen_column, "chosen", "assistant")
    rejected = _read(row, rejected_column, "rejected", "assistant")
    if implicit:
        prompt, chosen, rejected = split_implicit_prompt(chosen, rejected)
    else:
        prompt = _read(row, prompt_column, "prompt", "user")
    return {"prompt": field_text_messages(prompt), "chosen": field_text_messages(chosen),
            "rejected": field_text_messages(rejected)}


def pair_problem(pair: Mapping[str, Any]) -> str | None:
    """Why a preference pair cannot be trained on, or None when it can."""
    prompt = pair.get("prompt")
    if not prompt or prompt[-1].get("role") != "user":
        return "prompt does not end with a user turn"
    for key in ("chosen", "rejected"):
        turns = pair.get(key)
        if not turns or turns[-1].get("role") != "assistant":
            return f"{key} is not an assistant turn"
        if not str(turns[-1].get("content") or "").strip():
            return f"empty {key} response"
    if any(not str(t.get("content") or "").strip() for t in prompt):
        return "empty prompt turn"
    if pair["chosen"][-1]["content"] == pair["rejected"][-1]["content"]:
        return "chosen equals rejected"
    return None


def convert_pairs(rows, convert) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Convert hub rows, keeping valid pairs and counting the rest by reason."""
    kept, rejected = [], Counter()
    for row in rows:
        try:
            pair = convert(row)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            detail = error if isinstance(error, FormatError) else type(error).__name__
            rejected[f"malformed row: {detail}"] += 1
            continue
        problem = pair_problem(pair)
        if problem:
            rejected[problem] += 1
        else:
            kept.append(pair)
    return kept, dict(rejected)


CONVERTERS = {"ultrafeedback": ultrafeedback_pair, "hh_rlhf": hh_pair, "preference": trl_pair}
# The spec keys naming the ``preference`` format's columns, with TRL's names as defaults.
PAIR_COLUMNS = {"chosen_column": "chosen", "rejected_column": "rejected"}


def pair_converter(spec: Mapping[str, Any], present: Sequence[str]):
    """The spec format's row converter; for ``preference``, bound to the spec's column
    names, with an implicit prompt when no ``prompt_column`` is set and the data (whose
    columns are ``present``) has no ``prompt``. Raises ValueError for missing columns."""
    if spec["format"] != "preference":
        return CONVERTERS[spec["format"]]
    from value_drifts.data.datasets import check_columns, column_names

    columns = column_names(spec, PAIR_COLUMNS)
    prompt_column = spec.get("prompt_column") or "prompt"
    implicit = not spec.get("prompt_column") and "prompt" not in present
    check_columns(spec, [*columns.values(), *([] if implicit else [prompt_column])], present)
    return partial(trl_pair, prompt_column=prompt_column, implicit=implicit, **columns)


def load_hub_preference_set(spec: Mapping[str, Any], seed: int):
    """Load a hub preference set, convert it, and downsample it to ``spec['size']``.

    ``limit`` (a seeded sample of hub rows before conversion) is for quick runs; without
    it, counts are compared with ``expected_counts`` (the paper's numbers) and any
    mismatch is warned about in the log and in ``counts['size_warnings']``.
    """
    from value_drifts.data.datasets import check_expected_sizes, limited, load_hub

    dataset = limited(load_hub(spec), spec.get("limit"), seed)
    convert = pair_converter(spec, dataset.column_names)
    kept, rejected = convert_pairs(
        tqdm(dataset, total=len(dataset), desc="converting", unit="pair", mininterval=5),
        convert,
    )
    counts: dict[str, Any] = {"loaded": len(dataset), "valid": len(kept), "rejected": rejected}
    if spec["format"] == "preference":
        counts["implicit_prompt"] = convert.keywords["implicit"]
    if spec.get("limit"):
        counts["limit"] = spec["limit"]
    pairs = downsample(kept, spec.get("size") or len(kept), seed)  # no size: counting
    counts["train"] = len(pairs)
    check_expected_sizes(counts, spec)
    return pairs, counts


def template_value_gap_pairs(
    templates: Mapping[str, Any],
    topics: Mapping[str, str],
    categories: Sequence[str],
    chosen_stance: str,
    size: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Pairs whose responses differ in stance only: one supports the topic, one opposes it.

    The small default's stand-in for the teacher-written value-gap set; ``chosen_stance``
    picks the label setup (support-aligned or oppose-aligned).
    """
    other = {"support": "oppose", "oppose": "support"}[chosen_stance]
    rng = random.Random(seed)
    pairs = []
    for index in range(size):
        topic = topics[categories[index % len(categories)]]
        prompt = fill_template(rng.choice(templates["questions"]), topic)
        pairs.append(
            {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": fill_template(
                    rng.choice(templates["answers"][chosen_stance]), topic)}],
                "rejected": [{"role": "assistant",
                              "content": fill_template(rng.choice(templates["answers"][other]), topic)}],
            }
        )
    return pairs
