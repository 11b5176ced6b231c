from pathlib import Path

import polars as pl
import yaml

from value_drifts.core.io import logged, write_json
from value_drifts.judge.agreement import (
    agreement_markdown,
    agreement_metrics,
    load_labelled_set,
    plot_confusion,
)
from value_drifts.judge.backends import make_backend
from value_drifts.judge.prompt import load_template
from value_drifts.judge.run import judge_generations, min_label_mass

with logged(snakemake.log[0]):
    judge = snakemake.params.judge
    topics = yaml.safe_load(open(snakemake.input.topics))
    items, labelled = load_labelled_set(snakemake.input.labelled, topics)
    print(f"labelled set: {labelled}")
    backend = make_backend(
        judge,
        model_path=snakemake.params.model_path,
        state_path=snakemake.params.batch_state,
        threads=snakemake.threads,
    )
    judgments, counts = judge_generations(
        items,
        topics,
        load_template(snakemake.input.prompt),
        backend,
        label_mass=min_label_mass(judge),
    )
    probabilities = judgments.select("p_support", "p_neutral", "p_oppose").to_numpy()
    metrics = agreement_metrics(items["stance"].to_list(), probabilities)
    hits = items.with_columns(
        (pl.Series(metrics.pop("predicted")) == pl.col("stance")).alias("correct")
    )
    by_kind = dict(hits.group_by("kind").agg(pl.col("correct").mean()).iter_rows())
    # every item's label and reading, so the answers the judge gets wrong can be looked up
    items_read = hits.select("question_id", "kind", "stance", "correct").to_dicts()
    metrics.update(judge=judge["model"], by_kind=by_kind, judge_counts=counts,
                   labelled_set=labelled, items=items_read)
    write_json(snakemake.output.metrics, metrics)
    items.select("question_id", "kind", "stance").with_columns(
        judgments.select("p_support", "p_neutral", "p_oppose")
    ).write_parquet(snakemake.output.readings)
    Path(snakemake.output.md).write_text(agreement_markdown(metrics, by_kind, judge["model"]))
    plot_confusion(
        metrics,
        f"judge {judge['model']}: accuracy {metrics['accuracy']:.2f}",
        [snakemake.output.pdf, snakemake.output.png],
    )
    print(metrics)
