"""Values corrected for the judge's own error, with intervals that carry it.

A value is the judge's mean reading over a topic's questions, v = mean_q p_q (support,
neutral, oppose). The judge is an instrument with errors: from a labelled set (answers
whose stance a person gave), its *soft confusion matrix* M has one row per gold stance g,
the mean reading the judge gives to answers whose stance is g. If the judged answers
resemble the labelled ones, the judge's view of a true stance distribution π is
v ≈ Mᵀπ, so π is estimated on the simplex (π ≥ 0, Σπ = 1) by constrained least squares
(``simplex_least_squares``). With M the identity the calibrated value is the raw one.

Intervals come from a joint bootstrap (``calibrated_trajectory``): each replicate
resamples the questions (paired across steps, as the drift bootstrap does) *and* the
labelled items (within each gold stance, so every row of M stays defined), estimates M
and π again, and the percentile interval over replicates carries both the sampling of
questions and the uncertainty of the judge's error rates; it widens as the labelled set
shrinks.

A correction means nothing when M cannot be inverted in practice: ``weak_judge_reasons``
flags a judge whose matrix is ill conditioned (condition number above
``MAX_CONDITION``: errors in v are amplified more than tenfold), whose reading of some
gold stance is not mostly that stance (a row whose diagonal entry is not its largest:
the judge confuses that stance with another more often than it recognises it), or whose
labelled set has fewer than ``MIN_ITEMS_PER_STANCE`` items of some stance (M's row is
then a guess). Flagged runs still get calibrated numbers, with the flag beside them.

Source: the correction of prevalence estimates for a classifier's confusion rates
(e.g. Forman 2008, "adjusted classify and count"; its soft-label form for LLM judges in
recent work on reporting LLM-as-a-judge results); the value and drift definitions are the
paper's §3 (``analysis.metrics``).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from value_drifts.analysis.metrics import drift_magnitude, drift_time
from value_drifts.core.stances import STANCES

MAX_CONDITION = 10.0
MIN_ITEMS_PER_STANCE = 10
PROB_COLUMNS = [f"p_{s}" for s in STANCES]


def soft_confusion(gold: Sequence[str], readings: np.ndarray) -> np.ndarray:
    """M (3 × 3, rows and columns in ``STANCES`` order): row g the mean reading of the
    items whose gold stance is g; unreadable readings (any NaN) are left out, and a gold
    stance without a readable item gives a NaN row.

    ``gold``: n stance names; ``readings``: n × 3 probabilities."""
    readings = np.asarray(readings, dtype=float).reshape(-1, 3)
    gold = np.asarray(gold)
    readable = ~np.isnan(readings).any(axis=1)
    rows = []
    for stance in STANCES:
        mask = readable & (gold == stance)
        rows.append(readings[mask].mean(axis=0) if mask.any() else np.full(3, math.nan))
    return np.vstack(rows)


def simplex_least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin_π ‖a π − b‖² over the probability simplex (π ≥ 0, Σπ = 1), for a k × k
    ``a`` and one ``b`` (k,) or many (n × k, one solution per row). Every support set is
    tried (k ≤ 4 in use: 7 sets for the three stances); the problem is convex, so the
    feasible stationary point of a face with the smallest residual is the minimum. NaN
    where ``a`` or a row of ``b`` holds NaN."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    single = b.ndim == 1
    bs = b.reshape(-1, a.shape[0])
    k = a.shape[1]
    out = np.full((bs.shape[0], k), math.nan)
    if np.isnan(a).any():
        return out[0] if single else out
    defined = ~np.isnan(bs).any(axis=1)
    best = np.full(bs.shape[0], math.inf)
    for size in range(k, 0, -1):
        for support in itertools.combinations(range(k), size):
            columns = a[:, support]
            # minimise ‖columns x − b‖² subject to Σx = 1 (KKT system), for every b at once
            kkt = np.zeros((size + 1, size + 1))
            kkt[:size, :size] = 2 * columns.T @ columns
            kkt[:size, size] = kkt[size, :size] = 1.0
            rhs = np.hstack([2 * bs[defined] @ columns, np.ones((int(defined.sum()), 1))])
            solution = np.linalg.lstsq(kkt, rhs.T, rcond=None)[0][:size].T
            pi = np.zeros((solution.shape[0], k))
            pi[:, list(support)] = np.clip(solution, 0.0, None)
            pi /= pi.sum(axis=1, keepdims=True)
            residual = np.sum((pi @ a.T - bs[defined]) ** 2, axis=1)
            feasible = (solution >= -1e-12).all(axis=1)
            rows = np.flatnonzero(defined)
            better = feasible & (residual < best[rows] - 1e-15)
            out[rows[better]] = pi[better]
            best[rows[better]] = residual[better]
    return out[0] if single else out


def calibrate(value: Sequence[float], confusion: np.ndarray) -> np.ndarray:
    """π (3,) on the simplex with Mᵀπ closest to the raw ``value`` (3,): the stance
    distribution whose reading by this judge best matches what it read."""
    return simplex_least_squares(np.asarray(confusion).T, np.asarray(value, dtype=float))


def condition_number(confusion: np.ndarray) -> float:
    """M's 2-norm condition number (inf when singular, NaN when M holds NaN)."""
    if np.isnan(confusion).any():
        return math.nan
    return float(np.linalg.cond(confusion))


