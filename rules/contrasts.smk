# Paired contrasts of two runs on the same questions (analysis.contrasts): one table per
# configured pair, run a's drift magnitude minus run b's per topic and stance
# (value_drifts.analysis.contrasts). Included by the Snakefile after rules/common.smk and
# rules/settings.smk, whose globals it uses.
from value_drifts.analysis.contrasts import planned_contrasts  # noqa: E402
from value_drifts.core.layout import contrast_table_name  # noqa: E402

try:
    # name -> (model, run a, run b); a pair naming no planned run stops the workflow here
    CONTRASTS = {
        contrast_table_name(model, a, b): (model, a, b)
        for model, a, b in planned_contrasts(
            config["analysis"].get("contrasts") or [],
            [(phase.model, phase.run) for phase in PLAN.phases],
        )
    }
except ValueError as error:
    raise WorkflowError(f"invalid config: {error}") from None


# The contrast tables the config asks for (markdown; the CSV comes with it).
CONTRAST_TABLES = [table(name) for name in CONTRASTS]


localrules:
    contrast_table,


rule contrast_table:
    """Run a's drift magnitude minus run b's per topic and stance, paired by question, with
    a bootstrap CI, p-value and Benjamini-Yekutieli q-value."""
    input:
        a=lambda wc: question_values_path(*CONTRASTS[wc.contrast][:2]),
        b=lambda wc: question_values_path(
            CONTRASTS[wc.contrast][0], CONTRASTS[wc.contrast][2]
        ),
        settings=ANALYSIS_SETTINGS,
    output:
        csv=table("{contrast}", "csv"),
        md=table("{contrast}"),
    log:
        "logs/tables/{contrast}.log",
    wildcard_constraints:
        contrast=_alternatives(CONTRASTS) if CONTRASTS else "none^",
    conda:
        conda_env("analysis")
    params:
        runs=lambda wc: CONTRASTS[wc.contrast][1:],
        title=lambda wc: "Paired contrast, {}: {} minus {}".format(
            *CONTRASTS[wc.contrast]
        ),
        ci_level=config["analysis"]["ci_level"],
        n_resamples=config["analysis"]["bootstrap_resamples"],
        seed=config["seed"],
    script:
        "../workflow_scripts/contrast_table.py"
