rule train_sft:
    """Fine-tune a base model on an SFT dataset with TRL's SFTTrainer."""
    input:
        model="results/models/{model}/base",
        data="results/data/sft/{sft_dataset}/train.parquet",
    output:
        "results/models/{model}/sft-{sft_dataset}/training.json",
    log:
        "logs/sft/train_sft_{model}_{sft_dataset}.log",
    benchmark:
        "benchmarks/sft/train_sft_{model}_{sft_dataset}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=24 * 60,
    params:
        trainer=config["sft"],
        output_dir=lambda wc: training_dir(wc.model, f"sft-{wc.sft_dataset}"),
        steps=lambda wc: list(PLAN.phase(wc.model, f"sft-{wc.sft_dataset}").steps),
        save_steps=lambda wc: config["sft_datasets"][wc.sft_dataset]["save_steps"],
        seed=config["seed"],
    script:
        "../workflow_scripts/train_sft.py"
