"""Moderated tests that model missing values as abundance-dependent dropouts (left censoring).

In label-free proteomics a value is more often missing the lower the abundance. Rather than
skipping such features or imputing them, each missing value contributes the probability of a
dropout at the feature's modelled mean (a probit dropout curve per sample, as proDA; Ahlmann-Eltze
& Anders 2020). For feature :math:`g` with design rows :math:`x_j`,

.. math::

    \\ell_g(\\beta) = -\\sum_{j \\in O_g} \\frac{(y_{gj} - x_j^\\top\\beta)^2}{2\\tilde s_g^2}
        + \\sum_{j \\notin O_g} \\log \\Phi\\!\\left(\\frac{\\rho_j - x_j^\\top\\beta}
        {\\sqrt{\\zeta_j^2 + \\tilde s_g^2}}\\right),

where :math:`\\tilde s_g^2` is limma's posterior variance from the observed values (Smyth 2004),
:math:`\\rho_j` the intensity at which sample :math:`j` loses half its values and
:math:`\\zeta_j` the width of its dropout curve. A coefficient is tested by the signed root of the
likelihood ratio, :math:`t_g = \\operatorname{sign}(\\hat\\beta_{gk})\\sqrt{2(\\ell_g(\\hat\\beta) -
\\ell_g(\\hat\\beta_{(-k)}))}`, referred to limma's t distribution with :math:`d_0 + d_g` df.
Without missing values :math:`t_g` *is* limma's moderated t (the Gaussian likelihood ratio at a
fixed variance is :math:`\\hat\\beta_k^2 / (\\tilde s_g^2 v_{kk})`), so complete features are
copied from limma unchanged. Features detected in one group only get a finite statistic: the
likelihood of "all missing" at the other group's mean is what they are tested on; the missing
values of a group with no value count once (:func:`absent_group_weights`), since replicates of
one condition drop a feature together far more often than independent dropouts predict.

References
----------
Ahlmann-Eltze C, Anders S (2020). proDA: Probabilistic dropout analysis for identifying
differentially abundant proteins in label-free mass spectrometry. bioRxiv 661496.
doi:10.1101/661496
Smyth GK (2004). Stat Appl Genet Mol Biol 3:3. doi:10.2202/1544-6115.1027
Kish L (1965). Survey Sampling. Wiley (design effect of clustered observations).
McCarthy DJ, Smyth GK (2009). Testing significance relative to a fold-change threshold is a TREAT.
Bioinformatics 25:765-771. doi:10.1093/bioinformatics/btp053
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from proteus.stats.distributions import norm_ppf, t_sf

__all__ = ["DropoutCurves", "absent_group_weights", "fit_dropout_curves", "censored_loglik_fit", "censored_test"]


@dataclass
class DropoutCurves:
    """Per-sample probit dropout curves: :math:`P(\\text{missing} \\mid y) = \\Phi((\\rho_j - y)/\\zeta_j)`.

    Attributes
    ----------
    rho : ndarray, shape (n_samples,)
        Intensity at which half the values of a sample are missing.
    scale : ndarray, shape (n_samples,)
        Width of the curve against feature means (:math:`\\sqrt{\\zeta_j^2 + s^2}` for a typical
        feature); the pure dropout width :math:`\\zeta_j` is obtained by removing the variance.
    slope_z : float
        Wald z of the common slope of missingness on feature mean (negative when low-abundance
        features are missing more often: missing not at random).
    """

    rho: np.ndarray
    scale: np.ndarray
    slope_z: float


def fit_dropout_curves(Y: np.ndarray, groups: np.ndarray | None = None, n_iter: int = 50,
                       max_values: int = 500_000) -> DropoutCurves:
    """Probit regression of missingness on abundance, intercept per sample, common slope.

    .. math:: P(y_{gj}\\ \\text{missing}) = \\Phi(a_j + b\\,\\bar y_{g,k(j)}),\\qquad
        \\rho_j = -a_j / b,\\quad \\text{scale} = -1/b

    with :math:`\\bar y_{g,k(j)}` the mean of the observed values of feature :math:`g` in the group
    of sample :math:`j` (so that true differences between groups do not pose as dropouts; pairs
    whose group has no value of the feature are left out). A common slope keeps samples with few
    missing values estimable.

    Parameters
    ----------
    Y : ndarray, shape (n_features, n_samples)
        Log-scale values, NaN for missing.
    groups : array-like, shape (n_samples,), optional
        Group label per sample (default: one group).
    max_values : int
        Larger tables are fitted on every k-th feature (deterministic), at most this many values.

    Returns
    -------
    DropoutCurves
    """
    Y = np.asarray(Y, dtype=float)
    step = max(1, Y.size // max_values)
    Y = Y[::step]  # large tables: every step-th feature is plenty for two parameters per sample
    obs = np.isfinite(Y)
    Y0 = np.where(obs, Y, 0.0)
    groups = np.zeros(Y.shape[1], dtype=int) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    M = np.full(Y.shape, np.nan)  # per feature and sample: mean of the observed values in the sample's group
    for k in np.unique(groups):
        cols = groups == k
        n_k = obs[:, cols].sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            M[:, cols] = (Y0[:, cols].sum(1) / np.where(n_k > 0, n_k, np.nan))[:, None]
    use = np.isfinite(M)
    n = Y.shape[1]
    centre, spread = np.nanmean(M), np.nanstd(M) or 1.0
    Z = np.where(use, (M - centre) / spread, 0.0)
    miss = ~obs
    # parameters: a_1..a_n, b on the standardised mean; Newton-Raphson on the probit likelihood
    a = np.full(n, norm_ppf(np.clip(miss[use].mean(), 1e-3, 1 - 1e-3)))
    b = -1.0
    for _ in range(n_iter):
        eta = a[None, :] + b * Z
        log_phi = -0.5 * eta**2 - 0.5 * np.log(2 * np.pi)
        # d loglik / d eta: phi/Phi if missing, -phi/(1 - Phi) if observed
        g1 = np.where(miss, np.exp(log_phi - special.log_ndtr(eta)), -np.exp(log_phi - special.log_ndtr(-eta)))
        w = g1 * (g1 + eta)  # minus d2 loglik / d eta2 (probit), both outcomes
        g1, w = np.where(use, g1, 0.0), np.where(use, np.maximum(w, 1e-10), 0.0)
        ga, gb = g1.sum(0), (g1 * Z).sum()
        Haa = w.sum(0)
        Hab = (w * Z).sum(0)
        Hbb = (w * Z**2).sum() + 1e-6
        # solve the arrow-shaped system [diag(Haa) Hab; Hab' Hbb] [da; db] = [ga; gb]
        s = Hbb - np.sum(Hab**2 / (Haa + 1e-6))
        db = (gb - np.sum(Hab * ga / (Haa + 1e-6))) / s
        da = (ga - Hab * db) / (Haa + 1e-6)
        a, b = a + np.clip(da, -2, 2), b + float(np.clip(db, -2, 2))
        if max(np.max(np.abs(da)), abs(db)) < 1e-8:
            break
    se_b = np.sqrt(1 / s) if s > 0 else np.inf
    b_raw = b / spread
    if b_raw >= 0:  # no abundance dependence: a dropout is equally likely at any mean, so carries no information
        return DropoutCurves(np.full(n, np.inf), np.ones(n), float(b / se_b))
    rho = centre - a * spread / b
    return DropoutCurves(rho, np.full(n, -1.0 / b_raw), float(b / se_b))


def censored_loglik_fit(Y: np.ndarray, X: np.ndarray, s2: np.ndarray, rho: np.ndarray, zeta2: np.ndarray,
                        n_iter: int = 100, tol: float = 1e-9, weight: np.ndarray | None = None,
                        beta0: np.ndarray | None = None, offset: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximise the censored-normal log likelihood (module docstring) of every feature by Newton steps.

    The likelihood is concave in :math:`\\beta` (a Gaussian plus log-probit terms), so damped
    Newton steps with step halving converge; a coefficient that only missing values inform may
    drift towards :math:`-\\infty` while the likelihood converges to its supremum.

    Parameters
    ----------
    Y : ndarray, shape (n_features, n_samples)
        NaN for missing.
    X : ndarray, shape (n_samples, n_coef)
    s2 : ndarray, shape (n_features,)
        Fixed residual variance per feature.
    rho, zeta2 : ndarray, shape (n_samples,)
        Dropout curve midpoints and squared widths.
    weight : ndarray, shape (n_features, n_samples), optional
        Weight of each censored term (default 1; :func:`absent_group_weights`).
    beta0 : ndarray, shape (n_features, n_coef), optional
        Starting coefficients (default: least squares with missing values at the dropout midpoint).
    offset : ndarray, shape (n_features, n_samples), optional
        Known part of each mean (:math:`x_j^\\top\\beta + o_{gj}`), e.g. a coefficient held fixed.

    Returns
    -------
    beta : ndarray, shape (n_features, n_coef)
    loglik : ndarray, shape (n_features,)
    hessian : ndarray, shape (n_features, n_coef, n_coef)
        Minus the second derivative at ``beta``.
    """
    obs = np.isfinite(Y)
    if offset is not None:  # y - o ~ x'beta; a dropout below rho - o
        Y = Y - offset
    Y0 = np.where(obs, Y, 0.0)
    G, n = Y.shape
    p = X.shape[1]
    # observed values: a quadratic in beta, kept as sufficient statistics (A = X_o'X_o / s2, b = X_o'y / s2)
    A = (obs.astype(float) @ (X[:, :, None] * X[:, None, :]).reshape(n, p * p)).reshape(G, p, p) / s2[:, None, None]
    b = (Y0 @ X) / s2[:, None]
    c = (Y0**2).sum(1) / s2
    # missing values: one censored term each, stored row by row (only these need the normal cdf)
    cell_row, cell_col = np.nonzero(~obs)
    cell_tau = np.sqrt(zeta2[cell_col] + s2[cell_row])
    cell_rho = rho[cell_col] if offset is None else rho[cell_col] - offset[cell_row, cell_col]
    cell_w = np.ones(cell_row.size) if weight is None else weight[cell_row, cell_col]
    bounds = np.searchsorted(cell_row, np.arange(G + 1))
    Xu, cell_cls = np.unique(X, axis=0, return_inverse=True)  # samples with one design row share a mean
    K = Xu.shape[0]
    cell_cls = cell_cls.ravel()[cell_col]
    XXu = (Xu[:, :, None] * Xu[:, None, :]).reshape(K, p * p)

    def terms(B: np.ndarray, rows: np.ndarray):
        """Log likelihood, gradient and minus Hessian of ``rows`` at coefficients ``B``, in one pass."""
        R = rows.size
        starts, lens = bounds[rows], bounds[rows + 1] - bounds[rows]
        idx = np.arange(lens.sum()) + np.repeat(starts - (np.cumsum(lens) - lens), lens)
        flat = np.repeat(np.arange(R) * K, lens) + cell_cls[idx]  # (feature, design row) of each cell
        tc = cell_tau[idx]
        z = (cell_rho[idx] - (B @ Xu.T).ravel()[flat]) / tc
        lc, lam = _log_ndtr_mills(z)
        with np.errstate(invalid="ignore"):
            curv = np.where(lam > 0, lam * (z + lam), 0.0)  # 0 where a dropout is certain (z = +inf)
        wc = cell_w[idx]

        def per_row(v):
            return np.bincount(flat, v, minlength=R * K).reshape(R, K)

        Ar = A[rows]
        ll = per_row(wc * lc).sum(1) - (c[rows] - 2 * np.einsum("ij,ij->i", B, b[rows])
                                        + np.einsum("ri,rij,rj->r", B, Ar, B)) / 2
        grad = b[rows] - np.einsum("rij,rj->ri", Ar, B) + per_row(-wc * lam / tc) @ Xu
        H = Ar + (per_row(wc * curv / tc**2) @ XXu).reshape(R, p, p) + 1e-10 * np.eye(p)
        return ll, grad, H

    if beta0 is None:  # least squares with each missing value set to its sample's dropout midpoint
        low = rho[None, :] if offset is None else rho[None, :] - offset
        fill = np.where(obs, Y, np.minimum(low, np.nanmin(np.where(obs, Y, np.inf), axis=1, keepdims=True)))
        beta0 = np.linalg.lstsq(X, fill.T, rcond=None)[0].T
    beta = np.array(beta0, dtype=float)
    active = np.arange(G)
    ll, grad, H = terms(beta, active)
    for _ in range(n_iter):
        if active.size == 0:
            break
        step = np.linalg.solve(H[active], grad[active][:, :, None])[:, :, 0]
        far = np.einsum("ij,ij->i", step, grad[active]) / 2 >= tol  # Newton decrement: the gain left
        active, step = active[far], step[far]
        if active.size == 0:
            break
        B = beta[active]
        frac = np.ones(active.size)
        new = list(terms(B + step, active))
        for _ in range(30):  # step halving where the likelihood fell
            worse = np.flatnonzero(~(new[0] >= ll[active] - 1e-12))
            if worse.size == 0:
                break
            frac[worse] /= 2
            for k, v in enumerate(terms(B[worse] + frac[worse, None] * step[worse], active[worse])):
                new[k][worse] = v
        gain = new[0] - ll[active]
        beta[active] = B + frac[:, None] * step
        ll[active], grad[active], H[active] = new
        active = active[~(np.abs(gain) < tol)]
    return beta, ll, H


