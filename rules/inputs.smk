# Input functions: which files a job reads, asked of the study's plan.
# Included by the Snakefile after rules/common.smk, whose imports and globals it uses.

# ---- input functions -------------------------------------------------------------------


def checkpoint_input(wildcards):
    """The file whose existence means the checkpoint of (model, run, step) is on disk: a
    trace's checkpoint folder itself (a hub revision has none)."""
    if wildcards.model == TRACES:
        series = TRACE_SERIES[wildcards.run]
        return (
            []
            if series.revisions
            else [model_dir(wildcards.model, wildcards.run, wildcards.step)]
        )
    if wildcards.run == BASE_RUN:
        return base_model_dir(wildcards.model)
    return training_marker(wildcards.model, wildcards.run)


def model_dir(model, run, step):
    """The model a (model, run, step) names: the workflow's checkpoint folder, or a
    trace's checkpoint (a user's folder, or its hub id)."""
    if model == TRACES:
        return TRACE_SERIES[run].checkpoints[int(step)]
    return checkpoint_dir(model, run, step)


def generation_model(wildcards):
    """What generation needs to know of a checkpoint beyond its path: prompt style,
    tokenizer source and hub revision."""
    if wildcards.model == TRACES:
        series = TRACE_SERIES[wildcards.run]
        step = int(wildcards.step)
        return {
            "prompt_style": series.prompt_style,
            "tokenizer": series.tokenizers.get(step),
            "revision": series.revisions.get(step),
        }
    return {
        "prompt_style": checkpoint_prompt_style(config, wildcards.model, wildcards.run),
        "tokenizer": None,
        "revision": None,
    }


def generate_inputs(wildcards):
    """The checkpoint, the questions and the generation settings of one generate job."""
    return {
        "checkpoint": checkpoint_input(wildcards),
        "questions": QUESTIONS,
        "settings": generation_settings(wildcards.model, wildcards.run),
    }


# The evaluated steps of each (model, run), in order: what one generate_run job answers.
RUN_STEPS = {}
for _model, _run, _step in PLAN.evaluated_checkpoints():
    RUN_STEPS.setdefault((_model, _run), []).append(_step)
RUN_STEPS = {key: sorted(steps) for key, steps in RUN_STEPS.items()}


def run_step_wildcards(wildcards):
    """The wildcards of each checkpoint a run's generation job (rule generate_run) answers."""
    return [
        SimpleNamespace(model=wildcards.model, run=wildcards.run, step=str(step))
        for step in RUN_STEPS[(wildcards.model, wildcards.run)]
    ]


def generate_run_inputs(wildcards):
    """Every checkpoint of a run, the questions and the generation settings."""
    steps = run_step_wildcards(wildcards)
    return {
        "checkpoints": sorted(
            {path for step in steps for path in _paths(checkpoint_input(step))}
        ),
        "questions": QUESTIONS,
        "settings": generation_settings(wildcards.model, wildcards.run),
    }


def run_checkpoints_to_answer(wildcards):
    """What rule generate_run needs to know of each checkpoint it answers
    (value_drifts.generation.answers.CheckpointAnswers)."""
    return [
        {
            "step": int(step.step),
            "path": model_dir(step.model, step.run, step.step),
            "model": generation_model(step),
            "delete_weights": deletes_checkpoint_weights(step),
            "answers": generations_path(step.model, step.run, step.step),
        }
        for step in run_step_wildcards(wildcards)
    ]


def lost_answers():
    """``model run step: reason`` for every evaluated checkpoint whose answers a rerun
    would lose (value_drifts.core.checkpoints.lost_answers_reason)."""
    problems, digests = [], {}
    questions = upstream_change(QUESTIONS, QUESTION_SOURCES.values())
    for model, run, step in sorted(PLAN.evaluated_checkpoints()):
        inputs = generate_inputs(SimpleNamespace(model=model, run=run, step=step))
        settings = inputs["settings"]
        if settings not in digests:
            digests[settings] = answers_digest(settings, QUESTIONS)
        reason = lost_answers_reason(
            Path(model_dir(model, run, step)),
            Path(generations_path(model, run, step)),
            [Path(path) for value in inputs.values() for path in _paths(value)],
            digests[settings],
            upstream=questions,
        )
        if reason:
            problems.append(f"{model} {run} step {step}: {reason}")
    return problems


def _paths(value):
    return [value] if isinstance(value, str) else list(value)


def check_no_answers_lost():
    """Stop the workflow at start (dry runs too) when a generation would rerun on a
    checkpoint whose weights are gone. Snakemake itself would remove the answers and
    then fail; and an error raised inside an input function does not stop it (an
    existing file whose producer fails to resolve counts as present), so this is
    checked once for the whole plan."""
    problems = lost_answers()
    if problems:
        raise WorkflowError(
            "Stopped before running anything: regenerating the answers of these "
            "checkpoints would lose them. Their weights were deleted once the answers "
            "existed (generation.delete_checkpoint_weights) and an input of their "
            "generation changed since (an output-affecting setting, the questions, or "
            "the training run):\n  "
            + "\n  ".join(problems)
            + "\nNothing was removed. Ways out: revert the change (the answers on disk "
            "are then current again: a settings file gets back the bytes it had with "
            "those settings), or retrain those runs: remove their folders "
            f"{training_dir('<model>', '<run>')} and run again."
        )


