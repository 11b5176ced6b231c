# Cluster resources and launch settings of the training and generation rules: the pure
# functions live in src/value_drifts/core/cluster_requests.py, how each backend's jobs run in
# src/value_drifts/core/study.py; these adapters give them a job's model size and trained
# tokens from the study. Included by the Snakefile after rules/common.smk, before every
# rule.
from value_drifts.core import checkpoint_disk as disk  # noqa: E402
from value_drifts.core import cluster_requests as res  # noqa: E402
from value_drifts.core.checkpoints import keeps_weights, total_steps  # noqa: E402

CLUSTER = STUDY.cluster
# Training jobs (and the judge adaptation) go first among ready jobs: they are the
# critical path, and every generation and judge job waits on one of them.
TRAINING_PRIORITY = 10


def model_size(model):
    return STUDY.model_size(model)


def _trained_tokens(steps, trainer):
    """Upper bound of the tokens a run trains on: steps × global batch × max length."""
    return steps * trainer["global_batch_size"] * trainer["max_length"]


def sft_job(wildcards):
    """(task, trained tokens, rollouts: PPO's only, else None) of an SFT run."""
    phase = PLAN.phase(wildcards.model, sft_run(wildcards.sft_dataset))
    return "sft", _trained_tokens(phase.last_step, config["sft"]), None


def po_job(wildcards):
    """A preference optimisation run; PPO's rollouts (one per update) count in its
    runtime: res.rollout_seconds."""
    phase = po_phase(wildcards)
    hyper = po_hyperparameters(phase)
    rollouts = None
    if phase.algorithm == "ppo":
        rollouts = res.Rollouts.for_ppo(hyper, updates=phase.last_step)
    return phase.algorithm, _trained_tokens(phase.last_step, hyper), rollouts


def reward_job(wildcards):
    trainer = config["preference_optimization"]["algorithms"]["ppo"]["reward_model"]
    size = config["preference_sets"][wildcards.preference_set]["size"]
    steps = total_steps(size, trainer["global_batch_size"], trainer["epochs"])
    return "reward", _trained_tokens(steps, trainer), None


def training_runs():
    """(run name, model, whether a cut job resumes, (task, tokens, rollouts), the output
    whose existence means the run is done) of every training job of the plan: SFT and
    preference-optimisation runs (they resume unless save_only_model, as the trainer reads
    it from a section the schema may not have filled), and PPO's reward models (they save
    no checkpoint before the end: train_reward_model's save_steps)."""
    c = STUDY.config
    for phase in PLAN.phases:
        name = f"{phase.model} {phase.run}"
        done = training_marker(phase.model, phase.run)
        if phase.kind == "sft":
            wildcards = SimpleNamespace(
                model=phase.model, sft_dataset=phase.sft_dataset
            )
            resumes = not trainer_settings(c["sft"]).save_only_model
            yield name, phase.model, resumes, sft_job(wildcards), done
        elif phase.kind == "po":
            hyper = po_hyperparameters(phase, c)
            rollouts = None
            if phase.algorithm == "ppo":
                rollouts = res.Rollouts.for_ppo(hyper, updates=phase.last_step)
                reward = SimpleNamespace(preference_set=phase.preference_set)
                yield (
                    f"{phase.model} {reward_run(phase.sft_dataset, phase.preference_set)}",
                    phase.model,
                    False,
                    reward_job(reward),
                    reward_model_dir(
                        phase.model, phase.sft_dataset, phase.preference_set
                    ),
                )
            tokens = _trained_tokens(phase.last_step, hyper)
            resumes = not trainer_settings(hyper).save_only_model
            yield name, phase.model, resumes, (phase.algorithm, tokens, rollouts), done


def trainer_settings(trainer):
    """A trainer section's settings as the training job reads them (paths aside)."""
    return TrainerSettings.from_config(
        trainer, model_path="", output_dir="", save_steps=1, seed=0, threads=1
    )


def check_runs_can_finish():
    """Stop the workflow at start (dry runs too) when a training run not yet done is
    estimated to take longer than cluster.max_runtime_min while a cut job cannot resume:
    each job would be cut at the limit and each retry start over
    (res.endless_restart_problem)."""
    problems = sorted(
        {
            problem
            for run, model, resumes, (task, tokens, rollouts), done in training_runs()
            if not Path(done).exists()
            and (
                problem := res.endless_restart_problem(
                    run, model_size(model), task, tokens, CLUSTER, rollouts, resumes
                )
            )
        }
    )
    if problems:
        raise WorkflowError(
            "Stopped before running anything: these training runs could never finish:\n  "
            + "\n  ".join(problems)
            + "\nSet save_only_model: false in their trainer sections (checkpoints then "
            "keep what a restart resumes from; the reward model saves none: use fewer "
            "preference pairs or epochs), or raise cluster.max_runtime_min."
        )


def job_threads(wildcards):
    return res.threads(model_size(wildcards.model), CLUSTER)


def training_resource(key, job):
    """A resource callable for a training rule; ``job`` gives (task, tokens, rollouts)."""

    def resource(wildcards, attempt):
        task, tokens, rollouts = job(wildcards)
        size = model_size(wildcards.model)
        requests = res.training_resources(
            size, task, tokens, attempt, CLUSTER, rollouts
        )
        return requests[key]

    return resource


