r"""Outlier runs: samples whose technical quality differs from the other samples' before any biology is claimed.

Three per-sample measures of a bulk layer (log scale, NaN = missing):

- the share of missing values (a failed or short injection loses identifications),
- the median log value (a loading or spray problem shifts every intensity),
- the median Pearson correlation to the other samples of its group (on the features both measured):
  a sample unlike its replicates.

Each measure is turned into a robust z,

.. math:: z_i = \frac{x_i - \operatorname{median}(x)}{\max(1.4826\,\operatorname{MAD}(x),\ s_{\min})},

the modified z-score of Iglewicz & Hoaglin (1993, *How to Detect and Handle Outliers*, ASQC Quality
Press; 1.4826 MAD estimates the SD of normal data), and a sample is an outlier when
:math:`|z| > 3.5` on the side that means worse quality (more missing values, lower correlation,
either side for the median). :math:`s_{\min}` is a floor below which differences are measurement
precision, never a failed run (1 percentage point of missing values, 0.1 log2 units of median, 0.01
of correlation): with a handful of near-identical runs the MAD alone can be tiny.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["sample_outliers", "robust_z", "OUTLIER_Z"]

OUTLIER_Z = 3.5
"""Modified z-score beyond which a sample is an outlier (Iglewicz & Hoaglin 1993)."""
_FLOORS = {"missing_fraction": 0.01, "median_value": 0.1, "median_correlation": 0.01}
_WORSE = {"missing_fraction": 1, "median_value": 0, "median_correlation": -1}
"""The side of each measure that means worse quality (0: either side)."""
_WORDS = {"missing_fraction": "missing values", "median_value": "median value", "median_correlation": "correlation to its group"}


def robust_z(x: np.ndarray, floor: float = 0.0, axis: int = 0) -> np.ndarray:
    """Modified z-score :math:`(x - \\mathrm{median})/\\max(1.4826\\,\\mathrm{MAD}, \\mathrm{floor})` along ``axis``
    (scipy's ``median_abs_deviation(scale="normal")``, the MAD over :math:`\\Phi^{-1}(3/4)`; NaN stays NaN, a
    scale of 0 gives z 0)."""
    from scipy.stats import median_abs_deviation

    x = np.asarray(x, dtype=float)
    med = np.nanmedian(x, axis=axis, keepdims=True)
    scale = np.maximum(median_abs_deviation(x, axis=axis, scale="normal", nan_policy="omit"), floor)
    scale = np.expand_dims(np.asarray(scale, dtype=float), axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (x - med) / np.where(scale > 0, scale, 1.0), 0.0 * x)


def _median_correlation(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each sample's median Pearson correlation to the other samples of its group (all samples when it
    has no group or its group holds no other sample), on the features both measured."""
    R = pd.DataFrame(X.T).corr(min_periods=10).to_numpy()
    out = np.full(len(X), np.nan)
    for i in range(len(X)):
        peers = (groups == groups[i]) if isinstance(groups[i], str) else np.ones(len(X), bool)
        peers[i] = False
        if not peers.any():
            peers = np.ones(len(X), bool)
            peers[i] = False
        r = R[i, peers]
        out[i] = np.nanmedian(r) if np.isfinite(r).any() else np.nan
    return out


def sample_outliers(adata: ad.AnnData, groups: pd.Series | None = None, *, z: float = OUTLIER_Z) -> pd.DataFrame:
    """Per-sample quality measures, their robust z and the outlier call.

    Parameters
    ----------
    adata : AnnData
        A bulk layer: obs = samples, var = features, log-scale values, NaN = missing.
    groups : Series, optional
        Group of each sample (indexed by ``adata.obs_names``); correlations are taken within groups.
    z : float
        Modified z-score beyond which a measure flags the sample.

    Returns
    -------
    DataFrame
        One row per sample (index: sample): ``missing_fraction``, ``median_value``, ``median_correlation``,
        ``z_<measure>`` for each, ``outlier`` (bool) and ``reason`` (the measures that flagged it, with numbers).
    """
    X = np.array(adata.X, dtype=float, copy=True)
    X[~np.isfinite(X)] = np.nan
    names = adata.obs_names.astype(str)
    g = (pd.Series(groups).reindex(names) if groups is not None else pd.Series(np.nan, index=names))
    g = g.astype(object).where(g.notna()).map(lambda v: v if pd.isna(v) else str(v)).to_numpy()
    with np.errstate(all="ignore"):
        table = pd.DataFrame({"missing_fraction": np.isnan(X).mean(1), "median_value": np.nanmedian(X, 1),
                              "median_correlation": _median_correlation(X, g)}, index=pd.Index(names, name="sample"))
    flags = np.zeros(len(table), bool)
    reasons = [[] for _ in range(len(table))]
    for measure, floor in _FLOORS.items():
        zs = robust_z(table[measure].to_numpy(), floor)
        table[f"z_{measure}"] = zs
        side = _WORSE[measure]
        bad = (np.abs(zs) > z) if side == 0 else (side * zs > z)
        bad &= np.isfinite(zs)
        flags |= bad
        med = np.nanmedian(table[measure])
        for i in np.flatnonzero(bad):
            v = table[measure].iloc[i]
            text = f"{v:.1%} vs median {med:.1%}" if measure == "missing_fraction" else f"{v:.3g} vs median {med:.3g}"
            reasons[i].append(f"{_WORDS[measure]} {text} (robust z {zs[i]:+.1f})")
    table["outlier"] = flags
    table["reason"] = ["; ".join(r) for r in reasons]
    return table
