"""Numeric clean-up of a samples x features table: coercion, infinities, zeros, log2.

The order follows Perseus / AlphaPeptStats: non-numeric -> NaN, +-inf -> NaN, then for linear
intensities zeros (and negatives) -> NaN, then log2. In MS abundances already on a log scale, an
exact 0 is a missing value too (a log2 abundance of 0 is an intensity of 1).

``uns["scale"]`` after :func:`to_log_scale`:

- ``"log2"``: log2 abundances (transformed here, or already on a log scale when read);
- ``"centred"``: values centred on 0 (log ratios such as CPTAC TMT ratios, copy-number log ratios);
- ``"linear"``: left as read (not intensity-like; e.g. scores).

``uns["transform"]`` says what was done here: ``"log2"``, ``"log2(x+1)"`` or ``"none"``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["coerce_numeric", "to_log_scale", "INTENSITY_KINDS"]

INTENSITY_KINDS = ("proteomics", "phosphoproteomics", "acetylproteomics")


def coerce_numeric(df: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """All cells as float64; non-numeric cells and infinities become NaN (counted in ``notes``)."""
    if all(k in "fiub" for k in df.dtypes.map(lambda d: d.kind)):
        res = df.astype("float64")
        bad = 0
        cols = []
    else:
        res = None
        cols = df.columns
    out = {}
    bad = 0
    for c in cols:
        col = df[c]
        if col.dtype.kind in "fiub":
            out[c] = col.astype("float64")
            continue
        num = pd.to_numeric(col, errors="coerce")
        bad += int((num.isna() & col.notna()).sum())
        out[c] = num.astype("float64")
    if res is None:
        res = pd.DataFrame(out, index=df.index)
        res.columns = df.columns
    if bad:
        notes.append(f"{bad} non-numeric cell(s) set to NaN")
    arr = res.to_numpy()
    n_inf = int(np.isinf(arr).sum())
    if n_inf:
        res = res.replace([np.inf, -np.inf], np.nan)
        notes.append(f"{n_inf} infinite value(s) set to NaN")
    return res


def to_log_scale(x: np.ndarray, kind: str, notes: list[str], *, intensities: bool = False) -> tuple[np.ndarray, str, str]:
    """Put a float matrix on a log scale when it holds linear values.

    Parameters
    ----------
    x
        samples x features, float64, NaN for missing.
    kind
        Modality kind; MS kinds treat zeros as missing, transcriptomics uses ``log2(x+1)``.
    notes
        Messages about what was changed are appended here.
    intensities
        The caller knows these are linear MS intensities (MaxQuant, DIA-NN, FragPipe).

    Returns
    -------
    (x, scale, transform)
    """
    x = np.array(x, dtype="float64", copy=True)
    v = x[np.isfinite(x)]
    if v.size > 1_000_000:  # the heuristics need only a summary of the values
        v = v[:: v.size // 1_000_000]
    if v.size == 0:
        return x, "linear", "none"
    med = float(np.median(v))
    frac_nonneg = float(np.mean(v >= 0))
    linear = intensities or (med > 100 and frac_nonneg >= 0.99)
    if not linear:
        scale = "centred" if (abs(med) < 1 and v.min() < 0) else ("log2" if v.max() < 64 else "linear")
        zero = x == 0
        if scale == "log2" and kind in INTENSITY_KINDS and zero.any():
            x[zero] = np.nan  # a log abundance of exactly 0 is a missing value written as 0
            notes.append(f"{int(zero.sum())} zero(s) in log-scale abundances set to NaN (missing)")
        return x, scale, "none"
    if kind == "transcriptomics" and not intensities:
        neg = x < 0
        if neg.any():
            x[neg] = np.nan
            notes.append(f"{int(neg.sum())} negative value(s) set to NaN")
        notes.append("linear values (median > 100): log2(x+1) applied")
        return np.log2(x + 1), "log2", "log2(x+1)"
    zero = x == 0
    neg = x < 0
    if zero.any():
        x[zero] = np.nan
        notes.append(f"{int(zero.sum())} zero intensities set to NaN")
    if neg.any():
        x[neg] = np.nan
        notes.append(f"{int(neg.sum())} negative intensities set to NaN")
    pos = v[v > 0]
    notes.append(f"linear intensities (median of positive values {np.median(pos) if pos.size else 0:.3g}): log2 applied")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log2(x), "log2", "log2"
