"""Variance prior that depends on the number of peptides behind each protein (DEqMS).

A protein quantified from many peptides has a more precise abundance than one from a single
peptide, so one prior variance for all (limma) is too large for the first and too small for the
second. DEqMS (Zhu et al. 2020) lets the prior depend on the count :math:`c_g`:

.. math::

    \\log s_g^2 \\approx f(\\log_2 c_g)\\quad(\\text{loess, span } 0.75),\\qquad
    e_g = \\log s_g^2 - \\psi(d_g/2) + \\log(d_g/2),\\quad
    \\hat e_g = f(\\log_2 c_g) - \\psi(d_g/2) + \\log(d_g/2),

    \\psi'(d_0/2) = \\overline{(e_g - \\hat e_g)^2 - \\psi'(d_g/2)},\\qquad
    s_{0g}^2 = \\exp\\big(\\hat e_g + \\psi(d_0/2) - \\log(d_0/2)\\big),\\qquad
    \\tilde s_g^2 = \\frac{d_0 s_{0g}^2 + d_g s_g^2}{d_0 + d_g}.

The moderated t then uses :math:`\\tilde s_g^2` on :math:`d_0 + d_g` df, as limma. DEqMS solves
for :math:`d_0` on a grid of step 0.1; here it is solved exactly (limma's ``trigammaInverse``), and
the loess is evaluated exactly at every count (R's ``surface = "direct"``; R's default
``"interpolate"`` approximates it).

References
----------
Zhu Y, Orre LM, Zhou Tran Y, et al. (2020). DEqMS: a method for accurate variance estimation in
differential protein expression analysis. Mol Cell Proteomics 19:1047-1057.
doi:10.1074/mcp.TIR119.001646
Cleveland WS, Grosse E, Shyu WM (1992). Local regression models. Statistical Models in S, ch. 8.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from proteus.stats.limma import trigamma_inverse

__all__ = ["loess_fit", "count_variance_prior"]


def loess_fit(x: np.ndarray, y: np.ndarray, span: float = 0.75, degree: int = 2) -> np.ndarray:
    """Fitted values of a local polynomial regression at ``x``, as R ``loess`` with ``surface="direct"``.

    For each point, the ``ceil(span * n)`` nearest x values get tricube weights
    :math:`(1 - (d/d_{\\max})^3)^3` and a weighted polynomial of ``degree`` is fitted
    (Gaussian family, no robustness iterations). Repeated x values share one local fit.
    """
    if not 0 < span <= 1:
        msg = f"span must be in (0, 1], got {span}"
        raise ValueError(msg)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = x.size
    q = int(np.floor(n * span + 1e-5))
    q = min(max(q, degree + 1), n)
    fitted_at = {}
    for x0 in np.unique(x):
        d = np.abs(x - x0)
        dmax = np.partition(d, q - 1)[q - 1]
        w = np.zeros(n) if dmax == 0 else np.clip(1 - (d / dmax) ** 3, 0, None) ** 3
        if dmax == 0:
            w[d == 0] = 1.0
        B = np.vander(x - x0, degree + 1, increasing=True)
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(B * sw[:, None], y * sw, rcond=None)
        fitted_at[x0] = coef[0]
    return np.array([fitted_at[v] for v in x])


def count_variance_prior(sigma2: np.ndarray, df: np.ndarray, counts: np.ndarray,
                         span: float = 0.75) -> tuple[np.ndarray, np.ndarray, float]:
    """DEqMS posterior variances from sample variances and peptide counts (module docstring).

    Parameters
    ----------
    sigma2 : ndarray, shape (n_features,)
        Residual variances :math:`s_g^2` (NaN where ``df == 0``).
    df : ndarray, shape (n_features,)
        Residual degrees of freedom :math:`d_g`.
    counts : ndarray, shape (n_features,)
        Peptides (or PSMs / precursors) per feature; values below 1 are treated as 1.

    Returns
    -------
    s2_post : ndarray
        Posterior variances (the prior variance where ``df == 0``).
    s2_prior : ndarray
        :math:`s_{0g}^2` per feature.
    df_prior : float
        :math:`d_0` (``inf`` when the variances scatter no more than chance around the trend).
    """
    sigma2 = np.asarray(sigma2, dtype=float)
    df = np.asarray(df, dtype=float)
    x = np.log2(np.maximum(np.nan_to_num(np.asarray(counts, dtype=float), nan=1.0), 1.0))
    ok = (df > 0) & np.isfinite(sigma2) & (sigma2 > 0)
    if ok.sum() < 3:
        msg = "need at least 3 features with residual variance for a count-dependent prior"
        raise ValueError(msg)
    logvar = np.log(sigma2[ok])
    trend = np.empty(x.size)
    trend_ok = loess_fit(x[ok], logvar, span=span)
    # features without a variance get the trend at their count (nearest fitted count)
    order = np.argsort(x[ok], kind="stable")
    trend[ok] = trend_ok
    trend[~ok] = np.interp(x[~ok], x[ok][order], trend_ok[order])
    d = df[ok]
    e = logvar - special.digamma(d / 2) + np.log(d / 2)
    e_hat = trend_ok - special.digamma(d / 2) + np.log(d / 2)
    excess = np.mean((e - e_hat) ** 2 - special.polygamma(1, d / 2))
    # the df correction of each feature (features without a variance: the median df's)
    d_all = np.where(ok, df, np.median(d))
    corr = -special.digamma(d_all / 2) + np.log(d_all / 2)
    if excess > 0:
        d0 = float(2 * trigamma_inverse(excess)[0])
        s2_prior = np.exp(trend + corr + special.digamma(d0 / 2) - np.log(d0 / 2))
        with np.errstate(invalid="ignore"):
            post = np.where(ok, (d0 * s2_prior + df * np.nan_to_num(sigma2)) / (d0 + df), s2_prior)
    else:
        d0 = np.inf
        s2_prior = np.exp(trend + corr)
        post = s2_prior.copy()
    return post, s2_prior, d0
