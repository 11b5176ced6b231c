# Stance distributions of training datasets (App. K, Figure 19) and value gaps (Figure 20).


rule dataset_stances:
    """Stance of every SFT item similar to an evaluation question, toward that topic."""
    input:
        data="results/data/sft/{sft_dataset}/train.parquet",
        questions="results/data/questions.parquet",
        topics=config["topics"],
        prompt=lookup(dpath="dataset_stances/prompt", within=config, default=[]),
        judge_model=judge_model_input,
        judge_settings=JUDGE_SETTINGS,
        settings=DATASET_STANCE_SETTINGS,
    output:
        stances="results/dataset_stances/sft/{sft_dataset}/stances.parquet",
        counts="results/dataset_stances/sft/{sft_dataset}/counts.json",
    log:
        "logs/dataset_stances/sft_{sft_dataset}.log",
    benchmark:
        "benchmarks/dataset_stances/sft_{sft_dataset}.tsv"
    conda:
        JUDGE_ENV
    threads: 1
    resources:
        gpu=JUDGE_GPUS,
        mem_mb=8000,
        runtime=24 * 60,
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
        data="results/data/preference/{preference_set}/train.parquet",
        questions="results/data/questions.parquet",
        topics=config["topics"],
        prompt=config["judge"]["prompt"],
        judge_model=judge_model_input,
        judge_settings=JUDGE_SETTINGS,
        settings=DATASET_STANCE_SETTINGS,
    output:
        gaps="results/dataset_stances/preference/{preference_set}/value_gap.parquet",
        counts="results/dataset_stances/preference/{preference_set}/counts.json",
    log:
        "logs/dataset_stances/preference_{preference_set}.log",
    benchmark:
        "benchmarks/dataset_stances/preference_{preference_set}.tsv"
    conda:
        JUDGE_ENV
    threads: 1
    resources:
        gpu=JUDGE_GPUS,
        mem_mb=8000,
        runtime=24 * 60,
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
            f"results/dataset_stances/sft/{name}/stances.parquet"
            for name in lookup(
                dpath="dataset_stances/sft_datasets",
                within=config,
                default=list(config["sft_datasets"]),
            )
        ],
        settings=DATASET_STANCE_SETTINGS,
    output:
        pdf=report(
            "results/figures/fig19_sft_dataset_stances.pdf",
            caption="../report/fig19.rst",
            category="Dataset stances",
        ),
        png="results/figures/fig19_sft_dataset_stances.png",
        csv="results/tables/sft_dataset_stances.csv",
        md="results/tables/sft_dataset_stances.md",
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
            f"results/dataset_stances/preference/{name}/value_gap.parquet"
            for name in lookup(
                dpath="dataset_stances/preference_sets",
                within=config,
                default=list(config.get("preference_sets", {})),
            )
        ],
        settings=DATASET_STANCE_SETTINGS,
    output:
        pdf=report(
            "results/figures/fig20_value_gap.pdf",
            caption="../report/fig20.rst",
            category="Dataset stances",
        ),
        png="results/figures/fig20_value_gap.png",
        csv="results/tables/value_gap.csv",
        md="results/tables/value_gap.md",
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
