"""FragPipe / IonQuant ``combined_protein.tsv`` -> proteomics layer.

Per-sample columns are ``<sample> MaxLFQ Intensity`` (preferred) or ``<sample> Intensity``
(not the Unique/Razor/Total variants). ``rev_`` decoys and ``contam_`` rows are removed.
"""

from __future__ import annotations

import anndata as ad
import pandas as pd

from proteus.io._layer import build_layer, first_token, peptide_counts, unique_ids
from proteus.io._text import RawTable, ReadProblem
from proteus.io.organism import annotate_organisms

__all__ = ["is_fragpipe", "read_fragpipe"]

_OTHER = (" Unique Intensity", " Razor Intensity", " Total Intensity", " MaxLFQ Intensity")


def is_fragpipe(columns: list[str]) -> bool:
    """``Protein`` and ``Protein ID`` columns plus per-sample ``Intensity`` columns."""
    cols = set(columns)
    return {"Protein", "Protein ID"} <= cols and any(c.endswith(" Intensity") for c in columns)


def read_fragpipe(table: RawTable, notes: list[str], kind: str = "proteomics") -> ad.AnnData:
    """Read a combined_protein table (see module docstring)."""
    df = table.df
    lfq = [c for c in df.columns if c.endswith(" MaxLFQ Intensity")]
    if lfq:
        cols, suffix = lfq, " MaxLFQ Intensity"
    else:
        cols = [c for c in df.columns if c.endswith(" Intensity") and not c.endswith(_OTHER)]
        suffix = " Intensity"
    if not cols:
        raise ReadProblem("FragPipe table without per-sample Intensity columns")
    notes.append(f"'{suffix.strip()}' columns used ({len(cols)} samples)")
    bad = df["Protein"].astype(str).str.startswith(("rev_", "contam_")) | df["Protein ID"].astype(str).str.startswith(("rev_", "contam_"))
    if bad.any():
        notes.append(f"{int(bad.sum())} decoy/contaminant row(s) removed")
        df = df.loc[~bad]
    prot = [first_token(p, ",") for p in df["Protein ID"]]
    genes = [first_token(g, ",") for g in df["Gene"]] if "Gene" in df else [None] * len(df)
    ids = unique_ids([g or p or f"row{i}" for i, (g, p) in enumerate(zip(genes, prot))], notes)
    values = df[cols].copy()
    values.columns = [c[: -len(suffix)].strip() for c in cols]
    values.index = ids
    var = pd.DataFrame({"gene": genes, "uniprot": prot}, index=ids)
    if "Description" in df:
        var["description"] = df["Description"].astype(str).to_numpy()
    counts = peptide_counts(df, notes)
    if counts is not None:
        var["n_peptides"] = counts
    species = next((c for c in ("Organism", "Entry Name") if c in df), None)
    organism = annotate_organisms(var, df[species], notes) if species else None
    return build_layer(values.T, var, kind=kind, source=table.source, notes=notes, intensities=True, organism=organism)
