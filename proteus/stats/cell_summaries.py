"""Cells to sample-level summaries, the CATALYST / diffcyt preprocessing: arcsinh-transformed marker
values, and per sample x population cell counts and marker medians (the sample, not the cell, is
the statistical unit of the tests that follow).

References
----------
Bendall S.C. et al. (2011) Single-cell mass cytometry of differential immune and drug responses across a
human hematopoietic continuum. Science 332:687-696, doi:10.1126/science.1198704 (arcsinh, cofactor 5).
Nowicka M. et al. (2017) CyTOF workflow. F1000Research 6:748, doi:10.12688/f1000research.11622.3.
Weber L.M. et al. (2019) diffcyt. Commun Biol 2:183, doi:10.1038/s42003-019-0415-5 (``calcCounts``,
``calcMedians``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["arcsinh_transform", "population_counts", "population_medians"]


def arcsinh_transform(adata: ad.AnnData, cofactor: float | None = None) -> np.ndarray:
    """``arcsinh(raw / cofactor)`` of every marker (cells x markers, float32).

    ``cofactor`` defaults to ``adata.uns["cofactor"]`` (5 mass, 150 fluorescence, set by the
    reader), else 5.
    """
    c = float(cofactor if cofactor is not None else adata.uns.get("cofactor", 5.0))
    raw = adata.layers["raw"] if "raw" in adata.layers else adata.X
    raw = raw.toarray() if hasattr(raw, "toarray") else np.asarray(raw)
    return np.arcsinh(raw.astype(np.float32) / c)


def population_counts(adata: ad.AnnData, column: str = "population") -> pd.DataFrame:
    """samples x populations cell counts (``obs["sample_id"]`` x ``obs[column]``)."""
    return pd.crosstab(adata.obs["sample_id"].astype(str), adata.obs[column].astype(str))


def population_medians(
    adata: ad.AnnData, values: np.ndarray, markers: list[str], column: str = "population", min_cells: int = 3
) -> pd.DataFrame:
    """Median of each marker per sample and population (long: sample, population, marker, median, n_cells).

    A (sample, population) with fewer than ``min_cells`` cells gets NaN medians (diffcyt's
    ``min_cells``)."""
    var_names = list(map(str, adata.var_names))
    idx = [var_names.index(m) for m in markers]
    df = pd.DataFrame(values[:, idx], columns=markers)
    keys = [adata.obs["sample_id"].astype(str).to_numpy(), adata.obs[column].astype(str).to_numpy()]
    g = df.groupby(keys)
    med = g.median()
    n = g.size()
    med[n.to_numpy() < min_cells] = np.nan
    med.index.names = ["sample", "population"]
    long = med.stack(future_stack=True).rename("median").reset_index().rename(columns={"level_2": "marker"})
    long["n_cells"] = n.reindex(pd.MultiIndex.from_frame(long[["sample", "population"]])).to_numpy()
    return long
