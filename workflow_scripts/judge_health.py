import json
from pathlib import Path

from value_drifts.core.io import logged
from value_drifts.judge.health import health_markdown, health_table

with logged(snakemake.log[0]):
    counts = {
        step: json.loads(Path(path).read_text())
        for step, path in zip(snakemake.params.steps, snakemake.input.counts, strict=True)
    }
    table = health_table({step: c["health"] for step, c in counts.items()},
                         {step: c.get("answer_flags") for step, c in counts.items()})
    table.write_csv(snakemake.output.csv)
    Path(snakemake.output.md).write_text(health_markdown(table, snakemake.params.title))
    print(table)
