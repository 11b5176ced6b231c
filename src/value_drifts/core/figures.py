"""Figures are files: matplotlib with its file-only Agg backend, and one way to save."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, outputs: Sequence[str | Path]) -> None:
    """Write one figure to every path (PDF and PNG alike), then free it."""
    for path in outputs:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    plt.close(fig)
