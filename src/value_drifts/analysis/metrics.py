"""Values, drift magnitude and drift time (paper §3), as pure functions.

v_t(T)_s: mean over a topic's questions of each question's mean stance probability over
its sampled responses. Drift magnitude M_s = v_end - v_start. Drift time
η = η_ext / η_total: the steps needed to come within the CI of the extremum of v_s,
over the phase's length in steps. Both get percentile bootstrap CIs from resampling questions;
drift magnitude also gets a two-sided bootstrap p-value for "M ≠ 0" from the same resamples
(``bootstrap_p_value``), and a table of them false-discovery-rate q-values (``fdr_q_values``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def ci_halfwidth(values, level: float = 0.95, axis: int | None = None):
    """Half-width of the Student-t confidence interval of the mean; NaN for one value.

    With ``axis``, one half-width per slice along it (e.g. per step of a questions × steps
    matrix), computed in one vectorised pass.
    """
    from scipy import stats  # imported here: the Snakefile imports this module

    x = np.asarray(values, dtype=float)
    n = x.size if axis is None else x.shape[axis]
    if n < 2:
        return math.nan if axis is None else np.full(np.delete(x.shape, axis), math.nan)
    sem = x.std(ddof=1, axis=axis) / math.sqrt(n)
    half = stats.t.ppf(0.5 + level / 2, df=n - 1) * sem
    return float(half) if axis is None else half


def drift_magnitude(start: float, end: float) -> float:
    """M_s(t, t') = v_t'(T)_s - v_t(T)_s."""
    return float(end - start)


def extremum_index(values: Sequence[float]) -> int:
    """Index of the peak or low point: the value farthest from the phase's start.

    A trajectory that rises has its extremum at its peak, one that falls at its low; the
    first occurrence wins a tie, and a flat trajectory's extremum is its start. Raises
    ValueError on NaN (numpy's argmax would pick the NaN as the extremum).
    """
    v = np.asarray(values, dtype=float)
    if np.isnan(v).any():
        raise ValueError("a trajectory with NaN values has no extremum")
    return int(np.argmax(np.abs(v - v[0])))


def drift_time(
    steps: Sequence[int], values: Sequence[float], halfwidths: Sequence[float]
) -> float:
    """η = (first step within the extremum's CI - start step) / (last step - start step)
    (paper §3, drift time); a fraction of the phase in [0, 1].

    ``halfwidths`` are the unclipped Student-t CI half-widths of the values (the
    ``ci_halfwidth`` column, not the [0, 1]-clipped bounds shown in figures): the
    tolerance around the extremum. NaN when the phase has a single checkpoint (no steps
    to count) or when any value is NaN (a step without a readable answer: its place in
    the trajectory is unknown, so no step count would be honest). A NaN half-width (a
    single question) means the extremum must be reached exactly.
    """
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    h = np.asarray(halfwidths, dtype=float)
    if not (s.size == v.size == h.size):
        raise ValueError("steps, values and halfwidths must have the same length")
    if s.size < 2 or s[-1] == s[0] or np.isnan(v).any():
        return math.nan
    if np.any(np.diff(s) <= 0):
        raise ValueError("steps must be strictly increasing")
    ext = extremum_index(v)
    tolerance = 0.0 if math.isnan(h[ext]) else h[ext]
    reached = int(np.argmax(np.abs(v - v[ext]) <= tolerance + 1e-12))
    return float((s[reached] - s[0]) / (s[-1] - s[0]))


def trajectory_drift(steps: Sequence[int], per_question: np.ndarray, level: float = 0.95):
    """(magnitude, drift time) of one stance from a questions × steps matrix of
    per-question stance probabilities: v is the column mean, its CI the t-interval."""
    x = np.asarray(per_question, dtype=float)
    values = x.mean(axis=0)
    halfwidths = ci_halfwidth(x, level, axis=0)
    return drift_magnitude(values[0], values[-1]), drift_time(steps, values, halfwidths)


def question_bootstrap(n_questions: int, statistic, level: float, n_resamples: int, seed: int):
    """``scipy.stats.bootstrap`` percentile resampling of question indices 0..n-1:
    ``statistic(indices)`` is computed on each resample. Undefined statistics (NaN) and
    questions that all agree make degenerate resamples; callers handle both, so scipy's
    warnings about them are silenced here."""
    from scipy import stats  # imported here: the Snakefile imports this module

    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        return stats.bootstrap(
            (np.arange(n_questions),),
            statistic,
            vectorized=False,
            n_resamples=n_resamples,
            confidence_level=level,
            method="percentile",
            rng=np.random.default_rng(seed),
        )


def bootstrap_drift(
    steps: Sequence[int],
    per_question: Sequence[np.ndarray],
    level: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Percentile bootstrap CIs of drift magnitude and drift time, resampling questions.

    ``per_question`` holds one questions × steps matrix per stance, rows aligned (the same
    question in the same row), so one resample of questions is followed through every step
    and every stance. Returns an array of shape (len(per_question), 2 quantities, 2 bounds):
    [stance][magnitude | drift time][low | high]. NaN where a quantity is undefined (one
    question, or one checkpoint for drift time).
    """
    return bootstrap_drift_tests(steps, per_question, level, n_resamples, seed)[0]


def bootstrap_drift_tests(
    steps: Sequence[int],
    per_question: Sequence[np.ndarray],
    level: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``bootstrap_drift``'s bounds, and per stance the two-sided p-value of "drift
    magnitude ≠ 0" (``bootstrap_p_value``) from the very resamples the magnitude's interval
    is read from: (bounds, p) with p of shape (len(per_question),), NaN where the bounds are
    (fewer than two questions)."""
    matrices = [np.asarray(m, dtype=float) for m in per_question]
    n_questions = matrices[0].shape[0]
    result = np.full((len(matrices), 2, 2), math.nan)
    if n_questions < 2:
        return result, np.full(len(matrices), math.nan)

    def statistic(rows):
        rows = rows.astype(int)
        return np.array(
            [quantity for m in matrices for quantity in trajectory_drift(steps, m[rows], level)]
        )

    bootstrap = question_bootstrap(n_questions, statistic, level, n_resamples, seed)
    interval = bootstrap.confidence_interval
    bounds = np.stack([interval.low, interval.high], axis=-1).reshape(len(matrices), 2, 2)
    if len(steps) < 2:
        bounds[:, 1, :] = math.nan
    # replicates: one row per (stance, quantity), magnitude first
    replicates = np.asarray(bootstrap.bootstrap_distribution).reshape(len(matrices), 2, -1)
    p_values = np.array([bootstrap_p_value(replicates[s, 0]) for s in range(len(matrices))])
    return bounds, p_values


def bootstrap_p_value(replicates: Sequence[float] | np.ndarray, null: float = 0.0) -> float:
    """Two-sided bootstrap p-value of "the quantity ≠ ``null``" from its B bootstrap
    replicates: p = min(1, 2 · min((#{r ≤ null} + 1) / (B + 1), (#{r ≥ null} + 1) / (B + 1))).

    It is the percentile interval turned around: p is (up to the +1 correction) the
    smallest α for which the (1 − α) percentile interval of the same replicates excludes
    ``null``, so p < 0.05 where the 95% interval lies on one side of it. The +1 counts the
    observed sample as one of the resamples (the Monte Carlo p-value of Davison & Hinkley
    1997, ch. 4), so p is never 0 and its smallest value is 2 / (B + 1): with 1000
    resamples no p falls below 0.002.
    Replicates that are NaN are left out; NaN when none is left.
    """
    r = np.asarray(replicates, dtype=float)
    r = r[~np.isnan(r)]
    if r.size == 0:
        return math.nan
    below = (np.count_nonzero(r <= null) + 1) / (r.size + 1)
    above = (np.count_nonzero(r >= null) + 1) / (r.size + 1)
    return float(min(1.0, 2.0 * min(below, above)))


def fdr_q_values(p_values: Sequence[float] | np.ndarray, method: str = "by") -> np.ndarray:
    """False-discovery-rate q-values (adjusted p-values) of a family of tests,
    ``scipy.stats.false_discovery_control``; NaN p-values (no test) are left out of the
    family and stay NaN.

    ``method="by"`` (Benjamini–Yekutieli) controls the FDR under any dependence between the
    tests; ``"bh"`` (Benjamini–Hochberg) needs independence or positive dependence. The
    drift tables use BY over topic × stance: a topic's three stance shares sum to one, so
    its three magnitudes sum to zero and are negatively dependent, which BH does not cover.
    """
    from scipy import stats  # imported here: the Snakefile imports this module

    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, math.nan)
    tested = ~np.isnan(p)
    if tested.any():
        q[tested] = stats.false_discovery_control(p[tested], method=method)
    return q


def bootstrap_mean_tests(
    samples: np.ndarray,
    level: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CIs of the column means of a questions × k matrix, resampling
    its rows (questions) jointly for all k columns, and each mean's two-sided p-value of
    "≠ 0" (``bootstrap_p_value``) from the same resamples: (bounds of shape (k, 2), p of
    shape (k,)); NaN with fewer than two rows."""
    x = np.asarray(samples, dtype=float)
    k = x.shape[1]
    if x.shape[0] < 2:
        return np.full((k, 2), math.nan), np.full(k, math.nan)
    bootstrap = question_bootstrap(
        x.shape[0], lambda rows: x[rows.astype(int)].mean(axis=0), level, n_resamples, seed)
    interval = bootstrap.confidence_interval
    bounds = np.stack([np.atleast_1d(interval.low), np.atleast_1d(interval.high)], axis=-1)
    replicates = np.asarray(bootstrap.bootstrap_distribution).reshape(k, -1)
    return bounds, np.array([bootstrap_p_value(r) for r in replicates])
