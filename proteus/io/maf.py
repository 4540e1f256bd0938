"""MAF (Mutation Annotation Format) -> ``Study.mutations`` long table.

Columns out: ``sample`` (``Tumor_Sample_Barcode``), ``gene`` (``Hugo_Symbol``), ``variant_class``
(``Variant_Classification``), ``protein_change`` (``HGVSp_Short`` where present) and ``silent``
(True for classes that do not change the protein: Silent, Intron, UTRs, flanks, IGR, RNA).
All rows are kept; tools choose whether to use silent ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from proteus.io._text import RawTable, ReadProblem

__all__ = ["is_maf", "read_maf", "carrier_matrix", "hypermutated", "SILENT_CLASSES", "REQUIRED", "SAMPLE_COLUMN", "VARIANT_CLASSES", "TRUNCATING", "MISSENSE"]

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


TRUNCATING = frozenset({
    "nonsense_mutation", "frame_shift_del", "frame_shift_ins", "splice_site", "nonstop_mutation",
    "translation_start_site", "stop_gained", "frameshift_variant", "splice_acceptor_variant",
    "splice_donor_variant", "start_lost", "stop_lost", "truncating",
})
MISSENSE = frozenset({"missense_mutation", "in_frame_del", "in_frame_ins", "missense_variant", "inframe_deletion",
                      "inframe_insertion", "missense", "protein_altering_variant"})
VARIANT_CLASSES = {"truncating": TRUNCATING, "missense": MISSENSE, "nonsilent": TRUNCATING | MISSENSE}
"""Variant classes (MAF ``Variant_Classification`` or VEP terms, lower case) of each selection."""


def carrier_matrix(mutations: pd.DataFrame, samples: list[str], variant_classes: str = "nonsilent") -> tuple[pd.DataFrame, list[str]]:
    """Boolean samples x genes matrix of mutations of the chosen classes (a key of :data:`VARIANT_CLASSES`,
    or ``"all"``) over the genotyped samples: those among ``samples`` present in the long ``mutations``
    table with any variant. Returns the matrix and the genotyped samples (its index)."""
    m = mutations.assign(sample=mutations["sample"].astype(str), gene=mutations["gene"].astype(str))
    wanted = set(samples)
    geno = [s for s in dict.fromkeys(m["sample"]) if s in wanted]
    m = m[m["sample"].isin(geno)]
    if variant_classes != "all":
        cls = m["variant_class"].astype(str).str.strip().str.lower().str.replace(" ", "_")
        m = m[cls.isin(VARIANT_CLASSES[variant_classes])]
    gcodes, gnames = pd.factorize(m["gene"], sort=True)
    pos = {s: i for i, s in enumerate(geno)}
    arr = np.zeros((len(geno), len(gnames)), dtype=bool)
    arr[m["sample"].map(pos).to_numpy(int), gcodes] = True
    return pd.DataFrame(arr, index=pd.Index(geno, name="sample"), columns=pd.Index(gnames, name="gene")), geno


def hypermutated(mutations: pd.DataFrame, samples: list[str]) -> tuple[pd.Series, float | None]:
    """Hypermutator status of genotyped samples from their tumour mutation burden (non-silent
    mutations per sample in the mutation table).

    The split is Otsu's threshold (Otsu 1979, doi:10.1109/TSMC.1979.4310076) on log10(1 + burden),
    kept only when the upper group's mean burden is at least five times the lower group's and the upper
    group holds at most half the samples; otherwise no sample is called hypermutated. Returns the boolean
    status per sample and the burden threshold (``None`` when no split was kept).
    """
    _, geno = carrier_matrix(mutations, samples, "nonsilent")
    m = mutations
    keep = m["sample"].astype(str).isin(geno) & ~m.get("silent", pd.Series(False, index=m.index)).astype(bool)
    burden = m.loc[keep].groupby(m.loc[keep, "sample"].astype(str)).size().reindex(geno, fill_value=0)
    x = np.log10(1 + burden.to_numpy(float))
    none = pd.Series(False, index=burden.index)
    if len(x) < 4 or np.ptp(x) == 0:
        return none, None
    cuts = np.unique(x)[:-1]
    between = [((x <= c).mean() * (x > c).mean() * (x[x <= c].mean() - x[x > c].mean()) ** 2, c) for c in cuts]
    _, cut = max(between)
    high = x > cut
    if high.mean() > 0.5 or x[high].mean() - x[~high].mean() < np.log10(5):
        return none, None
    return pd.Series(high, index=burden.index), float(10 ** cut - 1)
