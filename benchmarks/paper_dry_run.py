"""Wall time of `snakemake -n --configfile config/paper.yaml` beside bare Snakemake.

The reference is a trivial Snakefile with the same number of jobs: two wildcard rules
with a lambda param each (what every Snakemake workflow pays per job). Both are timed in
the same run, interleaved, so the ratio holds across machines. Target (the study-model
issue): the paper dry run at most 1.5 x the reference.

Usage: .venv/bin/python benchmarks/paper_dry_run.py [repeats]
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.workflow import SNAKEMAKE, job_counts, snakemake  # noqa: E402

TRIVIAL = """
N = {n}


rule all:
    input:
        expand("b/{{i}}.txt", i=range(N)),


rule a:
    output:
        "a/{{i}}.txt",
    params:
        p=lambda wc: wc.i,
    shell:
        "touch {{output}}"


rule b:
    input:
        "a/{{i}}.txt",
    output:
        "b/{{i}}.txt",
    params:
        q=lambda wc: wc.i,
    shell:
        "touch {{output}}"
"""


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    paper = snakemake("-n", "--nolock", "--configfile", "config/paper.yaml")
    jobs = sum(job_counts(paper.stdout + paper.stderr).values())
    with tempfile.TemporaryDirectory() as tmp:
        # 2 rules x n jobs + the `all` job
        Path(tmp, "Snakefile").write_text(TRIVIAL.format(n=(jobs - 1) // 2))

        def trivial():
            subprocess.run([*SNAKEMAKE, "-n", "--nolock", "--quiet"], cwd=tmp, check=True,
                           capture_output=True)

        def ours():
            snakemake("-n", "--nolock", "--quiet", "--configfile", "config/paper.yaml")

        ours_s, trivial_s = [], []
        for _ in range(repeats):
            ours_s.append(timed(ours))
            trivial_s.append(timed(trivial))
    ours_m, trivial_m = statistics.median(ours_s), statistics.median(trivial_s)
    print(f"paper dry run: {jobs} jobs")
    print(f"  value-drifts (config/paper.yaml): median {ours_m:.1f} s "
          f"(min {min(ours_s):.1f}, max {max(ours_s):.1f}) over {repeats} runs")
    print(f"  trivial Snakefile, {2 * ((jobs - 1) // 2) + 1} jobs: median {trivial_m:.1f} s "
          f"(min {min(trivial_s):.1f}, max {max(trivial_s):.1f})")
    print(f"  ratio: {ours_m / trivial_m:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
