"""Values, drift magnitude and drift time (paper §3), as pure functions.

v_t(T)_s: mean over a topic's questions of each question's mean stance probability over
its sampled responses. Drift magnitude M_s = v_end - v_start. Drift time
η = η_ext / η_total: the steps needed to come within the CI of the extremum of v_s,
over the phase's length in steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def ci_halfwidth(values: Sequence[float], level: float = 0.95) -> float:
    """Half-width of the Student-t confidence interval of the mean; NaN for one value."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return math.nan
    sem = x.std(ddof=1) / math.sqrt(x.size)
    return float(stats.t.ppf(0.5 + level / 2, df=x.size - 1) * sem)


def drift_magnitude(start: float, end: float) -> float:
    """M_s(t, t') = v_t'(T)_s - v_t(T)_s."""
    return float(end - start)


def extremum_index(values: Sequence[float]) -> int:
    """Index of the peak or low point: the value farthest from the phase's start.

    A trajectory that rises has its extremum at its peak, one that falls at its low; the
    first occurrence wins a tie, and a flat trajectory's extremum is its start.
    """
    v = np.asarray(values, dtype=float)
    return int(np.argmax(np.abs(v - v[0])))


def drift_time(
    steps: Sequence[int], values: Sequence[float], halfwidths: Sequence[float]
) -> float:
    """η = (first step within the extremum's CI - start step) / (last step - start step).

    NaN when the phase has a single checkpoint (no steps to count). A NaN half-width
    (a single question) means the extremum must be reached exactly.
    """
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    h = np.asarray(halfwidths, dtype=float)
    if not (s.size == v.size == h.size):
        raise ValueError("steps, values and halfwidths must have the same length")
    if s.size < 2 or s[-1] == s[0]:
        return math.nan
    if np.any(np.diff(s) <= 0):
        raise ValueError("steps must be strictly increasing")
    ext = extremum_index(v)
    tolerance = 0.0 if math.isnan(h[ext]) else h[ext]
    reached = int(np.argmax(np.abs(v - v[ext]) <= tolerance + 1e-12))
    return float((s[reached] - s[0]) / (s[-1] - s[0]))
