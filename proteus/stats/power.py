"""Power of the two-group t-test, and the large effects a contrast could not call at its sample size.

A two-sided two-sample t-test at level :math:`\\alpha` on :math:`n_1, n_2` samples finds a standardised
effect :math:`d` (difference over the within-group SD) with power

.. math::

    1 - \\beta = P\\big(T' > t_{1-\\alpha/2,\\,\\nu}\\big), \\qquad
    T' \\sim t_\\nu(\\delta),\\quad \\delta = d\\sqrt{\\tfrac{n_1 n_2}{n_1 + n_2}},\\quad \\nu = n_1 + n_2 - 2

(noncentral t; Cohen, *Statistical power analysis for the behavioral sciences*, 2nd ed. 1988; the
far tail is left out, as R's ``power.t.test`` by default). :func:`detectable_effect` inverts it: the
smallest :math:`d` found with the given power.

:func:`underpowered_effects` reads one contrast's result table: features whose effect is large
(:math:`|\\log_2 FC| \\ge 1`, a two-fold change) but whose q missed the FDR. Saying nothing of them
reads as "no change"; saying they changed overclaims. What the data support is the power this design
had for an effect that size and the smallest effect it could have called (80% power), at the p the
table's BH threshold actually required. Power computed for an observed effect is a restatement of its p
(Hoenig & Heisey 2001, doi:10.1198/000313001300339897): it describes the design, never evidence for
the effect.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize, stats

__all__ = ["t_power", "detectable_effect", "bh_threshold", "underpowered_effects"]


def t_power(d: float, n1: int, n2: int, alpha: float = 0.05, k: int = 0) -> float:
    """Power of the two-sided two-sample t-test at level ``alpha`` to find standardised effect ``d``
    with ``n1`` and ``n2`` samples (noncentral t, the module's formula); 0 with fewer than 2 per group.
    ``k`` covariate columns in the model take their residual df (``n1 + n2 - 2 - k``, at least 1)."""
    if n1 < 2 or n2 < 2:
        return 0.0
    d = abs(d)
    if math.isinf(d):
        return 1.0
    from proteus.design import power as effective_n

    df = max(n1 + n2 - 2 - k, 1)
    return float(stats.nct.sf(stats.t.ppf(1 - alpha / 2, df), df, d * math.sqrt(effective_n(n1, n2))))


def detectable_effect(n1: int, n2: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest standardised effect :func:`t_power` finds with ``power`` (root of power(d) - power);
    ``inf`` with fewer than 2 samples per group."""
    if n1 < 2 or n2 < 2:
        return math.inf
    hi = 1.0
    while t_power(hi, n1, n2, alpha) < power:
        hi *= 2
    return float(optimize.brentq(lambda d: t_power(d, n1, n2, alpha) - power, 0.0, hi, xtol=1e-8))


def bh_threshold(p: np.ndarray, q: np.ndarray, fdr: float) -> float:
    """The largest p the Benjamini-Hochberg step-up accepted at ``fdr`` (the per-test level the table's
    calls actually needed); with no call, the level of its first step, ``fdr / m`` for ``m`` tests."""
    ok = np.isfinite(p) & np.isfinite(q)
    called = p[ok & (q < fdr)]
    return float(called.max()) if called.size else fdr / max(int(ok.sum()), 1)


def underpowered_effects(table: pd.DataFrame, *, fdr: float = 0.05, min_log2fc: float = 1.0, min_n: int = 3,
                         min_observed: float = 0.5, power: float = 0.8, top: int = 5) -> pd.DataFrame:
    """Large effects of a two-group result table that missed ``fdr``, with the power the design had for them.

    Parameters
    ----------
    table
        One contrast's results: ``label``, ``logFC``, ``t``, ``p``, ``q``, ``n_case``, ``n_control`` (the
        samples each feature was observed in) and, where the test has one, ``detection`` (features seen in
        one group only are left out: their effect is extrapolated).
    fdr
        The table's FDR; the power is computed at :func:`bh_threshold`, the p its calls needed.
    min_log2fc, min_n, min_observed
        Effects with ``|logFC| >= min_log2fc`` observed in at least ``min_n`` samples and ``min_observed`` of
        each group (its largest count in the table): an effect estimated mostly from modelled dropouts is
        not one a sample size can be judged by.
    power, top
        The power the detectable effect is given for; the ``top`` smallest p are kept.

    Returns
    -------
    DataFrame with ``label, logFC, p, q, n_case, n_control, sd`` (within-group SD from the test's own
    standard error, :math:`|\\mathrm{logFC}/t| / \\sqrt{1/n_1 + 1/n_2}`), ``alpha`` (the BH threshold),
    ``power`` (for the observed effect) and ``detectable`` (the log2 fold change found with ``power``).
    """
    cols = ["label", "logFC", "p", "q", "n_case", "n_control", "sd", "alpha", "power", "detectable"]
    need = {"label", "logFC", "t", "p", "q", "n_case", "n_control"}
    if table is None or table.empty or not need <= set(table.columns):
        return pd.DataFrame(columns=cols)
    alpha = bh_threshold(table["p"].to_numpy(float), table["q"].to_numpy(float), fdr)
    n1_min = max(min_n, min_observed * float(table["n_case"].max()))
    n2_min = max(min_n, min_observed * float(table["n_control"].max()))
    rows = table[(table["q"] >= fdr) & (table["logFC"].abs() >= min_log2fc) & (table["n_case"] >= n1_min)
                 & (table["n_control"] >= n2_min) & np.isfinite(table["t"]) & (table["t"] != 0)]
    if "detection" in rows:
        rows = rows[rows["detection"].isna() | (rows["detection"].astype(str) == "both")]
    rows = rows.sort_values("p", kind="stable").head(top)
    out = []
    for r in rows.itertuples(index=False):
        n1, n2 = int(r.n_case), int(r.n_control)
        sd = abs(r.logFC / r.t) / math.sqrt(1 / n1 + 1 / n2)
        out.append((str(r.label), float(r.logFC), float(r.p), float(r.q), n1, n2, sd, alpha,
                    t_power(abs(r.logFC) / sd, n1, n2, alpha), detectable_effect(n1, n2, alpha, power) * sd))
    return pd.DataFrame(out, columns=cols)
