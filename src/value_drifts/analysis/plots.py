"""Trajectory figures: mean stance probability per stance over training steps, with CIs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import seaborn as sns  # noqa: E402

from value_drifts.analysis.aggregate import clipped_bounds  # noqa: E402
from value_drifts.core.figures import save_figure  # noqa: E402
from value_drifts.core.stances import STANCES  # noqa: E402

# The paper's colours: support green, neutral blue, oppose red.
STANCE_COLOURS = {"support": "#2ca02c", "neutral": "#1f77b4", "oppose": "#d62728"}


def _line_with_band(ax, values: pl.DataFrame, stance: str, colour, label: str, alpha: float):
    """Mean of one stance over steps, with its CI as a band (none where undefined).

    The band is the values' ``ci_low``/``ci_high`` (clipped to [0, 1] by
    ``aggregate.clipped_bounds``; files from before those columns get them here). A step
    without a readable answer has a null value: the line breaks there.
    """
    line = values.filter(pl.col("stance") == stance).sort("step")
    if "ci_low" not in line.columns:
        line = line.with_columns(clipped_bounds())
    steps = line["step"].to_numpy()
    mean = line["value"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    low = line["ci_low"].cast(pl.Float64).fill_null(float("nan")).to_numpy().copy()
    high = line["ci_high"].cast(pl.Float64).fill_null(float("nan")).to_numpy().copy()
    undefined = (low != low) | (high != high)  # NaN: one question, no interval
    low[undefined], high[undefined] = mean[undefined], mean[undefined]
    ax.plot(steps, mean, marker="o", markersize=3, color=colour, label=label)
    ax.fill_between(steps, low, high, color=colour, alpha=alpha, linewidth=0)


CALIBRATED_LABEL = "corrected for the judge's error (dashed)"
WEAK_JUDGE_LABEL = "corrected, judge too weak to trust it (dotted)"


def calibrated_line(ax, values: pl.DataFrame, stance: str, colour) -> bool:
    """The values corrected for the judge's error (``analysis.calibration``: the
    ``calibrated`` column), dashed in the stance's colour, dotted where the judge is
    flagged too weak for the correction to mean much; False when there is none."""
    if "calibrated" not in values.columns:
        return False
    line = values.filter(pl.col("stance") == stance).sort("step")
    calibrated = line["calibrated"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    if (calibrated != calibrated).all():
        return False
    weak = "judge_weak" in line.columns and bool(line["judge_weak"].fill_null(False).any())
    ax.plot(line["step"].to_numpy(), calibrated, color=colour, linewidth=1.0,
            linestyle=":" if weak else "--",
            label=WEAK_JUDGE_LABEL if weak else CALIBRATED_LABEL)
    return True


UNREADABLE_LABEL = "unreadable judge answers"


def mark_unreadable(ax, values: pl.DataFrame) -> int:
    """A black cross at the foot of every step where some of the category's judge answers
    were unreadable (left out of the values; see the run's judge_health table), with the
    count; returns the number of steps marked."""
    if "n_unreadable" not in values.columns:
        return 0
    marked = (
        values.group_by("step").agg(pl.col("n_unreadable").max()).filter(pl.col("n_unreadable") > 0)
        .sort("step")
    )
    if marked.height:
        ax.plot(marked["step"].to_numpy(), [0.02] * marked.height, linestyle="none", marker="x",
                color="black", markersize=5, label=UNREADABLE_LABEL)
        for step, n in marked.iter_rows():
            ax.annotate(str(n), xy=(step, 0.02), xytext=(3, 3), textcoords="offset points",
                        fontsize="xx-small")
    return marked.height


SHORT_ANSWERS_LABEL = "share of short answers"


def mark_short_answers(ax, values: pl.DataFrame) -> int:
    """A grey triangle at the top of every step where some of the category's answers were
    short (``aggregate.answer_shares``: at most a few characters, e.g. "No."; counted in
    the values), with the share in percent, so a model that collapsed into one-word
    answers shows on its figure; returns the number of steps marked."""
    if "short_share" not in values.columns:
        return 0
    marked = (
        values.group_by("step").agg(pl.col("short_share").max())
        .filter(pl.col("short_share").is_not_null() & (pl.col("short_share") > 0)).sort("step")
    )
    if marked.height:
        ax.plot(marked["step"].to_numpy(), [0.97] * marked.height, linestyle="none",
                marker="v", color="0.45", markersize=4, label=SHORT_ANSWERS_LABEL)
        for step, share in marked.iter_rows():
            ax.annotate(f"{share:.0%}", xy=(step, 0.97), xytext=(3, -8),
                        textcoords="offset points", fontsize="xx-small", color="0.35")
    return marked.height


def legend(target, axes, **kwargs) -> None:
    """One legend on ``target`` for the labelled artists of all ``axes``, each label once
    (the unreadable-answers marker may sit on any panel)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    target.legend(list(entries.values()), list(entries), fontsize="small", frameon=True, **kwargs)


def mark_phase_start(ax, label: str) -> None:
    """A dashed line at step 0, where the phase starts from the previous one's model."""
    ax.axvline(0, color="0.4", linestyle="--", linewidth=0.8)
    ax.annotate(
        label, xy=(0, 1), xycoords=("data", "axes fraction"), xytext=(3, -3),
        textcoords="offset points", ha="left", va="top", fontsize="x-small", color="0.3",
    )


def plot_trajectories(
    panels: Sequence[tuple[str, pl.DataFrame]],
    title: str,
    outputs: Sequence[str | Path],
    start_label: str = "start",
) -> None:
    """One panel per (label, values of one category); each saved to every output path.
    ``start_label`` names the model at step 0 (the base model, or the end of SFT)."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.2 * len(panels), 2.6), sharey=True, squeeze=False
    )
    for ax, (label, values) in zip(axes[0], panels, strict=True):
        for stance in STANCES:
            _line_with_band(ax, values, stance, STANCE_COLOURS[stance], stance, alpha=0.2)
            calibrated_line(ax, values, stance, STANCE_COLOURS[stance])
        mark_unreadable(ax, values)
        mark_short_answers(ax, values)
        mark_phase_start(ax, start_label)
        ax.set_title(label)
        ax.set_xlabel("training step")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("mean stance probability")
    legend(axes[0][-1], axes[0], loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, outputs)


def plot_ablation(
    lines: Sequence[tuple[str, pl.DataFrame]], stance: str, title: str,
    outputs: Sequence[str | Path],
) -> None:
    """One stance over training steps, one line (with CI band) per hyperparameter value."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    palette = sns.color_palette("viridis", len(lines))
    for colour, (label, values) in zip(palette, lines, strict=True):
        _line_with_band(ax, values, stance, colour, label, alpha=0.15)
        calibrated_line(ax, values, stance, colour)
        mark_unreadable(ax, values)
        mark_short_answers(ax, values)
    mark_phase_start(ax, "end of SFT")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"mean p({stance})")
    ax.set_ylim(0, 1)
    legend(ax, [ax])
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    save_figure(fig, outputs)
