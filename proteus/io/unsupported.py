"""Layouts that are recognised but not read: refused by name rather than misread as a matrix.

Each rule names the layout from its header and says what to give PROTEUS instead (a protein-level
table of one of the supported tools).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["unsupported_layout"]


def _has(*names: str) -> Callable[[set[str]], bool]:
    return lambda cols: set(names) <= cols


_RULES: tuple[tuple[str, Callable[[set[str]], bool], str], ...] = (
    ("a MaxQuant evidence / msms table (one row per peptide identification)", _has("Raw file", "Sequence"),
     "give the proteinGroups.txt of the same MaxQuant run"),
    ("a MaxQuant peptides table", lambda c: "Sequence" in c and bool({"Leading razor protein", "Start position"} & c),
     "give the proteinGroups.txt of the same MaxQuant run"),
    ("a MaxQuant modification-site table (e.g. Phospho (STY)Sites.txt)",
     lambda c: "Amino acid" in c and "Position" in c and any(x.startswith("Localization prob") for x in c),
     "give a site x sample matrix (site ids such as GENE-S15 in the first column, one column per sample)"),
    ("a DIA-NN precursor matrix (pr_matrix)", lambda c: "Protein.Group" in c and "Precursor.Id" in c and "Run" not in c and "File.Name" not in c,
     "give the pg_matrix.tsv (protein groups) of the same DIA-NN run"),
    ("a FragPipe peptide / ion / PSM table", lambda c: "Protein ID" in c and bool({"Peptide Sequence", "Peptide", "Spectrum"} & c),
     "give the combined_protein.tsv of the same FragPipe run"),
    ("a Spectronaut long report without PG.Quantity", lambda c: {"R.FileName", "PG.ProteinGroups"} <= c and "PG.Quantity" not in c,
     "export the report with PG.Quantity, or a protein pivot report (one PG.Quantity column per run)"),
)


def unsupported_layout(columns: list[str]) -> str | None:
    """A refusal message naming the layout of a header that PROTEUS recognises but does not read."""
    cols = {str(c) for c in columns}
    for name, test, advice in _RULES:
        if test(cols):
            return f"recognised as {name}, which is not read: {advice}"
    return None
