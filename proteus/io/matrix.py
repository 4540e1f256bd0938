"""Plain feature matrices (TSV/CSV/TXT/XLSX) -> one bulk layer.

Orientation: the axis whose ids also appear in the clinical table (or other files) holds the
samples; with no such evidence the longer axis holds the features. The index column is one named
like an id (``id``, ``gene``, ``protein``, ``site`` ...) among the leading text columns, else the
first column. Other text columns become feature (or sample) annotation.
"""

from __future__ import annotations

import re

import anndata as ad
import pandas as pd

from proteus.io._layer import build_layer, first_token, unique_ids
from proteus.io._text import RawTable, ReadProblem
from proteus.io.modality import detect_modality
from proteus.io.samples import file_key, normalise_id, run_name
from proteus.io.values import coerce_numeric

__all__ = ["column_kinds", "read_matrix", "ID_NAME"]

ID_NAME = re.compile(
    r"^(unnamed: 0|idx|id|index|name|gene|genes|gene[ _.]?(name|names|symbol|id)s?|symbol|protein|proteins|"
    r"protein[ _.]?(id|ids|name|group)s?|uniprot|accession|feature|features|site|sites|probe|probe[ _.]?id|"
    r"mirna|hugo_symbol)$",
    re.IGNORECASE,
)


_VENDOR_LEVEL = re.compile(r"^(?:PG|PEP|EG|FG)\.", re.I)
"""Spectronaut's level prefix of annotation columns (``PG.Genes``)."""


def column_kinds(df: pd.DataFrame, sample_rows: int = 500) -> dict[str, str]:
    """Each column as ``numeric`` (>= 50% of non-missing cells parse as numbers), ``text`` or ``empty``."""
    kinds = {}
    head = df.iloc[:sample_rows]
    for i, c in enumerate(df.columns):
        col = head.iloc[:, i]
        nn = col.notna()
        if not nn.any():
            kinds[c] = "empty" if not df.iloc[:, i].notna().any() else "text"
            continue
        if col.dtype.kind in "fiub":
            kinds[c] = "numeric"
            continue
        num = pd.to_numeric(col[nn].astype(str).str.strip(), errors="coerce")
        kinds[c] = "numeric" if num.notna().mean() >= 0.5 else "text"
    return kinds


def _match_count(ids: list[str], known: set[str], key=None) -> int:
    """How many ids are known (exactly, or after ``key`` on both sides: suffix normalisation, file name)."""
    if key is None:
        return sum(1 for i in ids if i in known)
    return sum(1 for i in ids[:5000] if key(i) in known)


def _drop_duplicate_header(table: RawTable, notes: list[str]) -> pd.DataFrame:
    df = table.df
    if len(table.header) != df.shape[1]:
        return df
    seen: set[str] = set()
    keep, dups = [], []
    for i, h in enumerate(table.header):
        if h in seen and h:
            dups.append(h)
            continue
        seen.add(h)
        keep.append(i)
    if dups:
        notes.append(f"{len(dups)} duplicated column name(s) ({', '.join(sorted(set(dups))[:3])}); first kept")
        df = df.iloc[:, keep]
    return df


