rule train_sft:
    """Fine-tune a base model on an SFT dataset with TRL's SFTTrainer: in-process on CPU
    (gpus: 0), else under `accelerate launch` with DeepSpeed on the model's GPUs."""
    input:
        model=base_model_dir("{model}"),
        data=sft_data("{sft_dataset}"),
        settings=settings_of(
            f"training/{{model}}/{sft_run('{sft_dataset}')}",
            lambda wc, c: {
                "trainer": c["sft"],
                "save_steps": c["sft_datasets"][wc.sft_dataset]["save_steps"],
                "seed": c["seed"],
            },
        ),
    output:
        training_marker("{model}", sft_run("{sft_dataset}")),
    log:
        "logs/sft/train_sft_{model}_{sft_dataset}.log",
    benchmark:
        "benchmarks/sft/train_sft_{model}_{sft_dataset}.tsv"
    priority: TRAINING_PRIORITY
    conda:
        conda_env("train")
    threads: job_threads
    resources:
        gpu=training_resource("gpu", sft_job),
        nodes=training_resource("nodes", sft_job),
        cpus_per_task=training_resource("cpus_per_task", sft_job),
        mem_mb=training_resource("mem_mb", sft_job),
        runtime=training_resource("runtime", sft_job),
        checkpoint_disk_mb=checkpoint_disk_mb(sft_disk),
    params:
        trainer=config["sft"],
        output_dir=lambda wc: training_dir(wc.model, sft_run(wc.sft_dataset)),
        steps=lambda wc: list(PLAN.phase(wc.model, sft_run(wc.sft_dataset)).steps),
        save_steps=lambda wc: config["sft_datasets"][wc.sft_dataset]["save_steps"],
        seed=config["seed"],
        gpus=training_gpus,
        accelerate_config=accelerate_config(sft_job),
    script:
        "../workflow_scripts/train_sft.py"
