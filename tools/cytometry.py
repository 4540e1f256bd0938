"""Cytometry tools: clustering and annotation of cell populations, differential abundance (DA) and
differential state (DS) between conditions, following the CATALYST / diffcyt workflow.

This module holds the tool wrappers, the naming of populations from canonical markers and the
clustering state shared between tools; the statistics are in :mod:`proteus.stats` (``som``,
``metaclustering``, ``cell_summaries``, ``nb_glm``, ``differential_state``), the plots in
:mod:`proteus.tools._plots`.

Conventions (Nowicka et al. 2017, doi:10.12688/f1000research.11622.3; Weber et al. 2019,
doi:10.1038/s42003-019-0415-5):

- Values are transformed with :math:`\\operatorname{arcsinh}(x / c)`, cofactor :math:`c = 5` for
  mass cytometry and 150 for fluorescence (``adata.uns["cofactor"]`` set by the reader).
- Cells are clustered on the lineage (``var["marker_class"] == "type"``) markers only: a 10x10
  self-organising map (FlowSOM, Van Gassen et al. 2015, doi:10.1002/cyto.a.22625) whose codes are
  metaclustered by consensus hierarchical clustering (ConsensusClusterPlus, Wilkerson & Hayes
  2010, doi:10.1093/bioinformatics/btq170), or Leiden on a kNN graph.
- **The sample, not the cell, is the statistical unit.** DA models sample x population cell
  counts with a negative binomial GLM (edgeR-style, log total cells as offset); DS tests sample x
  population medians of each state marker with limma's moderated t. Paired designs (each donor
  stimulated and unstimulated) put the donor in the design (``block``).

State shared with later tools (documented, and said in every summary): ``cytometry_clustering``
writes into the study's cell-level layer ``layers["arcsinh"]``, ``obs["cluster"]``,
``obs["population"]`` and ``uns["proteus_clustering"]`` (params, key, annotation table), so that
DA and DS test the same populations. A second call with the same parameters reuses the cached
result; different parameters replace it (the summary says so). DA/DS run the default clustering
themselves when the layer has none, and record the clustering key they used.

Knowledge-graph representation (how hypotheses compose):

- ``marker:CD20 --marker_of--> cell_population:B cells`` (top lineage markers of a population).
- ``cell_population:B cells --higher_in/lower_in--> sample_group:<group>: <case> vs <control>`` (DA).
- ``marker:pS6 | B cells --higher_in/lower_in--> sample_group:<group>: <case> vs <control>`` (DS): the
  subject is the state marker *within* a population (label ``"<marker> | <population>"``), so one
  edge per marker x population; ``stats.extra`` holds ``marker``, ``population`` and
  ``other_populations`` (the same marker's logFC, q, moderated t and its df in every other population tested), which
  lets a hypothesis say "pS6 rises in B cells but not in T cells" from one edge.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from proteus.records import Entity, Relation, Stats, ToolResult, contrast_entity, stable_id
from proteus.stats.cell_summaries import arcsinh_transform, population_counts, population_medians
from proteus.stats.differential_state import differential_state
from proteus.stats.metaclustering import consensus_metaclustering
from proteus.stats.nb_glm import nb_glm_da
from proteus.stats.som import flowsom_codes
from proteus.study import Study
from proteus.tools._plots import abundance_bars, cell_map, cluster_heatmap, group_boxplots
from proteus.tools.registry import ToolContext, ToolFailed, ToolInputError, register

__all__ = [
    "annotate_populations",
    "cluster_cells",
    "cytometry_clustering",
    "cytometry_differential_abundance",
    "cytometry_differential_state",
    "POPULATION_RULES",
]


# --------------------------------------------------------------------------------------------
# annotation from canonical markers
# --------------------------------------------------------------------------------------------

POPULATION_RULES: list[tuple[str, list[list[str]], list[str]]] = [
    # (population, positive groups: every group needs one positive marker, negative markers)
    ("B cells", [["CD19", "CD20", "CD22", "CD79a", "CD79b", "MS4A1"]], ["CD3", "CD14"]),
    ("plasmablasts", [["CD38", "CD138", "CD27"]], ["CD3", "CD20", "CD14"]),
    ("CD4 T cells", [["CD3"], ["CD4"]], ["CD8", "CD8a", "CD19", "CD20", "CD14"]),
    ("CD8 T cells", [["CD3"], ["CD8", "CD8a"]], ["CD4", "CD19", "CD20", "CD14"]),
    ("pDC", [["CD123"], ["HLA-DR"]], ["CD3", "CD19", "CD20", "CD14"]),
    ("monocytes", [["CD14"]], ["CD3", "CD19", "CD20"]),
    ("NK cells", [["CD56", "CD16", "NKp46", "CD7"]], ["CD3", "CD19", "CD20", "CD14", "HLA-DR"]),
    ("dendritic cells", [["CD11c", "CD1c", "CD33"], ["HLA-DR"]], ["CD3", "CD19", "CD20", "CD14"]),
    ("CD4- T cells", [["CD3"]], ["CD4", "CD19", "CD20", "CD14"]),  # CD3+CD4-: named by what the panel measured
    ("T cells", [["CD3"]], ["CD19", "CD20", "CD14"]),
    ("myeloid cells", [["CD33", "CD11b", "CD11c"]], ["CD3", "CD19", "CD20"]),
    ("basophils", [["CD123"]], ["HLA-DR", "CD3", "CD19", "CD20"]),
    ("granulocytes", [["CD15", "CD66b", "CD16"]], ["CD3", "CD19", "CD20", "CD14"]),
]
"""Canonical marker rules, tried in order; the first rule a cluster satisfies names it.

