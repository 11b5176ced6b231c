rule values:
    """v(T) per step, category and stance, with CIs, for one training phase."""
    input:
        trajectory_judgments,
    output:
        "results/{model}/{run}/values.parquet",
    log:
        "logs/aggregate/{model}/{run}/values.log",
    conda:
        "../envs/analysis.yaml"
    params:
        steps=trajectory_steps,
        ci_level=config["analysis"]["ci_level"],
    script:
        "../workflow_scripts/values.py"


rule drift:
    """Drift magnitude and drift time per category and stance for one phase."""
    input:
        "results/{model}/{run}/values.parquet",
    output:
        parquet="results/{model}/{run}/drift.parquet",
        csv="results/{model}/{run}/drift.csv",
    log:
        "logs/aggregate/{model}/{run}/drift.log",
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/drift.py"


rule sft_drift_table:
    """Drift magnitude and time by topic, SFT dataset and stance (paper Tables 9-12)."""
    input:
        sft_drifts,
    output:
        csv=report(
            "results/tables/sft_drift_{model}.csv",
            caption="../report/sft_drift_table.rst",
            category="Tables",
        ),
        md="results/tables/sft_drift_{model}.md",
    log:
        "logs/tables/sft_drift_{model}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        runs=lambda wc: [phase.run for phase in PLAN.sft_phases(wc.model)],
        title=lambda wc: f"SFT drift, {wc.model}",
    script:
        "../workflow_scripts/drift_table.py"


rule po_drift_table:
    """Drift by topic, algorithm, preference set and stance (paper Tables 1, 13-16)."""
    input:
        po_table_drifts,
    output:
        csv=report(
            "results/tables/po_drift_{model}_sft-{sft_dataset}.csv",
            caption="../report/po_drift_table.rst",
            category="Tables",
        ),
        md="results/tables/po_drift_{model}_sft-{sft_dataset}.md",
    log:
        "logs/tables/po_drift_{model}_sft-{sft_dataset}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        runs=lambda wc: [
            f"{phase.algorithm}-{phase.preference_set}"
            for phase in po_main_phases(wc.model, wc.sft_dataset)
        ],
        title=lambda wc: f"Preference optimisation drift, {wc.model} SFT-{wc.sft_dataset}",
    script:
        "../workflow_scripts/drift_table.py"
