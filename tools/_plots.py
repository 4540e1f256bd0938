"""Plots several tool families share: the effect-vs-significance (volcano) plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from proteus.tools.registry import ToolContext

__all__ = ["draw_volcano", "volcano"]


def draw_volcano(ax: Axes, effect, p, q, fdr: float, *, labels=None, n_labels: int = 10, xlabel: str = "effect") -> None:
    """Draw ``-log10 p`` against ``effect`` on ``ax``: grey not significant, red up / blue down at ``q < fdr``.

    ``labels`` (aligned with ``effect``, most significant first) annotates the first ``n_labels``
    significant points. Draws also when nothing is significant.
    """
    x = np.asarray(effect, dtype=float)
    pv = np.clip(np.asarray(p, dtype=float), 1e-300, 1)
    y = -np.log10(pv)
    sig = np.asarray(q, dtype=float) < fdr
    ax.scatter(x[~sig], y[~sig], s=6, c="0.7", lw=0, label="not significant")
    ax.scatter(x[sig & (x > 0)], y[sig & (x > 0)], s=8, c="tab:red", lw=0, label=f"up (q < {fdr})")
    ax.scatter(x[sig & (x < 0)], y[sig & (x < 0)], s=8, c="tab:blue", lw=0, label=f"down (q < {fdr})")
    if labels is not None:
        for i in np.flatnonzero(sig)[:n_labels]:
            ax.annotate(str(labels[i]), (x[i], y[i]), fontsize=6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("-log10 p")


def volcano(ctx: ToolContext, name: str, effect, p, q, fdr: float, *, labels=None, xlabel: str, title: str) -> Path:
    """A one-panel volcano plot saved as ``figures/<name>.png``; returns its path."""
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    draw_volcano(ax, effect, p, q, fdr, labels=labels, xlabel=xlabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = ctx.figure_path(name)
    fig.savefig(path, dpi=110)
    return path