A cluster satisfies a rule when, on the 0-1 scaled median expression (each marker's 0 (or 1st percentile
if higher) to 99th percentile over all cells), every positive group has a marker >= ``pos`` and every negative
marker present is <= ``neg``. Only rules whose every positive group has a marker in the panel
apply, so a population is named only from markers the panel has: CD3+CD4- cells are "CD4- T cells"
(CD8 T cells are named only when CD8 was measured)."""


def _norm(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def annotate_populations(
    medians: pd.DataFrame, scaled: pd.DataFrame, *, pos: float = 0.35, neg: float = 0.3
) -> pd.DataFrame:
    """Name clusters from their marker profiles with :data:`POPULATION_RULES`.

    Parameters
    ----------
    medians
        clusters x lineage markers, median arcsinh expression.
    scaled
        the same, 0-1 scaled (marker 1st-99th percentile over cells).

    Returns
    -------
    DataFrame
        One row per cluster: ``population``, ``rule`` (the markers that decided it) and ``z_top``
        (the three markers with the highest z-score of the median across clusters).
    """
    lookup = {_norm(c): c for c in scaled.columns}
    z = (medians - medians.mean()) / medians.std(ddof=0).replace(0, np.nan)
    rows = []
    for cl in scaled.index:
        s = scaled.loc[cl]
        name, why = "unassigned", ""
        for pop, groups, negs in POPULATION_RULES:
            gcols = [[lookup[_norm(m)] for m in g if _norm(m) in lookup] for g in groups]
            if any(not g for g in gcols):
                continue
            ncols = [lookup[_norm(m)] for m in negs if _norm(m) in lookup]
            best = [max(g, key=lambda c: s[c]) for g in gcols]
            if all(s[c] >= pos for c in best) and all(s[c] <= neg for c in ncols):
                name = pop
                why = " ".join(f"{c}+" for c in best) + ("" if not ncols else " " + " ".join(f"{c}-" for c in ncols))
                break
        top = z.loc[cl].dropna().sort_values(ascending=False).head(3)
        rows.append({"cluster": cl, "population": name, "rule": why, "z_top": ", ".join(top.index)})
    out = pd.DataFrame(rows).set_index("cluster")
    # unassigned clusters keep their number so they stay distinct
    un = out["population"] == "unassigned"
    out.loc[un, "population"] = [f"unassigned {c}" for c in out.index[un]]
    return out


def _scaled_medians(E: np.ndarray, labels: np.ndarray, markers: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    lo, hi = np.maximum(np.percentile(E, 1, axis=0), 0.0), np.percentile(E, 99, axis=0)
    S = np.clip((E - lo) / np.where(hi - lo > 0, hi - lo, 1.0), 0, 1)
    lab = pd.Series(labels)
    med = pd.DataFrame(E, columns=markers).groupby(lab.values).median()
    smed = pd.DataFrame(S, columns=markers).groupby(lab.values).median()
    return med, smed


def cluster_cells(
    adata: ad.AnnData,
    *,
    method: Literal["flowsom", "leiden"] = "flowsom",
    k: int | None = 10,
    xdim: int = 10,
    ydim: int = 10,
    resolution: float = 1.0,
    markers: list[str] | None = None,
    cofactor: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Cluster the cells of a cytometry layer on its lineage markers and annotate the clusters.

    Pure with respect to ``adata`` (nothing is written); :func:`cytometry_clustering` stores the
    result. Returns a dict with ``arcsinh`` (cells x markers), ``cluster`` (str per cell),
    ``population`` (str per cell), ``annotation`` (per cluster), ``medians`` / ``scaled``
    (clusters x lineage markers), ``markers`` (the clustering markers) and ``extra``.
    """
    E = arcsinh_transform(adata, cofactor)
    var_names = list(map(str, adata.var_names))
    if markers:
        unknown = [m for m in markers if m not in var_names]
        if unknown:
            msg = f"markers {unknown} are not in the layer; markers: {var_names}"
            raise ToolInputError(msg)
        use = list(markers)
    elif "marker_class" in adata.var and (adata.var["marker_class"] == "type").any():
        use = [m for m, c in zip(var_names, adata.var["marker_class"]) if c == "type"]
    else:
        use = var_names
    cols = [var_names.index(m) for m in use]
    Et = E[:, cols].astype(np.float64)
    extra: dict[str, Any] = {}
    if method == "flowsom":
        if k is not None and k >= xdim * ydim:
            msg = f"k={k} metaclusters need more than {xdim * ydim} SOM codes (som_grid {xdim}: at most {xdim * ydim - 1} metaclusters)"
            raise ToolInputError(msg)
        codes, mapping = flowsom_codes(Et, xdim=xdim, ydim=ydim, seed=seed)
        meta, delta = consensus_metaclustering(codes, k, seed=seed)
        labels = meta[mapping]
        extra["som"] = f"{xdim}x{ydim}"
        if delta:
            extra["delta_area"] = {int(a): round(b, 4) for a, b in delta.items()}
    else:
        import scanpy as sc

        tmp = ad.AnnData(Et)
        sc.pp.neighbors(tmp, n_neighbors=15, use_rep="X", random_state=seed)
        sc.tl.leiden(tmp, resolution=resolution, random_state=seed, flavor="igraph", n_iterations=2, directed=False)
        raw = tmp.obs["leiden"].astype(int).to_numpy()
        order = pd.Series(raw).value_counts().index.tolist()
        remap = {old: i + 1 for i, old in enumerate(order)}
        labels = np.array([remap[x] for x in raw])
    med, smed = _scaled_medians(Et, labels, use)
    ann = annotate_populations(med, smed)
    cl = np.array([str(x) for x in labels])
    pop_of = {str(c): p for c, p in ann["population"].items()}
    med.index = med.index.astype(str)
    smed.index = smed.index.astype(str)
    ann.index = ann.index.astype(str)
    ann["n_cells"] = pd.Series(cl).value_counts().reindex(ann.index).fillna(0).astype(int)
    return {
        "arcsinh": E,
        "cluster": cl,
        "population": np.array([pop_of[c] for c in cl]),
        "annotation": ann,
        "medians": med,
        "scaled": smed,
        "markers": use,
        "extra": extra,
    }


