import re
import sys
from pathlib import Path

import yaml

# The package lives in src/; make it importable when the workflow is run from a clone.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from value_drifts.config import ConfigError, validate_config  # noqa: E402
from value_drifts.plan import BASE_RUN, build_plan, slug  # noqa: E402

try:
    validate_config(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

PLAN = build_plan(config)
TOPICS = yaml.safe_load(Path(config["topics"]).read_text())
CATEGORY_BY_SLUG = {slug(category): category for category in TOPICS}
FIGURE_TOPICS = config["analysis"].get("figure_topics", list(TOPICS))
RUN_IDS = sorted({phase.run for phase in PLAN.phases})


def _alternatives(names):
    return "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))


wildcard_constraints:
    model=_alternatives(config["models"]),
    run=_alternatives(RUN_IDS + [BASE_RUN]),
    sft_dataset=_alternatives(config["sft_datasets"]),
    topic=_alternatives(CATEGORY_BY_SLUG),
    step=r"\d+",
    po_run=r"[^/]+",
    preference_set=_alternatives(config.get("preference_sets", {}) or ["none"]),


# ---- paths -------------------------------------------------------------------------------


def base_model_dir(model):
    return f"results/models/{model}/base"


def training_dir(model, run):
    return f"results/models/{model}/{run}"


def training_marker(model, run):
    """Written when a training run has saved all its planned checkpoints."""
    return f"{training_dir(model, run)}/training.json"


def checkpoint_dir(model, run, step):
    """Directory of the model a (run, step) names; step 0 of a run is its start model."""
    if run == BASE_RUN:
        return base_model_dir(model)
    return f"{training_dir(model, run)}/checkpoint-{step}"


def step_dir(model, run, step):
    return f"results/{model}/{run}/step-{step}"


def judge_model_dir():
    judge = config["judge"]
    return "results/judge/adapted" if judge["model"] == "adapted" else judge["model"]


# ---- input functions -------------------------------------------------------------------


def checkpoint_input(wildcards):
    """The file whose existence means the checkpoint of (model, run, step) is on disk."""
    if wildcards.run == BASE_RUN:
        return base_model_dir(wildcards.model)
    return training_marker(wildcards.model, wildcards.run)


def judge_model_input(wildcards):
    return ["results/judge/adapted"] if config["judge"]["model"] == "adapted" else []


def trajectory_judgments(wildcards):
    """Judgments of every checkpoint of a phase, step 0 being the model it starts from."""
    phase = PLAN.phase(wildcards.model, wildcards.run)
    return [
        f"{step_dir(phase.model, run, step)}/judgments.parquet"
        for run, step, _ in PLAN.trajectory(phase)
    ]


def trajectory_steps(wildcards):
    phase = PLAN.phase(wildcards.model, wildcards.run)
    return [step for _, _, step in PLAN.trajectory(phase)]


def sft_values(wildcards):
    return [
        f"results/{wildcards.model}/{phase.run}/values.parquet"
        for phase in PLAN.sft_phases(wildcards.model)
    ]


def sft_drifts(wildcards):
    return [
        f"results/{wildcards.model}/{phase.run}/drift.parquet"
        for phase in PLAN.sft_phases(wildcards.model)
    ]


def final_outputs():
    outputs = []
    for model in {phase.model for phase in PLAN.sft_phases()}:
        outputs.append(f"results/tables/sft_drift_{model}.md")
        outputs += [
            f"results/figures/fig03_sft_{model}_{slug(category)}.pdf"
            for category in FIGURE_TOPICS
        ]
    for phase in PLAN.po_phases():
        outputs.append(f"results/{phase.model}/{phase.run}/drift.csv")
    return sorted(outputs)
