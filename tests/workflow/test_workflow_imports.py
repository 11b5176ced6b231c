"""What the Snakefile imports stays light: Snakemake parses it for every run, every dry run
and every cluster job, so a heavy library imported at module level there costs each of them
(sklearn.metrics alone took ~1.7 s, scipy.stats ~0.7 s; 2-core CPU, 2026-12-01)."""

import re
import subprocess
import sys
from pathlib import Path

from tests.support.workflow import REPO

HEAVY = ("sklearn", "scipy", "torch", "transformers", "trl", "matplotlib", "datasets", "umap")


def workflow_modules() -> list[str]:
    """The value_drifts modules that the Snakefile and rules/*.smk import."""
    modules = set()
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        for line in path.read_text().splitlines():
            if match := re.match(r"from (value_drifts[\w.]*) import (\w+)", line):
                package, name = match.groups()
                submodule = REPO / "src" / Path(*package.split("."), f"{name}.py")
                modules.add(f"{package}.{name}" if submodule.is_file() else package)
            elif match := re.match(r"import (value_drifts[\w.]*)", line):
                modules.add(match.group(1))
    return sorted(modules)


def test_the_workflow_imports_no_heavy_library():
    modules = workflow_modules()
    assert "value_drifts.judge.agreement" in modules and "value_drifts.data.vprism" in modules
    code = (f"import sys\nimport {', '.join(modules)}\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO / "src")}, check=True)
    assert result.stdout.strip() == "[]", result.stdout
