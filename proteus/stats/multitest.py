"""Multiple-testing corrections.

References
----------
Benjamini Y, Hochberg Y (1995). Controlling the false discovery rate: a practical and powerful
approach to multiple testing. J R Stat Soc B 57:289-300. doi:10.1111/j.2517-6161.1995.tb02031.x
"""

from __future__ import annotations

import numpy as np

__all__ = ["bh"]


def bh(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), as R's ``p.adjust(p, "BH")``.

    .. math:: q_{(i)} = \\min_{k \\ge i} \\min\\left(1, \\frac{m}{k} p_{(k)}\\right)

    Parameters
    ----------
    p : array-like
        p-values; non-finite entries (NaN, +-inf) are not tests: they come back NaN and are not
        counted in :math:`m`.

    Returns
    -------
    ndarray
        Adjusted p-values in the input order, same shape as ``p``.
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.isfinite(flat)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = flat[ok]
    order = np.argsort(pv, kind="stable")[::-1]  # largest first
    ranks = np.arange(m, 0, -1)
    q = np.minimum.accumulate(m / ranks * pv[order])
    adj = np.empty(m)
    adj[order] = np.minimum(q, 1.0)
    res = out.ravel()
    res[ok] = adj
    return res.reshape(p.shape)
