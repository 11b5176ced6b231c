"""How well a judge agrees with hand labels: accuracy, macro-F1, confusion, calibration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from value_drifts.stance import STANCES


def load_labelled_set(path: str | Path) -> pl.DataFrame:
    """Rows of (question_id, category, question, response, sample, stance, kind) from the
    YAML layout category -> question + stance -> kind -> response."""
    spec = yaml.safe_load(Path(path).read_text())
    rows = [
        {
            "question_id": f"{category}/{stance}/{kind}",
            "category": category,
            "question": entry["question"],
            "response": response,
            "sample": 0,
            "stance": stance,
            "kind": kind,
        }
        for category, entry in spec.items()
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
    return "\n".join(lines) + "\n"


def plot_confusion(metrics: dict[str, Any], title: str, outputs: Sequence[str | Path]) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    from value_drifts.plots import save_figure  # also selects the file-only Agg backend

    sns.set_theme(style="white", context="paper")
    fig, ax = plt.subplots(figsize=(3.6, 3.0))
    sns.heatmap(np.array(metrics["confusion"]), annot=True, fmt="d", cmap="Blues", cbar=False,
                xticklabels=metrics["labels"], yticklabels=metrics["labels"], ax=ax)
    ax.set_xlabel("judged")
    ax.set_ylabel("hand label")
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    save_figure(fig, outputs)
