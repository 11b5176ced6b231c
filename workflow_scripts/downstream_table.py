import json
from pathlib import Path

from value_drifts.analysis.downstream import downstream_markdown, downstream_table
from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    rows = [
        (model, run, json.loads(Path(path).read_text()))
        for (model, run), path in zip(snakemake.params.checkpoints, snakemake.input.downstream, strict=True)
    ]
    table = downstream_table(rows)
    table.write_csv(snakemake.output.csv)
    Path(snakemake.output.md).write_text(downstream_markdown(table))
    print(table)