def judge_model_input(wildcards, judge=None):
    """The judge model directory the workflow builds (``judge_model_dir``), as an input:
    the adapted judge or a base model's directory; none for a path or an API model."""
    judge = judge or config["judge"]
    path = judge_model_dir(judge)
    return [path] if path in (ADAPTED_JUDGE_DIR, base_model_dir(judge["model"])) else []


def reference_judge_model_input(wildcards):
    return judge_model_input(wildcards, REFERENCE_JUDGE)


def final_sft_checkpoint(model, sft_dataset):
    run = sft_run(sft_dataset)
    return checkpoint_dir(model, run, PLAN.phase(model, run).last_step)


def po_phase(wildcards):
    return PLAN.phase(
        wildcards.model, po_run_from(wildcards.sft_dataset, wildcards.po_run)
    )


def po_hyperparameters(phase, c=config):
    """The algorithm's config (of ``c``) with the run's ablation override applied."""
    hyper = dict(c["preference_optimization"]["algorithms"][phase.algorithm])
    hyper.update(phase.overrides)
    return hyper


def po_training_inputs(wildcards):
    phase = po_phase(wildcards)
    inputs = {
        "sft": training_marker(phase.model, sft_run(phase.sft_dataset)),
        "data": preference_data(phase.preference_set),
        "settings": recorded_settings(
            f"training/{phase.model}/{phase.run}",
            lambda c: {
                "algorithm": phase.algorithm,
                "hyper": po_hyperparameters(phase, c),
                "seed": c["seed"],
            },
        ),
    }
    if phase.algorithm == "ppo":
        inputs["reward_model"] = reward_model_dir(
            phase.model, phase.sft_dataset, phase.preference_set
        )
    return inputs


def sft_dataset_inputs(wildcards):
    """Template sets are built from files; editing them must rebuild the set."""
    spec = config["sft_datasets"][wildcards.sft_dataset]
    inputs = {
        "settings": recorded_settings(
            f"data/sft/{wildcards.sft_dataset}",
            lambda c: {
                "spec": c["sft_datasets"][wildcards.sft_dataset],
                "seed": c["seed"],
            },
        )
    }
    if spec["source"] == "synthetic":
        inputs.update(topics=config["topics"], templates=spec["templates"])
    if files := local_data_files(spec):  # your own files: editing one reruns the set
        inputs["data_files"] = files
    return inputs


def preference_set_inputs(wildcards):
    """Template pairs come from files, teacher-written pairs from the value-gap responses,
    your own pairs from your local data files; hub sets have no input."""
    spec = config["preference_sets"][wildcards.preference_set]
    inputs = {
        "settings": recorded_settings(
            f"data/preference/{wildcards.preference_set}",
            lambda c: {
                "spec": c["preference_sets"][wildcards.preference_set],
                "seed": c["seed"],
            },
        )
    }
    if spec["source"] == "synthetic_templates":
        inputs.update(topics=config["topics"], templates=spec["templates"])
    if spec["source"] == "synthetic_value_gap":
        inputs["responses"] = value_gap_data("responses.parquet")
    if files := local_data_files(spec):
        inputs["data_files"] = files
    return inputs


def trajectory_judgments(wildcards):
    """Judgments of every checkpoint of a phase, step 0 being the model it starts from."""
    phase = PLAN.phase(wildcards.model, wildcards.run)
    return [
        judgments_path(phase.model, run, step)
        for run, step, _ in PLAN.trajectory(phase)
    ]


def trajectory_judge_counts(wildcards):
    """The judge counts (with judge health) of every checkpoint of a phase."""
    phase = PLAN.phase(wildcards.model, wildcards.run)
    return [
        judge_counts_path(phase.model, run, step)
        for run, step, _ in PLAN.trajectory(phase)
    ]


# Every evaluated (model, run, step), in a fixed order: what the prompt audit samples.
AUDIT_CHECKPOINTS = sorted(PLAN.evaluated_checkpoints())


def trajectory_reference_judgments(wildcards):
    """The reference judge's readings of every checkpoint of a phase."""
    phase = PLAN.phase(wildcards.model, wildcards.run)
    return [
        reference_judgments_path(phase.model, run, step)
        for run, step, _ in PLAN.trajectory(phase)
    ]


def trajectory_steps(wildcards):
    phase = PLAN.phase(wildcards.model, wildcards.run)
    return [step for _, _, step in PLAN.trajectory(phase)]


def calibrated_values_of(values_of):
    """An input function: the calibrated values beside each file ``values_of`` lists."""
    return lambda wc: [calibrated_values_beside(path) for path in values_of(wc)]