# The disk a training run's checkpoints need at its peak (value_drifts.core.checkpoint_disk:
# the cost plan prints the same numbers), declared as the resource checkpoint_disk_mb so
# `--resources checkpoint_disk_mb=N` caps the runs training at once. Not Snakemake's own
# disk_mb: Snakemake scopes that one "local", and under a cluster executor a local resource
# is not tallied across submitted jobs, so the cap would hold nothing back; and every other
# job carries a default disk_mb that a global scope would count (docs/cluster.md).
def sft_disk(wildcards):
    phase = PLAN.phase(wildcards.model, sft_run(wildcards.sft_dataset))
    return disk.phase_disk(STUDY, phase)


def po_disk(wildcards):
    return disk.phase_disk(STUDY, po_phase(wildcards))


def reward_disk(wildcards):
    return disk.reward_disk(
        STUDY, wildcards.model, wildcards.sft_dataset, wildcards.preference_set
    )


def checkpoint_disk_mb(run_disk):
    """The resource callable: the run's peak in MB (``RunDisk.peak_mb``)."""
    return lambda wildcards: run_disk(wildcards).peak_mb


def accelerate_config(job):
    """The ZeRO config a training rule launches with (None on CPU)."""
    return lambda wc: res.accelerate_config(model_size(wc.model), job(wc)[0], CLUSTER)


def training_gpus(wildcards):
    return model_size(wildcards.model).gpus


# The `localrules:` directive, from the study: tables, figures and aggregation run in the
# main Snakemake process, so a cluster never sees thousands of tiny jobs; so do the rules
# that call a remote API (compute nodes often have no internet), unless
# cluster.api_jobs_local is false. A local model stays a job.
workflow.localrules(*STUDY.local_rules)


def generation_model_size(wildcards):
    """The size of the model a generation job loads (a trace's own ``gpus``/``params_b``)."""
    return STUDY.model_size(wildcards.model, wildcards.run)


QUESTION_COUNT = STUDY.questions_per_checkpoint()


def generation_job(wildcards, attempt):
    """Resources of one checkpoint's generation; tokens: the most it can produce."""
    settings = config["generation"]
    tokens = QUESTION_COUNT * settings["samples"] * settings["max_new_tokens"]
    return res.generation_resources(
        generation_model_size(wildcards),
        BACKENDS["generation"].name,
        tokens,
        attempt,
        CLUSTER,
    )


def generation_resource(key):
    return lambda wildcards, attempt: generation_job(wildcards, attempt)[key]


def generation_run_job(wildcards, attempt):
    """Resources of the job that samples every evaluated checkpoint of a run (generate_run)."""
    settings = config["generation"]
    tokens = QUESTION_COUNT * settings["samples"] * settings["max_new_tokens"]
    return res.generation_resources(
        generation_model_size(wildcards),
        BACKENDS["generation"].name,
        tokens,
        attempt,
        CLUSTER,
        checkpoints=len(RUN_STEPS[(wildcards.model, wildcards.run)]),
    )


def generation_run_resource(key):
    return lambda wildcards, attempt: generation_run_job(wildcards, attempt)[key]


def downstream_resource(key):
    """A resource of one checkpoint's downstream evaluation: the GPUs its lm-eval backend
    uses (vLLM's tensor-parallel size, or one GPU for HF), see res.downstream_resources.
    """
    return lambda wildcards, attempt: res.downstream_resources(
        model_size(wildcards.model), BACKENDS["downstream"].name, attempt, CLUSTER
    )[key]


JUDGE_GPUS = BACKENDS["judge"].gpus()


def judge_resource(key, mem_mb, runtime):
    """A resource of a job running the judge (res.judge_resources): a vLLM judge's GPUs,
    CPUs per GPU and vLLM's host memory; else one CPU, ``mem_mb`` and ``runtime``."""
    return lambda wildcards, attempt: res.judge_resources(
        JUDGE_GPUS, mem_mb, runtime, attempt, CLUSTER
    )[key]


def judge_run_resource(key, mem_mb, runtime):
    """A resource of a run's judge job (judge_run): a checkpoint's judge job's, with its
    runtime once per evaluated checkpoint (at most the time limit; a cut job resumes from
    the judge cache)."""
    return lambda wildcards, attempt: res.judge_resources(
        JUDGE_GPUS,
        mem_mb,
        runtime * len(RUN_STEPS[(wildcards.model, wildcards.run)]),
        attempt,
        CLUSTER,
    )[key]


JUDGE_THREADS = res.judge_resources(JUDGE_GPUS, 0, 1, 1, CLUSTER)["cpus_per_task"]
REFERENCE_JUDGE_GPUS = res.judge_gpus(REFERENCE_JUDGE) if REFERENCE_JUDGE else 0


def reference_judge_resource(key, mem_mb, runtime):
    """``judge_resource`` for the reference judge's jobs (its own backend's GPUs)."""
    return lambda wildcards, attempt: res.judge_resources(
        REFERENCE_JUDGE_GPUS, mem_mb, runtime, attempt, CLUSTER
    )[key]


DELETES_WEIGHTS = config["generation"]["delete_checkpoint_weights"]


def deletes_checkpoint_weights(wildcards):
    """Whether this checkpoint's weights go once its generations are written: only with
    generation.delete_checkpoint_weights, never the base model nor a run's final one."""
    if not DELETES_WEIGHTS or wildcards.model == TRACES:  # a user's checkpoints: never
        return False
    if wildcards.run == BASE_RUN:
        return False
    last = PLAN.phase(wildcards.model, wildcards.run).last_step
    return not keeps_weights(wildcards.run, int(wildcards.step), last, BASE_RUN)


# Once, in the main Snakemake process, as check_no_answers_lost (rules/targets.smk).
if workflow.is_main_process:
    check_runs_can_finish()
