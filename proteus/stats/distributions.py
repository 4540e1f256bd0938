"""Tail probabilities and quantiles of the t, F, chi-squared and normal distributions, and Fisher's
exact test (hypergeometric).

The same ``scipy.special`` functions that ``scipy.stats`` evaluates for these distributions
(``t.sf`` is ``stdtr(df, -x)``, ``f.sf`` is ``fdtrc``, ...), called directly: importing
``scipy.stats`` costs about 0.5 s per process, more than a whole limma fit of a proteome, and a
single ``proteus tools run`` should not pay it. Invalid parameters (non-positive df) give NaN, as
``scipy.stats`` does; ``tests/test_limma.py`` checks every function against ``scipy.stats``.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["t_sf", "t_logsf", "t_isf", "f_sf", "chi2_sf", "norm_sf", "norm_ppf", "fisher_exact_p"]


def _valid(value, dfs) -> np.ndarray:
    """``value`` where every df is positive (NaN elsewhere), as scipy.stats' argument check."""
    ok = np.logical_and.reduce([np.asarray(d, dtype=float) > 0 for d in np.broadcast_arrays(*dfs)])
    out = np.where(ok, value, np.nan)
    return out[()] if out.ndim == 0 else out


def t_sf(x, df):
    """Upper tail :math:`P(T > x)` of Student's t with ``df`` degrees of freedom (``scipy.stats.t.sf``)."""
    return _valid(special.stdtr(df, -np.asarray(x, dtype=float)), [df])


def t_logsf(x, df):
    """:math:`\\log P(T > x)` (``scipy.stats.t.logsf``: the log of the upper tail above the median,
    ``log1p`` of minus the lower tail below it)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        out = np.where(x > 0, np.log(special.stdtr(df, -x)), np.log1p(-special.stdtr(df, x)))
    return _valid(out, [df])


def t_isf(q, df):
    """The ``x`` with :math:`P(T > x) = q` (``scipy.stats.t.isf``)."""
    q = np.asarray(q, dtype=float)
    with np.errstate(invalid="ignore"):
        x = np.where((q > 0) & (q < 1), -special.stdtrit(df, q), np.nan)
    x = np.where(q == 0, np.inf, np.where(q == 1, -np.inf, x))
    return _valid(x, [df])


def f_sf(x, dfn, dfd):
    """Upper tail of the F distribution (``scipy.stats.f.sf``); 1 below zero."""
    x = np.asarray(x, dtype=float)
    with np.errstate(invalid="ignore"):
        out = np.where(x <= 0, 1.0, special.fdtrc(dfn, dfd, np.maximum(x, 0)))
    return _valid(np.where(np.isnan(x), np.nan, out), [dfn, dfd])


def chi2_sf(x, df):
    """Upper tail of chi-squared (``scipy.stats.chi2.sf``); 1 below zero."""
    x = np.asarray(x, dtype=float)
    out = np.where(x <= 0, 1.0, special.chdtrc(df, np.maximum(x, 0)))
    return _valid(np.where(np.isnan(x), np.nan, out), [df])


def norm_sf(x):
    """Standard normal upper tail (``scipy.stats.norm.sf``)."""
    return special.ndtr(-np.asarray(x, dtype=float))


def norm_ppf(q):
    """Standard normal quantile (``scipy.stats.norm.ppf``)."""
    return special.ndtri(np.asarray(q, dtype=float))


def fisher_exact_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher exact p of ``k1`` of ``n1`` against ``k2`` of ``n2`` (``scipy.stats.fisher_exact``
    on ``[[k1, n1 - k1], [k2, n2 - k2]]``): the summed hypergeometric probability of every table with
    the same margins that is no more likely than the observed one (relative tolerance 1e-7, as scipy)."""
    k, n = k1 + k2, n1 + n2
    x = np.arange(max(0, k - n2), min(k, n1) + 1)
    logp = (special.gammaln(n1 + 1) - special.gammaln(x + 1) - special.gammaln(n1 - x + 1)
            + special.gammaln(n2 + 1) - special.gammaln(k - x + 1) - special.gammaln(n2 - k + x + 1)
            - special.gammaln(n + 1) + special.gammaln(k + 1) + special.gammaln(n - k + 1))
    prob = np.exp(logp)
    observed = prob[x == k1][0]
    return float(min(1.0, prob[prob <= observed * (1 + 1e-7)].sum()))