# ============================================================================================
# tool plumbing
# ============================================================================================


def _cell_layer(study: Study, modality: str) -> ad.AnnData:
    a = study.modalities[modality]
    if a.uns.get("level") != "cell" or "sample_id" not in a.obs:
        cells = list(study.cell_level())
        msg = f"{modality!r} is not a cell-level layer with obs['sample_id']; cell-level layers: {cells}"
        raise ToolInputError(msg)
    return a


def _cytometry_layer(study: Study, modality: str) -> ad.AnnData:
    a = _cell_layer(study, modality)
    if a.uns.get("modality") != "cytometry":
        msg = (f"{modality!r} is a {a.uns.get('modality')!r} layer; cytometry tools need a cytometry layer "
               f"(use singlecell_clustering for single-cell RNA)")
        raise ToolInputError(msg)
    return a


def _rel(ctx: ToolContext, tool: str, params: BaseModel, subject: Entity, predicate: str, obj: Entity,
         st: Stats, modality: str) -> Relation:
    return Relation(subject=subject, predicate=predicate, object=obj, stats=st, modality=modality,
                    provenance=ctx.provenance_for(tool, params))


def _fmt(x: float | None, d: int = 2) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.{d}g}"


class ClusteringParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="cell-level cytometry layer, e.g. 'cytometry'")
    method: Literal["flowsom", "leiden"] = Field(
        "flowsom", description="flowsom: 10x10 SOM + consensus metaclustering (CATALYST); leiden: kNN graph + Leiden")
    k: int | None = Field(10, ge=2, le=40, description="number of FlowSOM metaclusters; null chooses k by the consensus delta-area elbow")
    som_grid: int = Field(10, ge=3, le=20, description="SOM grid side (som_grid x som_grid codes)")
    resolution: float = Field(1.0, gt=0, le=5, description="Leiden resolution (method='leiden' only)")
    cofactor: float | None = Field(None, gt=0, description="arcsinh cofactor; null uses the reader's guess (5 mass cytometry, 150 fluorescence)")
    markers: list[str] | None = Field(None, description="markers to cluster on; null uses the lineage ('type') markers of the panel")
    embedding: Literal["pca", "umap", "none"] = Field(
        "pca", description="2-D map of a cell subsample coloured by population: pca (instant) or umap (first call compiles "
        "numba code, ~20-60 s)")
    max_cells_embedding: int = Field(3000, ge=200, le=50000, description="cells subsampled for the UMAP")


