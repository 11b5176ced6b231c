rule figure_sft_trajectories:
    """Figure 3: stance probabilities over SFT steps, one panel per SFT dataset."""
    input:
        sft_values,
    output:
        pdf=report(
            "results/figures/fig03_sft_{model}_{topic}.pdf",
            caption="../report/fig03.rst",
            category="Figure 3",
        ),
        png="results/figures/fig03_sft_{model}_{topic}.png",
    log:
        "logs/figures/fig03_sft_{model}_{topic}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        category=lambda wc: CATEGORY_BY_SLUG[wc.topic],
        runs=lambda wc: [phase.run for phase in PLAN.sft_phases(wc.model)],
        title=lambda wc: f"{wc.model}: {CATEGORY_BY_SLUG[wc.topic]}",
    script:
        "../workflow_scripts/figure_trajectories.py"


rule figure_po_trajectories:
    """Figures 4, 7, 9, 11-14: stance probabilities over PO steps, one panel per algorithm."""
    input:
        po_figure_values,
    output:
        pdf=report(
            "results/figures/po_{model}_sft-{sft_dataset}_{preference_set}_{topic}.pdf",
            caption="../report/po_trajectories.rst",
            category="Preference optimisation",
        ),
        png="results/figures/po_{model}_sft-{sft_dataset}_{preference_set}_{topic}.png",
    log:
        "logs/figures/po_{model}_sft-{sft_dataset}_{preference_set}_{topic}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        category=lambda wc: CATEGORY_BY_SLUG[wc.topic],
        runs=lambda wc: [
            phase.algorithm
            for phase in po_main_phases(wc.model, wc.sft_dataset, wc.preference_set)
        ],
        title=lambda wc: (
            f"{wc.model} SFT-{wc.sft_dataset} on {wc.preference_set}: "
            f"{CATEGORY_BY_SLUG[wc.topic]}"
        ),
    script:
        "../workflow_scripts/figure_trajectories.py"


rule figure_ablation:
    """Figures 15-17: p(support) over PO steps for each value of one hyperparameter."""
    input:
        ablation_values,
    output:
        pdf=report(
            "results/figures/ablation_{ablation}_{topic}.pdf",
            caption="../report/ablation.rst",
            category="Ablations",
        ),
        png="results/figures/ablation_{ablation}_{topic}.png",
    log:
        "logs/figures/ablation_{ablation}_{topic}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        category=lambda wc: CATEGORY_BY_SLUG[wc.topic],
        labels=lambda wc: [
            f"{ABLATIONS[wc.ablation]['parameter']} = {value:g}"
            for value, _ in ablation_phases(wc.ablation)
        ],
        title=lambda wc: f"{wc.ablation.replace('_', ' ')}: {CATEGORY_BY_SLUG[wc.topic]}",
    script:
        "../workflow_scripts/figure_ablation.py"
