"""Single-cell RNA tools: Leiden clustering, marker genes and population annotation.

``singlecell_clustering`` clusters the cells of a ``single_cell`` layer (AnnData, obs = cells) with
Leiden (Traag et al. 2019, doi:10.1038/s41598-019-41695-z) on the kNN graph the layer already has
(``obsp["connectivities"]``) or one computed from PCA (scanpy defaults), finds marker genes with
``scanpy.tl.rank_genes_groups`` (Wilcoxon rank-sum, BH) and names clusters by canonical marker
gene sets (z-scored cluster means of log-normalised expression, ``adata.raw`` when present).

Like :mod:`proteus.tools.cytometry` it writes ``obs["cluster"]``, ``obs["population"]`` and
``uns["proteus_clustering"]`` into the layer (said in the summary), so that
``cytometry_differential_abundance`` can test population abundance when the layer has samples
(``obs["sample_id"]``) and the sample table has conditions. Without samples the result says so:
the populations can only be described.
"""

from __future__ import annotations

import json
import warnings
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from proteus.records import Entity, Relation, Stats, ToolResult, stable_id
from proteus.study import Study
from proteus.tools.registry import ToolContext, ToolFailed, ToolInputError, register

__all__ = ["singlecell_clustering", "GENE_SETS", "annotate_by_genes"]

GENE_SETS: dict[str, list[str]] = {
    "CD4 T cells": ["CD3E", "CD3D", "IL7R", "CD4", "CCR7", "LTB"],
    "CD8 T cells": ["CD3E", "CD3D", "CD8A", "CD8B"],
    "NK cells": ["NKG7", "GNLY", "KLRD1", "NCAM1", "KLRF1", "PRF1"],
    "B cells": ["MS4A1", "CD79A", "CD79B", "CD19", "BANK1"],
    "plasma cells": ["IGJ", "JCHAIN", "MZB1", "XBP1"],
    "monocytes": ["CD14", "LYZ", "S100A8", "S100A9", "VCAN", "FCGR3A", "MS4A7", "LST1", "AIF1"],
    "dendritic cells": ["FCER1A", "CST3", "CLEC10A", "CD1C"],
    "pDC": ["LILRA4", "CLEC4C", "IL3RA", "GZMB"],
    "platelets": ["PPBP", "PF4"],
    "erythrocytes": ["HBB", "HBA1", "HBA2"],
    "progenitors": ["CD34", "PROM1"],
}
"""Canonical PBMC / blood marker genes (Seurat and scanpy PBMC tutorials, Azimuth PBMC)."""


def annotate_by_genes(means: pd.DataFrame, *, min_score: float = 0.5, min_genes: int = 2) -> pd.DataFrame:
    """Name clusters from cluster mean expression (clusters x genes) with :data:`GENE_SETS`.

    Each gene is z-scored across clusters; a set's score is the mean z of its genes in the data
    (sets with fewer than ``min_genes`` measured genes are skipped); a cluster takes the set with
    the highest score when it reaches ``min_score``, else stays ``unassigned <cluster>``.
    """
    z = (means - means.mean()) / means.std(ddof=0).replace(0, np.nan)
    lookup = {g.upper(): g for g in means.columns}
    scores = {}
    for pop, genes in GENE_SETS.items():
        cols = [lookup[g] for g in genes if g in lookup]
        if len(cols) >= min_genes:
            scores[pop] = z[cols].mean(1)
    S = pd.DataFrame(scores, index=means.index)
    rows = []
    for cl in means.index:
        s = S.loc[cl].dropna() if not S.empty else pd.Series(dtype=float)
        if len(s) and s.max() >= min_score:
            rows.append({"cluster": cl, "population": s.idxmax(), "score": float(s.max())})
        else:
            rows.append({"cluster": cl, "population": f"unassigned {cl}", "score": float(s.max()) if len(s) else np.nan})
    return pd.DataFrame(rows).set_index("cluster")


class SingleCellClusteringParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="cell-level single-cell RNA layer, e.g. 'single_cell'")
    resolution: float = Field(1.0, gt=0, le=5, description="Leiden resolution (higher gives more clusters)")
    n_neighbors: int = Field(15, ge=3, le=100, description="kNN graph size when the layer has no graph")
    n_pcs: int = Field(30, ge=2, le=100, description="principal components for a new kNN graph")
    reuse_graph: bool = Field(True, description="use the layer's stored kNN graph (obsp['connectivities']) when present")
    method: Literal["wilcoxon", "t-test"] = Field("wilcoxon", description="marker-gene test of scanpy.tl.rank_genes_groups")
    n_markers: int = Field(3, ge=1, le=20, description="top marker genes per cluster recorded as relations")
    fdr: float = Field(0.05, gt=0, lt=1, description="BH q threshold for a marker gene")


@register("singlecell_clustering", family="singlecell", params=SingleCellClusteringParams, requires=("cells",))
def singlecell_clustering(study: Study, params: SingleCellClusteringParams, ctx: ToolContext) -> ToolResult:
    """Cluster the cells of a single-cell RNA layer with Leiden, find marker genes per cluster (Wilcoxon, BH) and name clusters as cell populations from canonical marker genes.

    Use on single-cell layers (obs = cells) to answer "which cell populations are present".
    Writes obs['cluster'] / obs['population'] into the layer; when the layer has samples and the
    sample table conditions, cytometry_differential_abundance can then test abundance shifts.
    Returns the annotation table, marker genes, a UMAP (stored) or PCA map and ``gene --marker_of--> cell_population``
    relations.
    """
    import scanpy as sc

    name = "singlecell_clustering"
    p = params
    a = study.modalities[p.modality]
    if a.uns.get("level") != "cell":
        msg = f"{p.modality!r} is not a cell-level layer; cell-level layers: {list(study.cell_level())}"
        raise ToolInputError(msg)
    if a.n_obs < 20:
        msg = f"{p.modality!r} has {a.n_obs} cells; clustering needs at least 20"
        raise ToolFailed(msg)
    work = ad.AnnData(X=a.X, obs=pd.DataFrame(index=a.obs_names), var=pd.DataFrame(index=a.var_names))
    notes = []
    if p.reuse_graph and "connectivities" in a.obsp:
        work.obsp["connectivities"] = a.obsp["connectivities"]
        work.obsp["distances"] = a.obsp["distances"] if "distances" in a.obsp else a.obsp["connectivities"]
        work.uns["neighbors"] = {"connectivities_key": "connectivities", "distances_key": "distances",
                                 "params": dict(a.uns.get("neighbors", {}).get("params", {"method": "umap"}))}
        notes.append("used the layer's stored kNN graph")
    else:
        if "X_pca" in a.obsm and a.obsm["X_pca"].shape[1] >= 2:
            work.obsm["X_pca"] = a.obsm["X_pca"]
        else:
            sc.pp.pca(work, n_comps=min(p.n_pcs, a.n_vars - 1, a.n_obs - 1), random_state=ctx.seed)
        sc.pp.neighbors(work, n_neighbors=p.n_neighbors, n_pcs=min(p.n_pcs, work.obsm["X_pca"].shape[1]),
                        random_state=ctx.seed)
        notes.append(f"computed a {p.n_neighbors}-NN graph on PCA")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.leiden(work, resolution=p.resolution, random_state=ctx.seed, flavor="igraph", n_iterations=2, directed=False)
    raw = work.obs["leiden"].astype(int).to_numpy()
    order = pd.Series(raw).value_counts().index.tolist()
    clusters = np.array([str(order.index(x) + 1) for x in raw])

    expr = a.raw.to_adata() if a.raw is not None else ad.AnnData(X=a.X, var=pd.DataFrame(index=a.var_names))
    expr.obs_names = a.obs_names
    expr.obs["cluster"] = pd.Categorical(clusters, categories=sorted(set(clusters), key=int))
    X = expr.X.toarray() if hasattr(expr.X, "toarray") else np.asarray(expr.X)
    means = pd.DataFrame(X, columns=expr.var_names.astype(str)).groupby(clusters).mean()
    ann = annotate_by_genes(means)
    ann.index = ann.index.astype(str)
    ann["n_cells"] = pd.Series(clusters).value_counts().reindex(ann.index).fillna(0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(expr, "cluster", method=p.method, use_raw=False, corr_method="benjamini-hochberg")
    mk = sc.get.rank_genes_groups_df(expr, group=None)
    mk = mk.rename(columns={"group": "cluster", "names": "gene", "logfoldchanges": "logFC", "pvals": "p", "pvals_adj": "q"})
    mk["cluster"] = mk["cluster"].astype(str)
    mk["population"] = mk["cluster"].map(ann["population"])
    top = mk[(mk["q"] < p.fdr) & (mk["logFC"] > 0)].groupby("cluster", sort=False).head(p.n_markers)
    ann["top_markers"] = top.groupby("cluster")["gene"].agg(", ".join).reindex(ann.index).fillna("")

    pops = ann["population"].reindex(clusters).to_numpy()
    a.obs["cluster"] = pd.Categorical(clusters, categories=sorted(set(clusters), key=int))
    a.obs["population"] = pd.Categorical(pops)
    key = stable_id("cl_", {**p.model_dump(), "seed": ctx.seed})
    a.uns["proteus_clustering"] = {"key": key, "params": json.loads(p.model_dump_json()), "n_clusters": int(len(ann)),
                                   "annotation": {str(c): str(v) for c, v in ann["population"].items()}}

    rels = []
    for r in top.itertuples():
        if str(r.population).startswith("unassigned"):
            continue
        rels.append(Relation(
            subject=Entity(type="gene", label=str(r.gene)), predicate="marker_of",
            object=Entity(type="cell_population", label=str(r.population)),
            stats=Stats(effect=float(r.logFC), effect_type="log2FC_vs_rest", p=float(r.p), q=float(r.q),
                        n=int(ann.loc[r.cluster, "n_cells"]), direction="up", extra={"cluster": r.cluster, "test": p.method}),
            modality=p.modality, provenance=ctx.provenance_for(name, p)))

    if "X_umap" in a.obsm:
        emb, emb_name = np.asarray(a.obsm["X_umap"]), "UMAP"
    else:  # a new UMAP compiles numba code (slow); the PCA map is instant
        if "X_pca" not in work.obsm:
            sc.pp.pca(work, n_comps=min(10, a.n_vars - 1, a.n_obs - 1), random_state=ctx.seed)
        emb, emb_name = np.asarray(work.obsm["X_pca"])[:, :2], "PCA"
    figures = []
    if ctx.figures:
        from matplotlib import colormaps
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4.5))
        ax = fig.subplots()
        cmap = colormaps["tab20"]
        for i, pop in enumerate(sorted(set(pops))):
            m = pops == pop
            ax.scatter(emb[m, 0], emb[m, 1], s=4, color=cmap(i % 20), label=pop)
        ax.legend(fontsize=6, markerscale=3, bbox_to_anchor=(1.01, 1), loc="upper left")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{p.modality}: Leiden clusters named by marker genes ({emb_name})", fontsize=9)
        path = ctx.figure_path(f"singlecell_umap_{p.modality}")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        figures.append(path)

    has_samples = "sample_id" in a.obs and a.obs["sample_id"].nunique() >= 2
    in_clin = has_samples and not study.clinical.empty and a.obs["sample_id"].astype(str).isin(study.clinical.index.astype(str)).any()
    frac = pd.Series(pops).value_counts(normalize=True)
    summary = (
        f"Leiden clustering (resolution {p.resolution}) of {a.n_obs} cells of {p.modality!r} ({'; '.join(notes)}): "
        f"{len(ann)} clusters named as {frac.size} populations: " + ", ".join(f"{k} {v:.0%}" for k, v in frac.items())
        + f". Marker genes by {p.method} (BH q<{p.fdr}). Stored as obs['cluster'] / obs['population'] in the layer. "
        + ("The layer has samples" + (" with a sample table, so population abundance can be compared between conditions."
                                       if in_clin else " but no sample table, so conditions cannot be compared.")
           if has_samples else "The layer has no samples (obs['sample_id']) or conditions: populations can only be described, not compared.")
    )
    return ToolResult(summary=summary,
                      tables={"annotation": ann.reset_index(), "marker_genes": mk[mk["q"] < p.fdr].reset_index(drop=True)},
                      figures=figures, relations=rels,
                      metrics={"n_cells": int(a.n_obs), "n_clusters": int(len(ann)), "n_populations": int(frac.size),
                               "populations": sorted(set(pops)), "has_samples": bool(has_samples),
                               "has_conditions": bool(in_clin), "clustering_key": key})