def _clustering_key(p: ClusteringParams, seed: int) -> dict[str, Any]:
    d = p.model_dump(exclude={"embedding", "max_cells_embedding", "modality"})
    d["seed"] = seed
    return d


def ensure_clustering(study: Study, modality: str, params: ClusteringParams | None = None, seed: int = 0) -> tuple[dict, bool]:
    """Cluster the layer unless a clustering with the same parameters is stored; returns (uns record, reused).

    Writes ``layers["arcsinh"]``, ``obs["cluster"]``, ``obs["population"]`` and
    ``uns["proteus_clustering"]`` into the study's layer (see the module docstring)."""
    a = _cytometry_layer(study, modality)
    p = params or ClusteringParams(modality=modality)
    key = stable_id("cl_", _clustering_key(p, seed))
    rec = a.uns.get("proteus_clustering")
    if rec is not None and rec.get("key") == key and "population" in a.obs:
        return rec, True
    r = cluster_cells(a, method=p.method, k=p.k, xdim=p.som_grid, ydim=p.som_grid, resolution=p.resolution,
                      markers=p.markers, cofactor=p.cofactor, seed=seed)
    cof = float(p.cofactor if p.cofactor is not None else a.uns.get("cofactor", 5.0))
    a.layers["arcsinh"] = r["arcsinh"]
    a.obs["cluster"] = pd.Categorical(r["cluster"], categories=sorted(set(r["cluster"]), key=int))
    a.obs["population"] = pd.Categorical(r["population"])
    ann = r["annotation"]
    rec = {
        "key": key,
        "params": json.loads(json.dumps(_clustering_key(p, seed))),
        "cofactor": cof,
        "markers": list(r["markers"]),
        "n_clusters": int(ann.shape[0]),
        "annotation": {str(c): str(v) for c, v in ann["population"].items()},
        "extra": json.loads(json.dumps(r["extra"])),
    }
    a.uns["proteus_clustering"] = rec
    a.uns["_proteus_clustering_tables"] = {"medians": r["medians"], "scaled": r["scaled"], "annotation": ann}
    return rec, False


# ============================================================================================
# cytometry_clustering
# ============================================================================================


