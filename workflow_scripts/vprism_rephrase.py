from pathlib import Path

import polars as pl

from value_drifts.core.io import logged, write_json
from value_drifts.data.teacher import make_teacher
from value_drifts.data.vprism import rephrase_prompts

with logged(snakemake.log[0]):
    settings = snakemake.params.rephrase
    prompts = pl.read_parquet(snakemake.input.prompts).to_dicts()
    teacher = make_teacher(snakemake.params.llm)
    rows, counts = rephrase_prompts(
        prompts,
        teacher,
        Path(snakemake.input.template).read_text(),
        on_problem=settings["on_problem"],
        max_length_ratio=settings["max_length_ratio"],
        min_overlap=settings["min_overlap"],
        only_statements=settings["only_statements"],
    )
    run_counts = getattr(teacher, "last_run_counts", None)
    counts["llm"] = run_counts.as_dict() if run_counts is not None else {}
    pl.DataFrame(rows, infer_schema_length=None).write_parquet(snakemake.output.questions)
    write_json(snakemake.output.counts, counts)
    print(counts)
