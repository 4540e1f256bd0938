"""Feature-to-gene mapping, one rule for every tool.

- **Gene** of a feature: ``var["gene"]`` as the reader recorded it (the input's gene column, a site's
  gene, or the symbol the shipped UniProt map gives for a protein id; :func:`proteus.io._layer.build_layer`).
  A feature whose input names no gene has **no gene** (``None``): enrichment never tests its id as
  a gene, and it speaks for itself under its own id.
- **Canonical feature** of a gene: where several features of one protein / gene layer share a gene
  (MaxQuant protein groups of one gene, ``GENE_dup2``), the one observed in the most samples, then
  the one with the highest mean; a gene-level statement comes from it. Sites are each their own entity.
- **Label** (entity and display name): a site's id; the gene for the canonical feature of its gene;
  the feature's own id for the other groups of that gene and for features without a gene.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["SITE_KINDS", "feature_genes", "canonical_features", "feature_labels", "gene_annotation", "agrees_with_canonical"]

SITE_KINDS = ("phosphoproteomics", "acetylproteomics")
"""Modality kinds whose features are sites (``GENE-S123``): each site is its own entity."""


def _no_gene(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v) or str(v).strip() in ("", "nan", "None")


def feature_genes(adata) -> pd.Series:
    """Gene of every feature of a layer, ``None`` where the feature has no gene (index: feature ids):
    its symbol, with its organism where another organism's feature has the same symbol and the
    feature's organism is not the layer's."""
    names = pd.Index(adata.var_names.astype(str))
    if "gene" not in adata.var:
        return pd.Series([None] * len(names), index=names, dtype=object)
    genes = pd.Series([None if _no_gene(v) else str(v) for v in adata.var["gene"].astype(object)], index=names, dtype=object)
    if "organism" not in adata.var:
        return genes
    org = pd.Series([None if _no_gene(v) else str(v) for v in adata.var["organism"].astype(object)], index=names, dtype=object)
    known = genes.notna() & org.notna()
    n_org = pd.Series(org[known].to_numpy()).groupby(genes[known].to_numpy()).nunique()
    shared = genes.map(n_org).fillna(0) > 1
    other = known & shared & (org != adata.uns.get("organism"))
    genes[other] = genes[other] + " (" + org[other] + ")"
    return genes


def canonical_features(adata) -> pd.Series:
    """Whether each feature is the canonical feature of its gene (index: feature ids).

    Among the features of a protein / gene layer that share a gene, the canonical one is observed
    (finite) in the most samples, ties broken by the highest mean of its observed values, then by
    the feature id. Features without a gene, features alone with their gene, every site of a site
    layer (``uns["modality"]`` in :data:`SITE_KINDS`) and every feature of a cell-level layer are canonical.
    """
    return _canonical(adata, feature_genes(adata))


def _canonical(adata, genes: pd.Series) -> pd.Series:
    """:func:`canonical_features` given the layer's :func:`feature_genes`."""
    names = genes.index
    cells = adata.uns.get("level", "sample") == "cell"
    if cells or str(adata.uns.get("modality", "")) in SITE_KINDS or not genes.notna().any():
        return pd.Series(True, index=names)
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X, dtype=float)
    ok = np.isfinite(x)
    with np.errstate(invalid="ignore"):
        mean = np.where(ok, x, 0.0).sum(0) / np.maximum(ok.sum(0), 1)
    df = pd.DataFrame({"feature": names, "gene": genes.to_numpy(), "n": ok.sum(0), "mean": mean})
    df = df[df["gene"].notna()].sort_values(["gene", "n", "mean", "feature"], ascending=[True, False, False, True])
    minor = df.loc[df["gene"].duplicated(), "feature"]
    return pd.Series(~names.isin(minor), index=names)


def feature_labels(adata) -> pd.Series:
    """Entity label of every feature (see the module docstring; index: feature ids)."""
    genes = feature_genes(adata)
    return _labels(adata, genes, _canonical(adata, genes))


def _labels(adata, genes: pd.Series, canonical: pd.Series) -> pd.Series:
    """:func:`feature_labels` given the layer's genes and canonical features."""
    names = genes.index
    if str(adata.uns.get("modality", "")) in SITE_KINDS:
        return pd.Series(names.to_numpy(), index=names)
    use_gene = genes.notna() & canonical
    return pd.Series(np.where(use_gene, genes.astype(str), names.to_numpy()), index=names)


def gene_annotation(adata, features) -> pd.DataFrame:
    """``gene``, ``label`` and ``canonical`` of ``features`` (ids of the layer), for result tables."""
    idx = pd.Index(pd.Series(features).astype(str))
    genes = feature_genes(adata)
    canonical = _canonical(adata, genes)
    return pd.DataFrame({
        "gene": genes.reindex(idx).to_numpy(),
        "label": _labels(adata, genes, canonical).reindex(idx).to_numpy(),
        "canonical": canonical.reindex(idx).fillna(True).astype(bool).to_numpy(),
    })


def agrees_with_canonical(table: pd.DataFrame, effect: str, fdr: float) -> pd.Series:
    """Rows of a result table that may become relations under the gene rule.

    ``table`` has ``gene``, ``canonical``, ``q`` and the ``effect`` column (one row per tested
    feature; numbers compare by sign, labels such as the top level of an F test by equality). A row
    of a non-canonical feature passes only where its gene's canonical feature is in the table and
    significant (``q < fdr``) the same way: another protein group of a gene never speaks against, or
    instead of, the gene's main measurement. Other rows pass.
    """
    canon = table[table["canonical"] & table["gene"].notna()].drop_duplicates("gene").set_index("gene")
    minor = ~table["canonical"].astype(bool) & table["gene"].notna()
    way = np.sign if pd.api.types.is_numeric_dtype(table[effect]) else (lambda s: s)
    ref_q = table["gene"].map(canon["q"])
    ref_way = table["gene"].map(way(canon[effect]))
    agree = (ref_q < fdr) & (ref_way == way(table[effect]))
    return ~minor | agree.fillna(False).astype(bool)