@register("cytometry_clustering", family="cytometry", params=ClusteringParams, requires=("cells",))
def cytometry_clustering(study: Study, params: ClusteringParams, ctx: ToolContext) -> ToolResult:
    """Cluster the cells of a cytometry layer on its lineage markers (FlowSOM 10x10 SOM + consensus metaclustering, or Leiden) after arcsinh transform, and name the clusters as cell populations from canonical marker profiles.

    Use first on any cytometry data: it answers "which cell populations are present and in what
    proportions per sample". Writes obs['cluster'] / obs['population'] / layers['arcsinh'] into
    the layer so differential abundance and state reuse the same populations. Returns the
    annotation table (cluster, population, deciding markers, cells), cluster medians,
    per-sample proportions, a UMAP, a marker heatmap and abundance bars, and
    ``marker --marker_of--> cell_population`` relations for each population's top lineage markers.
    """
    name = "cytometry_clustering"
    p = params
    a = _cytometry_layer(study, p.modality)
    rec, reused = ensure_clustering(study, p.modality, p, ctx.seed)
    tabs = a.uns["_proteus_clustering_tables"]
    ann, med, smed = tabs["annotation"], tabs["medians"], tabs["scaled"]
    E = a.layers["arcsinh"]
    var_names = list(map(str, a.var_names))
    pops = a.obs["population"].astype(str).to_numpy()
    counts = population_counts(a)
    props = counts.div(counts.sum(1), axis=0)

    # top lineage markers per population: median in population minus median of the other cells
    rels = []
    lin = rec["markers"]
    li = [var_names.index(m) for m in lin]
    lo, hi = np.maximum(np.percentile(E[:, li], 1, axis=0), 0.0), np.percentile(E[:, li], 99, axis=0)
    marker_rows = []
    for pop in sorted(set(pops)):
        inside = pops == pop
        if inside.sum() < 3 or pop.startswith("unassigned"):
            continue
        m_in = np.median(E[inside][:, li], axis=0)
        m_out = np.median(E[~inside][:, li], axis=0) if (~inside).any() else np.zeros(len(li))
        scaled_in = np.clip((m_in - lo) / np.where(hi - lo > 0, hi - lo, 1), 0, 1)
        diff = m_in - m_out
        for i in np.argsort(-diff)[:3]:
            if diff[i] < 0.5 or scaled_in[i] < 0.35:
                continue
            marker_rows.append({"population": pop, "marker": lin[i], "median_in": float(m_in[i]),
                                "median_out": float(m_out[i]), "diff": float(diff[i]), "scaled": float(scaled_in[i])})
            rels.append(_rel(
                ctx, name, p, Entity(type="marker", label=lin[i]), "marker_of", Entity(type="cell_population", label=pop),
                Stats(effect=float(diff[i]), effect_type="arcsinh_median_diff", n=int(inside.sum()), direction="up",
                      extra={"median_in": round(float(m_in[i]), 3), "median_out": round(float(m_out[i]), 3),
                             "fraction_of_cells": round(float(inside.mean()), 4),
                             "clusters": sorted({c for c, v in rec["annotation"].items() if v == pop}, key=int)}),
                p.modality))
    markers_tab = pd.DataFrame(marker_rows)

    figures = [cluster_heatmap(ctx, p.modality, smed, ann), abundance_bars(ctx, p.modality, props)] if ctx.figures else []
    if ctx.figures and p.embedding != "none":
        figures.append(cell_map(ctx, p.modality, E[:, li], pops, p.max_cells_embedding, ctx.seed, p.embedding))

    ann_out = ann.reset_index()
    frac = pd.Series(pops).value_counts(normalize=True)
    pop_text = ", ".join(f"{k} {v:.0%}" for k, v in frac.items())
    n_samples = int(a.obs["sample_id"].nunique())
    summary = (
        f"{'Reused the stored' if reused else 'Computed a'} {p.method} clustering of {a.n_obs} cells from {n_samples} samples "
        f"on {len(lin)} lineage markers (arcsinh cofactor {rec['cofactor']:g}): {rec['n_clusters']} clusters named as "
        f"{len(set(pops))} populations: {pop_text}. Stored in the layer {p.modality!r} as obs['cluster'], "
        f"obs['population'] and layers['arcsinh'] (clustering key {rec['key']}), reused by differential abundance/state."
    )
    n_un = int(np.sum([x.startswith("unassigned") for x in pops]))
    return ToolResult(
        summary=summary,
        tables={"annotation": ann_out, "cluster_medians": med.reset_index(names="cluster"),
                "proportions": props.reset_index(names="sample_id"), "population_markers": markers_tab},
        figures=figures,
        relations=rels,
        metrics={"n_cells": int(a.n_obs), "n_samples": n_samples, "n_clusters": rec["n_clusters"],
                 "n_populations": len(set(pops)), "populations": sorted(set(pops)), "unassigned_fraction": n_un / a.n_obs,
                 "clustering_key": rec["key"], "reused": reused,
                 "n_state_markers": int((a.var.get("marker_class", pd.Series(dtype=str)) == "state").sum())},
    )


# ============================================================================================
# designs shared by DA and DS
# ============================================================================================


class _ContrastParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="cell-level cytometry layer, e.g. 'cytometry'")
    group: str = Field(description="condition column of the sample table (clinical)")
    case: str = Field(description="level of group tested (numerator of the fold change)")
    control: str | None = Field(None, description="reference level; null compares case with all other samples")
    block: str | None = Field(
        None, description="donor/patient column for paired designs (each donor in both conditions); "
        "added to the design as a factor")
    populations: Literal["population", "cluster"] = Field(
        "population", description="test annotated populations (merged clusters) or the raw metaclusters")
    fdr: float = Field(0.05, gt=0, lt=1, description="BH q threshold for a relation")


