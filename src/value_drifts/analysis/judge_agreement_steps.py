"""Agreement of the main judge and a reference judge on the same stored answers, per
checkpoint step and over a run, and the drift each judge gives (``judge.reference``;
docs/judges.md, "A second judge").

Readings are stance probability vectors (p_support, p_neutral, p_oppose), shape (n, 3),
each row summing to 1 (probabilities, unitless); an unreadable reading is NaN and is left
out of every number here (it is no stance). Sources of the measures:

- Cohen's kappa on the argmax stance: Cohen (1960), "A coefficient of agreement for
  nominal scales"; computed by ``sklearn.metrics.cohen_kappa_score`` over the three
  stances. Undefined (NaN) when both judges give one and the same label to every answer.
- Krippendorff's alpha, nominal level, on the argmax stance: Krippendorff (2011),
  "Computing Krippendorff's alpha-reliability"; computed by the ``krippendorff`` package
  (``krippendorff.alpha``, value domain the three stances). Undefined (NaN) likewise.
- Total-variation distance of two probability vectors: half their L1 distance, in [0, 1]
  (0: the same reading; 1: disjoint); its mean over answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import seaborn as sns  # noqa: E402

from value_drifts.core.figures import save_figure  # noqa: E402
from value_drifts.core.stances import STANCES  # noqa: E402

# one definition of each, shared with the prompt audit (judge.audit)
from value_drifts.judge.audit import argmax_stance, total_variation  # noqa: E402, F401

PROBABILITY_COLUMNS = tuple(f"p_{stance}" for stance in STANCES)
# The two judges, as they are named in the tables.
JUDGES = ("main", "reference")
# The key of one answer within a checkpoint (generations' rows).
ANSWER_KEY = ("question_id", "sample")


def cohen_kappa(a: Sequence[int], b: Sequence[int]) -> float:
    """Cohen's kappa of two judges' labels (indices into ``STANCES``), each of length n;
    NaN for no answers or when kappa is undefined (one label everywhere)."""
    if len(a) == 0:
        return math.nan
    import warnings

    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(list(a), list(b), labels=list(range(len(STANCES))),
                                       replace_undefined_by=np.nan))


def krippendorff_alpha(a: Sequence[int], b: Sequence[int]) -> float:
    """Krippendorff's alpha (nominal) of two judges' labels (indices into ``STANCES``), each
    of length n; NaN for no answers or when alpha is undefined (one label everywhere)."""
    if len(a) == 0:
        return math.nan
    import warnings

    import krippendorff

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(krippendorff.alpha(
            reliability_data=np.vstack([np.asarray(a, float), np.asarray(b, float)]),
            level_of_measurement="nominal", value_domain=list(range(len(STANCES))),
        ))


def agreement(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    """Agreement of two judges' readings of the same n answers, shapes (n, 3): ``n``,
    ``kappa``, ``alpha`` (both on the argmax stance), ``argmax_agreement`` (the share of
    answers with the same argmax) and ``mean_tv`` (mean total-variation distance)."""
    p, q = np.asarray(p, float).reshape(-1, 3), np.asarray(q, float).reshape(-1, 3)
    a, b = argmax_stance(p), argmax_stance(q)
    n = len(a)
    return {
        "n": n,
        "kappa": cohen_kappa(a, b),
        "alpha": krippendorff_alpha(a, b),
        "argmax_agreement": float((a == b).mean()) if n else math.nan,
        "mean_tv": float(total_variation(p, q).mean()) if n else math.nan,
    }


def paired_readings(main: pl.DataFrame, reference: pl.DataFrame) -> pl.DataFrame:
    """One checkpoint's answers read by both judges: the reference judgments' rows joined
    to the main judgments on (question_id, sample), with ``category`` and each judge's
    probabilities (``main_p_support``, ..., ``reference_p_oppose``); rows where either
    reading is unreadable (NaN) are left out."""
    def side(frame: pl.DataFrame, judge: str) -> pl.DataFrame:
        return frame.select(*ANSWER_KEY, *([pl.col("category")] if judge == "main" else []),
                            *[pl.col(c).alias(f"{judge}_{c}") for c in PROBABILITY_COLUMNS])

    joined = side(reference, "reference").join(side(main, "main"), on=list(ANSWER_KEY))
    readable = [pl.col(f"{j}_{c}").is_not_nan() & pl.col(f"{j}_{c}").is_not_null()
                for j in JUDGES for c in PROBABILITY_COLUMNS]
    return joined.filter(pl.all_horizontal(readable))


def _matrix(pairs: pl.DataFrame, judge: str) -> np.ndarray:
    return pairs.select([f"{judge}_{c}" for c in PROBABILITY_COLUMNS]).to_numpy().reshape(-1, 3)


def agreement_table(pairs_by_step: Mapping[int, pl.DataFrame]) -> pl.DataFrame:
    """One row per step (``scope`` "step") and one over every step of the run (``scope``
    "run", ``step`` null): ``n`` answers read by both, ``kappa``, ``alpha``,
    ``argmax_agreement``, ``mean_tv`` (``agreement``)."""
    rows = [{"scope": "step", "step": int(step),
             **agreement(_matrix(pairs, "main"), _matrix(pairs, "reference"))}
            for step, pairs in sorted(pairs_by_step.items())]
    everything = pl.concat(list(pairs_by_step.values())) if pairs_by_step else None
    run = (agreement(_matrix(everything, "main"), _matrix(everything, "reference"))
           if everything is not None else agreement(np.zeros((0, 3)), np.zeros((0, 3))))
    rows.append({"scope": "run", "step": None, **run})
    return pl.DataFrame(rows, schema={
        "scope": pl.Utf8, "step": pl.Int64, "n": pl.Int64, "kappa": pl.Float64,
        "alpha": pl.Float64, "argmax_agreement": pl.Float64, "mean_tv": pl.Float64,
    })


def judge_drift(pairs_by_step: Mapping[int, pl.DataFrame]) -> pl.DataFrame:
    """Each judge's drift magnitude on the sampled answers: per category and stance, the
    mean probability at the run's last step minus at its first (M_s = v_t'(T)_s -
    v_t(T)_s, the paper's drift magnitude, here over the sample's answers), both judges on
    the same answers. Columns: ``category``, ``stance``, ``main``, ``reference``,
    ``difference`` (reference - main), ``n_first``, ``n_last`` (answers read by both)."""
    if not pairs_by_step:
        return pl.DataFrame(schema={"category": pl.Utf8, "stance": pl.Utf8,
                                    "main": pl.Float64, "reference": pl.Float64,
                                    "difference": pl.Float64, "n_first": pl.Int64,
                                    "n_last": pl.Int64})
    first, last = (pairs_by_step[s] for s in (min(pairs_by_step), max(pairs_by_step)))

    def means(pairs: pl.DataFrame) -> pl.DataFrame:
        return pairs.group_by("category").agg(
            pl.len().alias("n"),
            *[pl.col(f"{j}_{c}").mean().alias(f"{j}_{c}") for j in JUDGES
              for c in PROBABILITY_COLUMNS],
        )

    start, end = means(first), means(last)
    rows = []
    for category in sorted(set(start["category"]) | set(end["category"])):
        a = start.filter(pl.col("category") == category)
        b = end.filter(pl.col("category") == category)
        for stance, column in zip(STANCES, PROBABILITY_COLUMNS, strict=True):
            drift = {
                judge: (b[f"{judge}_{column}"][0] - a[f"{judge}_{column}"][0])
                if a.height and b.height else None
                for judge in JUDGES
            }
            rows.append({
                "category": category, "stance": stance, **drift,
                "difference": (drift["reference"] - drift["main"])
                if drift["main"] is not None else None,
                "n_first": a["n"][0] if a.height else 0,
                "n_last": b["n"][0] if b.height else 0,
            })
    return pl.DataFrame(rows, schema={"category": pl.Utf8, "stance": pl.Utf8,
                                      "main": pl.Float64, "reference": pl.Float64,
                                      "difference": pl.Float64, "n_first": pl.Int64,
                                      "n_last": pl.Int64})


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def agreement_markdown(table: pl.DataFrame, drift: pl.DataFrame, title: str) -> str:
    """The agreement table and the drift of both judges as markdown (NaN as –)."""
    lines = [f"# {title}", "",
             "Cohen's κ and Krippendorff's α (nominal) on the argmax stance; mean TV: the "
             "mean total-variation distance of the two probability vectors.", "",
             "| step | answers | κ | α | same argmax | mean TV |", "|---|---:|---:|---:|---:|---:|"]
    for row in table.iter_rows(named=True):
        step = "run" if row["scope"] == "run" else str(row["step"])
        lines.append(f"| {step} | {row['n']} | {_cell(row['kappa'])} | {_cell(row['alpha'])} | "
                     f"{_cell(row['argmax_agreement'])} | {_cell(row['mean_tv'])} |")
    lines += ["", "Drift magnitude (last step − first) on the same sampled answers:", "",
              "| category | stance | main | reference | reference − main |",
              "|---|---|---:|---:|---:|"]
    for row in drift.iter_rows(named=True):
        lines.append(f"| {row['category']} | {row['stance']} | {_cell(row['main'])} | "
                     f"{_cell(row['reference'])} | {_cell(row['difference'])} |")
    return "\n".join(lines) + "\n"


def plot_agreement(table: pl.DataFrame, title: str, outputs: Sequence[str | Path]) -> None:
    """Cohen's κ and the mean total-variation distance over a run's steps (one point per
    step; a step where κ is undefined has none), each saved to every output path."""
    sns.set_theme(style="whitegrid", context="paper")
    steps_table = table.filter(pl.col("scope") == "step").sort("step")
    steps = steps_table["step"].to_numpy()
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    for column, label, colour in (("kappa", "Cohen's κ", "#1f77b4"),
                                  ("mean_tv", "mean TV distance", "#d62728")):
        values = steps_table[column].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        ax.plot(steps, values, marker="o", markersize=3, color=colour, label=label)
    ax.axhline(0, color="0.4", linewidth=0.6)
    ax.set_ylim(-1, 1)
    ax.set_xlabel("training step")
    ax.set_ylabel("agreement / distance")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(title, fontsize="small")
    fig.tight_layout()
    save_figure(fig, outputs)
