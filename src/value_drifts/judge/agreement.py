"""How well a judge agrees with hand labels: accuracy, macro-F1, confusion, calibration."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from value_drifts.core.config import schema_default
from value_drifts.core.stances import STANCES

DEFAULT_LABELLED_SET = schema_default("judge", "agreement", "labelled")
LABELLED_COLUMNS = ("question_id", "category", "question", "response", "sample", "stance", "kind")


def labelled_set_path(judge: Mapping[str, Any]) -> str | list[str]:
    """judge.agreement.labelled (a file or a list of files), or the shipped set
    (DEFAULT_LABELLED_SET)."""
    return (judge.get("agreement") or {}).get("labelled", DEFAULT_LABELLED_SET)


def load_labelled_set(
    path: str | Path | Sequence[str | Path], topics: Mapping[str, str] | None = None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A hand-labelled stance set as rows of LABELLED_COLUMNS, and what was read.

    ``path`` is one file (below) or several, read one after another and concatenated:
    each id becomes ``<file name>:<id>`` so ids stay unique across files, and what was
    read sums the files' ``items`` and ``skipped`` counts, with ``first_seen`` places
    prefixed by the file's name and each file's own record under ``files``. A file of
    the list with no usable row raises UsageError as a single file does.

    A ``.yaml`` file has the shipped layout (category -> question + stance -> kind ->
    response, or a list of those, one per question). Any other file is a table read by
    ``user_files.read_table`` (JSONL, JSON, CSV, parquet, a hub id) with columns question,
    response, label (or stance), category (or topic: a topic phrase of ``topics``), and
    optionally kind and id. Rows with an empty field, a label that is no stance, or an
    unknown category or topic are left out, counted by reason with where each reason was
    first seen (``skipped``, ``first_seen``). Raises UsageError when no row is usable.
    """
    if not isinstance(path, (str, Path)):
        return _several_labelled_sets([str(p) for p in path], topics)
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        frame = _yaml_layout(path)
        return frame, {"path": str(path), "items": frame.height, "skipped": {}, "first_seen": {}}
    from value_drifts.data.user_files import UsageError, read_table

    known = dict(topics or {})
    by_topic = {topic: category for category, topic in known.items()}
    table = read_table(str(path))
    rows, skipped, first_seen = [], Counter(), {}
    for index, (row, place) in enumerate(zip(table.rows, table.places, strict=True)):
        item, reason = _labelled_row(row, known, by_topic)
        if reason:
            skipped[reason] += 1
            first_seen.setdefault(reason, place)
            continue
        rows.append({"question_id": str(row.get("id") or f"item-{index + 1}"), **item})
    if not rows:
        reasons = "; ".join(f"{r}: {n} (first at {first_seen[r]})" for r, n in skipped.items())
        raise UsageError(f"{path}: no usable labelled item (columns seen: "
                         f"{', '.join(table.columns)}); {reasons or 'the file is empty'}")
    frame = pl.DataFrame(rows, schema={c: pl.Int64 if c == "sample" else pl.Utf8
                                       for c in LABELLED_COLUMNS})
    return frame, {"path": str(path), "items": frame.height, "skipped": dict(skipped),
                   "first_seen": first_seen}


