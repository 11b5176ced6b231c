"""Time of the bootstrap CIs for drift magnitude and time at paper size.

One phase of the paper grid: 11 categories × 50 questions × up to 58 checkpoints, 3 stances,
1000 resamples. Usage: .venv/bin/python benchmarks/bootstrap_drift.py [checkpoints]
"""

import sys
import time

import numpy as np

from value_drifts.analysis.metrics import bootstrap_drift

checkpoints = int(sys.argv[1]) if len(sys.argv) > 1 else 58
rng = np.random.default_rng(0)
steps = list(range(0, 100 * checkpoints, 100))
start = time.perf_counter()
for _ in range(11):
    drift = np.linspace(0.2, 0.6, checkpoints)
    support = np.clip(drift + rng.normal(0, 0.15, (50, checkpoints)), 0, 1)
    bootstrap_drift(steps, [support, 1 - support, np.zeros_like(support)], n_resamples=1000)
elapsed = time.perf_counter() - start
print(f"bootstrap CIs, 11 categories x 50 questions x {checkpoints} checkpoints x 3 stances, "
      f"1000 resamples: {elapsed:.1f} s per phase ({elapsed / 11:.2f} s per category)")
