import polars as pl

from value_drifts.core.io import logged, write_json
from value_drifts.data.teacher import make_teacher
from value_drifts.data.value_gap_set import (
    DEFAULT_RULES,
    OutputRules,
    generate_responses,
    load_system_template,
    load_values,
    pairs_from_responses,
)

with logged(snakemake.log[0]):
    retrieved = pl.read_parquet(snakemake.input.retrieved).to_dicts()
    teacher = make_teacher(snakemake.params.teacher)
    min_words = snakemake.params.min_words
    rules = OutputRules(min_words=min_words) if min_words else DEFAULT_RULES
    responses = generate_responses(
        retrieved,
        teacher,
        load_values(snakemake.input.values, {item["category"] for item in retrieved}),
        load_system_template(snakemake.input.system_prompt),
        rules,
    )
    pl.DataFrame(responses).write_parquet(snakemake.output.responses)
    _, _, counts = pairs_from_responses(responses)
    run_counts = getattr(teacher, "last_run_counts", None)
    counts["teacher"] = run_counts.as_dict() if run_counts is not None else {}
    write_json(snakemake.output.counts, counts)
    print(counts)
