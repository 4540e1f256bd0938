r"""Sample-related contamination of plasma and serum proteomes (Geyer et al. 2019).

Erythrocyte lysis, residual platelets and partial clotting move whole panels of proteins together
in blood plasma / serum samples (Geyer PE et al., *Plasma proteome profiling to detect and avoid
sample-related biases in biomarker studies*, EMBO Mol Med 2019;11:e10427,
doi:10.15252/emmm.201910427; panels shipped in ``proteus/genesets/plasma_quality_panels.json``).
A per-sample **contamination index** of a panel is the mean z-score of its measured members,

.. math:: c_{s} = \frac{1}{|P_s|} \sum_{p \in P_s} \frac{x_{ps} - \bar x_p}{\mathrm{sd}(x_p)},

over the members :math:`P_s` measured in sample :math:`s` (members measured in fewer than half of
the samples are left out; two or more members must remain). A grouping whose groups differ in an
index may show handling differences as biology, in the panel's members first.

:func:`blood_matrix` decides from the sample table whether the samples are plasma or serum.
"""

from __future__ import annotations

import re

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["blood_matrix", "contamination_index", "feature_symbols"]

_BLOOD = re.compile(r"\b(plasma|serum|sera)\b(?!\s*[-_ ]?(cells?|membrane|concentration|level))", re.I)
_MIN_MEMBERS = 2


def blood_matrix(clinical: pd.DataFrame) -> str | None:
    """``"plasma"`` or ``"serum"`` when at least half of the samples' rows of the sample table name it
    (a matrix / tissue / specimen column, constant or not, read as words; ``plasma cells`` does not
    count), else ``None``."""
    if clinical.empty:
        return None
    hits: dict[object, str] = {}
    for col in clinical.columns:
        s = clinical[col]
        if s.dtype != object:
            continue
        found = s.astype(str).str.extract(_BLOOD).iloc[:, 0].dropna()
        for sample, word in found.items():
            hits.setdefault(sample, "serum" if word.lower() in ("serum", "sera") else "plasma")
    named = pd.Series(hits, dtype=object)
    if len(named) < 0.5 * len(clinical):
        return None
    return str(named.value_counts().index[0])


def feature_symbols(adata: ad.AnnData) -> pd.Series:
    """Gene symbol of each feature (index: feature): the one feature-to-gene rule
    (:func:`proteus.stats.features.feature_genes`), a protein group named by its first gene ("HBA1;HBA2" -> "HBA1")."""
    from proteus.stats.features import feature_genes

    return feature_genes(adata).map(lambda v: v if v is None else v.split(";")[0].strip() or None)


def contamination_index(adata: ad.AnnData, panels: dict[str, tuple[str, ...] | list[str]]) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Per-sample contamination index of each panel (see the module docstring).

    Returns ``(index, members)``: samples x panels (a panel with fewer than two measured members is
    left out) and, per panel, the member symbols used.
    """
    X = np.array(adata.X, dtype=float, copy=True)
    X[~np.isfinite(X)] = np.nan
    sym = feature_symbols(adata).to_numpy()
    enough = np.isfinite(X).mean(0) >= 0.5
    out, members = {}, {}
    for panel, genes in panels.items():
        cols = np.flatnonzero(np.isin(sym, list(genes)) & enough)
        if len(cols) < _MIN_MEMBERS:
            continue
        Y = X[:, cols]
        with np.errstate(all="ignore"):
            Z = (Y - np.nanmean(Y, 0)) / np.nanstd(Y, 0, ddof=1)
            out[panel] = np.nanmean(Z, 1)
        members[panel] = list(dict.fromkeys(str(sym[c]) for c in cols))
    return pd.DataFrame(out, index=pd.Index(adata.obs_names.astype(str), name="sample")), members
