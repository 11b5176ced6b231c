rule adapt_local_judge:
    """Fine-tune a small local judge on a labelled template set rendered with the judge prompt."""
    input:
        model=lambda wc: base_model_dir(config["judge"]["base_model"]),
        prompt=config["judge"]["prompt"],
        spec=config["judge"].get("adapt", {}).get("spec", []),
        settings=recorded_settings(
            "judge_adaptation",
            lambda c: {
                "adapt": c["judge"].get("adapt"),
                "base_model": c["judge"].get("base_model"),
                "seed": c["seed"],
            },
        ),
    output:
        directory(ADAPTED_JUDGE_DIR),
    log:
        "logs/judge/adapt_local_judge.log",
    benchmark:
        "benchmarks/judge/adapt_local_judge.tsv"
    priority: TRAINING_PRIORITY
    conda:
        conda_env("train")
    threads: CLUSTER.cpu_threads
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        trainer=config["judge"].get("adapt"),
        seed=config["seed"],
    script:
        "../workflow_scripts/adapt_local_judge.py"


rule judge:
    """Stance probabilities for every response of one checkpoint."""
    input:
        generations=generations_path("{model}", "{run}", "{step}"),
        prompt=config["judge"]["prompt"],
        topics=config["topics"],
        judge_model=judge_model_input,
        settings=JUDGE_SETTINGS,
    output:
        judgments=judgments_path("{model}", "{run}", "{step}"),
        counts=judge_counts_path("{model}", "{run}", "{step}"),
    log:
        "logs/judge/{model}/{run}/step-{step}.log",
    benchmark:
        "benchmarks/judge/{model}/{run}/step-{step}.tsv"
    conda:
        JUDGE_ENV
    threads: JUDGE_THREADS
    resources:
        gpu=JUDGE_GPUS,
        cpus_per_task=judge_resource("cpus_per_task", 4000, 60),
        mem_mb=judge_resource("mem_mb", 4000, 60),
        runtime=judge_resource("runtime", 4000, 60),
    params:
        judge=config["judge"],
        fingerprint_settings=JUDGE_FINGERPRINT_SETTINGS,
        model_path=judge_model_dir(),
        batch_state=f"{BATCH_STATE_DIR}/{{model}}/{{run}}/step-{{step}}.json",
    script:
        "../workflow_scripts/judge.py"


rule judge_agreement:
    """Score the configured judge on the hand-labelled stance set (accuracy, macro-F1,
    confusion matrix, calibration error)."""
    input:
        labelled=labelled_set_path(config["judge"]),
        prompt=config["judge"]["prompt"],
        topics=config["topics"],
        judge_model=judge_model_input,
        settings=JUDGE_SETTINGS,
    output:
        metrics=judge_agreement("metrics.json"),
        md=report(
            judge_agreement("agreement.md"),
            caption="../report/judge_agreement.rst",
            category="Judge",
        ),
        pdf=judge_agreement("confusion.pdf"),
        png=judge_agreement("confusion.png"),
        # each labelled item's gold stance and reading: the calibration's confusion matrix
        readings=judge_agreement("readings.parquet"),
    log:
        "logs/judge/agreement.log",
    benchmark:
        "benchmarks/judge/agreement.tsv"
    conda:
        JUDGE_ENV
    threads: JUDGE_THREADS
    resources:
        gpu=JUDGE_GPUS,
        cpus_per_task=judge_resource("cpus_per_task", 4000, 60),
        mem_mb=judge_resource("mem_mb", 4000, 60),
        runtime=judge_resource("runtime", 4000, 60),
    params:
        judge=config["judge"],
        model_path=judge_model_dir(),
        batch_state=f"{BATCH_STATE_DIR}/agreement.json",
    script:
        "../workflow_scripts/judge_agreement.py"
