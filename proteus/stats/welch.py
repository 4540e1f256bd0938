r"""Welch's unequal-variance t (and Student's pooled-variance t) of each feature, on observed values.

.. math::

    t = \frac{\bar x_1 - \bar x_2}{\sqrt{s_1^2/n_1 + s_2^2/n_2}},\qquad
    \nu = \frac{(s_1^2/n_1 + s_2^2/n_2)^2}{(s_1^2/n_1)^2/(n_1-1) + (s_2^2/n_2)^2/(n_2-1)}

(Satterthwaite degrees of freedom). Sums over the observed values of the case group come from matrix
products with the case indicators (the control group's are the totals minus these), so many labellings (permutation nulls) are tested in one call;
each feature is centred on its observed mean first, which keeps the one-pass variance as exact as
the two-pass one.

Welch BL (1947). The generalization of 'Student's' problem when several different population
variances are involved. Biometrika 34:28-35. doi:10.1093/biomet/34.1-2.28
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WelchStats", "welch_t", "student_t"]


@dataclass
class WelchStats:
    """Per feature (rows) and labelling (columns): difference of means case - control and its standard
    error (NaN where a group has fewer than two values), the t and its df (Welch / Satterthwaite, or
    Student's pooled; NaN there and where ``se`` is 0)."""

    diff: np.ndarray
    se: np.ndarray
    t: np.ndarray
    df: np.ndarray


def _group_sums(Y: np.ndarray, case: np.ndarray):
    """Per feature and labelling: observed count, mean and sum of squared deviations of the case and
    control groups, from matrix products with the case indicators (the control's are the totals minus
    the case's). Each feature is centred on its observed mean first, which keeps the one-pass sums of
    squares as exact as the two-pass ones. ``one`` says whether ``case`` was a single labelling."""
    Y = np.asarray(Y, dtype=float)
    obs = np.isfinite(Y)
    centre = np.where(obs, Y, 0.0).sum(1) / np.maximum(obs.sum(1), 1)
    Y0 = np.where(obs, Y - centre[:, None], 0.0)
    W = np.asarray(case, dtype=float)
    one = W.ndim == 1
    W = W[:, None] if one else W
    O, Y2 = obs.astype(float), Y0**2
    n1, s1, q1 = O @ W, Y0 @ W, Y2 @ W
    n2, s2, q2 = O.sum(1)[:, None] - n1, Y0.sum(1)[:, None] - s1, Y2.sum(1)[:, None] - q1
    with np.errstate(invalid="ignore", divide="ignore"):
        m1, m2 = s1 / n1, s2 / n2
        ss1, ss2 = np.maximum(q1 - n1 * m1**2, 0.0), np.maximum(q2 - n2 * m2**2, 0.0)  # rounding below zero for a constant group
    return n1, m1, ss1, n2, m2, ss2, one


def _stats(n1, n2, diff, se, df, one: bool) -> WelchStats:
    few = (n1 < 2) | (n2 < 2)
    undefined = few | ~(se > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = diff / se
    out = [np.where(few, np.nan, diff), np.where(few, np.nan, se), np.where(undefined, np.nan, t), np.where(undefined, np.nan, df)]
    return WelchStats(*(v[:, 0] for v in out)) if one else WelchStats(*out)


def welch_t(Y: np.ndarray, case: np.ndarray) -> WelchStats:
    """Welch's t of each row of ``Y`` (features x samples, NaN = missing) for each labelling.

    ``case`` is one boolean per sample (results are 1-D) or a samples x k matrix of case indicators,
    one column per labelling (results are features x k).
    """
    n1, m1, ss1, n2, m2, ss2, one = _group_sums(Y, case)
    with np.errstate(invalid="ignore", divide="ignore"):
        a, b = ss1 / (n1 - 1) / n1, ss2 / (n2 - 1) / n2
        se = np.sqrt(a + b)
        df = (a + b) ** 2 / (a**2 / (n1 - 1) + b**2 / (n2 - 1))
    return _stats(n1, n2, m1 - m2, se, df, one)


def student_t(Y: np.ndarray, case: np.ndarray) -> WelchStats:
    r"""Student's two-sample t with the pooled variance, per row of ``Y`` and labelling (as :func:`welch_t`).

    .. math:: t = \frac{\bar x_1 - \bar x_2}{s_p\sqrt{1/n_1 + 1/n_2}},\qquad
              s_p^2 = \frac{\sum_1 (x - \bar x_1)^2 + \sum_2 (x - \bar x_2)^2}{n_1 + n_2 - 2},\qquad \nu = n_1 + n_2 - 2

    The t of limma's two-group linear model before moderation (Smyth 2004,
    doi:10.2202/1544-6115.1027). Unlike Welch's, its standard error never rests on one group alone, so
    a labelling that puts one group's values all on a tie (a detection floor) does not give a spurious
    near-zero p.
    """
    n1, m1, ss1, n2, m2, ss2, one = _group_sums(Y, case)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = n1 + n2 - 2
        se = np.sqrt((ss1 + ss2) / df * (1 / n1 + 1 / n2))
    return _stats(n1, n2, m1 - m2, se, df, one)
