import polars as pl
import yaml

from value_drifts.analysis.dataset_stances import (
    preference_text_pairs,
    sample_items,
    value_gap_pairs,
)
from value_drifts.core.io import logged, write_json
from value_drifts.data.value_gap_set import load_encoder
from value_drifts.judge.backends import backend_counts, make_backend
from value_drifts.judge.prompt import load_template
from value_drifts.judge.run import check_readable, min_label_mass

with logged(snakemake.log[0]):
    settings = snakemake.params.settings
    rows = pl.read_parquet(snakemake.input.data).to_dicts()
    kept = sample_items(rows, settings.get("max_items"), snakemake.params.seed)
    backend = make_backend(
        snakemake.params.judge,
        model_path=snakemake.params.model_path,
        state_path=snakemake.params.batch_state,
        threads=snakemake.threads,
    )
    gaps, counts = value_gap_pairs(
        pairs=preference_text_pairs(rows[i] for i in kept),
        questions=pl.read_parquet(snakemake.input.questions),
        topics=yaml.safe_load(open(snakemake.input.topics)),
        encoder=load_encoder(settings["encoder"]),
        template=load_template(snakemake.input.prompt),
        backend=backend,
        threshold=settings["min_similarity"],
        chunk_size=settings["chunk_size"],
        label_mass=min_label_mass(snakemake.params.judge),
    )
    # Row numbers in the prepared preference set, not in the analysed sample.
    gaps = gaps.with_columns(
        pl.col("item").replace_strict(list(range(len(kept))), kept, return_dtype=pl.Int64)
    )
    counts.update(items=len(rows), analysed=len(kept), **backend_counts(backend))
    print(counts)
    check_readable(counts["judge_health"], snakemake.params.judge, snakemake.output.gaps)
    gaps.write_parquet(snakemake.output.gaps)
    write_json(snakemake.output.counts, counts)
