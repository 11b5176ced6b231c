import polars as pl

from value_drifts.analysis.judge_agreement_steps import (
    agreement_markdown,
    agreement_table,
    judge_drift,
    paired_readings,
    plot_agreement,
)
from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    pairs = {
        int(step): paired_readings(pl.read_parquet(main), pl.read_parquet(reference))
        for step, main, reference in zip(
            snakemake.params.steps, snakemake.input.main, snakemake.input.reference,
            strict=True,
        )
    }
    table = agreement_table(pairs)
    drift = judge_drift(pairs)
    print(table)
    table.write_csv(snakemake.output.csv)
    drift.write_csv(snakemake.output.drift)
    with open(snakemake.output.md, "w") as md:
        md.write(agreement_markdown(table, drift, snakemake.params.title))
    plot_agreement(table, snakemake.params.title,
                   [snakemake.output.pdf, snakemake.output.png])
