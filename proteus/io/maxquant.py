"""MaxQuant ``proteinGroups.txt`` -> proteomics layer.

Isobaric (TMT/iTRAQ) tables: the ``Reporter intensity corrected <channel> <plex>`` columns are the
samples (``<channel> <plex>``), with ``plex`` and ``channel`` as sample annotation (the plex is a
technical factor); the per-plex ``Intensity <plex>`` sums are not samples. Label-free tables:
LFQ intensity columns are preferred, else ``Intensity <sample>`` columns. Rows flagged ``+`` in
``Reverse``, ``Potential contaminant`` (older versions: ``Contaminant``) or ``Only identified by
site`` are removed first (Perseus / AlphaPeptStats order), then zeros -> NaN and log2. Of the
removed non-decoy rows whose ``Fasta headers`` name an organism, ``uns["excluded_features"]`` keeps
name, organism and reason (a spiked protein that also matches the contaminant list is still counted
as spiked: :mod:`proteus.policy.controls`).
Feature ids are the first gene of ``Gene names``, else the ``GN=`` gene of the first
``Fasta headers`` entry, else the first ``Majority protein IDs`` entry;
``Razor + unique peptides`` (else ``Peptides``) is kept as ``var["n_peptides"]``.
"""

from __future__ import annotations

import re

import anndata as ad
import pandas as pd

from proteus.io._layer import build_layer, first_token, peptide_counts, unique_ids
from proteus.io._text import RawTable, ReadProblem
from proteus.io.organism import annotate_organisms, named_entry

__all__ = ["is_maxquant", "read_maxquant", "FILTER_COLUMNS"]

FILTER_COLUMNS = ("Reverse", "Potential contaminant", "Contaminant", "Only identified by site")
REPORTER = "Reporter intensity corrected "
_GN = re.compile(r"\bGN=(\S+)")


def is_maxquant(columns: list[str]) -> bool:
    """A proteinGroups-like header: protein id column plus ``LFQ intensity`` / ``Intensity`` columns."""
    cols = set(columns)
    has_ids = bool(cols & {"Protein IDs", "Majority protein IDs"})
    return has_ids and any(c.startswith(("LFQ intensity ", "Intensity ", REPORTER)) for c in columns)


def _intensity_columns(columns: list[str]) -> tuple[list[str], str]:
    reporter = [c for c in columns if c.startswith(REPORTER) and c[len(REPORTER):].strip()]
    if reporter:
        return reporter, REPORTER
    lfq = [c for c in columns if c.startswith("LFQ intensity ")]
    if lfq:
        return lfq, "LFQ intensity "
    return [c for c in columns if c.startswith("Intensity ")], "Intensity "


def read_maxquant(table: RawTable, notes: list[str], kind: str = "proteomics") -> ad.AnnData:
    """Read a proteinGroups table (see module docstring); removed rows are counted in ``notes``."""
    df = table.df
    keep = pd.Series(True, index=df.index)
    reason = pd.Series("", index=df.index)
    for col in FILTER_COLUMNS:
        if col in df:
            flagged = df[col].astype(str).str.strip() == "+"
            if flagged.any():
                notes.append(f"{int((flagged & keep).sum())} '{col}' row(s) removed")
            reason[flagged & keep] = col
            keep &= ~flagged
    excluded = _excluded_organisms(df.loc[~keep & (reason != "Reverse")], reason)
    df = df.loc[keep]
    if df.empty:
        raise ReadProblem("no protein groups left after removing reverse/contaminant/site-only rows")
    cols, prefix = _intensity_columns(list(df.columns))
    notes.append(f"{prefix.strip()} columns used ({len(cols)} samples)")
    id_col = "Majority protein IDs" if "Majority protein IDs" in df else "Protein IDs"
    prot = [first_token(p) for p in df[id_col]]
    genes = _genes(df)
    ids = [g or p or f"row{i}" for i, (g, p) in enumerate(zip(genes, prot))]
    ids = unique_ids(ids, notes)
    values = df[cols].copy()
    samples = [c[len(prefix):].strip() for c in cols]
    values.columns = samples
    values.index = ids
    var = pd.DataFrame({"gene": genes, "uniprot": prot, "protein_ids": df[id_col].astype(str).to_numpy()}, index=ids)
    counts = peptide_counts(df, notes)
    if counts is not None:
        var["n_peptides"] = counts
    obs = None
    if prefix == REPORTER:
        obs = _plex_annotation(samples, notes)
    organism = annotate_organisms(var, df["Fasta headers"], notes) if "Fasta headers" in df else None
    a = build_layer(values.T, var, kind=kind, source=table.source, notes=notes, intensities=True, obs=obs, organism=organism)
    if excluded["feature"]:
        a.uns["excluded_features"] = excluded
    if obs is not None:
        named_plex = all(len(s.split(None, 1)) > 1 for s in samples)
        a.uns["sample_id_parts"] = ["channel", "plex"] if named_plex else ["channel"]  # how a sample table may name them
        if obs["plex"].nunique() > 1:
            a.uns["sample_annotation"] = ["plex"]
    return a


def _excluded_organisms(removed: pd.DataFrame, reason: pd.Series) -> dict[str, list[str]]:
    """Name, organism and reason of each removed row whose ``Fasta headers`` name an organism."""
    out: dict[str, list[str]] = {"feature": [], "organism": [], "reason": []}
    if "Fasta headers" not in removed or removed.empty:
        return out
    id_col = "Majority protein IDs" if "Majority protein IDs" in removed else "Protein IDs"
    for i, gene, header in zip(removed.index, _genes(removed), removed["Fasta headers"]):
        org, entry = named_entry(header) if isinstance(header, str) else (None, None)
        if org:
            out["feature"].append(gene or entry or str(first_token(removed.at[i, id_col])))
            out["organism"].append(org)
            out["reason"].append(str(reason[i]))
    return out


def _genes(df: pd.DataFrame) -> list[str | None]:
    """First gene of ``Gene names``, else the ``GN=`` tag of the first ``Fasta headers`` entry."""
    genes = [first_token(g) for g in df["Gene names"]] if "Gene names" in df else [None] * len(df)
    if "Fasta headers" in df:
        for i, h in enumerate(df["Fasta headers"].astype(str)):
            if genes[i] is None:
                m = _GN.search(h.split(";")[0])
                genes[i] = m.group(1) if m else None
    return genes


def _plex_annotation(samples: list[str], notes: list[str]) -> pd.DataFrame:
    """``<channel> <plex>`` sample names -> ``channel`` and ``plex`` columns."""
    parts = [s.split(None, 1) for s in samples]
    obs = pd.DataFrame(
        {"channel": [p[0] for p in parts], "plex": [p[1] if len(p) > 1 else "1" for p in parts]},
        index=pd.Index(samples).astype(str),
    )
    notes.append(f"isobaric reporter channels: {obs['plex'].nunique()} plex(es) x {obs.groupby('plex').size().max()} channels; per-plex Intensity sums ignored")
    return obs
