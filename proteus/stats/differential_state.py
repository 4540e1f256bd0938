"""Differential state: does a (state) marker's level within a cell population differ between
conditions? diffcyt's ``testDS_limma``: limma's moderated t on the sample x population medians of
each marker, BH over all marker x population tests.

References
----------
Weber L.M. et al. (2019) diffcyt: differential discovery in high-dimensional cytometry via
high-resolution clustering. Commun Biol 2:183, doi:10.1038/s42003-019-0415-5.
Smyth G.K. (2004) Linear models and empirical Bayes methods for assessing differential expression in
microarray experiments. Stat Appl Genet Mol Biol 3:3, doi:10.2202/1544-6115.1027.
"""

from __future__ import annotations

import pandas as pd

from proteus.stats.limma import moderated_test
from proteus.stats.multitest import bh

__all__ = ["differential_state"]


def differential_state(medians: pd.DataFrame, design: pd.DataFrame, coef: str) -> pd.DataFrame:
    """Moderated t of ``coef`` for every (population, marker) row of ``medians``.

    Parameters
    ----------
    medians
        (population, marker) x samples: median marker value (e.g. arcsinh) of each sample's cells
        in the population; NaN where a sample has too few cells.
    design
        samples (the columns of ``medians``, same order) x coefficients, intercept included.
    coef
        Column of ``design`` to test.

    Returns
    -------
    DataFrame
        One row per (population, marker): ``population``, ``marker``, limma's columns (``logFC``
        (the coefficient, in the units of the medians), ``t``, ``df_total``, ...), ``p`` and ``q``
        (BH over all rows).
    """
    tab = moderated_test(medians, design.to_numpy(float), coef=list(design.columns).index(coef), coef_names=list(design.columns))
    tab = tab.reset_index().rename(columns={"P.Value": "p", "adj.P.Val": "q"})
    tab["q"] = bh(tab["p"].to_numpy())
    return tab
