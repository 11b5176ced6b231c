import copy
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

# The package lives in src/; make it importable when the workflow is run from a clone.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from value_drifts.judge.agreement import labelled_set_path  # noqa: E402
from value_drifts.core.envs import conda_env  # noqa: E402
from value_drifts.core.job_settings import (  # noqa: E402
    answers_digest,
    output_settings,
    record_settings,
    recorded_settings_of,
    settings_path,
)
from value_drifts.judge.backends import batch_state_dir  # noqa: E402
from value_drifts.judge.run import judge_output_settings  # noqa: E402
from value_drifts.core.layout import (  # noqa: E402
    ADAPTED_JUDGE_DIR,
    BASE_RUN,
    DATASET_STANCES_FIGURE,
    DATASET_STANCES_TABLE,
    DOWNSTREAM_TABLE,
    PAPER_COMPARISON_TABLE,
    QUESTIONS,
    REPORT_CONFIG,
    TRACES,
    VALUE_GAP_FIGURE,
    VALUE_GAP_TABLE,
    VPRISM_DATA,
    VPRISM_FIGURE,
    ablation_figure_name,
    ablation_name,
    base_model_dir,
    checkpoint_dir,
    downstream_path,
    drift_path,
    figure,
    generations_path,
    judge_agreement,
    judge_counts_path,
    judge_health_path,
    judgments_path,
    po_figure_name,
    po_run_from,
    po_table_name,
    preference_data,
    preference_value_gap,
    question_values_path,
    reward_model_dir,
    reward_run,
    setup_figure_name,
    sft_data,
    sft_figure_name,
    sft_run,
    sft_stances,
    sft_table_name,
    table,
    trace_figure_name,
    trace_table_name,
    step_dir,
    training_dir,
    training_marker,
    value_gap_data,
    values_path,
)
from value_drifts.core.plan import slug  # noqa: E402
from value_drifts.core.study import StudyError, load_study  # noqa: E402
from value_drifts.core.traces import skipped_warnings  # noqa: E402
from value_drifts.core.site_settings import check_site_variables  # noqa: E402
from value_drifts.core.checkpoints import (  # noqa: E402
    lost_answers_reason,
    upstream_change,
)

# The config as written, before the schema's defaults are filled in: the form settings
# files were recorded in before the defaults were (recorded_settings).
RAW_CONFIG = copy.deepcopy(config)
# The study, built once from the validated config (value_drifts.core.study): its grid, topic
# map, traces, and how each backend's jobs run. Rules and input functions ask it.
try:
    STUDY = load_study(config)
except StudyError as error:
    raise WorkflowError(str(error)) from None
# Every rule reads the config with the schema's defaults filled in (config.with_defaults).
config.update(STUDY.config)

check_site_variables(workflow)  # a profile's $SLURM_ACCOUNT etc. left unset

TOPICS = STUDY.topics
TRACE_SERIES = STUDY.traces
for _warning in skipped_warnings(TRACE_SERIES) if workflow.is_main_process else []:
    logger.warning(_warning)
PLAN = STUDY.plan
BACKENDS = STUDY.backends
CATEGORY_BY_SLUG = STUDY.categories_by_slug
FIGURE_TOPICS = STUDY.figure_topics
RUN_IDS = sorted({phase.run for phase in PLAN.phases})
BATCH_STATE_DIR = batch_state_dir(config["judge"])
# The conda env of each backend kind (value_drifts.core.envs): rules whose library depends on
# the configured backend run in that backend's env.
JUDGE_ENV = conda_env(BACKENDS["judge"].env)
GENERATION_ENV = conda_env(BACKENDS["generation"].env)
TEACHER_ENV = conda_env(BACKENDS["teacher"].env if "teacher" in BACKENDS else "api")
VPRISM_LLM_ENV = conda_env(
    BACKENDS["vprism_llm"].env if "vprism_llm" in BACKENDS else "api"
)
DOWNSTREAM_ENV = conda_env(BACKENDS["downstream"].env)


def ablations():
    return config.get("preference_optimization", {}).get("ablations", [])


ABLATIONS = {
    ablation_name(
        a["model"],
        a["sft_dataset"],
        a["algorithm"],
        a["preference_set"],
        a["parameter"],
    ): a
    for a in ablations()
}


def _alternatives(names):
    return "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))