def _label_by_gene(var: pd.DataFrame, values: pd.DataFrame, id_col: str, notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature ids from the gene column (first of a ``;``-list) where there is one; the original
    id is kept in ``var[id_col]``."""
    genes = [first_token(g) for g in var["gene"]]
    ids = unique_ids([g or str(i) for g, i in zip(genes, var.index)], notes)
    var = var.copy()
    var[id_col] = list(map(str, var.index))
    var["gene"] = genes
    var.index = ids
    values = values.copy()
    values.columns = ids
    notes.append(f"features labelled by {id_col!r} -> gene names where given")
    return var, values


def read_matrix(table: RawTable, known_ids: set[str], notes: list[str]) -> ad.AnnData:
    """Read a plain matrix as a bulk layer.

    Parameters
    ----------
    table
        The raw table.
    known_ids
        Sample ids known from the clinical table and other files (decides orientation).
    notes
        Receives orientation, id and value messages.

    Returns
    -------
    AnnData
        samples x features with ``uns`` modality, level, source, scale, transform.
    """
    df = _drop_duplicate_header(table, notes)
    kinds = column_kinds(df)
    cols = list(df.columns)
    leading = []
    for c in cols:
        if kinds[c] == "numeric":
            break
        leading.append(c)
    id_col = next((c for c in leading if ID_NAME.match(c)), leading[0] if leading else cols[0])
    ids = df[id_col]
    missing = ids.isna() | (ids.astype(str).str.strip() == "")
    if missing.any():
        notes.append(f"{int(missing.sum())} row(s) without an id dropped")
        df = df.loc[~missing]
    row_ids = [str(v).strip() for v in df[id_col]]
    numeric = [c for c in cols if c != id_col and kinds[c] == "numeric"]
    text = [c for c in cols if c != id_col and kinds[c] == "text"]
    empty = [c for c in cols if c != id_col and kinds[c] == "empty"]
    if not numeric:
        if empty:
            raise ReadProblem("no values: every data cell is missing")
        raise ReadProblem("no numeric columns")
    if empty:
        notes.append(f"{len(empty)} all-missing column(s): {', '.join(empty[:5])}")
    m_rows = _match_count(row_ids, known_ids)
    m_cols = _match_count(numeric + empty, known_ids)
    for key in (normalise_id, file_key):
        if m_rows or m_cols or not known_ids:
            break
        known_keys = {key(k) for k in known_ids}
        m_rows = _match_count(row_ids, known_keys, key)
        m_cols = _match_count(numeric + empty, known_keys, key)
    if m_cols > m_rows:
        samples_are_rows = False
        why = f"{m_cols} column names match known sample ids"
    elif m_rows > m_cols:
        samples_are_rows = True
        why = f"{m_rows} row ids match known sample ids"
    else:
        samples_are_rows = len(row_ids) < len(numeric) + len(empty)
        why = "no ids match known samples; features taken as the longer axis"
    notes.append(f"orientation: {'samples x features' if samples_are_rows else 'features x samples'} ({why})")
    values = coerce_numeric(df[numeric + empty], notes)
    if samples_are_rows:
        values.index = unique_ids(row_ids, notes, "sample")
        annot = df[text].copy()
        annot.index = values.index
        var = pd.DataFrame(index=values.columns)
        values_sf = values
        obs = annot if text else None
    else:
        fids = unique_ids(row_ids, notes)
        values.index = fids
        var = df[text].copy()
        var.index = fids
        values_sf = values.T
        obs = None
        runs = [run_name(s) for s in values_sf.index]
        if runs != list(values_sf.index) and len(set(runs)) == len(runs):
            notes.append(f"sample columns shortened to run names ({values_sf.index[0]!r} -> {runs[0]!r})")
            values_sf.index = runs
    values_sf.columns = values_sf.columns.astype(str)
    quick = values_sf.iloc[:200, :5000].to_numpy(dtype="float64")
    kind, reason = detect_modality(table.source.split("/")[-1], values_sf.columns, quick)
    notes.append(f"modality {kind} ({reason})")
    var.columns = [str(c) for c in var.columns]
    gene_col = next((c for c in var.columns if ID_NAME.match(_VENDOR_LEVEL.sub("", c)) and re.search("gene|symbol", c, re.I)), None)
    if gene_col is not None:
        var = var.rename(columns={gene_col: "gene"})
        if not samples_are_rows and not re.search("gene|symbol", id_col, re.I):
            var, values_sf = _label_by_gene(var, values_sf, id_col, notes)
    return build_layer(values_sf, var, kind=kind, source=table.source, notes=notes, obs=obs)
