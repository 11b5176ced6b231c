"""How well the small default's adapted judge agrees with the shipped labelled set, and what
its adaptation costs, for the current config or a variant of it.

Runs `results/judge/agreement/metrics.json` in a fresh copy of the repository (the base
model conversion, the adaptation and the agreement job), with optional overlay config
files merged over config/config.yaml (Snakemake merges them key by key), e.g.
  judge: {adapt: {size: 288, learning_rate: 1.0e-4}}
Prints the CPU reference time, the jobs' seconds, accuracy, macro-F1 and accuracy by kind
of answer (resources/stance_agreement.yaml). Target: accuracy and macro-F1 of
at least 0.85.
Usage: .venv/bin/python benchmarks/judge_adaptation.py [OVERLAY.yaml ...]
"""

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.workflow import copy_repo, snakemake  # noqa: E402

from benchmarks.cpu_reference import reference_seconds  # noqa: E402
from benchmarks.small_default import job_times  # noqa: E402


def main(overlays: list[Path]) -> None:
    print(f"CPU reference workload: {reference_seconds():.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = copy_repo(Path(tmp) / "value-drifts")
        configs = ["config/config.yaml"]
        for number, overlay in enumerate(overlays):
            shutil.copy(overlay, workdir / f"overlay-{number}.yaml")
            configs.append(f"overlay-{number}.yaml")
        start = time.perf_counter()
        snakemake("results/judge/agreement/metrics.json", "--cores", "2",
                  "--configfile", *configs, cwd=workdir, timeout=3600)
        wall = time.perf_counter() - start
        metrics = json.loads((workdir / "results/judge/agreement/metrics.json").read_text())
        times = job_times(workdir)
    print(f"overlays: {[str(o) for o in overlays] or 'none'}; {wall:.0f} s wall")
    for job, seconds in times.items():
        print(f"  {seconds:7.1f} s  {job}")
    print(f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} on "
          f"{metrics['n']} items; confusion (rows: support, neutral, oppose) "
          f"{metrics['confusion']}")
    for kind, accuracy in sorted(metrics["by_kind"].items()):
        print(f"  {kind:<20} {accuracy:.2f}")


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]])
