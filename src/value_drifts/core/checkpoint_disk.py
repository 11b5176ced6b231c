"""The disk a study's training runs need: per run, its checkpoints' weights and the resume
state of its newest ones; for the whole plan, its peak. One source for both users: the
cost plan prints it (``value-drifts cost-plan``), and every training rule declares its
run's peak as the resource ``checkpoint_disk_mb`` (rules/resources.smk), so
``--resources checkpoint_disk_mb=N`` caps the runs that train at once.

What a saved checkpoint holds (``value_drifts.core.checkpoints``):

- weights: parameters (``models.<name>.params_b``) × the bytes of the trainer's
  ``precision`` (``BYTES_PER_PARAMETER``: bf16 2, fp32 4), the dtype models load and save
  in (a PPO checkpoint's model is its policy, the reward model's its classifier).
- resume state, only in the newest complete checkpoint of a run that is training, none
  once the run ends (``checkpoints.resume_state_callback``), none with
  ``save_only_model: true``; for each trained model (``cluster_requests.TRAINING_MODELS``:
  PPO trains the policy and a value model, the others one model):
  - under DeepSpeed (a model with GPUs): ``OPTIMIZER_BYTES_PER_PARAMETER`` = 12 bytes per
    parameter of optimizer shards: Adam's fp32 master weights, momentum and variance
    (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion
    Parameter Models", §3.1: K = 12 for mixed-precision Adam; DeepSpeed keeps the fp32
    partitions in fp32 training too). Under ZeRO-2 DeepSpeed also writes the module's
    weights again (``mp_rank_00_model_states.pt``: its engine saves ``module_state_dict()``;
    under ZeRO-3 the parameters there are empty partitions);
  - in one process (a CPU model): ``optimizer.pt``, PyTorch Adam's two moments in the
    parameters' dtype: 2 × the weights;
  - PPO's value model itself (``checkpoints.PPO_VALUE_MODEL``): the weights once more.
  Scheduler and RNG state, config, tokenizer and trainer state (kilobytes to megabytes)
  are not counted.

A run's peak (its ``checkpoint_disk_mb``): every planned checkpoint's weights, plus the
resume state of two checkpoints, as while the newest is saved its predecessor keeps its
own until the new one is complete (``checkpoints.prune_resume_state``). Generation starts
only once a run's training ended (its input is the run's ``training.json``), so a run's
checkpoints are all there at its end. PPO's reward model saves one checkpoint, then its
final folder, and deletes the checkpoint.

What stays after generation (``generation.delete_checkpoint_weights``,
``checkpoints.keeps_weights``): each run's final checkpoint (the final SFT model starts
preference optimisation) and each reward model; without deletion, every checkpoint.
Base models (hub downloads), the Hugging Face cache, data and results are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from value_drifts.core import cluster_requests as res
from value_drifts.core.checkpoints import keeps_weights
from value_drifts.core.layout import BASE_RUN, reward_run

if TYPE_CHECKING:
    from value_drifts.core.plan import Phase
    from value_drifts.core.study import Study

BYTES_PER_PARAMETER = res.BYTES_PER_PARAMETER
OPTIMIZER_BYTES_PER_PARAMETER = 12  # DeepSpeed's Adam: fp32 master weights, momentum, variance
MB = 1_000_000  # Snakemake's *_mb resources are megabytes of 10^6 bytes
# The resource the training rules declare: not Snakemake's standard ``disk_mb``, which
# Snakemake scopes "local" (snakemake.resources.ResourceScopes.defaults, Snakemake 9): under
# a cluster executor it is not tallied across submitted jobs, so --resources disk_mb=N would
# cap nothing; and its default (default-resources: max(2 × input size, 1 GB), 50 GB without
# input) would be counted for every other job under a global scope. docs/cluster.md.
RESOURCE = "checkpoint_disk_mb"


@dataclass(frozen=True)
class RunDisk:
    """One training run's checkpoints on disk. ``task``: sft, dpo, simpo, ppo or reward;
    ``checkpoints``: those it saves; ``weights_bytes``: one checkpoint's weights;
    ``resume_bytes``: one checkpoint's resume state (0: weights alone); ``kept``:
    checkpoints whose weights stay after generation; ``final_copy``: the reward model's
    final folder, written beside its checkpoint."""

    model: str
    run: str
    task: str
    checkpoints: int
    weights_bytes: int
    resume_bytes: int
    kept: int
    final_copy: bool = False

    @property
    def peak_bytes(self) -> int:
        """Its most on disk, at its last save: every checkpoint's weights plus the resume
        state of the newest two; the reward model then also copies its weights out."""
        saving = (self.checkpoints * self.weights_bytes
                  + min(self.checkpoints, 2) * self.resume_bytes)
        if self.final_copy:
            return max(saving, (self.checkpoints + 1) * self.weights_bytes)
        return saving

    @property
    def peak_mb(self) -> int:
        """``peak_bytes`` in MB, rounded up: the job's ``checkpoint_disk_mb``."""
        return math.ceil(self.peak_bytes / MB)

    @property
    def kept_bytes(self) -> int:
        """What stays once generation deleted the weights it may."""
        return self.kept * self.weights_bytes


