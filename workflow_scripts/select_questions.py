import yaml

from value_drifts.core.io import logged
from value_drifts.core.questions import read_questions, sample_questions

with logged(snakemake.log[0]):
    topics = yaml.safe_load(open(snakemake.input.topics))
    questions = read_questions(snakemake.input.questions, list(topics))
    selected = sample_questions(questions, snakemake.params.per_category, snakemake.params.seed,
                                 snakemake.params.categories)
    selected.write_parquet(snakemake.output[0])
    print(selected.group_by("category").len().sort("category"))
