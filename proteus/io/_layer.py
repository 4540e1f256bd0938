"""Build one bulk AnnData layer from a samples x features table (shared by every matrix reader)."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd

from proteus import genesets
from proteus.io._text import ReadProblem
from proteus.io.modality import site_gene
from proteus.io.organism import organism_from_ids
from proteus.io.values import coerce_numeric, to_log_scale

__all__ = ["build_layer", "unique_ids", "first_token", "peptide_counts", "PEPTIDE_COUNT_COLUMNS"]

# Per-feature evidence counts, first match wins: MaxQuant, FragPipe, DIA-NN (>= 1.9 pg_matrix).
_ACCESSION = re.compile(r"^(?:[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2})(?:-\d+)?(?![A-Z0-9])")
"""A UniProt accession at the start of an id, also when a lab tags it (``P02768ups``, ``P04637-2_spike``)."""
PEPTIDE_COUNT_COLUMNS = ("Razor + unique peptides", "Peptides", "Combined Total Peptides", "N.Sequences")


def first_token(s: object, sep: str = ";") -> str | None:
    """First entry of a ``;``-separated list (MaxQuant/DIA-NN gene and protein columns); None if empty."""
    if s is None or (isinstance(s, float) and np.isnan(s)):
        return None
    t = str(s).split(sep)[0].strip()
    return t or None


def peptide_counts(df: pd.DataFrame, notes: list[str]) -> np.ndarray | None:
    """Peptides (or precursors) per feature from the first of :data:`PEPTIDE_COUNT_COLUMNS` present.

    Kept in ``var["n_peptides"]`` so that differential tests can make the variance prior depend on
    the evidence behind each value (DEqMS; Zhu et al. 2020, doi:10.1074/mcp.TIR119.001646).
    """
    col = next((c for c in PEPTIDE_COUNT_COLUMNS if c in df), None)
    if col is None:
        return None
    counts = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    notes.append(f"peptide counts from {col!r} kept as var['n_peptides']")
    return counts


def unique_ids(ids: list[str], notes: list[str], what: str = "feature") -> list[str]:
    """Make ids unique by suffixing repeats ``_dup2``, ``_dup3`` (noted)."""
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        n = seen.get(i, 0) + 1
        seen[i] = n
        out.append(i if n == 1 else f"{i}_dup{n}")
    n_dup = sum(v - 1 for v in seen.values())
    if n_dup:
        examples = [k for k, v in seen.items() if v > 1][:3]
        notes.append(f"{n_dup} duplicated {what} id(s) made unique with _dupN suffixes (e.g. {', '.join(examples)})")
    return out


def build_layer(
    values: pd.DataFrame,
    var: pd.DataFrame,
    *,
    kind: str,
    source: str,
    notes: list[str],
    intensities: bool = False,
    obs: pd.DataFrame | None = None,
    organism: str | None = None,
) -> ad.AnnData:
    """samples x features values -> AnnData following the :mod:`proteus.study` conventions.

    Parameters
    ----------
    values
        samples x features; index = sample ids, columns = feature ids (unique).
    var
        Feature annotation indexed like ``values.columns``. Where ``gene`` is missing it becomes
        the site's gene (site layers), else the symbol the shipped UniProt map gives for the protein
        id, else, when the input has no gene column, the feature id unless it is a UniProt
        accession; otherwise None (the feature has no gene; :mod:`proteus.stats.features`).
    kind
        Modality kind (``uns["modality"]``).
    source
        File name relative to the data root (``uns["source"]``).
    notes
        Receives messages about coercion, dropped rows/columns and the log transform.
    intensities
        Values are linear MS intensities (zeros -> NaN, log2) regardless of the heuristic.
    obs
        Optional sample annotation indexed like ``values.index``.
    organism
        Species named by the feature annotation (``uns["organism"]``; see :mod:`proteus.io.organism`);
        when None, a protein layer whose ids are mostly not human is marked as another organism.

    Raises
    ------
    ReadProblem
        No numeric value at all.
    """
    num = coerce_numeric(values, notes)
    num.index = num.index.astype(str)
    num.columns = num.columns.astype(str)
    if num.isna().all(axis=None):
        raise ReadProblem("no numeric values (every cell is missing or non-numeric)")
    x, scale, transform = to_log_scale(num.to_numpy(dtype="float64"), kind, notes, intensities=intensities)
    num = pd.DataFrame(x, index=num.index, columns=num.columns)
    all_na_s = num.isna().all(axis=1)
    if all_na_s.all():
        raise ReadProblem("no usable values (every value is missing, zero or negative)")
    if all_na_s.any():
        notes.append(f"{int(all_na_s.sum())} sample(s) with no values dropped: {', '.join(num.index[all_na_s][:5])}")
        num = num.loc[~all_na_s]
    all_na_f = num.isna().all(axis=0)
    if all_na_f.any():
        notes.append(f"{int(all_na_f.sum())} feature(s) with no values dropped")
        num = num.loc[:, ~all_na_f]
    x = num.to_numpy(dtype="float64")
    var = var.reindex(num.columns).copy()
    var.index = var.index.astype(str)
    named = "gene" in var  # the reader found a gene column: where it is empty, the input names no gene
    if not named:
        var["gene"] = np.nan
    genes = var["gene"].astype(object)
    missing = genes.isna() | (genes.astype(str).str.strip() == "")
    if kind in ("phosphoproteomics", "acetylproteomics"):
        fallback: list[str | None] = [site_gene(f) for f in var.index]
    else:  # ids that are not protein accessions are gene names when the input has no gene column
        fallback = [None if named or _ACCESSION.match(f) else f for f in var.index]
        if missing.any():
            fallback = _mapped_genes(var, fallback, missing.to_numpy(), notes)
    var["gene"] = pd.Series(np.where(missing, fallback, genes.astype(str)), index=var.index, dtype=object)
    var["gene"] = var["gene"].where(var["gene"].notna(), None)
    if "uniprot" in var:
        var["uniprot"] = var["uniprot"].astype(object).where(var["uniprot"].notna(), None)
    var = var.astype({c: str for c in var.columns if var[c].dtype == object and var[c].notna().all()})
    obs_df = pd.DataFrame(index=num.index) if obs is None else obs.reindex(num.index).copy()
    obs_df.index = obs_df.index.astype(str)
    a = ad.AnnData(X=x, obs=obs_df, var=var)
    a.uns.update({"modality": kind, "level": "sample", "source": source, "scale": scale, "transform": transform})
    if organism is None and kind == "proteomics":
        ids = var["uniprot"] if "uniprot" in var else var.index
        organism = organism_from_ids(var["gene"], ids, notes)
    if organism:
        a.uns["organism"] = organism
    if a.n_obs == 1:
        notes.append("only 1 sample")
    return a


def _mapped_genes(var: pd.DataFrame, fallback: list[str | None], missing: np.ndarray, notes: list[str]) -> list[str | None]:
    """Gene symbols from the shipped human id map for features whose input names no gene but whose
    protein id starts with a UniProt accession; other features keep ``fallback``."""
    ids = var["uniprot"] if "uniprot" in var else pd.Series(var.index, index=var.index)
    heads = [m.group(0) if isinstance(x, str) and (m := _ACCESSION.match(x)) else None for x in ids.astype(object)]
    todo = [i for i, h in enumerate(heads) if missing[i] and h]
    if not todo:
        return fallback
    symbols = genesets.to_symbols([heads[i] for i in todo])
    out = list(fallback)
    for i, sym in zip(todo, symbols):
        if sym:
            out[i] = sym
    n = sum(bool(s) for s in symbols)
    if n:
        notes.append(f"{n} feature(s) without a gene name in the input labelled by the shipped human UniProt map")
    return out
