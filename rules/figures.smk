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
    script:
        "../workflow_scripts/figure_sft_trajectories.py"