def _design(study: Study, a: ad.AnnData, p: _ContrastParams, notes: list[str]) -> tuple[pd.DataFrame, list[str], bool, int]:
    """Sample design (intercept, case indicator, block dummies) over the samples in the contrast."""
    samples = list(dict.fromkeys(a.obs["sample_id"].astype(str)))
    clin = study.clinical.reindex(samples)
    missing = [s for s in samples if s not in study.clinical.index.astype(str)]
    if missing:
        notes.append(f"{len(missing)} sample(s) of the layer are not in the sample table and were left out")
    g = clin[p.group].astype(str).where(clin[p.group].notna())
    use = g == str(p.case)
    ctrl = (g == str(p.control)) if p.control is not None else (g.notna() & (g != str(p.case)))
    keep = [s for s in samples if use.get(s, False) or ctrl.get(s, False)]
    n_case, n_ctrl = int(use[keep].sum()), int(ctrl[keep].sum())
    if n_case < 2 or n_ctrl < 2:
        msg = f"{p.group}: {p.case} has {n_case} sample(s) and {p.control or 'rest'} {n_ctrl} in {p.modality!r}; need at least 2 each"
        raise ToolFailed(msg)
    X = pd.DataFrame({"intercept": 1.0, "case": use[keep].astype(float).to_numpy()}, index=keep)
    paired, n_blocks = False, 0
    if p.block is not None:
        b = clin.loc[keep, p.block].astype(str)
        if clin.loc[keep, p.block].isna().any():
            notes.append(f"block {p.block!r} has missing values; block ignored")
        else:
            dummies = pd.get_dummies(b, prefix="block", drop_first=True, dtype=float)
            Xb = pd.concat([X, dummies], axis=1)
            rank = np.linalg.matrix_rank(Xb.to_numpy())
            if rank < Xb.shape[1] or Xb.shape[0] - rank < 1:
                notes.append(f"block {p.block!r} is confounded with {p.group!r} (or leaves no residual df); block ignored")
            else:
                X = Xb
                n_blocks = int(b.nunique())
                both = b.groupby(X["case"].to_numpy()).apply(set)
                paired = len(both) == 2 and both.iloc[0] == both.iloc[1]
    return X, keep, paired, n_blocks


def _populations(study: Study, p: _ContrastParams, ctx: ToolContext, notes: list[str]) -> tuple[ad.AnnData, str]:
    a = _cell_layer(study, p.modality)
    if p.populations not in a.obs and a.uns.get("modality") != "cytometry":
        msg = f"{p.modality!r} has no obs[{p.populations!r}]; run singlecell_clustering on it first"
        raise ToolInputError(msg)
    if p.populations not in a.obs:
        rec, _ = ensure_clustering(study, p.modality, None, ctx.seed)
        notes.append(f"no stored clustering: ran the default FlowSOM clustering (key {rec['key']}) and stored it in the layer")
    rec = a.uns.get("proteus_clustering", {})
    return a, str(rec.get("key", "external"))


# ============================================================================================
# cytometry_differential_abundance
# ============================================================================================


class DAParams(_ContrastParams):
    min_cells: int = Field(0, ge=0, description="populations with this many cells or fewer over the tested samples are skipped")


