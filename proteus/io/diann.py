"""DIA-NN ``*.pg_matrix.tsv`` (and ``pr_matrix``-like) -> proteomics layer.

Annotation columns (``Protein.Group``, ``Protein.Ids``, ``Protein.Names``, ``Genes``,
``First.Protein.Description`` ...) come first; every other column is one run, often named by the
full raw-file path, shortened here to the file stem (``D:\\runs\\S1.raw`` -> ``S1``).
"""

from __future__ import annotations

import re

import anndata as ad
import pandas as pd

from proteus.io._layer import build_layer, first_token, peptide_counts, unique_ids
from proteus.io._text import RawTable, ReadProblem

__all__ = ["is_diann", "read_diann", "run_stem"]

ANNOTATION = {
    "Protein.Group", "Protein.Ids", "Protein.Names", "Genes", "First.Protein.Description",
    "Proteotypic", "Stripped.Sequence", "Modified.Sequence", "Precursor.Charge", "Precursor.Id",
    "N.Sequences", "N.Proteotypic.Sequences",
}
_RAW_EXT = re.compile(r"(\.(raw|mzml|wiff|wiff2|dia|d|mgf|mzxml|gz|zip))+$", re.IGNORECASE)


def run_stem(name: str) -> str:
    """Sample name from a run column: last path component without raw-file extensions."""
    base = re.split(r"[\\/]", str(name).strip().rstrip("\\/"))[-1]
    return _RAW_EXT.sub("", base) or base


def is_diann(columns: list[str]) -> bool:
    """DIA-NN matrix header: ``Protein.Group`` plus ``Protein.Ids`` or ``Genes``."""
    return "Protein.Group" in columns and bool({"Protein.Ids", "Genes"} & set(columns))


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
    prot = [first_token(p) for p in df["Protein.Group"]]
    genes = [first_token(g) for g in df["Genes"]] if "Genes" in df else [None] * len(df)
    ids = unique_ids([g or p or f"row{i}" for i, (g, p) in enumerate(zip(genes, prot))], notes)
    names = [run_stem(c) for c in runs]
    if names != runs:
        notes.append("run columns shortened to file stems")
    names = unique_ids(names, notes, "sample")
    values = df[runs].copy()
    values.columns = names
    values.index = ids
    var = pd.DataFrame({"gene": genes, "uniprot": prot}, index=ids)
    if "Protein.Names" in df:
        var["protein_name"] = df["Protein.Names"].astype(str).to_numpy()
    counts = peptide_counts(df, notes)
    if counts is not None:
        var["n_peptides"] = counts
    return build_layer(values.T, var, kind=kind, source=table.source, notes=notes, intensities=True)
