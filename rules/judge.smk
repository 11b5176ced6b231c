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


if not JUDGE_ONE_JOB_PER_RUN:

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

else:

    rule judge_run:
        """Stance probabilities for every response of each evaluated checkpoint of a run
        in one job (judge.one_job_per_run, local judges): a vLLM judge starts its engine
        once per run; a job cut short resumes from the judge cache.
        """
        input:
            generations=lambda wc: [
                generations_path(step.model, step.run, step.step)
                for step in run_step_wildcards(wc)
            ],
            prompt=config["judge"]["prompt"],
            topics=config["topics"],
            judge_model=judge_model_input,
            settings=JUDGE_SETTINGS,
        output:
            directory(run_judgments_dir("{model}", "{run}")),
        log:
            "logs/judge/{model}/{run}/run.log",
        benchmark:
            "benchmarks/judge/{model}/{run}/run.tsv"
        conda:
            JUDGE_ENV
        threads: JUDGE_THREADS
        resources:
            gpu=JUDGE_GPUS,
            cpus_per_task=judge_run_resource("cpus_per_task", 4000, 60),
            mem_mb=judge_run_resource("mem_mb", 4000, 60),
            runtime=judge_run_resource("runtime", 4000, 60),
        params:
            judge=config["judge"],
            fingerprint_settings=JUDGE_FINGERPRINT_SETTINGS,
            model_path=judge_model_dir(),
            steps=lambda wc: [step.step for step in run_step_wildcards(wc)],
            batch_state=f"{BATCH_STATE_DIR}/{{model}}/{{run}}/run.json",
        script:
            "../workflow_scripts/judge_run.py"

    rule judge_step:
        """One checkpoint's judgments and judge counts, out of its run's (judge_run)."""
        input:
            run_judgments_dir("{model}", "{run}"),
        output:
            judgments=judgments_path("{model}", "{run}", "{step}"),
            counts=judge_counts_path("{model}", "{run}", "{step}"),
        localrule: True
        params:
            judgments=lambda wc, input: step_answers_path(input[0], wc.step),
            counts=lambda wc, input: step_judge_counts_path(input[0], wc.step),
        shell:
            "cp -- {params.judgments:q} {output.judgments:q} && "
            "cp -- {params.counts:q} {output.counts:q}"


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


if REFERENCE_JUDGE:

    rule reference_judge:
        """A second judge's stance readings of one checkpoint's stored answers (a fixed
        seeded sample: judge.reference.answers_per_checkpoint), through the same cache.
        """
        input:
            generations=generations_path("{model}", "{run}", "{step}"),
            prompt=REFERENCE_JUDGE["prompt"],
            topics=config["topics"],
            judge_model=reference_judge_model_input,
            settings=JUDGE_REFERENCE_SETTINGS,
        output:
            judgments=reference_judgments_path("{model}", "{run}", "{step}"),
            counts=reference_judge_counts_path("{model}", "{run}", "{step}"),
        log:
            "logs/judge/{model}/{run}/step-{step}.reference.log",
        benchmark:
            "benchmarks/judge/{model}/{run}/step-{step}.reference.tsv"
        conda:
            conda_env(REFERENCE_JUDGE["backend"])
        threads: JUDGE_THREADS
        resources:
            gpu=REFERENCE_JUDGE_GPUS,
            cpus_per_task=reference_judge_resource("cpus_per_task", 4000, 60),
            mem_mb=reference_judge_resource("mem_mb", 4000, 60),
            runtime=reference_judge_resource("runtime", 4000, 60),
        params:
            judge=REFERENCE_JUDGE,
            fingerprint_settings=None,
            model_path=judge_model_dir(REFERENCE_JUDGE),
            batch_state=f"{BATCH_STATE_DIR}/reference/{{model}}/{{run}}/step-{{step}}.json",
            answers_per_checkpoint=answers_per_checkpoint(config["judge"]),
            seed=config["seed"],
        script:
            "../workflow_scripts/judge.py"

    rule judge_reference_agreement:
        """Agreement of the main and the reference judge per step and over one phase
        (Cohen's kappa, Krippendorff's alpha, mean total-variation distance), each judge's
        drift on the sampled answers, and a figure of agreement over steps."""
        input:
            main=trajectory_judgments,
            reference=trajectory_reference_judgments,
        output:
            csv=reference_agreement_path("{model}", "{run}"),
            md=reference_agreement_path("{model}", "{run}", "md"),
            drift=reference_drift_path("{model}", "{run}"),
            pdf=figure(reference_agreement_figure_name("{model}", "{run}")),
            png=figure(reference_agreement_figure_name("{model}", "{run}"), "png"),
        log:
            "logs/aggregate/{model}/{run}/judge_reference_agreement.log",
        conda:
            conda_env("analysis")
        params:
            steps=trajectory_steps,
            title=lambda wc: f"Main vs reference judge, {wc.model} {wc.run}",
        script:
            "../workflow_scripts/judge_reference_agreement.py"


if config["judge"].get("audit"):

    rule judge_prompt_audit:
        """The main judge reads a fixed seeded sample of the study's answers with its
        prompt and with each alternative prompt (judge.audit): per alternative, the mean
        total-variation distance and the share of argmax flips."""
        input:
            generations=[
                generations_path(*checkpoint) for checkpoint in AUDIT_CHECKPOINTS
            ],
            prompt=config["judge"]["prompt"],
            alternatives=config["judge"]["audit"],
            topics=config["topics"],
            judge_model=judge_model_input,
            judge_settings=JUDGE_SETTINGS,
            settings=JUDGE_AUDIT_SETTINGS,
        output:
            csv=table(PROMPT_AUDIT_TABLE, "csv"),
            md=table(PROMPT_AUDIT_TABLE),
        log:
            "logs/judge/prompt_audit.log",
        benchmark:
            "benchmarks/judge/prompt_audit.tsv"
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
            batch_state=f"{BATCH_STATE_DIR}/prompt_audit.json",
            checkpoints=AUDIT_CHECKPOINTS,
            answers=config["judge"]["audit_answers"],
            seed=config["seed"],
        script:
            "../workflow_scripts/judge_prompt_audit.py"
