"""Wall time of `snakemake -n --configfile config/paper.yaml` and its job count.

Target (issue 3): under 20 s. Usage: .venv/bin/python benchmarks/paper_dry_run.py [repeats]
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.workflow import job_counts, snakemake  # noqa: E402

repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
times = []
for _ in range(repeats):
    start = time.perf_counter()
    result = snakemake("-n", "--nolock", "--configfile", "config/paper.yaml")
    times.append(time.perf_counter() - start)
jobs = job_counts(result.stdout + result.stderr)
print(f"paper dry run: {sum(jobs.values())} jobs")
print(f"wall time over {repeats} runs: min {min(times):.1f} s, median {statistics.median(times):.1f} s,"
      f" max {max(times):.1f} s")
