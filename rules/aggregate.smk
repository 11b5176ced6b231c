rule values:
    """v(T) per step, category and stance, with CIs, for one training phase."""
    input:
        judgments=trajectory_judgments,
        settings=ANALYSIS_SETTINGS,
    output:
        values=values_path("{model}", "{run}"),
        question_values=question_values_path("{model}", "{run}"),
    log:
        "logs/aggregate/{model}/{run}/values.log",
    conda:
        conda_env("analysis")
    params:
        steps=trajectory_steps,
        ci_level=config["analysis"]["ci_level"],
    script:
        "../workflow_scripts/values.py"


rule judge_health:
    """How readable the judge's answers were at every checkpoint of one phase."""
    input:
        counts=trajectory_judge_counts,
    output:
        csv=report(
            judge_health_path("{model}", "{run}"),
            caption="../report/judge_health.rst",
            category="Judge",
        ),
        md=judge_health_path("{model}", "{run}", "md"),
    log:
        "logs/aggregate/{model}/{run}/judge_health.log",
    conda:
        conda_env("analysis")
    params:
        steps=trajectory_steps,
        title=lambda wc: f"Judge health, {wc.model} {wc.run}",
    script:
        "../workflow_scripts/judge_health.py"


rule drift:
    """Drift magnitude and drift time per category and stance for one phase, each with a
    bootstrap CI over questions."""
    input:
        values=values_path("{model}", "{run}"),
        question_values=question_values_path("{model}", "{run}"),
        settings=ANALYSIS_SETTINGS,
    output:
        parquet=drift_path("{model}", "{run}"),
        csv=drift_path("{model}", "{run}", "csv"),
    log:
        "logs/aggregate/{model}/{run}/drift.log",
    conda:
        conda_env("analysis")
    params:
        ci_level=config["analysis"]["ci_level"],
        n_resamples=config["analysis"]["bootstrap_resamples"],
        seed=config["seed"],
    script:
        "../workflow_scripts/drift.py"


rule calibrated_values:
    """Values, drift magnitude and drift time of one phase corrected for the judge's error
    (its soft confusion matrix on the labelled set), beside the raw ones, with intervals
    from a joint bootstrap over questions and labelled items."""
    input:
        question_values=question_values_path("{model}", "{run}"),
        readings=judge_agreement("readings.parquet"),
        settings=ANALYSIS_SETTINGS,
    output:
        values=calibrated_values_path("{model}", "{run}"),
        parquet=calibrated_drift_path("{model}", "{run}"),
        csv=calibrated_drift_path("{model}", "{run}", "csv"),
    log:
        "logs/aggregate/{model}/{run}/calibrated_values.log",
    conda:
        conda_env("analysis")
    params:
        ci_level=config["analysis"]["ci_level"],
        n_resamples=config["analysis"]["bootstrap_resamples"],
        seed=config["seed"],
    script:
        "../workflow_scripts/calibrated_values.py"


rule sft_drift_table:
    """Drift magnitude and time by topic, SFT dataset and stance (paper Tables 9-12)."""
    input:
        drifts=sft_drifts,
        calibrated=calibrated_drifts_of(sft_drifts),
        settings=ANALYSIS_SETTINGS,
    output:
        csv=report(
            table(SFT_TABLE, "csv"),
            caption="../report/sft_drift_table.rst",
            category="Tables",
        ),
        md=table(SFT_TABLE),
    log:
        "logs/tables/table09-12_{model}_sft.log",
    conda:
        conda_env("analysis")
    params:
        runs=lambda wc: [phase.run for phase in PLAN.sft_phases(wc.model)],
        title=lambda wc: f"SFT drift, {wc.model}",
    script:
        "../workflow_scripts/drift_table.py"


rule po_drift_table:
    """Drift by topic, algorithm, preference set and stance (paper Tables 1, 13-16)."""
    input:
        drifts=po_table_drifts,
        calibrated=calibrated_drifts_of(po_table_drifts),
        settings=ANALYSIS_SETTINGS,
    output:
        csv=report(
            table(PO_TABLE, "csv"),
            caption="../report/po_drift_table.rst",
            category="Tables",
        ),
        md=table(PO_TABLE),
    log:
        f"logs/tables/{PO_TABLE}.log",
    conda:
        conda_env("analysis")
    params:
        runs=lambda wc: [
            f"{phase.algorithm}-{phase.preference_set}"
            for phase in po_main_phases(wc.model, wc.sft_dataset)
        ],
        title=lambda wc: f"Preference optimisation drift, {wc.model} SFT-{wc.sft_dataset}",
    script:
        "../workflow_scripts/drift_table.py"


rule paper_comparison:
    """Our drift magnitudes and times beside the numbers stated in the paper's text."""
    input:
        reference=lookup(dpath="analysis/paper_reference", within=config, default=[]),
        drifts=paper_comparison_drifts,
        settings=ANALYSIS_SETTINGS,
    output:
        csv=report(
            table(PAPER_COMPARISON_TABLE, "csv"),
            caption="../report/paper_vs_ours.rst",
            category="Tables",
        ),
        md=table(PAPER_COMPARISON_TABLE),
    log:
        "logs/tables/paper_vs_ours.log",
    conda:
        conda_env("analysis")
    params:
        runs=lambda wc: sorted({(e["model"], e["run"]) for e in paper_reference()}),
    script:
        "../workflow_scripts/paper_comparison.py"


rule trace_drift_table:
    """Drift magnitude and time of a trace by topic and stance."""
    input:
        drifts=lambda wc: [drift_path(TRACES, wc.trace)],
        calibrated=lambda wc: [calibrated_drift_path(TRACES, wc.trace)],
        settings=ANALYSIS_SETTINGS,
    output:
        csv=report(
            table(TRACE_TABLE, "csv"),
            caption="../report/trace.rst",
            category="Traces",
        ),
        md=table(TRACE_TABLE),
    log:
        f"logs/tables/{TRACE_TABLE}.log",
    conda:
        conda_env("analysis")
    params:
        runs=lambda wc: [wc.trace],
        title=lambda wc: f"Drift of trace {wc.trace}",
    script:
        "../workflow_scripts/drift_table.py"
