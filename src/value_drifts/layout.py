"""Run ids and where a study's files live: the one place both are spelled.

The workflow's rules, input functions and the package ask these functions; each works on
values and on Snakemake wildcard placeholders alike (``training_marker("{model}",
sft_run("{sft_dataset}"))`` is the pattern of a rule's output). README "Targets and paths"
lists the layout.

Run ids: ``sft-{dataset}`` for SFT, ``sft-{dataset}.{algorithm}-{preference set}`` for
preference optimisation from that SFT model, with ``.{parameter}-{value}`` per ablation
override; ``base`` is a model's base (step 0 of every SFT run).
"""

from __future__ import annotations

from collections.abc import Mapping

BASE_RUN = "base"
# The model name of every trace (a checkpoint series trained elsewhere): a trace's results
# are results/traces/{trace}/..., its run id is the trace's name.
TRACES = "traces"
RESULTS = "results"
MODELS = f"{RESULTS}/models"
# The judge adapted to the prompt when ``judge.model: adapted``.
ADAPTED_JUDGE_DIR = f"{RESULTS}/judge/adapted"


def format_value(value: float) -> str:
    """An ablation value as it appears in a run id: ``:g`` (0.1 -> '0.1', 1.0 -> '1')
    when that reads back as the same number, else the shortest repr that does, so two
    different values never share a run id (``:g`` keeps 6 digits: 1.000001e-5 and 1e-5
    would both be '1e-05')."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def sft_run(dataset: str) -> str:
    """The run id of SFT on ``dataset``."""
    return f"sft-{dataset}"


def po_run(
    dataset: str, algorithm: str, preference_set: str,
    overrides: Mapping[str, float] | None = None,
) -> str:
    """The run id of ``algorithm`` on ``preference_set`` from the SFT model of ``dataset``,
    with one ``.{parameter}-{value}`` per ablation override (sorted by parameter)."""
    return f"{sft_run(dataset)}.{algorithm}-{preference_set}" + "".join(
        f".{key}-{format_value(value)}" for key, value in sorted((overrides or {}).items())
    )


# The evaluation questions every checkpoint answers.
QUESTIONS = f"{RESULTS}/data/questions.parquet"


def base_model_dir(model: str) -> str:
    return f"{MODELS}/{model}/{BASE_RUN}"


def training_dir(model: str, run: str) -> str:
    """Where a training run saves its ``checkpoint-{step}`` folders."""
    return f"{MODELS}/{model}/{run}"


def training_marker(model: str, run: str) -> str:
    """Written when a training run has saved all its planned checkpoints."""
    return f"{training_dir(model, run)}/training.json"


def reward_run(sft_dataset: str, preference_set: str) -> str:
    """The run id of PPO's reward model on ``preference_set`` from the final SFT model of
    ``sft_dataset``."""
    return f"reward-{sft_run(sft_dataset)}.{preference_set}"


def reward_model_dir(model: str, sft_dataset: str, preference_set: str) -> str:
    """PPO's reward model (a directory; it also initialises PPO's value model)."""
    return training_dir(model, reward_run(sft_dataset, preference_set))


def checkpoint_dir(model: str, run: str, step: int | str) -> str:
    """The model a (run, step) names; step 0 of a run is its start model, and the base
    run's only checkpoint is the base model."""
    if run == BASE_RUN:
        return base_model_dir(model)
    return f"{training_dir(model, run)}/checkpoint-{step}"


def run_dir(model: str, run: str) -> str:
    """A run's evaluation results: values, drift, judge health."""
    return f"{RESULTS}/{model}/{run}"


def step_dir(model: str, run: str, step: int | str) -> str:
    """One checkpoint's answers and judgments."""
    return f"{run_dir(model, run)}/step-{step}"


def generations_path(model: str, run: str, step: int | str) -> str:
    return f"{step_dir(model, run, step)}/generations.parquet"


def judgments_path(model: str, run: str, step: int | str) -> str:
    return f"{step_dir(model, run, step)}/judgments.parquet"


def judge_counts_path(model: str, run: str, step: int | str) -> str:
    return f"{step_dir(model, run, step)}/judge_counts.json"


# ---- figures and tables whose names hold a run id -------------------------------------
FIGURES = f"{RESULTS}/figures"
TABLES = f"{RESULTS}/tables"


def po_figure_name(number: str, model: str, sft_dataset: str, preference_set: str,
                   topic: str) -> str:
    """Figures 4, 7, 9 (without extension): PO trajectories of one SFT model on one set."""
    return f"fig{number}_po_{model}_{sft_run(sft_dataset)}_{preference_set}_{topic}"


def setup_figure_name(algorithm: str, sft_dataset: str, topic: str) -> str:
    """Figures 11-14 (without extension): one algorithm's runs on the synthetic sets."""
    return f"fig11-14_{algorithm}_{sft_run(sft_dataset)}_{topic}"


def po_table_name(model: str, sft_dataset: str) -> str:
    """Tables 1, 13-16 (without extension): PO drift of one SFT model."""
    return f"table13-16_{model}_{sft_run(sft_dataset)}_po"


def trace_figure_name(trace: str, topic: str) -> str:
    """A trace's trajectory figure (without extension)."""
    return f"trace_{trace}_{topic}"


def trace_table_name(trace: str) -> str:
    """A trace's drift table (without extension)."""
    return f"trace_{trace}"