def weak_judge_reasons(confusion: np.ndarray, items_per_stance: Mapping[str, int]) -> list[str]:
    """Why a correction with ``confusion`` would mean little (empty when it is usable):
    too few labelled items of a stance, a stance the judge reads as another more than as
    itself, or a condition number above ``MAX_CONDITION``."""
    reasons = [f"{n} labelled {stance} items (fewer than {MIN_ITEMS_PER_STANCE})"
               for stance in STANCES
               if (n := int(items_per_stance.get(stance, 0))) < MIN_ITEMS_PER_STANCE]
    for i, stance in enumerate(STANCES):
        row = confusion[i]
        if np.isnan(row).any():
            continue
        if row[i] < max(row[j] for j in range(3) if j != i):
            reasons.append(f"answers labelled {stance} are read as "
                           f"{STANCES[int(np.argmax(row))]} more than as {stance}")
    cond = condition_number(confusion)
    if not math.isnan(cond) and cond > MAX_CONDITION:
        reasons.append(f"condition number {cond:.1f} > {MAX_CONDITION:g}: errors in the "
                       "values would be amplified more than tenfold")
    return reasons


def _labelled_resample(gold: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Item indices resampled with replacement within each gold stance."""
    parts = [rng.choice(idx, size=idx.size, replace=True)
             for stance in STANCES if (idx := np.flatnonzero(gold == stance)).size]
    return np.concatenate(parts) if parts else np.array([], dtype=int)


def calibrated_trajectory(
    question_values: pl.DataFrame,
    gold: Sequence[str],
    readings: np.ndarray,
    ci_level: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Calibrated values per step and category, calibrated drift magnitude per category,
    and the judge's calibration summary, for one phase.

    ``question_values``: the phase's per-question values (columns step, question_id,
    category, p_support, p_neutral, p_oppose; null where unreadable:
    ``aggregate.trajectory_question_values``); ``gold``, ``readings``: the labelled set's
    stances and the judge's readings of it (n, n × 3).

    Returns:

    - values: step, category, stance, value (raw mean over the step's readable
      questions), calibrated, calibrated_low, calibrated_high;
    - drift: category, stance, magnitude (raw, on the questions readable at both ends),
      calibrated_magnitude, calibrated_magnitude_low/high, n_questions;
    - summary: ``confusion`` (rows gold), ``condition_number``, ``items_per_stance``,
      ``weak`` (bool) and ``weak_reasons``.

    Intervals: percentiles of a joint bootstrap (questions within each category, paired
    across steps; labelled items within each gold stance), ``n_resamples`` replicates.
    """
    gold = np.asarray(gold)
    readings = np.asarray(readings, dtype=float).reshape(-1, 3)
    confusion = soft_confusion(gold, readings)
    readable = ~np.isnan(readings).any(axis=1)
    items = {s: int(((gold == s) & readable).sum()) for s in STANCES}
    reasons = weak_judge_reasons(confusion, items)
    rng = np.random.default_rng(seed)
    alpha = (1 - ci_level) / 2
    steps = sorted(question_values["step"].unique().to_list())
    replicate_confusions = [
        soft_confusion(gold[idx], readings[idx])
        for idx in (_labelled_resample(gold, rng) for _ in range(n_resamples))
    ]
    categories = sorted(question_values["category"].unique().to_list())
    # per category: raw means at every step and at both ends (questions readable at both),
    # for the point estimate (row 0) and every replicate (rows 1..R)
    means = {}
    for category in categories:
        cube = _cube(question_values.filter(pl.col("category") == category), steps)
        n_questions = cube.shape[1]
        draws = np.vstack([np.arange(n_questions),
                           rng.integers(0, n_questions, size=(n_resamples, n_questions))])
        sample = cube[:, draws]  # step × (1 + R) × question × stance
        both_ends = ~np.isnan(cube[0]).any(axis=1) & ~np.isnan(cube[-1]).any(axis=1)
        paired = both_ends[draws][..., None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slice: NaN, as meant
            at_steps = np.nanmean(sample, axis=2)  # step × (1 + R) × stance
            ends = np.stack([np.nanmean(np.where(paired, sample[0], np.nan), axis=1),
                             np.nanmean(np.where(paired, sample[-1], np.nan), axis=1)])
        means[category] = (at_steps, ends, int(both_ends.sum()))
    # calibrate every mean of a replicate with that replicate's confusion matrix
    calibrated = {}
    for r, confusion_r in enumerate([confusion, *replicate_confusions]):
        stacked = np.vstack([np.vstack([at[:, r], ends[:, r]]) for at, ends, _ in means.values()])
        solved = simplex_least_squares(confusion_r.T, stacked)
        for c, category in enumerate(categories):
            block = solved[c * (len(steps) + 2):(c + 1) * (len(steps) + 2)]
            calibrated.setdefault(category, []).append(block)
    value_rows, drift_rows = [], []
    for category in categories:
        at_steps, ends, n_both = means[category]
        solved = np.stack(calibrated[category])  # (1 + R) × (steps + 2) × stance
        for s, step in enumerate(steps):
            for i, stance in enumerate(STANCES):
                low, high = _percentiles(solved[1:, s, i], alpha)
                value_rows.append({"step": step, "category": category, "stance": stance,
                                   "value": float(at_steps[s, 0, i]),
                                   "calibrated": float(solved[0, s, i]),
                                   "calibrated_low": low, "calibrated_high": high})
        for i, stance in enumerate(STANCES):
            low, high = _percentiles(solved[1:, -1, i] - solved[1:, -2, i], alpha)
            drift_rows.append({
                "category": category, "stance": stance,
                "magnitude": drift_magnitude(float(ends[0, 0, i]), float(ends[1, 0, i])),
                "calibrated_magnitude": drift_magnitude(float(solved[0, -2, i]),
                                                        float(solved[0, -1, i])),
                "calibrated_magnitude_low": low, "calibrated_magnitude_high": high,
                "n_questions": n_both,
            })
    values = pl.DataFrame(value_rows)
    drift = pl.DataFrame(drift_rows).join(_calibrated_drift_times(values), on=[
        "category", "stance"], how="left")
    summary = {
        "confusion": confusion.tolist(), "condition_number": condition_number(confusion),
        "items_per_stance": items, "weak": bool(reasons), "weak_reasons": reasons,
        "max_condition": MAX_CONDITION, "min_items_per_stance": MIN_ITEMS_PER_STANCE,
    }
    return values, drift, summary


def _calibrated_drift_times(values: pl.DataFrame) -> pl.DataFrame:
    """Drift time (``metrics.drift_time``) of each calibrated trajectory, its tolerance
    half the calibrated interval's width at each step (the raw drift time's is the
    Student-t half-width): category, stance, calibrated_drift_time."""
    rows = []
    for (category, stance), group in values.sort("step").group_by(
            ["category", "stance"], maintain_order=True):
        calibrated = group["calibrated"].to_list()
        half = ((group["calibrated_high"] - group["calibrated_low"]) / 2).to_list()
        defined = all(v is not None and not math.isnan(v) for v in calibrated)
        rows.append({"category": category, "stance": stance,
                     "calibrated_drift_time": drift_time(
                         group["step"].to_list(), calibrated,
                         [math.nan if h is None else h for h in half]) if defined else math.nan})
    return pl.DataFrame(rows, schema={"category": pl.Utf8, "stance": pl.Utf8,
                                      "calibrated_drift_time": pl.Float64})


def with_calibrated(values: pl.DataFrame, calibrated: pl.DataFrame) -> pl.DataFrame:
    """``values`` with the calibrated columns (calibrated, calibrated_low,
    calibrated_high, judge_weak) of the same run joined on step, category and stance."""
    keep = [c for c in ("calibrated", "calibrated_low", "calibrated_high", "judge_weak")
            if c in calibrated.columns]
    return values.join(calibrated.select("step", "category", "stance", *keep),
                       on=["step", "category", "stance"], how="left")


def _cube(frame: pl.DataFrame, steps: Sequence[int]) -> np.ndarray:
    """step × question × stance probabilities of one category (NaN where unreadable)."""
    questions = sorted(frame["question_id"].unique().to_list())
    position = {q: i for i, q in enumerate(questions)}
    cube = np.full((len(steps), len(questions), 3), math.nan)
    index = {step: i for i, step in enumerate(steps)}
    for row in frame.iter_rows(named=True):
        values = [row[c] for c in PROB_COLUMNS]
        if all(v is not None and not math.isnan(v) for v in values):
            cube[index[row["step"]], position[row["question_id"]]] = values
    return cube


def _percentiles(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    finite = samples[~np.isnan(samples)]
    if finite.size < 2:
        return math.nan, math.nan
    return float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))
