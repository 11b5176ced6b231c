"""Wall time of `snakemake -n --configfile config/paper.yaml` beside bare Snakemake.

The reference is a trivial Snakefile with the same number of jobs: two wildcard rules
with a lambda param each (what every Snakemake workflow pays per job). Both are timed in
the same run, interleaved, so the ratio holds across machines. Target (the study-model
issue): the paper dry run at most 1.5 x the reference.

With --directives it also times two copies of this workflow that differ only in
Snakemake directives, to show what Snakemake itself spends per job on them: every
``script:`` replaced by ``shell: "true"`` (Snakemake reads each job's script source while
it builds the DAG), then every ``conda:`` dropped as well (it expands each job's params to
resolve its env), and last every directive but ``input:`` and ``output:`` dropped (log,
benchmark, resources, threads, params): the floor of this DAG's shape, jobs with several
inputs among 40 rules. None of the copies is a usable workflow.

Usage: .venv/bin/python benchmarks/paper_dry_run.py [repeats] [--directives]
"""

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.workflow import SNAKEMAKE, copy_repo, job_counts, snakemake  # noqa: E402

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


def _drop(text: str, directive: str) -> str:
    """``text`` without any rule's ``directive:`` block."""
    return re.sub(rf"\n    {directive}:[^\n]*\n((        [^\n]*|)\n)*?(?=    \S|\S|$)", "\n", text)


def without_directives(destination: Path, conda: bool, only_files: bool = False) -> Path:
    """A copy of the workflow whose rules run ``true`` instead of their scripts (and, with
    ``conda=False``, name no conda env; with ``only_files``, keep nothing but input and
    output: no log, benchmark, resources, threads, params or conda)."""
    copy_repo(destination)
    for rules in (destination / "rules").glob("*.smk"):
        text = re.sub(r'script:\n(\s+)"[^"]+"', r'shell:\n\1"true"', rules.read_text())
        if not conda:
            text = re.sub(r"\n    conda:\n\s+[^\n]+", "", text)
        if only_files:
            for directive in ("log", "benchmark", "resources", "threads", "params", "conda"):
                text = _drop(text, directive)
        rules.write_text(text)
    return destination


def main() -> None:
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    repeats = int(arguments[0]) if arguments else 3
    directives = "--directives" in sys.argv
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

        copies = {}
        if directives:
            copies = {
                "scripts as shell": without_directives(Path(tmp, "shell"), conda=True),
                "scripts as shell, no conda": without_directives(Path(tmp, "bare"), conda=False),
                "only input and output": without_directives(
                    Path(tmp, "files"), conda=False, only_files=True),
            }
        copy_s: dict[str, list[float]] = {name: [] for name in copies}

        ours_s, trivial_s = [], []
        for _ in range(repeats):
            ours_s.append(timed(ours))
            trivial_s.append(timed(trivial))
            for name, directory in copies.items():
                copy_s[name].append(timed(lambda d=directory: snakemake(
                    "-n", "--nolock", "--quiet", "--configfile", "config/paper.yaml", cwd=d)))
    ours_m, trivial_m = statistics.median(ours_s), statistics.median(trivial_s)
    print(f"paper dry run: {jobs} jobs")
    print(f"  value-drifts (config/paper.yaml): median {ours_m:.1f} s "
          f"(min {min(ours_s):.1f}, max {max(ours_s):.1f}) over {repeats} runs")
    print(f"  trivial Snakefile, {2 * ((jobs - 1) // 2) + 1} jobs: median {trivial_m:.1f} s "
          f"(min {min(trivial_s):.1f}, max {max(trivial_s):.1f})")
    print(f"  ratio: {ours_m / trivial_m:.2f} (target <= 1.5)")
    for name, times in copy_s.items():
        median = statistics.median(times)
        print(f"  this workflow, {name}: median {median:.1f} s (min {min(times):.1f}, "
              f"max {max(times):.1f}), ratio {median / trivial_m:.2f}")


if __name__ == "__main__":
    main()
