r"""Gehan's generalised Wilcoxon test for left-censored values (missing = below detection), per feature.

A value missing from a label-free run is read as *below every observed value of that feature*
(left-censored at the detection limit). Gehan's test scores each pair of samples as greater,
smaller or undecided; with one common censoring point below all observations this is the
Mann-Whitney-Wilcoxon test with every missing value tied at the lowest rank:

.. math::

    U = R_1 - \frac{n_1(n_1+1)}{2},\qquad
    z = \frac{U - n_1 n_2/2}{\sqrt{\frac{n_1 n_2}{12}\left(n + 1 - \frac{\sum_g (t_g^3 - t_g)}{n(n-1)}\right)}}

where :math:`R_1` is the rank sum of the case group (average ranks over all :math:`n` samples) and
:math:`t_g` the size of tie group :math:`g` (the missing values form one). Two-sided p from the
normal approximation, no continuity correction. :math:`U / (n_1 n_2)` is the concordance
:math:`P(x_{case} > x_{control}) + \tfrac12 P(\text{tie})`, above 0.5 when the case group is higher.
Ranks are taken once; rank sums of many labellings are one matrix product with the label matrix
(permutation nulls), as :mod:`proteus.stats.welch` does for Welch's t.

Gehan EA (1965). A generalized Wilcoxon test for comparing arbitrarily singly-censored samples.
Biometrika 52:203-223. doi:10.1093/biomet/52.1-2.203
Mann HB, Whitney DR (1947). On a test of whether one of two random variables is stochastically larger
than the other. Ann Math Stat 18:50-60. doi:10.1214/aoms/1177730491
Helsel DR (2012). Statistics for Censored Environmental Data Using Minitab and R, 2nd ed. Wiley, ch. 9
(rank tests of data with non-detects).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["GehanStats", "censored_ranks", "gehan_wilcoxon"]


@dataclass
class GehanStats:
    """Per feature (rows) and labelling (columns): ``z`` (positive when the case group ranks higher;
    NaN where a group is empty or every value ties), two-sided ``p`` and the ``concordance``
    :math:`U/(n_1 n_2)`."""

    z: np.ndarray
    p: np.ndarray
    concordance: np.ndarray


def censored_ranks(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks of each row of ``Y`` (features x samples) with missing values tied below every
    observed value, and each row's tie term :math:`\\sum_g (t_g^3 - t_g)`."""
    Y = np.where(np.isfinite(Y), Y, -np.inf)
    R = stats.rankdata(Y, axis=1)
    S = np.sort(Y, axis=1)
    new = np.ones(S.shape, dtype=bool)
    new[:, 1:] = S[:, 1:] != S[:, :-1]
    size = np.bincount(np.cumsum(new.ravel()) - 1).astype(float)  # tie groups never span rows: each row opens one
    row = np.repeat(np.arange(S.shape[0]), new.sum(1))
    return R, np.bincount(row, weights=size**3 - size, minlength=S.shape[0])


def gehan_wilcoxon(Y: np.ndarray, case: np.ndarray) -> GehanStats:
    """Gehan's test of each row of ``Y`` (features x samples, NaN = below detection) for each labelling.

    ``case`` is one boolean per sample (results are 1-D) or a samples x k matrix of case indicators,
    one column per labelling (results are features x k).
    """
    Y = np.asarray(Y, dtype=float)
    Y = Y[None, :] if Y.ndim == 1 else Y
    R, ties = censored_ranks(Y)
    W = np.asarray(case, dtype=float)
    one = W.ndim == 1
    W = W[:, None] if one else W
    n = Y.shape[1]
    n1 = W.sum(0)
    n2 = n - n1
    U = R @ W - n1 * (n1 + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        var = n1 * n2 / 12 * ((n + 1) - ties[:, None] / (n * (n - 1)))
        z = np.where(var > 0, (U - n1 * n2 / 2) / np.sqrt(np.where(var > 0, var, 1.0)), np.nan)
        conc = np.where(n1 * n2 > 0, U / (n1 * n2), np.nan)
    p = np.where(np.isfinite(z), 2 * stats.norm.sf(np.abs(z)), np.nan)
    return GehanStats(*(v[:, 0] for v in (z, p, conc))) if one else GehanStats(z, p, conc)
