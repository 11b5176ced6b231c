import polars as pl
import yaml

from value_drifts.analysis.dataset_stances import sft_dataset_stances
from value_drifts.core.io import logged, write_json
from value_drifts.data.value_gap_set import load_encoder
from value_drifts.judge.backends import backend_counts, make_backend
from value_drifts.judge.prompt import CONVERSATION_FIELDS, load_template
from value_drifts.judge.run import check_readable, min_label_mass

with logged(snakemake.log[0]):
    settings = snakemake.params.settings
    backend = make_backend(
        snakemake.params.judge,
        model_path=snakemake.params.model_path,
        state_path=snakemake.params.batch_state,
        threads=snakemake.threads,
    )
    stances, counts = sft_dataset_stances(
        rows=pl.read_parquet(snakemake.input.data).select("messages").to_dicts(),
        questions=pl.read_parquet(snakemake.input.questions),
        topics=yaml.safe_load(open(snakemake.input.topics)),
        encoder=load_encoder(settings["encoder"]),
        template=load_template(snakemake.input.prompt, CONVERSATION_FIELDS),
        backend=backend,
        threshold=settings["min_similarity"],
        max_items=settings.get("max_items"),
        max_chars=settings.get("max_conversation_chars"),
        chunk_size=settings["chunk_size"],
        seed=snakemake.params.seed,
        label_mass=min_label_mass(snakemake.params.judge),
    )
    counts.update(backend_counts(backend))
    print(counts)
    check_readable(counts["health"], snakemake.params.judge, snakemake.output.stances)
    stances.write_parquet(snakemake.output.stances)
    write_json(snakemake.output.counts, counts)