def calibrated_drifts_of(drifts_of):
    """An input function: the calibrated drift beside each drift file ``drifts_of`` lists."""
    return lambda wc: [calibrated_drift_beside(path) for path in drifts_of(wc)]


def sft_values(wildcards):
    return [
        values_path(wildcards.model, phase.run)
        for phase in PLAN.sft_phases(wildcards.model)
    ]


def sft_drifts(wildcards):
    return [
        drift_path(wildcards.model, phase.run)
        for phase in PLAN.sft_phases(wildcards.model)
    ]


def po_main_phases(model, sft_dataset, preference_set=None):
    """PO runs (no ablation variants) from one SFT model, optionally on one preference set."""
    return [
        phase
        for phase in PLAN.po_phases()
        if phase.model == model
        and phase.sft_dataset == sft_dataset
        and not phase.overrides
        and preference_set in (None, phase.preference_set)
    ]


def po_figure_values(wildcards):
    check_figure_number(
        po_figure_number(wildcards.preference_set),
        wildcards.po_figure,
        wildcards.preference_set,
    )
    return [
        values_path(phase.model, phase.run)
        for phase in po_main_phases(
            wildcards.model, wildcards.sft_dataset, wildcards.preference_set
        )
    ]


def po_table_drifts(wildcards):
    return [
        drift_path(phase.model, phase.run)
        for phase in po_main_phases(wildcards.model, wildcards.sft_dataset)
    ]


def ablation_phases(name):
    """(value, phase) for every value of an ablation; the default value is the main run."""
    ablation = ABLATIONS[name]
    defaults = config["preference_optimization"]["algorithms"][ablation["algorithm"]]
    pairs = []
    for phase in PLAN.po_phases():
        if (phase.model, phase.sft_dataset, phase.algorithm, phase.preference_set) != (
            ablation["model"],
            ablation["sft_dataset"],
            ablation["algorithm"],
            ablation["preference_set"],
        ):
            continue
        value = phase.overrides.get(
            ablation["parameter"], defaults.get(ablation["parameter"])
        )
        if value in ablation["values"]:
            pairs.append((value, phase))
    return sorted(pairs, key=lambda pair: pair[0])


def setup_phases(algorithm, sft_dataset):
    """Figures 11-14: one algorithm's runs on the synthetic sets (setup 1 = support-aligned,
    setup 2 = oppose-aligned), every model, from one SFT dataset."""
    return sorted(
        (
            phase
            for phase in PLAN.po_phases()
            if phase.algorithm == algorithm
            and phase.sft_dataset == sft_dataset
            and phase.preference_set in synthetic_sets()
            and not phase.overrides
        ),
        key=lambda phase: (phase.model, phase.preference_set),
    )


def setup_figure_values(wildcards):
    return [
        values_path(phase.model, phase.run)
        for phase in setup_phases(wildcards.algorithm, wildcards.sft_dataset)
    ]


def ablation_values(wildcards):
    check_figure_number(
        ABLATION_FIGURE[ABLATIONS[wildcards.ablation]["algorithm"]],
        wildcards.ablation_figure,
        wildcards.ablation,
    )
    return [
        values_path(phase.model, phase.run)
        for _, phase in ablation_phases(wildcards.ablation)
    ]


def final_checkpoint_dir(model, run):
    """The model a run ends with (the base model for the base run)."""
    if run == BASE_RUN:
        return base_model_dir(model)
    return checkpoint_dir(model, run, PLAN.phase(model, run).last_step)


def downstream_checkpoints():
    """(model, run) of every base, final SFT and final PO model (no ablation variants),
    limited to the phases config's downstream.phases names."""
    phases = config.get("downstream", {}).get("phases", [])
    pairs = []
    if "base" in phases:
        pairs += [(model, BASE_RUN) for model in PLAN.models()]
    if "sft" in phases:
        pairs += [(p.model, p.run) for p in PLAN.sft_phases()]
    if "po" in phases:
        pairs += [(p.model, p.run) for p in PLAN.po_phases() if not p.overrides]
    return sorted(pairs)


def downstream_results(wildcards):
    return [downstream_path(model, run) for model, run in downstream_checkpoints()]


def paper_reference():
    """The paper's stated numbers whose runs this config plans (none without a file)."""
    path = config["analysis"].get("paper_reference")
    if not path:
        return []
    planned = {(phase.model, phase.run) for phase in PLAN.phases}
    entries = yaml.safe_load(Path(path).read_text())
    return [e for e in entries if (e["model"], e["run"]) in planned]


def paper_comparison_drifts(wildcards):
    runs = sorted({(e["model"], e["run"]) for e in paper_reference()})
    return [drift_path(model, run) for model, run in runs]


def sft_start_label(model):
    """Step 0's label in the SFT figures: a base model prompted otherwise than its
    chat-template checkpoints says so, the switch being part of the first drift
    (plan.checkpoint_prompt_style)."""
    if checkpoint_prompt_style(config, model, BASE_RUN) == TRAINED_PROMPT_STYLE:
        return "base"
    return "base, 'Response:' prompt; then chat template"
