"""Wall time of the small default end to end on this machine, where it goes, and a fixed
CPU reference workload's time, so that numbers from machines of different speed compare.

Runs in a fresh copy of the repository (kept with --keep DIR). Target: `make
demo` from a fresh clone, setup included, in at most 10 minutes on 2 cores.
Usage: .venv/bin/python benchmarks/small_default.py [--keep DIR] [--reference-only]
"""

import argparse
import csv
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.workflow import copy_repo, snakemake  # noqa: E402

from benchmarks.cpu_reference import reference_seconds  # noqa: E402


def job_times(workdir: Path) -> dict[str, float]:
    """Seconds of every job, by its benchmark file (Snakemake's `benchmark:` tsv)."""
    times = {}
    for tsv in sorted((workdir / "benchmarks").rglob("*.tsv")):
        with tsv.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        times[str(tsv.relative_to(workdir / "benchmarks"))[: -len(".tsv")]] = float(row["s"])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in DIR and keep it")
    parser.add_argument("--reference-only", action="store_true")
    args = parser.parse_args()
    print(f"CPU reference workload: {reference_seconds():.1f} s", flush=True)
    if args.reference_only:
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp) / "value-drifts"
        if workdir.exists():
            shutil.rmtree(workdir)
        copy_repo(workdir)
        start = time.perf_counter()
        snakemake("--cores", "2", cwd=workdir, timeout=3600)
        wall = time.perf_counter() - start
        times = job_times(workdir)
    per_stage: dict[str, list[float]] = defaultdict(list)
    for job, seconds in times.items():
        per_stage[job.split("/")[0]].append(seconds)
    print(f"small default workflow: {wall / 60:.1f} min wall on 2 cores, {len(times)} jobs,"
          f" {sum(times.values()):.0f} s of job time")
    for stage, seconds in sorted(per_stage.items()):
        print(f"  {stage:<16} {len(seconds):>3} jobs, {sum(seconds):7.1f} s in total,"
              f" {max(seconds):6.1f} s the longest")
    for job, seconds in sorted(times.items(), key=lambda item: -item[1])[:15]:
        print(f"  {seconds:7.1f} s  {job}")


if __name__ == "__main__":
    main()