@register("cytometry_differential_abundance", family="cytometry", params=DAParams, requires=("cells", "clinical"))
def cytometry_differential_abundance(study: Study, params: DAParams, ctx: ToolContext) -> ToolResult:
    """Test which cell populations change in abundance between two conditions, with the sample as unit: a negative binomial GLM of sample x population cell counts (offset log total cells; donor factor when paired by block), common dispersion, likelihood-ratio test, BH (edgeR / diffcyt testDA_edgeR).

    Use after cytometry_clustering (it clusters with defaults if needed). Returns a table
    (population, log2FC of proportion, p, q, mean proportions per group), proportion boxplots,
    and ``cell_population --higher_in/lower_in--> sample_group`` relations for populations with
    q below fdr; n in each relation is the number of samples.
    """
    name = "cytometry_differential_abundance"
    p = params
    notes: list[str] = []
    a, key = _populations(study, p, ctx, notes)
    X, keep, paired, n_blocks = _design(study, a, p, notes)
    counts = population_counts(a, p.populations).reindex(keep).fillna(0)
    counts = counts.loc[:, counts.sum(0) > p.min_cells]
    if counts.shape[1] < 1:
        msg = "no population has cells in the tested samples"
        raise ToolFailed(msg)
    tab, phi = nb_glm_da(counts, X, "case")
    props = counts.div(counts.sum(1), axis=0)
    is_case = X["case"].to_numpy() == 1
    tab["prop_case"] = props[is_case].mean().reindex(tab["population"]).to_numpy()
    tab["prop_control"] = props[~is_case].mean().reindex(tab["population"]).to_numpy()
    tab = tab.sort_values(["p", "population"], na_position="last").reset_index(drop=True)
    obj = contrast_entity(p.group, p.case, p.control)
    n = len(keep)
    rels = []
    for r in tab.itertuples():
        if not (np.isfinite(r.q) and r.q < p.fdr):
            continue
        up = r.logFC > 0
        rels.append(_rel(ctx, name, p, Entity(type="cell_population", label=str(r.population)),
                         "higher_in" if up else "lower_in", obj,
                         Stats(effect=float(r.logFC), effect_type="log2FC_proportion", p=float(r.p), q=float(r.q), n=n,
                               direction="up" if up else "down",
                               extra={"unit": "sample", "paired": paired, "n_blocks": n_blocks, "dispersion": round(phi, 5),
                                      "prop_case": round(float(r.prop_case), 5), "prop_control": round(float(r.prop_control), 5),
                                      "clustering": key, "test": "NB GLM LRT"}),
                         p.modality))
    figures = []
    if ctx.figures:
        fig = group_boxplots(ctx, f"cytometry_da_{p.modality}_{p.group}", props, is_case, (str(p.control or "rest"), str(p.case)),
                             list(tab["population"].head(12)), "fraction of cells", X)
        figures.append(fig)
    sig = tab[tab["q"] < p.fdr]
    top = ", ".join(f"{r.population} (log2FC {_fmt(r.logFC)}, q={_fmt(r.q)})" for r in sig.head(5).itertuples())
    design_txt = f"{'paired ' if paired else ''}design ~ {p.group}{' + ' + p.block if n_blocks else ''}"
    summary = (
        f"Differential abundance of {counts.shape[1]} populations, {p.group}: {p.case} vs {p.control or 'rest'}, "
        f"over {n} samples ({int(is_case.sum())} vs {int((~is_case).sum())}; the sample is the unit), NB GLM {design_txt}, "
        f"common dispersion {phi:.3g}: {len(sig)} populations at BH q<{p.fdr}." + (f" {top}." if top else "")
        + (" " + " ".join(notes) if notes else "")
    )
    return ToolResult(summary=summary, tables={"differential_abundance": tab, "counts": counts.reset_index(names="sample_id")},
                      figures=figures, relations=rels,
                      metrics={"n_samples": n, "n_tested": int(tab["p"].notna().sum()), "n_significant": len(sig),
                               "paired": paired, "n_blocks": n_blocks, "dispersion": phi, "clustering_key": key})


# ============================================================================================
# cytometry_differential_state
# ============================================================================================


class DSParams(_ContrastParams):
    markers: list[str] | None = Field(None, description="state markers to test; null uses the panel's 'state' markers")
    min_cells: int = Field(3, ge=1, description="a sample's population median needs this many cells (diffcyt min_cells)")
    min_samples: int | None = Field(None, ge=2, description="populations need a median in this many samples; null = half the samples")


