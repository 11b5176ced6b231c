"""Trajectory figures: mean stance probability per stance over training steps, with CIs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import seaborn as sns  # noqa: E402

from value_drifts.stance import STANCES  # noqa: E402

# The paper's colours: support green, neutral blue, oppose red.
STANCE_COLOURS = {"support": "#2ca02c", "neutral": "#1f77b4", "oppose": "#d62728"}


def plot_trajectories(
    panels: Sequence[tuple[str, pl.DataFrame]], title: str, outputs: Sequence[str | Path]
) -> None:
    """One panel per (label, values of one category); each saved to every output path."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.2 * len(panels), 2.6), sharey=True, squeeze=False
    )
    for ax, (label, values) in zip(axes[0], panels, strict=True):
        for stance in STANCES:
            line = values.filter(pl.col("stance") == stance).sort("step")
            steps = line["step"].to_numpy()
            mean = line["value"].to_numpy()
            half = line["ci_halfwidth"].fill_nan(0.0).fill_null(0.0).to_numpy()
            ax.plot(steps, mean, marker="o", markersize=3, color=STANCE_COLOURS[stance],
                    label=stance)
            ax.fill_between(steps, mean - half, mean + half, color=STANCE_COLOURS[stance],
                            alpha=0.2, linewidth=0)
        ax.set_title(label)
        ax.set_xlabel("training step")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("mean stance probability")
    axes[0][-1].legend(loc="upper right", fontsize="small", frameon=True)
    fig.suptitle(title)
    fig.tight_layout()
    for path in outputs:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    plt.close(fig)
