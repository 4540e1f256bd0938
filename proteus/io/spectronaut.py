"""Spectronaut long report (one row per run and precursor) -> proteomics layer.

The Spectronaut columns are renamed to their DIA-NN equivalents (``R.FileName`` -> ``Run``,
``PG.ProteinGroups`` -> ``Protein.Group``, ``PG.Genes`` -> ``Genes``, ``EG.Qvalue`` -> ``Q.Value``,
``PG.Qvalue`` -> ``PG.Q.Value`` ...) and the report is pivoted by
:func:`proteus.io.diann.read_diann_report`: precursors above q 0.01 dropped, one ``PG.Quantity``
per protein group and run. Spectronaut's protein pivot report is a plain matrix
(:mod:`proteus.io.matrix`).
"""

from __future__ import annotations

import anndata as ad

from proteus.io._text import RawTable
from proteus.io.diann import read_diann_report

__all__ = ["is_spectronaut_report", "read_spectronaut_report", "TO_DIANN"]

TO_DIANN = {
    "R.FileName": "Run", "PG.ProteinGroups": "Protein.Group", "PG.Genes": "Genes", "PG.ProteinNames": "Protein.Names",
    "PG.ProteinAccessions": "Protein.Ids", "EG.Qvalue": "Q.Value", "PG.Qvalue": "PG.Q.Value",
    "EG.PrecursorId": "Precursor.Id", "PEP.StrippedSequence": "Stripped.Sequence", "PG.Quantity": "PG.Quantity",
}


def is_spectronaut_report(columns: list[str]) -> bool:
    """Spectronaut long report header: run file, protein groups and their quantity."""
    return {"R.FileName", "PG.ProteinGroups", "PG.Quantity"} <= set(columns)


def read_spectronaut_report(table: RawTable, notes: list[str], kind: str = "proteomics") -> ad.AnnData:
    """Read a Spectronaut long report (see module docstring)."""
    df = table.df[[c for c in TO_DIANN if c in table.df]].rename(columns=TO_DIANN)
    return read_diann_report(RawTable(table.source, df, list(df.columns), table.notes), notes, kind)