def disk_shortfall(output_dir: str | Path, peak_mb: int) -> str | None:
    """Why the training run saving into ``output_dir`` may run out of disk, or None: the
    free space of its filesystem (``shutil.disk_usage`` of its nearest existing folder)
    plus what its ``checkpoint-*`` folders already take (a resumed run's; links not
    followed) is under the run's peak, ``peak_mb`` MB (its ``checkpoint_disk_mb``,
    ``RunDisk.peak_mb``). An estimate (the module docstring): other jobs may free or take
    space meanwhile."""
    import shutil

    output_dir = Path(output_dir)
    existing = next(folder for folder in (output_dir, *output_dir.resolve().parents)
                    if folder.is_dir())  # fmt: skip
    free = shutil.disk_usage(existing).free
    held = sum(item.lstat().st_size for folder in output_dir.glob("checkpoint-*")
               for item in folder.rglob("*") if item.is_file() and not item.is_symlink())
    needed = peak_mb * MB - held
    if free >= needed:
        return None
    return (
        f"{output_dir}: {size_text(free)} free on its filesystem, and this run's checkpoints "
        f"need up to {size_text(needed)} more, {size_text(needed - free)} short "
        f"({RESOURCE}={peak_mb:,}, the cost plan's "
        "estimate: every planned checkpoint's weights and two resume states). A save will "
        "fail with a write error unless space is freed: free space, or train fewer runs at "
        f"once (--resources {RESOURCE}=N, docs/cluster.md)"
    )


def weights_bytes(model: res.ModelSize, precision: str) -> int:
    """One checkpoint's weights: parameters × bytes of ``precision`` (bf16 2, fp32 4)."""
    return round(model.params_b * 1e9 * BYTES_PER_PARAMETER[precision])


def resume_state_bytes(model: res.ModelSize, task: str, trainer: dict[str, Any],
                       cluster: res.ClusterSettings) -> int:
    """One checkpoint's resume state (module docstring), 0 with ``save_only_model``; per
    trained model: under DeepSpeed 12 bytes per parameter, plus the weights again under
    ZeRO-2; on CPU Adam's two moments, 2 × the weights. PPO's value model adds its
    weights."""
    if trainer["save_only_model"]:
        return 0
    trained, _ = res.TRAINING_MODELS[task]
    weights = weights_bytes(model, trainer["precision"])
    value_model = (trained - 1) * weights  # PPO: value_model/ beside the policy
    if model.gpus == 0:
        return value_model + trained * 2 * weights
    optimizer = round(model.params_b * 1e9 * OPTIMIZER_BYTES_PER_PARAMETER)
    module = weights if res.zero_stage(model, task, cluster) == 2 else 0
    return value_model + trained * (optimizer + module)


