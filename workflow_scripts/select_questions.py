import yaml

from value_drifts.generation import read_questions, sample_questions
from value_drifts.io import logged

with logged(snakemake.log[0]):
    topics = yaml.safe_load(open(snakemake.input.topics))
    questions = read_questions(snakemake.input.questions, list(topics))
    selected = sample_questions(questions, snakemake.params.per_category, snakemake.params.seed,
                                 snakemake.params.categories)
    selected.write_parquet(snakemake.output[0])
    print(selected.group_by("category").len().sort("category"))
