"""MAF (Mutation Annotation Format) -> ``Study.mutations`` long table.

Columns out: ``sample`` (``Tumor_Sample_Barcode``), ``gene`` (``Hugo_Symbol``), ``variant_class``
(``Variant_Classification``), ``protein_change`` (``HGVSp_Short`` where present) and ``silent``
(True for classes that do not change the protein: Silent, Intron, UTRs, flanks, IGR, RNA).
All rows are kept; tools choose whether to use silent ones.
"""

from __future__ import annotations

import pandas as pd

from proteus.io._text import RawTable, ReadProblem

__all__ = ["is_maf", "read_maf", "SILENT_CLASSES", "REQUIRED", "SAMPLE_COLUMN"]

SAMPLE_COLUMN = "Tumor_Sample_Barcode"
REQUIRED = ("Hugo_Symbol", "Variant_Classification", SAMPLE_COLUMN)
SILENT_CLASSES = frozenset(
    {"Silent", "Intron", "3'UTR", "5'UTR", "3'Flank", "5'Flank", "IGR", "RNA", "lincRNA", "Targeted_Region"}
)


def is_maf(columns: list[str]) -> bool:
    """A MAF header has at least Hugo_Symbol, Variant_Classification and Tumor_Sample_Barcode."""
    return set(REQUIRED) <= set(columns)


def read_maf(table: RawTable, notes: list[str]) -> pd.DataFrame:
    """Long mutation table (see module docstring); rows without gene or sample are dropped."""
    df = table.df
    out = pd.DataFrame(
        {
            "sample": df["Tumor_Sample_Barcode"].astype("string").str.strip(),
            "gene": df["Hugo_Symbol"].astype("string").str.strip(),
            "variant_class": df["Variant_Classification"].astype("string").str.strip(),
            "protein_change": df["HGVSp_Short"].astype("string") if "HGVSp_Short" in df else pd.NA,
        }
    )
    bad = out["sample"].isna() | out["gene"].isna() | (out["gene"] == "")
    if bad.any():
        notes.append(f"{int(bad.sum())} row(s) without gene or sample dropped")
        out = out.loc[~bad]
    if out.empty:
        raise ReadProblem("MAF without usable rows")
    out["silent"] = out["variant_class"].isin(SILENT_CLASSES).astype(bool)
    out = out.astype({"sample": str, "gene": str, "variant_class": str}).reset_index(drop=True)
    notes.append(
        f"{len(out)} mutations in {out['sample'].nunique()} samples ({int(out['silent'].sum())} silent, marked)"
    )
    return out
