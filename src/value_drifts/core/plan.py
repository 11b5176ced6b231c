"""The study's grid as data: every training phase, its checkpoint steps and its files.

Built from the config alone, so Snakemake knows every target before anything runs.
Run ids and paths come from ``value_drifts.core.layout``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from value_drifts.core.checkpoints import checkpoint_steps
from value_drifts.core.layout import (
    BASE_RUN,
    TRACES,
    checkpoint_dir,
    format_value,
    po_run,
    run_dir,
    sft_run,
    step_dir,
    training_dir,
    training_marker,
)

__all__ = ["BASE_RUN", "Phase", "Plan", "build_plan", "checkpoint_prompt_style",
           "name_problems", "slug"]

# The prompt style of every checkpoint the workflow trains: SFT trains on conversations
# through the chat template, and preference optimisation starts from an SFT model.
TRAINED_PROMPT_STYLE = "chat"


def checkpoint_prompt_style(config: Mapping[str, Any], model: str, run: str) -> str:
    """How a checkpoint of ``model``'s ``run`` is prompted (``base``: question +
    ``generation.base_prompt_suffix``; ``chat``: its chat template). The prompt style
    belongs to the phase, not the model: the base model (step 0 of SFT) as
    ``models.<model>.prompt_style`` says (the paper appends "Response:" for base models,
    §3), every checkpoint trained by the workflow ``TRAINED_PROMPT_STYLE``. A trace is
    prompted as its config says. The switch from a base-style step 0 to chat-style SFT
    checkpoints is part of the first drift (docs/metrics.md)."""
    if run == BASE_RUN:
        return config["models"][model]["prompt_style"]
    return TRAINED_PROMPT_STYLE


@dataclass(frozen=True)
class Phase:
    """One training run of one model; step 0 is the model it starts from."""

    model: str
    run: str
    kind: str  # "sft", "po" or "trace"
    steps: tuple[int, ...]  # saved checkpoint steps: without step 0, except for a trace
    sft_dataset: str
    algorithm: str | None = None
    preference_set: str | None = None
    overrides: Mapping[str, float] = field(default_factory=dict)

    @property
    def parent(self) -> tuple[str, int]:
        """(run, step) whose model is this phase's step 0."""
        if self.kind == "sft":
            return BASE_RUN, 0
        if self.kind == "trace":
            return self.run, self.steps[0]  # its start model, else its first checkpoint
        return sft_run(self.sft_dataset), -1  # -1: resolved to the SFT run's last step

    @property
    def last_step(self) -> int:
        return self.steps[-1]

    # Where its files live (value_drifts.core.layout spells them).
    @property
    def training_dir(self) -> str:
        """Where training saves its ``checkpoint-{step}`` folders (not for a trace)."""
        return training_dir(self.model, self.run)

    @property
    def training_marker(self) -> str:
        """Written once training has saved every planned checkpoint."""
        return training_marker(self.model, self.run)

    @property
    def run_dir(self) -> str:
        """Its evaluation results: values, drift, judge health."""
        return run_dir(self.model, self.run)

    def checkpoint_dir(self, step: int) -> str:
        """The workflow's folder of a saved checkpoint of this run."""
        return checkpoint_dir(self.model, self.run, step)

    def step_dir(self, step: int) -> str:
        """One checkpoint's answers and judgments."""
        return step_dir(self.model, self.run, step)


