rule figure_sft_trajectories:
    """Figure 3: stance probabilities over SFT steps, one panel per SFT dataset."""
    input:
        values=sft_values,
        calibrated=calibrated_values_of(sft_values),
        settings=ANALYSIS_SETTINGS,
    output:
        pdf=report(
            figure(SFT_FIGURE),
            caption="../report/fig03.rst",
            category="Figure 3",
        ),
        png=figure(SFT_FIGURE, "png"),
    log:
        "logs/figures/fig03_sft_{model}_{category_slug}.log",
    conda:
        conda_env("analysis")
    params:
        category=lambda wc: CATEGORY_BY_SLUG[wc.category_slug],
        runs=lambda wc: [phase.run for phase in PLAN.sft_phases(wc.model)],
        title=lambda wc: f"{wc.model}: {CATEGORY_BY_SLUG[wc.category_slug]}",
        start_label=lambda wc: sft_start_label(wc.model),
    script:
        "../workflow_scripts/figure_trajectories.py"


rule figure_po_trajectories:
    """Figures 4, 7, 9: stance probabilities over PO steps, one panel per algorithm."""
    input:
        values=po_figure_values,
        calibrated=calibrated_values_of(po_figure_values),
        settings=ANALYSIS_SETTINGS,
    output:
        pdf=report(
            figure(PO_FIGURE),
            caption="../report/po_trajectories.rst",
            category="Preference optimisation",
        ),
        png=figure(PO_FIGURE, "png"),
    log:
        f"logs/figures/{PO_FIGURE}.log",
    conda:
        conda_env("analysis")
    params:
        category=lambda wc: CATEGORY_BY_SLUG[wc.category_slug],
        runs=lambda wc: [
            phase.algorithm
            for phase in po_main_phases(wc.model, wc.sft_dataset, wc.preference_set)
        ],
        title=lambda wc: (
            f"{wc.model} SFT-{wc.sft_dataset} on {wc.preference_set}: "
            f"{CATEGORY_BY_SLUG[wc.category_slug]}"
        ),
        start_label="end of SFT",
    script:
        "../workflow_scripts/figure_trajectories.py"


rule figure_po_setups:
    """Figures 11-14: one algorithm on the synthetic sets, a panel per model and setup
    (support-aligned, oppose-aligned)."""
    input:
        values=setup_figure_values,
        calibrated=calibrated_values_of(setup_figure_values),
        settings=ANALYSIS_SETTINGS,
    output:
        pdf=report(
            figure(SETUP_FIGURE),
            caption="../report/po_setups.rst",
            category="Preference optimisation",
        ),
        png=figure(SETUP_FIGURE, "png"),
    log:
        f"logs/figures/{SETUP_FIGURE}.log",
    conda:
        conda_env("analysis")
    params:
        category=lambda wc: CATEGORY_BY_SLUG[wc.category_slug],
        runs=lambda wc: [
            f"{phase.model}, {phase.preference_set}"
            for phase in setup_phases(wc.algorithm, wc.sft_dataset)
        ],
        title=lambda wc: (
            f"{wc.algorithm.upper()} from SFT-{wc.sft_dataset}: {CATEGORY_BY_SLUG[wc.category_slug]}"
        ),
        start_label="end of SFT",
    script:
        "../workflow_scripts/figure_trajectories.py"


rule figure_ablation:
    """Figures 15-17: p(support) over PO steps for each value of one hyperparameter."""
    input:
        values=ablation_values,
        calibrated=calibrated_values_of(ablation_values),
        settings=ANALYSIS_SETTINGS,
    output:
        pdf=report(
            figure(ABLATION_FIGURE_NAME),
            caption="../report/ablation.rst",
            category="Ablations",
        ),
        png=figure(ABLATION_FIGURE_NAME, "png"),
    log:
        "logs/figures/fig{ablation_figure}_ablation_{ablation}_{category_slug}.log",
    conda:
        conda_env("analysis")
    params:
        category=lambda wc: CATEGORY_BY_SLUG[wc.category_slug],
        labels=lambda wc: [
            f"{ABLATIONS[wc.ablation]['parameter']} = {value:g}"
            for value, _ in ablation_phases(wc.ablation)
        ],
        title=lambda wc: f"{wc.ablation.replace('_', ' ')}: {CATEGORY_BY_SLUG[wc.category_slug]}",
    script:
        "../workflow_scripts/figure_ablation.py"


rule run_configuration:
    """The configuration this run used, as one file for the report."""
    input:
        settings=recorded_settings("configuration", lambda c: c),
    output:
        report(
            REPORT_CONFIG,
            caption="../report/config.rst",
            category="Configuration",
        ),
    log:
        "logs/report/run_configuration.log",
    conda:
        conda_env("analysis")
    params:
        config=config,
    script:
        "../workflow_scripts/write_configuration.py"


rule figure_trace:
    """A trace's stance probabilities over its checkpoints (a series trained elsewhere)."""
    input:
        values=lambda wc: [values_path(TRACES, wc.trace)],
        calibrated=lambda wc: [calibrated_values_path(TRACES, wc.trace)],
        settings=ANALYSIS_SETTINGS,
    output:
        pdf=report(
            figure(TRACE_FIGURE),
            caption="../report/trace.rst",
            category="Traces",
        ),
        png=figure(TRACE_FIGURE, "png"),
    log:
        f"logs/figures/{TRACE_FIGURE}.log",
    conda:
        conda_env("analysis")
    params:
        category=lambda wc: CATEGORY_BY_SLUG[wc.category_slug],
        runs=lambda wc: [wc.trace],
        title=lambda wc: f"trace {wc.trace}: {CATEGORY_BY_SLUG[wc.category_slug]}",
        start_label="first checkpoint",
    script:
        "../workflow_scripts/figure_trajectories.py"
