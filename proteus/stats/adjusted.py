r"""The t of one variable in a linear model with covariates, per feature on observed values, for many
labellings at once; and label permutations restricted to blocks.

For each feature :math:`y` (a column of ``Y``; its missing values drop those samples) and each
column :math:`g` of ``G`` (a case indicator, or a numeric partner), the model

.. math::

    y = \beta_0 + \beta g + Z\gamma + \varepsilon

is fitted by least squares, and :math:`t = \hat\beta / \operatorname{se}(\hat\beta)` on
:math:`n - 1 - \operatorname{rank}([1, Z])` residual df. By Frisch-Waugh-Lovell, with
:math:`r_g, r_y` the residuals of :math:`g, y` on :math:`[1, Z]` over the feature's observed samples,
:math:`\hat\beta = r_g^\top r_y / r_g^\top r_g` and the residual sum of squares is
:math:`r_y^\top r_y - (r_g^\top r_y)^2 / r_g^\top r_g`. Every term is a sum over observed samples,
so the sums come from matrix products with the observation mask and many labellings (a permutation
null) cost one product each. With a numeric :math:`g` the t is the partial-correlation t
(:math:`r = t/\sqrt{t^2 + \nu}`).

Frisch R, Waugh FV (1933). Partial time regressions as compared with individual trends.
Econometrica 1:387-401. doi:10.2307/1907330

:func:`block_permutations` permutes labels within blocks (exchangeability blocks, Winkler et al.
2014, doi:10.1016/j.neuroimage.2014.01.060): a label's association with the blocking factor (a batch,
a plex) is kept in every permutation, so the null does not reward a batch effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AdjustedStats", "adjusted_t", "block_permutations"]


@dataclass
class AdjustedStats:
    """Per feature (rows) and labelling (columns): the coefficient of the labelling, its standard error,
    t and residual df (NaN where not estimable: the labelling is constant or aliased with the covariates
    over the feature's observed samples, or no residual df is left)."""

    coef: np.ndarray
    se: np.ndarray
    t: np.ndarray
    df: np.ndarray


def adjusted_t(Y: np.ndarray, G: np.ndarray, Z: np.ndarray | None, chunk: int = 256) -> AdjustedStats:
    """Least-squares t of ``G`` in ``y ~ 1 + g + Z`` for every column ``y`` of ``Y`` (see the module docstring).

    Parameters
    ----------
    Y
        Samples x features, NaN = missing.
    G
        Samples (one labelling) or samples x labellings, finite.
    Z
        Samples x covariate columns (no intercept), finite; ``None`` for none.
    chunk
        Missingness patterns handled at once (features sharing a pattern share :math:`[1, Z]`'s projection:
        TMT layers miss whole plexes, so a layer holds a few thousand patterns, not one per feature).

    Returns
    -------
    :class:`AdjustedStats` of shape features x labellings.
    """
    Y = np.asarray(Y, dtype=float)
    Y = Y[:, None] if Y.ndim == 1 else Y
    G = np.asarray(G, dtype=float)
    G = G[:, None] if G.ndim == 1 else G
    n, b = Y.shape[0], G.shape[1]
    Z1 = np.ones((n, 1)) if Z is None or np.size(Z) == 0 else np.column_stack([np.ones(n), np.asarray(Z, dtype=float)])
    q = Z1.shape[1]
    out = [np.full((Y.shape[1], b), np.nan) for _ in range(4)]
    obs = np.isfinite(Y)
    patterns, which = np.unique(obs.T, axis=0, return_inverse=True)  # patterns x samples; each feature's pattern
    which = np.asarray(which).ravel()
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(len(patterns) + 1))
    ZZ = (Z1[:, :, None] * Z1[:, None, :]).reshape(n, q * q)
    for lo in range(0, len(patterns), chunk):
        P = patterns[lo:lo + chunk].astype(float)  # c patterns x samples
        c = len(P)
        w, V = np.linalg.eigh((P @ ZZ).reshape(c, q, q))  # Z'Z over each pattern's samples
        keep = w > w[:, -1:] * q * np.finfo(float).eps * 10
        W = V * np.where(keep, 1 / np.sqrt(np.where(keep, w, 1.0)), 0.0)[:, None, :]  # W W' = pinv(Z'Z)
        U = np.matmul(W.transpose(0, 2, 1), ((P.T[:, :, None] * Z1[:, None, :]).reshape(n, c * q).T @ G).reshape(c, q, b))
        gg = P @ G**2
        rgg_p = gg - (U**2).sum(1)  # g'g - g'Z pinv(Z'Z) Z'g per pattern and labelling
        df_p = P.sum(1) - keep.sum(1) - 1.0
        members = order[bounds[lo]:bounds[min(lo + chunk, len(patterns))]]
        for f0 in range(0, len(members), 512):  # features of these patterns, a bounded block at a time
            feats = members[f0:f0 + 512]
            pat = which[feats] - lo
            Y0 = np.where(obs[:, feats], Y[:, feats], 0.0)
            uy = np.einsum("jkl,jk->jl", W[pat], Y0.T @ Z1)
            with np.errstate(invalid="ignore", divide="ignore"):
                rgg = rgg_p[pat]
                rgy = Y0.T @ G - np.einsum("jkb,jk->jb", U[pat], uy)
                ryy = (Y0**2).sum(0) - (uy**2).sum(1)
                df = df_p[pat]
                ok = (rgg > 1e-10 * np.maximum(gg[pat], 1e-300)) & (df[:, None] > 0)
                coef = rgy / rgg
                rss = np.maximum(ryy[:, None] - rgy**2 / rgg, 0.0)
                se = np.sqrt(rss / df[:, None] / rgg)
                t = coef / se
            ok &= np.isfinite(t)
            for o, v in zip(out, (coef, se, t, np.broadcast_to(df[:, None], coef.shape))):
                o[feats] = np.where(ok, v, np.nan)
    return AdjustedStats(*out)


def block_permutations(blocks: np.ndarray | None, n: int, n_perm: int, seed: int) -> np.ndarray:
    """``n_perm`` seeded permutations of ``n`` sample positions (rows), each shuffling only within a block.

    ``blocks`` gives each sample's block code (``None``: one block, free permutation). Row ``b`` is
    the index array to take the labels with (``labels[perm[b]]``).
    """
    out = np.empty((n_perm, n), dtype=int)
    codes = np.zeros(n, dtype=int) if blocks is None else np.unique(np.asarray(blocks).astype(str), return_inverse=True)[1]
    members = [np.flatnonzero(codes == c) for c in np.unique(codes)]
    for b in range(n_perm):
        rng = np.random.default_rng([seed, 7919, b])
        perm = np.arange(n)
        for idx in members:
            perm[idx] = idx[rng.permutation(len(idx))]
        out[b] = perm
    return out
