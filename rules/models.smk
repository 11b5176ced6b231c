rule prepare_base_model:
    """A base model as a transformers directory: a hub snapshot, or a GGUF converted."""
    output:
        directory("results/models/{model}/base"),
    log:
        "logs/models/prepare_base_model_{model}.log",
    benchmark:
        "benchmarks/models/prepare_base_model_{model}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        spec=lambda wc: config["models"][wc.model],
    script:
        "../workflow_scripts/prepare_base_model.py"