def _run_disk(study: Study, model: str, run: str, task: str, trainer: dict[str, Any],
              steps: Sequence[int]) -> RunDisk:
    size = study.model_size(model)
    deletes = study.config["generation"]["delete_checkpoint_weights"]
    kept = sum(1 for step in steps if not deletes
               or keeps_weights(run, step, steps[-1], BASE_RUN))
    return RunDisk(
        model=model, run=run, task=task, checkpoints=len(steps),
        weights_bytes=weights_bytes(size, trainer["precision"]),
        resume_bytes=resume_state_bytes(size, task, trainer, study.cluster),
        kept=kept,
    )


def phase_disk(study: Study, phase: Phase) -> RunDisk:
    """An SFT or preference optimisation run's disk, from its planned steps
    (``plan.Phase.steps``) and its trainer section."""
    config = study.config
    if phase.kind == "sft":
        return _run_disk(study, phase.model, phase.run, "sft", config["sft"], phase.steps)
    if phase.kind == "po":
        # an ablation run's overrides (plan.Phase.overrides) change its section
        trainer = {**config["preference_optimization"]["algorithms"][phase.algorithm],
                   **phase.overrides}
        return _run_disk(study, phase.model, phase.run, phase.algorithm, trainer, phase.steps)
    raise ValueError(f"{phase.model}/{phase.run} is a {phase.kind}, not a training run")


def reward_disk(study: Study, model: str, sft_dataset: str, preference_set: str) -> RunDisk:
    """PPO's reward model: one checkpoint (saved at the end of its epoch, with resume
    state), then its final folder, which stays (PPO reads it)."""
    trainer = study.config["preference_optimization"]["algorithms"]["ppo"]["reward_model"]
    size = study.model_size(model)
    return RunDisk(
        model=model, run=reward_run(sft_dataset, preference_set), task="reward",
        checkpoints=1, weights_bytes=weights_bytes(size, trainer["precision"]),
        resume_bytes=resume_state_bytes(size, "reward", trainer, study.cluster),
        kept=1, final_copy=True,
    )


def training_runs(study: Study) -> list[RunDisk]:
    """Every training job of the plan: SFT runs, PPO's reward models (one per model, SFT
    set and preference set), preference optimisation runs; traces train nothing."""
    runs = [phase_disk(study, phase) for phase in study.plan.sft_phases()]
    rewards = dict.fromkeys((p.model, p.sft_dataset, p.preference_set)
                            for p in study.plan.po_phases() if p.algorithm == "ppo")
    runs += [reward_disk(study, *key) for key in rewards]
    runs += [phase_disk(study, phase) for phase in study.plan.po_phases()]
    return runs


@dataclass(frozen=True)
class DiskPlan:
    """The plan's training runs and its disk: ``upper_bound``, every run's peak at once
    (every checkpoint of every run on disk before generation deleted any weights, each
    run at its last save); ``kept``, what stays after generation; ``largest``, the largest
    run's peak (a cap below it still runs that run, alone: Snakemake lowers a job's
    request to the cap)."""

    runs: tuple[RunDisk, ...]
    deletes_weights: bool = True  # generation.delete_checkpoint_weights

    @property
    def upper_bound(self) -> int:
        return sum(run.peak_bytes for run in self.runs)

    @property
    def kept(self) -> int:
        return sum(run.kept_bytes for run in self.runs)

    @property
    def largest(self) -> RunDisk:
        return max(self.runs, key=lambda run: run.peak_bytes)

    def with_cap(self, cap_mb: int) -> int:
        """Peak with ``--resources checkpoint_disk_mb=cap_mb``: the runs training at once
        hold at most the cap (or the largest run alone), the finished ones what they keep,
        so about kept + cap, never above ``upper_bound``. It assumes generation deletes a
        finished run's intermediate weights before other runs fill the cap again;
        checkpoints still waiting for their generation jobs come on top."""
        training = max(cap_mb * MB, self.largest.peak_bytes)
        return min(self.kept + training, self.upper_bound)


