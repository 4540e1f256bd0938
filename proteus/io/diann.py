"""DIA-NN output -> proteomics layer: the ``*.pg_matrix.tsv`` matrix or the long ``report.tsv``.

Matrix: annotation columns (``Protein.Group``, ``Protein.Ids``, ``Protein.Names``, ``Genes``,
``First.Protein.Description`` ...) come first; every other column is one run, often named by the
full raw-file path, shortened here to the file stem (``D:\\runs\\S1.raw`` -> ``S1``).

Long report (one row per precursor and run): rows with ``Q.Value`` or ``PG.Q.Value`` above 0.01
are dropped, then it is pivoted to run x protein group with the group quantity (``PG.MaxLFQ``,
else ``PG.Normalised``, else ``PG.Quantity``), which DIA-NN repeats on every precursor row of a
group and run (Demichev et al. 2020, doi:10.1038/s41592-019-0638-x).
"""

from __future__ import annotations

import anndata as ad
import pandas as pd

from proteus.io._layer import build_layer, first_token, peptide_counts, unique_ids
from proteus.io._text import RawTable, ReadProblem
from proteus.io.organism import annotate_organisms
from proteus.io.samples import run_stem

__all__ = ["is_diann", "read_diann", "is_diann_report", "read_diann_report"]

ANNOTATION = {
    "Protein.Group", "Protein.Ids", "Protein.Names", "Genes", "First.Protein.Description",
    "Proteotypic", "Stripped.Sequence", "Modified.Sequence", "Precursor.Charge", "Precursor.Id",
    "N.Sequences", "N.Proteotypic.Sequences",
}
REPORT_QUANTITY = ("PG.MaxLFQ", "PG.Normalised", "PG.Quantity")
REPORT_FILTERS = ("Q.Value", "PG.Q.Value")
MAX_Q = 0.01


def is_diann_report(columns: list[str]) -> bool:
    """DIA-NN long report header: ``Protein.Group``, a run column and a protein-group quantity."""
    cols = set(columns)
    return "Protein.Group" in cols and bool({"Run", "File.Name"} & cols) and bool(set(REPORT_QUANTITY) & cols)


def is_diann(columns: list[str]) -> bool:
    """DIA-NN matrix header: ``Protein.Group`` plus ``Protein.Ids`` or ``Genes`` (and not a long report)."""
    return "Protein.Group" in columns and bool({"Protein.Ids", "Genes"} & set(columns)) and not is_diann_report(columns)


def read_diann(table: RawTable, notes: list[str], kind: str = "proteomics") -> ad.AnnData:
    """Read a DIA-NN matrix (see module docstring)."""
    df = table.df
    runs = [c for c in df.columns if c not in ANNOTATION]
    if not runs:
        raise ReadProblem("DIA-NN matrix without run columns")
    contam = df["Protein.Group"].astype(str).str.contains(r"(?:^|;)(?:Cont_|contam_)", case=False, regex=True)
    if contam.any():
        notes.append(f"{int(contam.sum())} contaminant row(s) removed")
        df = df.loc[~contam]
    var = _feature_annotation(df, notes)
    names = [run_stem(c) for c in runs]
    if names != runs:
        notes.append("run columns shortened to file stems")
    names = unique_ids(names, notes, "sample")
    values = df[runs].copy()
    values.columns = names
    values.index = var.index
    organism = annotate_organisms(var, var["protein_name"], notes) if "protein_name" in var else None
    return build_layer(values.T, var, kind=kind, source=table.source, notes=notes, intensities=True, organism=organism)


def _feature_annotation(df: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """One row per protein group: id and label = first gene (``Genes``), else the first
    ``Protein.Names`` entry, else the first accession of ``Protein.Group``."""
    prot = [first_token(p) for p in df["Protein.Group"]]
    genes = [first_token(g) for g in df["Genes"]] if "Genes" in df else [None] * len(df)
    names = [first_token(n) for n in df["Protein.Names"]] if "Protein.Names" in df else [None] * len(df)
    labels = [g or n or p for g, n, p in zip(genes, names, prot)]
    ids = unique_ids([lab or f"row{i}" for i, lab in enumerate(labels)], notes)
    var = pd.DataFrame({"gene": genes, "uniprot": prot}, index=ids)
    if "Protein.Names" in df:
        var["protein_name"] = df["Protein.Names"].astype(str).to_numpy()
    counts = peptide_counts(df, notes)
    if counts is not None:
        var["n_peptides"] = counts
    return var


def read_diann_report(table: RawTable, notes: list[str], kind: str = "proteomics") -> ad.AnnData:
    """Pivot a DIA-NN long report to run x protein group (see module docstring)."""
    df = table.df
    quantity = next(q for q in REPORT_QUANTITY if q in df)
    run_col = "Run" if "Run" in df else "File.Name"
    n0 = len(df)
    for col in REPORT_FILTERS:
        if col in df:
            q = pd.to_numeric(df[col], errors="coerce")
            df = df.loc[q <= MAX_Q]
    notes.append(f"long report: {n0 - len(df)} of {n0} precursor row(s) above {' / '.join(c for c in REPORT_FILTERS if c in table.df)} {MAX_Q} dropped")
    if df.empty:
        raise ReadProblem(f"long report without precursors at q <= {MAX_Q}")
    df = df.assign(_run=df[run_col].map(run_stem), _value=pd.to_numeric(df[quantity], errors="coerce"))
    spread = df.groupby(["_run", "Protein.Group"])["_value"].agg(["min", "max"])
    varying = int((spread["max"] > spread["min"] * (1 + 1e-6)).sum())
    if varying:
        notes.append(f"{varying} protein group/run pair(s) with differing {quantity} over precursors; the first is used")
    wide = df.pivot_table(index="Protein.Group", columns="_run", values="_value", aggfunc="first", sort=False)
    annot = df.drop_duplicates("Protein.Group").set_index("Protein.Group").reindex(wide.index).reset_index()
    var = _feature_annotation(annot, notes)
    for col in ("Stripped.Sequence", "Precursor.Id"):
        if col in df:
            var["n_peptides"] = df.groupby("Protein.Group")[col].nunique().reindex(wide.index).to_numpy(dtype=float)
            notes.append(f"peptide counts (distinct {col} per group) kept as var['n_peptides']")
            break
    notes.append(f"{quantity} pivoted to {wide.shape[1]} run(s) x {wide.shape[0]} protein group(s)")
    values = wide.copy()
    values.index = var.index
    values.columns = unique_ids([str(c) for c in values.columns], notes, "sample")
    organism = annotate_organisms(var, var["protein_name"], notes) if "protein_name" in var else None
    return build_layer(values.T, var, kind=kind, source=table.source, notes=notes, intensities=True, organism=organism)