wildcard_constraints:
    model=_alternatives([*config["models"], *([TRACES] if TRACE_SERIES else [])]),
    trace=_alternatives(TRACE_SERIES) if TRACE_SERIES else "none",
    run=_alternatives(RUN_IDS + [BASE_RUN]),
    sft_dataset=_alternatives(config["sft_datasets"]),
    topic=_alternatives(CATEGORY_BY_SLUG),
    step=r"\d+",
    po_run=r"[^/]+",
    ablation=_alternatives(ABLATIONS) if ABLATIONS else "none",
    preference_set=_alternatives(config.get("preference_sets", {}) or ["none"]),
    po_figure="04|07|09",
    ablation_figure="15|16|17",
    algorithm="ppo|dpo|simpo",


# ---- paths: value_drifts.core.layout spells every run id and path ---------------------------


def judge_model_dir():
    judge = config["judge"]
    return ADAPTED_JUDGE_DIR if judge["model"] == "adapted" else judge["model"]


# Output patterns of the figures and tables whose names hold a run id.
PO_FIGURE = po_figure_name(
    "{po_figure}", "{model}", "{sft_dataset}", "{preference_set}", "{topic}"
)
SETUP_FIGURE = setup_figure_name("{algorithm}", "{sft_dataset}", "{topic}")
PO_TABLE = po_table_name("{model}", "{sft_dataset}")
TRACE_FIGURE = trace_figure_name("{trace}", "{topic}")
TRACE_TABLE = trace_table_name("{trace}")
SFT_TABLE = sft_table_name("{model}")
SFT_FIGURE = sft_figure_name("{model}", "{topic}")
ABLATION_FIGURE_NAME = ablation_figure_name(
    "{ablation_figure}", "{ablation}", "{topic}"
)


# ---- settings a job's output depends on --------------------------------------------------
# Each is an input file (value_drifts.core.job_settings): with the profiles' mtime-only rerun
# trigger, editing a setting reruns exactly the jobs that read it, and editing a
# throughput setting (batch size, concurrency, prices...) reruns nothing.


def recorded_settings(name, settings_from):
    """The settings file ``name`` recording the output-affecting part of
    ``settings_from(config)``. ``settings_from(RAW_CONFIG)`` is the same settings in the
    form recorded before the schema's defaults were filled in: a results tree made then
    stays current (job_settings.record_settings, ``earlier_forms``)."""
    return record_settings(
        settings_path(name),
        output_settings(settings_from(config)),
        earlier_forms=[output_settings(settings_from(RAW_CONFIG))],
    )


JUDGE_SETTINGS = recorded_settings("judge", lambda c: judge_output_settings(c["judge"]))
# What a judge job fingerprints (judge.run.judge_fingerprint): the judge settings as their
# file holds them, read once here, so judgments made before the schema's defaults were
# filled in and new ones share one judge id, and a later rewrite of the file by another
# process cannot reach a job of this one.
JUDGE_FINGERPRINT_SETTINGS = recorded_settings_of(JUDGE_SETTINGS)
ANALYSIS_SETTINGS = recorded_settings(
    "analysis", lambda c: {"analysis": c["analysis"], "seed": c["seed"]}
)
DATASET_STANCE_SETTINGS = recorded_settings(
    "dataset_stances",
    lambda c: {"dataset_stances": c.get("dataset_stances", {}), "seed": c["seed"]},
)


GENERATION_SETTINGS = {
    (model, None): recorded_settings(
        f"generation/{model}",
        lambda c, model=model: {
            "generation": c["generation"],
            "seed": c["seed"],
            "prompt_style": c["models"][model]["prompt_style"],
        },
    )
    for model in config["models"]
} | {
    (TRACES, name): recorded_settings(
        f"generation/{TRACES}/{name}",
        lambda c, series=series: {
            "generation": c["generation"],
            "seed": c["seed"],
            "prompt_style": series.prompt_style,
            "tokenizers": series.tokenizers,
            "revisions": series.revisions,
        },
    )
    for name, series in TRACE_SERIES.items()
}


# What the evaluation questions are made from (select_questions' inputs).
CATEGORIES = config["questions"].get("categories")
QUESTION_SOURCES = {
    "questions": config["questions"]["path"],
    "topics": config["topics"],
    "settings": recorded_settings(
        "data/questions",
        lambda c: {
            "per_category": c["questions"].get("per_category"),
            "seed": c["seed"],
            # only when set, so trees made before the key existed stay current
            **({"categories": CATEGORIES} if CATEGORIES else {}),
        },
    ),
}


def generation_settings(model, run):
    """The generation settings file of a model's checkpoints (a trace's own)."""
    return GENERATION_SETTINGS[(model, run if model == TRACES else None)]


def vprism_settings(*keys):
    """The settings file of a V-PRISM stage: the vprism keys it reads, and the seed."""
    return lambda wc: recorded_settings(
        f"vprism/{'-'.join(keys)}",
        lambda c: {**{key: c["vprism"].get(key) for key in keys}, "seed": c["seed"]},
    )


