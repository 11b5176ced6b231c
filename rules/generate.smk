rule generate:
    """Sample responses to every evaluation question from one checkpoint."""
    input:
        checkpoint=checkpoint_input,
        questions="results/data/questions.parquet",
    output:
        "results/{model}/{run}/step-{step}/generations.parquet",
    log:
        "logs/generate/{model}/{run}/step-{step}.log",
    benchmark:
        "benchmarks/generate/{model}/{run}/step-{step}.tsv"
    conda:
        "../envs/generate.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        model_path=lambda wc: checkpoint_dir(wc.model, wc.run, wc.step),
        prompt_style=lambda wc: config["models"][wc.model]["prompt_style"],
        settings=config["generation"],
        seed=config["seed"],
    script:
        "../workflow_scripts/generate.py"
