rule train_reward_model:
    """PPO's reward model: the final SFT model with a one-logit head, trained on the pairs."""
    input:
        sft=lambda wc: training_marker(wc.model, sft_run(wc.sft_dataset)),
        data=preference_data("{preference_set}"),
        settings=settings_of(
            f"training/{{model}}/{reward_run('{sft_dataset}', '{preference_set}')}",
            lambda wc, c: {
                "trainer": c["preference_optimization"]["algorithms"]["ppo"][
                    "reward_model"
                ],
                "seed": c["seed"],
            },
        ),
    output:
        directory(reward_model_dir("{model}", "{sft_dataset}", "{preference_set}")),
    log:
        "logs/po/train_reward_model_{model}_{sft_dataset}.{preference_set}.log",
    benchmark:
        "benchmarks/po/train_reward_model_{model}_{sft_dataset}.{preference_set}.tsv"
    priority: TRAINING_PRIORITY
    conda:
        conda_env("train")
    threads: job_threads
    resources:
        gpu=training_resource("gpu", reward_job),
        nodes=training_resource("nodes", reward_job),
        cpus_per_task=training_resource("cpus_per_task", reward_job),
        mem_mb=training_resource("mem_mb", reward_job),
        runtime=training_resource("runtime", reward_job),
        checkpoint_disk_mb=checkpoint_disk_mb(reward_disk),
    params:
        trainer=lambda wc: config["preference_optimization"]["algorithms"]["ppo"][
            "reward_model"
        ],
        model_path=lambda wc: final_sft_checkpoint(wc.model, wc.sft_dataset),
        seed=config["seed"],
        gpus=training_gpus,
        accelerate_config=accelerate_config(reward_job),
    script:
        "../workflow_scripts/train_reward_model.py"


rule train_preference_optimisation:
    """PPO, DPO or SimPO from the final SFT checkpoint, saving the planned checkpoints
    (in-process on CPU, under `accelerate launch` with DeepSpeed on GPUs)."""
    input:
        unpack(po_training_inputs),
    output:
        training_marker("{model}", po_run_from("{sft_dataset}", "{po_run}")),
    log:
        "logs/po/train_{model}_{sft_dataset}.{po_run}.log",
    benchmark:
        "benchmarks/po/train_{model}_{sft_dataset}.{po_run}.tsv"
    priority: TRAINING_PRIORITY
    conda:
        conda_env("train")
    threads: job_threads
    resources:
        gpu=training_resource("gpu", po_job),
        nodes=training_resource("nodes", po_job),
        cpus_per_task=training_resource("cpus_per_task", po_job),
        mem_mb=training_resource("mem_mb", po_job),
        runtime=training_resource("runtime", po_job),
        checkpoint_disk_mb=checkpoint_disk_mb(po_disk),
    params:
        algorithm=lambda wc: po_phase(wc).algorithm,
        hyper=lambda wc: po_hyperparameters(po_phase(wc)),
        model_path=lambda wc: final_sft_checkpoint(wc.model, wc.sft_dataset),
        output_dir=lambda wc: training_dir(wc.model, po_phase(wc).run),
        steps=lambda wc: list(po_phase(wc).steps),
        seed=config["seed"],
        gpus=training_gpus,
        accelerate_config=accelerate_config(po_job),
    script:
        "../workflow_scripts/train_preference_optimisation.py"
