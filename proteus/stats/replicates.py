r"""Are a contrast's replicates repeat measurements of one sample? Judged from the within-group spread.

When each group is one sample measured several times (repeat injections or preps of one digest),
the within-group variance is measurement noise only: differences between independent samples
(biological variation, and the sample preparation that dominates technical variance; Piehowski
et al. 2013, extraction 72 % vs run-to-run 16 % of it) are not in it, so a moderated t calls
small prep-to-prep shifts significant, and the conclusions do not extend beyond the samples
measured (Oberg & Vitek 2009). limma's authors recommend testing against a fold-change threshold
(TREAT; McCarthy & Smyth 2009) rather than cutting fold changes after the test.

The rule: label-free intensities whose typical within-group SD (log2) is below that of a 15 %
coefficient of variation, the boundary between repeat measurements of one label-free sample
(CV typically 5-10 %) and independent biological samples (typically 20-40 %), are treated as
technical replicates and tested against a 1.5-fold change (a commonly published minimum fold
change for differential proteins).

The typical within-group variance is the median over features of the pooled within-group variance
:math:`s_i^2` (features with two values or more in a group and a residual degree of freedom), each
divided by the median of :math:`s^2/\sigma^2 = \chi^2_{d_i}/d_i` so that the median estimates
:math:`\sigma^2` whatever the replicate numbers. Shifts of whole samples are removed first, by
centring each sample on its median over the features observed in every sample: they are
normalisation's business, and a median over each sample's own values is not a fair one where
missingness depends on abundance (a run with many dropouts lost low values, so its median rises:
in the UPS1 spike-in the 0.5 fmol run missing 160 proteins sits 0.38 log2 above the others by
that median, within 0.03 of them on the 688 proteins every run saw).

References
----------
Piehowski PD et al. (2013) Sources of technical variability in quantitative LC-MS proteomics:
human brain tissue sample analysis. J Proteome Res 12:2128-2137. doi:10.1021/pr301146m
Oberg AL, Vitek O (2009) Statistical design of quantitative mass spectrometry-based proteomic
experiments. J Proteome Res 8:2144-2156. doi:10.1021/pr8010099
McCarthy DJ, Smyth GK (2009) Testing significance relative to a fold-change threshold is a TREAT.
Bioinformatics 25:765-771. doi:10.1093/bioinformatics/btp053
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["TECHNICAL_CV", "TREAT_FOLD", "cv_to_log2_sd", "within_group_sd", "technical_replicates"]

TECHNICAL_CV = 0.15
"""Coefficient of variation below which replicates are repeat measurements of one sample."""
TREAT_FOLD = 1.5
"""Fold change tested against when they are (TREAT threshold ``log2(1.5)``)."""


def cv_to_log2_sd(cv: float) -> float:
    """SD of log2 values of a log-normal quantity with coefficient of variation ``cv``:
    :math:`\\sqrt{\\ln(1 + cv^2)} / \\ln 2`."""
    return float(np.sqrt(np.log1p(cv**2)) / np.log(2))


MIN_SHARED = 50
"""Features observed in every sample needed to centre the samples on them (else no centring)."""


def within_group_sd(Y: np.ndarray, groups: np.ndarray) -> tuple[float, int]:
    """Typical within-group SD of log values ``Y`` (features x samples, NaN = missing) for sample labels
    ``groups``, and the number of features it is taken over (see the module docstring)."""
    groups = np.asarray(groups)
    shared = np.isfinite(Y).all(1)
    if shared.sum() >= MIN_SHARED:
        Y = Y - np.median(Y[shared], 0)
    ss = np.zeros(Y.shape[0])
    df = np.zeros(Y.shape[0])
    for lv in np.unique(groups):
        y = Y[:, groups == lv]
        n = np.isfinite(y).sum(1)
        ok = n >= 2
        dev = y[ok] - np.nanmean(y[ok], 1, keepdims=True)
        ss[ok] += np.nansum(dev**2, 1)
        df[ok] += n[ok] - 1
    use = df > 0
    if not use.any():
        return float("nan"), 0
    d = df[use]
    s2 = ss[use] / d / (special.chdtri(d, 0.5) / d)  # chi2 median (chdtri: inverse upper tail)
    return float(np.sqrt(np.median(s2))), int(use.sum())


def technical_replicates(Y: np.ndarray, groups: np.ndarray) -> tuple[bool, float]:
    """Whether the typical within-group SD of ``Y`` is below that of :data:`TECHNICAL_CV`, and the SD."""
    sd, n = within_group_sd(Y, groups)
    return bool(n > 0 and sd < cv_to_log2_sd(TECHNICAL_CV)), sd