def _several_labelled_sets(
    paths: Sequence[str], topics: Mapping[str, str] | None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """load_labelled_set over several files, concatenated (its docstring)."""
    if len(paths) == 1:
        return load_labelled_set(paths[0], topics)
    if not paths:
        from value_drifts.data.user_files import UsageError

        raise UsageError("no labelled set given (an empty list of files)")
    frames, records = [], []
    for path in paths:
        frame, read = load_labelled_set(path, topics)
        name = Path(path).name
        frames.append(frame.with_columns((pl.lit(f"{name}:") + pl.col("question_id"))
                                         .alias("question_id")))
        records.append(read)
    skipped: Counter[str] = Counter()
    first_seen: dict[str, str] = {}
    for path, read in zip(paths, records, strict=True):
        skipped.update(read["skipped"])
        for reason, place in read["first_seen"].items():
            first_seen.setdefault(reason, f"{Path(path).name}, {place}")
    frame = pl.concat(frames, how="vertical_relaxed")
    return frame, {"path": ", ".join(paths), "items": frame.height, "skipped": dict(skipped),
                   "first_seen": first_seen, "files": records}


def _labelled_row(row: Mapping[str, Any], known: Mapping[str, str],
                  by_topic: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """One labelled item from a table row, or why it cannot be one."""
    text = {key: str(row.get(key) or "").strip() for key in ("question", "response")}
    for key, value in text.items():
        if not value:
            return {}, f"empty {key}"
    label = str(row.get("label", row.get("stance")) or "").strip().lower()
    if label not in STANCES:
        return {}, f"label {label!r} is no stance (support, neutral, oppose)"
    category = str(row.get("category") or "").strip()
    topic = str(row.get("topic") or "").strip()
    if category:
        if known and category not in known:
            return {}, f"unknown category {category!r}"
    elif topic in by_topic:
        category = by_topic[topic]
    else:
        return {}, f"unknown topic {topic!r}" if topic else "no category or topic"
    return {"category": category, **text, "sample": 0, "stance": label,
            "kind": str(row.get("kind") or "labelled")}, None


def _yaml_layout(path: str | Path) -> pl.DataFrame:
    """The shipped layout: category -> question + stance -> kind -> response, or a list of
    such entries (one per question); ids are ``category[/n]/stance/kind``, n from 2 on."""
    spec = yaml.safe_load(Path(path).read_text())
    rows = [
        {
            "question_id": "/".join([category, *([str(number)] if number > 1 else []),
                                     stance, kind]),
            "category": category,
            "question": entry["question"],
            "response": response,
            "sample": 0,
            "stance": stance,
            "kind": kind,
        }
        for category, entries in spec.items()
        for number, entry in enumerate(entries if isinstance(entries, list) else [entries], 1)
        for stance in STANCES
        for kind, response in entry[stance].items()
    ]
    return pl.DataFrame(rows)


def expected_calibration_error(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by size.

    Written here because scikit-learn has no multi-class ECE (only calibration_curve).
    """
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            error += members.mean() * abs(hit[members].mean() - conf[members].mean())
    return float(error)


UNREADABLE = "unreadable"


def agreement_metrics(labels: Sequence[str], probabilities: np.ndarray) -> dict[str, Any]:
    """Judge predictions (argmax of p(support, neutral, oppose)) against hand labels.

    ``probabilities``: items × 3, a row of NaN for an unreadable answer. An unreadable
    answer is a prediction of its own (``unreadable``): it counts against accuracy and
    macro-F1, gets its own column in ``unreadable_by_label`` and stays out of the
    calibration error (it has no confidence).
    """
    # imported here: the Snakefile imports this module, and sklearn takes ~1.7 s to import
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    probs = np.asarray(probabilities, dtype=float).reshape(len(labels), len(STANCES))
    readable = ~np.isnan(probs).any(axis=1)
    predicted = [
        STANCES[int(np.argmax(row))] if ok else UNREADABLE
        for row, ok in zip(probs, readable, strict=True)
    ]
    correct = np.array([p == t for p, t in zip(predicted, labels, strict=True)])
    return {
        "n": len(labels),
        "unreadable": int((~readable).sum()),
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=list(STANCES), average="macro",
                                   zero_division=0)),
        "expected_calibration_error": (
            expected_calibration_error(probs[readable].max(axis=1), correct[readable])
            if readable.any() else float("nan")
        ),
        "labels": list(STANCES),
        "confusion": confusion_matrix(labels, predicted, labels=list(STANCES)).tolist(),
        "unreadable_by_label": [
            sum(1 for p, t in zip(predicted, labels, strict=True) if p == UNREADABLE and t == s)
            for s in STANCES
        ],
        "predicted": predicted,
    }


def agreement_markdown(metrics: dict[str, Any], by_kind: dict[str, float], judge: str) -> str:
    """The agreement report: summary line, confusion matrix, accuracy by kind of answer,
    and the labelled set's rows left out (by reason) when there were any."""
    lines = [
        f"### Judge agreement: {judge}",
        "",
        f"{metrics['n']} hand-labelled items; accuracy {metrics['accuracy']:.2f}, "
        f"macro-F1 {metrics['macro_f1']:.2f}, expected calibration error "
        f"{metrics['expected_calibration_error']:.2f}; {metrics.get('unreadable', 0)} "
        "unreadable answers (counted as wrong).",
        "",
        "| true \\ judged | " + " | ".join(metrics["labels"]) + " |",
        "|---|" + "---:|" * len(metrics["labels"]),
    ]
    for label, row in zip(metrics["labels"], metrics["confusion"], strict=True):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "| kind of answer | accuracy |", "|---|---:|"]
    lines += [f"| {kind} | {accuracy:.2f} |" for kind, accuracy in sorted(by_kind.items())]
    labelled = metrics.get("labelled_set") or {}
    if labelled.get("skipped"):
        lines += ["", f"Left out of `{labelled['path']}`:", ""]
        lines += [f"- {reason}: {n} (first at {labelled['first_seen'][reason]})"
                  for reason, n in labelled["skipped"].items()]
    return "\n".join(lines) + "\n"


def plot_confusion(metrics: dict[str, Any], title: str, outputs: Sequence[str | Path]) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    from value_drifts.core.figures import save_figure  # also selects the file-only Agg backend

    sns.set_theme(style="white", context="paper")
    fig, ax = plt.subplots(figsize=(3.6, 3.0))
    sns.heatmap(np.array(metrics["confusion"]), annot=True, fmt="d", cmap="Blues", cbar=False,
                xticklabels=metrics["labels"], yticklabels=metrics["labels"], ax=ax)
    ax.set_xlabel("judged")
    ax.set_ylabel("hand label")
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    save_figure(fig, outputs)
