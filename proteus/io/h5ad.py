"""``.h5ad`` files -> a cell-level (single-cell) or sample-level layer.

Cell level when the observations look like cells: cell barcodes as obs names, a sample / donor /
batch column with repeated values, or more than 2,000 observations. ``obs["sample_id"]`` is then
taken from that column, or ``"all"`` when there is none.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from proteus.io._text import ReadProblem
from proteus.io.modality import detect_modality

__all__ = ["read_h5ad"]

_SAMPLE_COL = re.compile(r"^(sample_?id|sample|donor(_?id)?|patient(_?id)?|subject(_?id)?|individual|batch|orig\.ident)$", re.I)
_BARCODE = re.compile(r"^[ACGTN]{8,}(-\d+)?$")


def read_h5ad(path: Path, source: str, notes: list[str]) -> ad.AnnData:
    """Read an h5ad file into memory and set the PROTEUS ``uns`` keys (see module docstring)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # old-format notices from files written by older anndata
            a = ad.read_h5ad(path)
    except Exception as e:  # h5py raises OSError, KeyError, ValueError for damaged files
        raise ReadProblem(f"unreadable h5ad ({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''})") from None
    if a.n_obs == 0 or a.n_vars == 0:
        raise ReadProblem(f"empty AnnData ({a.n_obs} x {a.n_vars})")
    a.obs_names = a.obs_names.astype(str)
    a.var_names = a.var_names.astype(str)
    scol = next((c for c in a.obs.columns if _SAMPLE_COL.match(str(c))), None)
    barcodes = np.mean([bool(_BARCODE.match(n)) for n in a.obs_names[:500]]) > 0.5
    repeated = scol is not None and a.obs[scol].nunique() < a.n_obs
    cell = barcodes or repeated or a.n_obs > 2000
    if sp.issparse(a.X):
        a.X = a.X.astype("float64")
    else:
        a.X = np.asarray(a.X, dtype="float64")
    if "gene" not in a.var:
        a.var["gene"] = a.var_names
    if cell:
        a.obs["sample_id"] = a.obs[scol].astype(str) if scol else "all"
        a.obs["sample_id"] = a.obs["sample_id"].astype(str)
        how = f"from obs[{scol!r}]" if scol else "none found: 'all'"
        notes.append(f"cell level: {a.n_obs} cells, sample_id {how}")
        a.uns.update({"modality": "single_cell", "level": "cell"})
    else:
        dense = a.X[:200, :5000]
        dense = dense.toarray() if sp.issparse(dense) else dense
        kind, reason = detect_modality(source.rsplit("/", 1)[-1], a.var_names, dense)
        notes.append(f"sample level: {a.n_obs} samples; modality {kind} ({reason})")
        a.uns.update({"modality": kind, "level": "sample"})
    a.uns["source"] = source
    v = a.X.data if sp.issparse(a.X) else a.X
    v = v[np.isfinite(v)] if v.size else v
    if not v.size or (v.min() >= 0 and np.median(v) > 100):
        a.uns["scale"] = "linear"
    else:
        a.uns["scale"] = "centred" if (v.min() < 0 and abs(np.median(v)) < 1) else "log2"
    a.uns["transform"] = "none"
    return a