def slug(text: str) -> str:
    """File-name form of a category: 'Gender and LGBTQ+ Identity' -> 'gender-and-lgbtq-identity'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _slug_clashes(names, what: str) -> list[str]:
    """Names (of one kind) whose file-name slugs coincide or are empty."""
    problems, by_slug = [], {}
    for name in names:
        text = str(name)
        key = slug(text)
        if not key:
            problems.append(f"{what} {text!r} has no letters or digits for a file name")
        elif "/" in text or text.startswith("."):
            problems.append(f"{what} {text!r} cannot be a file name ('/' or a leading '.')")
        elif key in by_slug:
            problems.append(
                f"{what} names {by_slug[key]!r} and {text!r} share the file name {key!r}: "
                "rename one"
            )
        else:
            by_slug[key] = text
    return problems


def name_problems(config: Mapping[str, Any], categories) -> list[str]:
    """Names that would become the same path, or no path: categories (of the topic map),
    models, SFT datasets and preference sets whose slugs coincide or are empty, and
    ablation values that give the same run id. Each problem names both names."""
    problems = _slug_clashes(categories, "category")
    problems += _slug_clashes(config["models"], "model")
    problems += _slug_clashes(config["sft_datasets"], "SFT dataset")
    problems += _slug_clashes(config.get("preference_sets") or {}, "preference set")
    po = config.get("preference_optimization") or {}
    for i, ablation in enumerate(po.get("ablations", [])):
        seen: dict[str, Any] = {}
        for value in ablation["values"]:
            key = format_value(value)
            if key in seen:
                problems.append(
                    f"preference_optimization.ablations.{i}: values {seen[key]!r} and {value!r} "
                    f"of {ablation['parameter']} give the same run id "
                    f"(.{ablation['parameter']}-{key})"
                )
            seen[key] = value
    return problems


@dataclass(frozen=True)
class Plan:
    phases: tuple[Phase, ...]

    def phase(self, model: str, run: str) -> Phase:
        for phase in self.phases:
            if phase.model == model and phase.run == run:
                return phase
        raise KeyError(f"no run {run!r} for model {model!r}")

    def sft_phases(self, model: str | None = None) -> list[Phase]:
        return [p for p in self.phases if p.kind == "sft" and model in (None, p.model)]

    def po_phases(self) -> list[Phase]:
        return [p for p in self.phases if p.kind == "po"]

    def trace_phases(self) -> list[Phase]:
        return [p for p in self.phases if p.kind == "trace"]

    def models(self) -> list[str]:
        """The models trained (traces are not among them)."""
        return sorted({p.model for p in self.phases if p.kind != "trace"})

    def start_of(self, phase: Phase) -> tuple[str, int]:
        """(run, step) of the checkpoint a phase starts from: base model or final SFT model."""
        run, step = phase.parent
        if step < 0:
            step = self.phase(phase.model, run).last_step
        return run, step

    def trajectory(self, phase: Phase) -> list[tuple[str, int, int]]:
        """(source run, source step, phase step) for step 0 and every saved checkpoint."""
        if phase.kind == "trace":  # steps as the series names them
            return [(phase.run, s, s) for s in phase.steps]
        start_run, start_step = self.start_of(phase)
        return [(start_run, start_step, 0)] + [(phase.run, s, s) for s in phase.steps]

    def evaluated_checkpoints(self) -> list[tuple[str, str, int]]:
        """Every (model, run, step) that is generated from and judged, each once."""
        seen: dict[tuple[str, str, int], None] = {}
        for phase in self.phases:
            for run, step, _ in self.trajectory(phase):
                seen[(phase.model, run, step)] = None
        return list(seen)


def _sft_pairs(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    runs = config["sft"].get("runs")
    if runs is None:
        return [(m, d) for m in config["models"] for d in config["sft_datasets"]]
    return [(r["model"], r["dataset"]) for r in runs]


def build_plan(config: Mapping[str, Any], traces: Mapping[str, Any] | None = None) -> Plan:
    """The study's phases; ``traces`` (``traces.read_traces``) adds one phase per trace,
    model ``layout.TRACES``, with the steps its series holds."""
    sft = config["sft"]
    phases: list[Phase] = []
    for model, dataset in _sft_pairs(config):
        spec = config["sft_datasets"][dataset]
        steps = checkpoint_steps(
            spec["size"], sft["global_batch_size"], sft["epochs"], spec["save_steps"]
        )
        phases.append(Phase(model, sft_run(dataset), "sft", tuple(steps), dataset))
    sft_runs = {(p.model, p.sft_dataset) for p in phases}

    po = config.get("preference_optimization")
    if po:
        grids = po["grid"] if isinstance(po["grid"], list) else [po["grid"]]
        runs: list[tuple[str, str, str, str, dict[str, float]]] = [
            (m, d, a, p, {})
            for grid in grids
            for m in grid["models"]
            for d in grid["sft_datasets"]
            for a in grid["algorithms"]
            for p in grid["preference_sets"]
        ]
        for ab in po.get("ablations", []):
            for value in ab["values"]:
                runs.append(
                    (ab["model"], ab["sft_dataset"], ab["algorithm"], ab["preference_set"],
                     {ab["parameter"]: value})
                )
        seen: set[tuple[str, str]] = set()
        for model, dataset, algorithm, pref_set, overrides in runs:
            if (model, dataset) not in sft_runs:
                raise ValueError(f"PO run on {model}/{sft_run(dataset)}, which is not an SFT run")
            hyper = po["algorithms"][algorithm]
            if overrides and all(hyper.get(k) == v for k, v in overrides.items()):
                overrides = {}  # the ablation value equal to the default is the main run
            run = po_run(dataset, algorithm, pref_set, overrides)
            if (model, run) in seen:
                continue
            seen.add((model, run))
            steps = checkpoint_steps(
                config["preference_sets"][pref_set]["size"],
                hyper["global_batch_size"],
                hyper["epochs"],
                hyper["save_steps"],
                ppo=algorithm == "ppo",
            )
            phases.append(
                Phase(model, run, "po", tuple(steps), dataset, algorithm, pref_set, overrides)
            )
    for name, series in (traces or {}).items():
        phases.append(Phase(TRACES, name, "trace", tuple(series.steps), sft_dataset=""))
    return Plan(tuple(phases))