def disk_plan(study: Study) -> DiskPlan:
    """The study's training runs and their disk."""
    return DiskPlan(tuple(training_runs(study)),
                    study.config["generation"]["delete_checkpoint_weights"])


def size_text(value: float) -> str:
    """Bytes in decimal units: 540 MB, 51.2 GB, 19.17 TB."""
    if value >= 1e12:
        return f"{value / 1e12:,.2f} TB"
    if value >= 1e9:
        return f"{value / 1e9:,.1f} GB"
    return f"{value / 1e6:,.0f} MB"


def format_disk_plan(plan: DiskPlan, cap_mb: int | None = None) -> str:
    """The plan's disk as labelled lines: one row per model and task (its runs, their
    checkpoints, one checkpoint's weights and resume state, the largest run's peak, the
    sum of their peaks, what they keep), then the plan's peak and what stays; with
    ``cap_mb``, the peak under ``--resources checkpoint_disk_mb=cap_mb``."""
    lines = ["checkpoint disk of the training runs (value_drifts.core.checkpoint_disk)"]
    if not plan.runs:
        return "\n".join(lines + ["  no training runs"])
    row = "  {:<14}{:<8}{:>6}{:>13}{:>11}{:>11}{:>12}{:>12}{:>12}"
    lines.append(row.format("model", "task", "runs", "checkpoints", "weights", "resume",
                            "run peak", "all peaks", "kept"))
    groups: dict[tuple[str, str], list[RunDisk]] = {}
    for run in plan.runs:
        groups.setdefault((run.model, run.task), []).append(run)
    for (model, task), runs in groups.items():
        lines.append(row.format(
            model, task, len(runs), f"{sum(r.checkpoints for r in runs):,}",
            size_text(max(r.weights_bytes for r in runs)),
            size_text(max(r.resume_bytes for r in runs)),
            size_text(max(r.peak_bytes for r in runs)),
            size_text(sum(r.peak_bytes for r in runs)),
            size_text(sum(r.kept_bytes for r in runs)),
        ))
    largest = plan.largest
    kept = ("each run's final checkpoint and each reward model" if plan.deletes_weights
            else "every checkpoint: generation.delete_checkpoint_weights is off")
    label = "  {:<26}{:>11}  {}"
    lines += [
        "",
        label.format("peak, upper bound", size_text(plan.upper_bound),
                     "every run at its peak at once, before generation deleted any weights"),
        label.format("kept after generation", size_text(plan.kept), kept),
        label.format("largest run", size_text(largest.peak_bytes),
                     f"{largest.model}/{largest.run}: {RESOURCE}={largest.peak_mb:,}"),
    ]
    if cap_mb is not None:
        lines.append(label.format(
            f"peak, cap {cap_mb:,} MB", size_text(plan.with_cap(cap_mb)),
            "kept + the runs training at once, if generation keeps up with finished runs"))
    lines += [
        "",
        "  weights: parameters x 2 bytes (bf16) or 4 (fp32)",
        "  resume state, in the newest checkpoint of a running job only, per trained model",
        "    (PPO: policy and value model, plus the value model's weights): 12 bytes/parameter",
        "    under DeepSpeed (Adam's fp32 master weights and two moments; the weights again",
        "    under ZeRO-2), 2 x weights on CPU; none with save_only_model",
        "  run peak: checkpoints x weights + 2 x resume state, declared by each training job",
        f"    as {RESOURCE}: --resources {RESOURCE}=N caps the runs training at once",
        "    (docs/cluster.md); base models, data and results are not counted",
    ]
    return "\n".join(lines)