def _log_ndtr_mills(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:math:`\\log\\Phi(z)` and the inverse Mills ratio :math:`\\phi(z)/\\Phi(z)`; direct where exact to
    rounding (z > -5, faster), through ``log_ndtr`` in the lower tail."""
    lc, lam = np.empty_like(z), np.empty_like(z)
    hi = z > -5
    zh, zl = z[hi], z[~hi]
    cdf = special.ndtr(zh)
    lc[hi] = np.log(cdf)
    lam[hi] = np.exp(-0.5 * zh**2) / (np.sqrt(2 * np.pi) * cdf)
    lc[~hi] = special.log_ndtr(zl)
    lam[~hi] = np.exp(-0.5 * zl**2 - 0.5 * np.log(2 * np.pi) - lc[~hi])
    return lc, lam


def censored_test(Y: np.ndarray, X: np.ndarray, coef: int, s2: np.ndarray, df_total: np.ndarray,
                  curves: DropoutCurves, lfc: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed likelihood-ratio t of coefficient ``coef`` under the censored model (module docstring).

    With ``lfc > 0`` the null is :math:`|\\beta| \\le` ``lfc`` (TREAT; McCarthy & Smyth 2009,
    doi:10.1093/bioinformatics/btp053): with :math:`t_\\pm` the signed roots of the likelihood
    ratios against :math:`\\beta = \\pm\\operatorname{sign}(\\hat\\beta)\\,` ``lfc``,
    :math:`p = P(T > t_+) + P(T > t_-)`, which is limma's ``treat`` when nothing is missing.

    Parameters
    ----------
    Y : ndarray, shape (n_features, n_samples)
        Features with at least one missing value (complete ones are limma's already).
    X : ndarray, shape (n_samples, n_coef)
    coef : int
        Column of ``X`` tested.
    s2, df_total : ndarray, shape (n_features,)
        limma's posterior variance and moderated-t degrees of freedom.
    curves : DropoutCurves
    lfc : float
        Fold-change threshold of the TREAT null (0: the ordinary test of :math:`\\beta = 0`).

    Returns
    -------
    t, p, beta : ndarray
        Signed root of the likelihood ratio (TREAT: of the nearer bound, 0 inside it), its p-value on
        ``df_total`` df, and the fitted coefficient ``coef`` (``-inf``-bound when only missing values
        inform it).
    """
    s2_typ = float(np.median(s2))
    zeta2 = np.maximum(curves.scale**2 - s2_typ, 0.25 * curves.scale**2)
    W = absent_group_weights(Y, X[:, coef])
    full, ll1, H = censored_loglik_fit(Y, X, s2, curves.rho, zeta2, weight=W)
    keep = np.delete(np.arange(X.shape[1]), coef)

    def fixed(value: np.ndarray) -> np.ndarray:
        """Largest log likelihood with coefficient ``coef`` held at ``value`` (per feature), started at the
        maximum of the full fit's quadratic approximation under that constraint."""
        shifted = full.copy()
        shifted[:, coef] -= value
        start = np.linalg.solve(H[:, keep][:, :, keep] + 1e-10 * np.eye(keep.size),
                                np.einsum("rij,rj->ri", H, shifted)[:, keep][:, :, None])[:, :, 0]
        offset = value[:, None] * X[None, :, coef] if np.any(value) else None
        return censored_loglik_fit(Y, X[:, keep], s2, curves.rho, zeta2, weight=W, beta0=start, offset=offset)[1]

    sign = np.sign(full[:, coef])
    if lfc <= 0:
        t = sign * np.sqrt(np.maximum(2 * (ll1 - fixed(np.zeros(len(Y)))), 0.0))
        return t, 2 * t_sf(np.abs(t), df_total), full[:, coef]
    sign[sign == 0] = 1.0
    near = np.sqrt(np.maximum(2 * (ll1 - fixed(sign * lfc)), 0.0))
    near[np.abs(full[:, coef]) < lfc] *= -1
    far = np.sqrt(np.maximum(2 * (ll1 - fixed(-sign * lfc)), 0.0))
    return sign * np.maximum(near, 0.0), t_sf(near, df_total) + t_sf(far, df_total), full[:, coef]


def absent_group_weights(Y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Weights of the censored terms: :math:`1/k` for the :math:`k` missing values of a group with no value.

    Dropouts of a feature within one group (a level of the tested factor) are not independent: a
    feature absent from a group's material, or never identified in its runs, is missing from every
    replicate at once (UPS1-in-yeast spike-in, three injections per condition: 12 yeast proteins
    missing from a whole condition where independent dropouts predict 0.2, while partly observed
    conditions fit them). So a group without a value counts as one censored observation (the design
    effect :math:`1 + (k-1)\\rho` of :math:`k` clustered observations at :math:`\\rho = 1`; Kish
    1965), while partly observed groups keep independent dropouts. With independent dropouts the test was
    anti-conservative on a real null (NAFLD plasma, healthy donors split 5 vs 5 at random: 31-58 % of
    the features detected in one half only had p < 0.05; with these weights none did, and 4-8 % of
    all features with missing values did).

    Parameters
    ----------
    Y : ndarray, shape (n_features, n_samples)
        NaN for missing.
    groups : array-like, shape (n_samples,)
        Group of each sample.
    """
    obs = np.isfinite(Y)
    groups = np.asarray(groups)
    W = np.ones(Y.shape)
    for g in np.unique(groups):
        cols = groups == g
        none = ~obs[:, cols].any(1)
        W[np.ix_(none, cols)] = 1.0 / cols.sum()
    return W