def settings_of(name, settings):
    """An input function giving the settings file ``name.format(**wildcards)`` for
    ``settings(wildcards, config)``."""
    return lambda wc: recorded_settings(name.format(**wc), lambda c: settings(wc, c))


# ---- paper numbering of figures and tables ---------------------------------------------


def po_figure_number(preference_set):
    """The paper's figure for PO trajectories on a preference set: 4 (UltraFeedback), 9
    (HH-RLHF), 7 (synthetic value-gap sets)."""
    spec = config["preference_sets"][preference_set]
    if spec["source"].startswith("synthetic"):
        return "07"
    return {"hh_rlhf": "09"}.get(spec.get("format"), "04")


ABLATION_FIGURE = {"ppo": "15", "dpo": "16", "simpo": "17"}


def check_figure_number(expected, asked, name):
    if expected != asked:
        raise WorkflowError(
            f"{name} is paper figure {expected}: ask for fig{expected}_..., not fig{asked}_..."
        )


def synthetic_sets():
    return [
        name
        for name, spec in config.get("preference_sets", {}).items()
        if spec["source"].startswith("synthetic")
    ]


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
        "prompt_style": config["models"][wildcards.model]["prompt_style"],
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
            "are then current again: a settings file gets back the time it first held "
            "those settings), or retrain those runs: remove their folders "
            f"{training_dir('<model>', '<run>')} and run again."
        )


def judge_model_input(wildcards):
    return [ADAPTED_JUDGE_DIR] if config["judge"]["model"] == "adapted" else []


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
    return inputs


def preference_set_inputs(wildcards):
    """Template pairs come from files, teacher-written pairs from the value-gap responses;
    hub sets have no input."""
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


def trajectory_steps(wildcards):
    phase = PLAN.phase(wildcards.model, wildcards.run)
    return [step for _, _, step in PLAN.trajectory(phase)]


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


def final_outputs():
    """Every figure and table the config enables, under its paper number."""
    outputs = [judge_agreement("agreement.md"), REPORT_CONFIG]
    for model in {phase.model for phase in PLAN.sft_phases()}:
        outputs.append(table(sft_table_name(model)))
        outputs += [
            figure(sft_figure_name(model, slug(category))) for category in FIGURE_TOPICS
        ]
    po_main = [p for p in PLAN.po_phases() if not p.overrides]
    for model, sft_dataset, preference_set in {
        (p.model, p.sft_dataset, p.preference_set) for p in po_main
    }:
        outputs.append(table(po_table_name(model, sft_dataset)))
        number = po_figure_number(preference_set)
        outputs += [
            figure(
                po_figure_name(
                    number, model, sft_dataset, preference_set, slug(category)
                )
            )
            for category in FIGURE_TOPICS
        ]
    for algorithm, sft_dataset in {(p.algorithm, p.sft_dataset) for p in po_main}:
        if algorithm != "ppo" and setup_phases(algorithm, sft_dataset):
            outputs += [
                figure(setup_figure_name(algorithm, sft_dataset, slug(category)))
                for category in FIGURE_TOPICS
            ]
    for name, ablation in ABLATIONS.items():
        number = ABLATION_FIGURE[ablation["algorithm"]]
        outputs += [
            figure(ablation_figure_name(number, name, slug(category)))
            for category in FIGURE_TOPICS
        ]
    for phase in PLAN.po_phases():
        outputs.append(drift_path(phase.model, phase.run, "csv"))
    for phase in PLAN.phases:
        outputs.append(judge_health_path(phase.model, phase.run))
    for trace in TRACE_SERIES:
        outputs.append(table(trace_table_name(trace)))
        outputs += [
            figure(trace_figure_name(trace, slug(category)))
            for category in FIGURE_TOPICS
        ]
    if paper_reference():
        outputs.append(table(PAPER_COMPARISON_TABLE))
    if downstream_checkpoints():
        outputs.append(table(DOWNSTREAM_TABLE))
    if "vprism" in config:
        outputs += [
            f"{VPRISM_DATA}/questions.parquet",
            f"{VPRISM_DATA}/cluster_report.md",
            figure(VPRISM_FIGURE),
        ]
    if "dataset_stances" in config:
        outputs += [
            figure(DATASET_STANCES_FIGURE),
            figure(VALUE_GAP_FIGURE),
        ]
    return sorted(set(outputs))


# Once, in the main Snakemake process (as check_site_variables): a job's own Snakemake
# on a node starts after the submitting process has checked.
if workflow.is_main_process:
    check_no_answers_lost()
