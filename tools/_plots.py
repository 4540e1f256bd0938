"""Plots of the tool families: the effect-vs-significance (volcano) plot several families share, and the
cytometry plots (cluster heatmap, abundance bars, cell map, paired group boxplots).

matplotlib is imported by the drawing functions, so a call that draws nothing (``ToolContext.figures``
off) never imports it. The figures are ``matplotlib.figure.Figure`` objects (no pyplot state), saved
with the Agg canvas."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from proteus.tools.registry import ToolContext

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["abundance_bars", "cell_map", "cluster_heatmap", "draw_volcano", "group_boxplots", "volcano"]


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
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    draw_volcano(ax, effect, p, q, fdr, labels=labels, xlabel=xlabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = ctx.figure_path(name)
    fig.savefig(path, dpi=110)
    return path


def cluster_heatmap(ctx: ToolContext, modality: str, scaled: pd.DataFrame, annotation: pd.DataFrame) -> Path:
    """Clusters x lineage markers heatmap of 0-1 scaled median expression, rows labelled with each
    cluster's population and cell count (``annotation``: ``population``, ``n_cells``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(0.35 * scaled.shape[1] + 3, 0.3 * scaled.shape[0] + 1.5))
    ax = fig.subplots()
    im = ax.imshow(scaled.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(scaled.shape[1]), scaled.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(scaled.shape[0]),
                  [f"{c} {annotation.loc[c, 'population']} (n={annotation.loc[c, 'n_cells']})" for c in scaled.index], fontsize=7)
    fig.colorbar(im, ax=ax, label="scaled median arcsinh")
    ax.set_title(f"{modality}: cluster medians of lineage markers", fontsize=9)
    path = ctx.figure_path(f"cytometry_heatmap_{modality}")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def abundance_bars(ctx: ToolContext, modality: str, props: pd.DataFrame) -> Path:
    """Stacked bars of population fractions (``props``: samples x populations) per sample."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4, 0.45 * props.shape[0] + 3), 4))
    ax = fig.subplots()
    bottom = np.zeros(props.shape[0])
    cmap = colormaps["tab20"]
    for i, c in enumerate(props.columns):
        ax.bar(range(props.shape[0]), props[c].to_numpy(), bottom=bottom, color=cmap(i % 20), label=c)
        bottom += props[c].to_numpy()
    ax.set_xticks(range(props.shape[0]), props.index, rotation=90, fontsize=7)
    ax.set_ylabel("fraction of cells")
    ax.legend(fontsize=6, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_title(f"{modality}: population abundance per sample", fontsize=9)
    path = ctx.figure_path(f"cytometry_abundance_{modality}")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def cell_map(ctx: ToolContext, modality: str, E: np.ndarray, pops: np.ndarray, max_cells: int, seed: int,
             method: str = "pca") -> Path:
    """2-D map (PCA, or UMAP) of a seeded subsample of at most ``max_cells`` cells (rows of ``E``),
    coloured by population."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(E.shape[0], min(max_cells, E.shape[0]), replace=False))
    if method == "umap":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import umap

            emb = umap.UMAP(n_neighbors=15, min_dist=0.3, random_state=seed, n_jobs=1).fit_transform(E[idx])
        axis = ("UMAP1", "UMAP2")
    else:
        Xc = E[idx] - E[idx].mean(0)
        _, sv, vt = np.linalg.svd(Xc, full_matrices=False)
        emb = Xc @ vt[:2].T
        var = sv[:2] ** 2 / max((sv**2).sum(), 1e-12)
        axis = (f"PC1 ({var[0]:.0%})", f"PC2 ({var[1]:.0%})")
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    cmap = colormaps["tab20"]
    for i, pop in enumerate(sorted(set(pops[idx]))):
        m = pops[idx] == pop
        ax.scatter(emb[m, 0], emb[m, 1], s=2, color=cmap(i % 20), label=pop)
    ax.legend(fontsize=6, markerscale=4, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_xlabel(axis[0], fontsize=7)
    ax.set_ylabel(axis[1], fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{modality}: {method.upper()} of {len(idx)} cells (lineage markers)", fontsize=9)
    path = ctx.figure_path(f"cytometry_{method}_{modality}")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def group_boxplots(ctx: ToolContext, stem: str, values: pd.DataFrame, is_case: np.ndarray, labels: tuple[str, str],
                   columns: list[str], ylabel: str, design: pd.DataFrame, titles: dict[str, str] | None = None) -> Path:
    """Boxplots (control, case) of up to 12 ``columns`` of ``values`` (samples x columns), each sample
    a dot; samples of one block (``design``'s ``block_*`` columns) joined by a line. ``labels``:
    (control, case) tick labels."""
    cols = [c for c in columns if c in values.columns][:12]
    ncol = min(4, max(1, len(cols)))
    nrow = int(np.ceil(max(1, len(cols)) / ncol))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.4 * ncol, 2.3 * nrow))
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    fig.subplots_adjust(hspace=0.6, wspace=0.35)
    blocks = [c for c in design.columns if c.startswith("block_")]
    pair_key = design[blocks].astype(str).agg("|".join, axis=1) if blocks else None
    for ax, c in zip(axes, cols):
        v = values[c].to_numpy(float)
        data = [v[~is_case & np.isfinite(v)], v[is_case & np.isfinite(v)]]
        ax.boxplot(data, widths=0.5, showfliers=False)
        for k, d in enumerate(data):
            ax.plot(np.full(len(d), k + 1), d, "o", ms=3, color="k", alpha=0.6)
        if pair_key is not None:
            for key in pair_key.unique():
                m = (pair_key == key).to_numpy()
                if m.sum() == 2 and np.isfinite(v[m]).all():
                    order = np.argsort(is_case[m])
                    ax.plot([1, 2], v[m][order], "-", color="grey", lw=0.6)
        ax.set_xticks([1, 2], list(labels), fontsize=7)
        ax.set_title((titles or {}).get(c, c), fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes[len(cols):]:
        ax.set_visible(False)
    axes[0].set_ylabel(ylabel, fontsize=7)
    path = ctx.figure_path(stem)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
