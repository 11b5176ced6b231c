import yaml

from value_drifts.core.io import logged
from value_drifts.judge.audit import (
    audit_checkpoints,
    audit_markdown,
    audit_prompts,
    audit_sample,
)
from value_drifts.judge.backends import make_backend
from value_drifts.judge.prompt import load_template
from value_drifts.judge.run import min_label_mass

with logged(snakemake.log[0]):
    judge = snakemake.params.judge
    sample = audit_sample(
        audit_checkpoints(snakemake.input.generations, snakemake.params.checkpoints),
        snakemake.params.answers,
        snakemake.params.seed,
    )
    backend = make_backend(
        judge,
        model_path=snakemake.params.model_path,
        state_path=snakemake.params.batch_state,
        threads=snakemake.threads,
    )
    # the main prompt is only read; each alternative is read from its own file
    table = audit_prompts(
        sample,
        yaml.safe_load(open(snakemake.input.topics)),
        load_template(snakemake.input.prompt),
        {path: load_template(path) for path in snakemake.input.alternatives},
        backend,
        label_mass=min_label_mass(judge),
    )
    print(table)
    table.write_csv(snakemake.output.csv)
    with open(snakemake.output.md, "w") as md:
        md.write(audit_markdown(table, snakemake.input.prompt, sample.height))