@register("cytometry_differential_state", family="cytometry", params=DSParams, requires=("cells", "clinical"))
def cytometry_differential_state(study: Study, params: DSParams, ctx: ToolContext) -> ToolResult:
    """Test which signalling (state) markers change within which cell populations between two conditions: per sample and population the median arcsinh expression of each state marker, limma moderated t with the donor as a design factor when paired by block, BH over all marker x population tests (diffcyt testDS_limma).

    Use after cytometry_clustering (it clusters with defaults if needed), e.g. for stimulation
    experiments (phospho-epitopes such as pS6, pErk, pBtk, pPlcg2). Returns a table (population,
    marker, logFC = difference of median arcsinh, t, p, q), boxplots of the top hits, and
    ``marker:<marker> | <population> --higher_in/lower_in--> sample_group`` relations with
    stats.extra marker, population and the marker's results in the other populations.
    """
    name = "cytometry_differential_state"
    p = params
    notes: list[str] = []
    a, key = _populations(study, p, ctx, notes)
    var_names = list(map(str, a.var_names))
    if p.markers:
        unknown = [m for m in p.markers if m not in var_names]
        if unknown:
            msg = f"markers {unknown} are not in {p.modality!r}; markers: {var_names}"
            raise ToolInputError(msg)
        markers = list(p.markers)
    else:
        mc = a.var["marker_class"] if "marker_class" in a.var else pd.Series("none", index=a.var_names)
        markers = [m for m, c in zip(var_names, mc) if c == "state"]
        if not markers:
            msg = (f"{p.modality!r} has no marker with marker_class 'state' (panel); pass markers=[...] to test "
                   f"chosen markers; markers: {var_names}")
            raise ToolInputError(msg)
    X, keep, paired, n_blocks = _design(study, a, p, notes)
    E = a.layers["arcsinh"] if "arcsinh" in a.layers else arcsinh_transform(a)
    long = population_medians(a, E, markers, p.populations, p.min_cells)
    long = long[long["sample"].isin(keep)]
    wide = long.pivot_table(index=["population", "marker"], columns="sample", values="median", dropna=False).reindex(columns=keep)
    min_samples = p.min_samples or max(2, int(np.ceil(len(keep) / 2)))
    enough = wide.notna().sum(1) >= min_samples
    dropped_pops = sorted(set(wide.index.get_level_values(0)[~enough.to_numpy()]))
    wide = wide[enough]
    if wide.empty:
        msg = f"no population has state-marker medians in {min_samples} samples (min_cells={p.min_cells})"
        raise ToolFailed(msg)
    if dropped_pops:
        notes.append(f"{len(dropped_pops)} population(s) with too few cells per sample skipped: {', '.join(dropped_pops[:5])}")
    tab = differential_state(wide, X, "case")
    is_case = X["case"].to_numpy() == 1
    tab["mean_case"] = wide.loc[:, is_case].mean(1).to_numpy()
    tab["mean_control"] = wide.loc[:, ~is_case].mean(1).to_numpy()
    tab = tab.sort_values(["p", "population", "marker"], na_position="last").reset_index(drop=True)

    obj = contrast_entity(p.group, p.case, p.control)
    n = len(keep)
    by_marker = {m: g for m, g in tab.groupby("marker")}
    rels = []
    for r in tab.itertuples():
        if not (np.isfinite(r.q) and r.q < p.fdr):
            continue
        up = r.logFC > 0
        others = by_marker[r.marker]
        others = {str(o.population): {"logFC": round(float(o.logFC), 4), "q": float(o.q), "t": round(float(o.t), 4),
                                      "df": round(float(o.df_total), 3)}
                  for o in others.itertuples() if o.population != r.population}
        rels.append(_rel(ctx, name, p, Entity(type="marker", label=f"{r.marker} | {r.population}"),
                         "higher_in" if up else "lower_in", obj,
                         Stats(effect=float(r.logFC), effect_type="arcsinh_median_diff", p=float(r.p), q=float(r.q), n=n,
                               direction="up" if up else "down",
                               extra={"marker": str(r.marker), "population": str(r.population), "unit": "sample",
                                      "paired": paired, "n_blocks": n_blocks, "t": round(float(r.t), 4),
                                      "other_populations": others, "clustering": key, "test": "limma moderated t"}),
                         p.modality))
    sig = tab[tab["q"] < p.fdr]
    top = tab.head(8)
    vals = pd.DataFrame({f"{r.marker} | {r.population}": wide.loc[(r.population, r.marker)].to_numpy() for r in top.itertuples()},
                        index=keep)
    figures = []
    if ctx.figures:
        fig = group_boxplots(ctx, f"cytometry_ds_{p.modality}_{p.group}", vals, is_case, (str(p.control or "rest"), str(p.case)),
                             list(vals.columns), "median arcsinh", X,
                             {f"{r.marker} | {r.population}": f"{r.marker} | {r.population}\nq={_fmt(r.q)}" for r in top.itertuples()})
        figures.append(fig)
    design_txt = f"{'paired ' if paired else ''}design ~ {p.group}{' + ' + p.block if n_blocks else ''}"
    hits = ", ".join(f"{r.marker} in {r.population} ({'+' if r.logFC > 0 else ''}{_fmt(r.logFC)}, q={_fmt(r.q)})" for r in sig.head(8).itertuples())
    summary = (
        f"Differential state of {len(markers)} state markers in {wide.index.get_level_values(0).nunique()} populations "
        f"({len(tab)} tests), {p.group}: {p.case} vs {p.control or 'rest'}, over {n} samples (sample medians of arcsinh values; "
        f"limma {design_txt}): {len(sig)} marker-population pairs at BH q<{p.fdr}"
        f" ({int((sig['logFC'] > 0).sum())} up, {int((sig['logFC'] < 0).sum())} down)." + (f" Top: {hits}." if hits else "")
        + (" " + " ".join(notes) if notes else "")
    )
    return ToolResult(summary=summary, tables={"differential_state": tab, "sample_medians": wide.reset_index()},
                      figures=figures, relations=rels,
                      metrics={"n_samples": n, "n_tested": int(tab["p"].notna().sum()), "n_significant": len(sig),
                               "n_up": int((sig["logFC"] > 0).sum()), "n_down": int((sig["logFC"] < 0).sum()),
                               "paired": paired, "n_blocks": n_blocks, "clustering_key": key,
                               "populations_with_hits": sorted(set(sig["population"]))})
