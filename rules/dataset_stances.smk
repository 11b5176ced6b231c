# Stance distributions of training datasets (App. K, Figure 19) and value gaps (Figure 20).


rule dataset_stances:
    """Stance of every SFT item similar to an evaluation question, toward that topic."""
    input:
        data=sft_data("{sft_dataset}"),
        questions=QUESTIONS,
        topics=config["topics"],
        prompt=lookup(dpath="dataset_stances/prompt", within=config, default=[]),
        judge_model=judge_model_input,
        judge_settings=JUDGE_SETTINGS,
        settings=DATASET_STANCE_SETTINGS,
    output:
        stances=sft_stances("{sft_dataset}"),
        counts=sft_stances("{sft_dataset}", "counts.json"),
    log:
        "logs/dataset_stances/sft_{sft_dataset}.log",
    benchmark:
        "benchmarks/dataset_stances/sft_{sft_dataset}.tsv"
    conda:
        JUDGE_ENV
    threads: JUDGE_THREADS
    resources:
        gpu=JUDGE_GPUS,
        cpus_per_task=judge_resource("cpus_per_task", 8000, 24 * 60),
        mem_mb=judge_resource("mem_mb", 8000, 24 * 60),
        runtime=judge_resource("runtime", 8000, 24 * 60),
    params:
        settings=lookup(dpath="dataset_stances", within=config, default={}),
        judge=config["judge"],
        model_path=judge_model_dir(),
        batch_state=f"{BATCH_STATE_DIR}/dataset_stances/{sft_run('{sft_dataset}')}.json",
        seed=config["seed"],
    script:
        "../workflow_scripts/dataset_stances.py"


rule value_gap_pairs:
    """Stance of the chosen and the rejected response of each pair on a matched topic, and
    the Euclidean distance between them (the pair's value gap)."""
    input:
        data=preference_data("{preference_set}"),
        questions=QUESTIONS,
        topics=config["topics"],
        prompt=config["judge"]["prompt"],
        judge_model=judge_model_input,
        judge_settings=JUDGE_SETTINGS,
        settings=DATASET_STANCE_SETTINGS,
    output:
        gaps=preference_value_gap("{preference_set}"),
        counts=preference_value_gap("{preference_set}", "counts.json"),
    log:
        "logs/dataset_stances/preference_{preference_set}.log",
    benchmark:
        "benchmarks/dataset_stances/preference_{preference_set}.tsv"
    conda:
        JUDGE_ENV
    threads: JUDGE_THREADS
    resources:
        gpu=JUDGE_GPUS,
        cpus_per_task=judge_resource("cpus_per_task", 8000, 24 * 60),
        mem_mb=judge_resource("mem_mb", 8000, 24 * 60),
        runtime=judge_resource("runtime", 8000, 24 * 60),
    params:
        settings=lookup(dpath="dataset_stances", within=config, default={}),
        judge=config["judge"],
        model_path=judge_model_dir(),
        batch_state=f"{BATCH_STATE_DIR}/dataset_stances/preference-{{preference_set}}.json",
        seed=config["seed"],
    script:
        "../workflow_scripts/value_gap_pairs.py"


rule figure_dataset_stances:
    """Figure 19: stance distribution of each SFT dataset's retrieved items, per topic."""
    input:
        stances=lambda wc: [
            sft_stances(name)
            for name in lookup(
                dpath="dataset_stances/sft_datasets",
                within=config,
                default=list(config["sft_datasets"]),
            )
        ],
        settings=DATASET_STANCE_SETTINGS,
    output:
        pdf=report(
            figure(DATASET_STANCES_FIGURE),
            caption="../report/fig19.rst",
            category="Dataset stances",
        ),
        png=figure(DATASET_STANCES_FIGURE, "png"),
        csv=table(DATASET_STANCES_TABLE, "csv"),
        md=table(DATASET_STANCES_TABLE),
    log:
        "logs/dataset_stances/figure_dataset_stances.log",
    conda:
        conda_env("analysis")
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        datasets=lookup(
            dpath="dataset_stances/sft_datasets",
            within=config,
            default=list(config["sft_datasets"]),
        ),
    script:
        "../workflow_scripts/figure_dataset_stances.py"


rule figure_value_gap:
    """Figure 20: histograms of the chosen-rejected stance distance per preference set."""
    input:
        gaps=lambda wc: [
            preference_value_gap(name)
            for name in lookup(
                dpath="dataset_stances/preference_sets",
                within=config,
                default=list(config.get("preference_sets", {})),
            )
        ],
        settings=DATASET_STANCE_SETTINGS,
    output:
        pdf=report(
            figure(VALUE_GAP_FIGURE),
            caption="../report/fig20.rst",
            category="Dataset stances",
        ),
        png=figure(VALUE_GAP_FIGURE, "png"),
        csv=table(VALUE_GAP_TABLE, "csv"),
        md=table(VALUE_GAP_TABLE),
    log:
        "logs/dataset_stances/figure_value_gap.log",
    conda:
        conda_env("analysis")
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        preference_sets=lookup(
            dpath="dataset_stances/preference_sets",
            within=config,
            default=list(config.get("preference_sets", {})),
        ),
        threshold=lookup(
            dpath="dataset_stances/distance_threshold", within=config, default=0.5
        ),
    script:
        "../workflow_scripts/figure_value_gap.py"
