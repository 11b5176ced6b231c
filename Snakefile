from snakemake.utils import min_version

min_version("9.0")


# A --configfile replaces the small default instead of being merged into it: Snakemake
# merges by default, which would mix the CPU grid into the paper's.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/settings.smk"
include: "rules/inputs.smk"
include: "rules/targets.smk"
include: "rules/resources.smk"
include: "rules/models.smk"
include: "rules/data.smk"
include: "rules/vprism.smk"
include: "rules/dataset_stances.smk"
include: "rules/sft.smk"
include: "rules/po.smk"
include: "rules/generate.smk"
include: "rules/judge.smk"
include: "rules/aggregate.smk"
include: "rules/contrasts.smk"
include: "rules/figures.smk"
include: "rules/evaluate.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
