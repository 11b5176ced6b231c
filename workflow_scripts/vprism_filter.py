from pathlib import Path

import polars as pl

from value_drifts.core.io import logged, write_json
from value_drifts.data.teacher import make_teacher
from value_drifts.data.vprism import filter_questions

with logged(snakemake.log[0]):
    rows = pl.read_parquet(snakemake.input.categorised).to_dicts()
    teacher = make_teacher(snakemake.params.llm)
    filtered, counts = filter_questions(
        rows, teacher, Path(snakemake.input.template).read_text()
    )
    run_counts = getattr(teacher, "last_run_counts", None)
    counts["llm"] = run_counts.as_dict() if run_counts is not None else {}
    pl.DataFrame(filtered, infer_schema_length=None).write_parquet(snakemake.output.filtered)
    write_json(snakemake.output.counts, counts)
    print(counts)
