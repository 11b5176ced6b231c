"""Wall time of the small default end to end on this machine, and where it goes.

Runs in a fresh copy of the repository. Target (issue 3): under 10 minutes on 2 cores.
Usage: .venv/bin/python benchmarks/small_default.py
"""

import csv
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.workflow import copy_repo, snakemake  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    workdir = copy_repo(Path(tmp) / "value-drifts")
    start = time.perf_counter()
    snakemake("--cores", "2", cwd=workdir, timeout=3600)
    wall = time.perf_counter() - start
    per_rule: dict[str, list[float]] = defaultdict(list)
    for tsv in (workdir / "benchmarks").rglob("*.tsv"):
        with tsv.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        per_rule[tsv.relative_to(workdir / "benchmarks").parts[0]].append(float(row["s"]))
    print(f"small default end to end: {wall / 60:.1f} min wall on 2 cores")
    for stage, seconds in sorted(per_rule.items()):
        print(f"  {stage:<10} {len(seconds):>3} jobs, {sum(seconds):7.1f} s in total,"
              f" {max(seconds):6.1f} s the longest")
