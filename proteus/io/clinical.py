"""Clinical / sample tables (rows = samples, columns = annotations), FCS sample sheets and panels."""

from __future__ import annotations

import re

import pandas as pd

from proteus.io._text import RawTable, ReadProblem
from proteus.io.matrix import column_kinds
from proteus.io.modality import _NAME_RULES
from proteus.io.samples import file_key, normalise_id, run_stem

__all__ = ["looks_clinical", "index_clinical", "is_panel", "is_sample_sheet", "tidy_levels"]

CLINICAL_NAME = re.compile(r"clinical|metadata|annotation|pheno|design|covariate|survival", re.IGNORECASE)
WEAK_CLINICAL_NAME = re.compile(r"meta|sample|patient|condition|subject|donor|group|info|experiment", re.IGNORECASE)
SAMPLE_COL = re.compile(
    r"^(sample[ _.]?(id|name)?|samples|idx|id|sample_?identifier|patient[ _.]?id|case[ _.]?id|subject[ _.]?id|donor[ _.]?id)$",
    re.IGNORECASE,
)
FILE_VALUE = re.compile(r"\.(?:fcs|raw|mzml|d|wiff|dia|txt|tsv|csv|h5ad)$", re.IGNORECASE)
RAW_PATH = re.compile(r"[\\/]|\.(?:raw|mzml|d|wiff|wiff2|dia)$", re.IGNORECASE)


def looks_clinical(table: RawTable) -> bool:
    """Whether a table holds sample annotations rather than a feature matrix.

    A clinical-sounding file name (``clinical``, ``metadata``, ``pheno``...) decides unless the
    table has hundreds of numeric columns; a weaker one (``samples``, ``patients``, ``groups``...)
    needs at least one text column besides the id. Otherwise text columns interleaved with numeric ones (not a leading annotation block)
    mark a clinical table.
    """
    kinds = column_kinds(table.df)
    values = list(kinds.values())[1:]
    n_num = values.count("numeric")
    name = table.source.rsplit("/", 1)[-1]
    omics_name = any(pat.search(name) for _, pat in _NAME_RULES)
    if not omics_name and n_num < 500:
        if CLINICAL_NAME.search(name):
            return True
        if WEAK_CLINICAL_NAME.search(name) and "text" in values:
            return True
    if n_num < 2:
        return values.count("text") >= 1
    first_num = values.index("numeric")
    interleaved = any(k == "text" for k in values[first_num:])
    return interleaved and n_num / max(len(values), 1) < 0.9


def index_clinical(table: RawTable, data_ids: set[str]) -> tuple[pd.DataFrame, str, int]:
    """Index a clinical table by its sample-id column.

    The column whose (unique) values best match sample ids seen in the data files (as written, by
    file stem, or without tumour/normal suffixes) wins; without any match, a column named like
    ``sample_id`` / ``sample`` / ``id``, else the first unique column. Columns of file names
    (``*.fcs``) are only chosen when nothing else is unique. Raw-file paths as ids
    (``D:\\runs\\S1.raw``) are shortened to their stems when these stay unique; the paths are
    kept in their column.

    Returns
    -------
    (clinical, column, n_matched)
        The table indexed by string ids, the name of the id column and how many of its ids match
        the data's sample ids.
    """
    df = table.df
    norm = {normalise_id(i) for i in data_ids}
    keys = {file_key(i) for i in data_ids}
    cands = []
    for pos, c in enumerate(df.columns):
        col = df[c]
        if col.isna().any() or not col.is_unique or col.dtype.kind == "f":
            continue
        vals = col.astype(str).str.strip()
        if not vals.is_unique:
            continue
        exact = int(vals.isin(data_ids).sum())
        fuzzy = max(int(vals.map(normalise_id).isin(norm).sum()), int(vals.map(file_key).isin(keys).sum()))
        is_file = bool(vals.str.contains(FILE_VALUE).mean() > 0.5)
        cands.append((exact, fuzzy, not is_file, bool(SAMPLE_COL.match(str(c))), -pos, c))
    if not cands:
        raise ReadProblem("no column with unique, non-missing sample ids")
    best = max(cands)
    col = best[-1]
    ids = df[col].astype(str).str.strip()
    stems = ids.map(run_stem)
    if ids.str.contains(RAW_PATH).mean() > 0.5 and stems.is_unique:
        table.notes.append(f"sample ids in {col!r} are raw-file names; indexed by their file stems")
        out = df.copy()
        out.index = pd.Index(stems.to_numpy(), name="sample")
    else:
        out = df.drop(columns=[col]).copy()
        out.index = pd.Index(ids.to_numpy(), name=str(col))
    return out, str(col), max(best[0], best[1])


def tidy_levels(clinical: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Trim text levels and merge spellings that differ only in case (``Tumor``, ``tumor``, ``TUMOR ``).

    The most frequent spelling wins (the first seen on ties). Columns whose values are all
    distinct even ignoring case (identifiers) are only trimmed.

    Returns
    -------
    (clinical, notes)
        The tidied copy and one note per changed column, for the report.
    """
    out = clinical.copy()
    notes = []
    for c in out.columns:
        col = out[c]
        if col.dtype != object:
            continue
        text = col.map(lambda v: v.strip() if isinstance(v, str) else v)
        trimmed = int((text != col)[col.notna()].sum())
        strings = text[text.map(lambda v: isinstance(v, str))]
        merged = {}
        if not strings.map(str.casefold).is_unique:  # identifiers stay apart; 'Tumor', 'tumor' once each do not
            counts = strings.value_counts(sort=False)
            by_fold: dict[str, list[str]] = {}
            for v in strings.drop_duplicates():
                by_fold.setdefault(v.casefold(), []).append(v)
            for spellings in by_fold.values():
                if len(spellings) > 1:
                    keep = max(spellings, key=lambda v: (counts[v], -spellings.index(v)))
                    merged.update({v: keep for v in spellings if v != keep})
            text = text.map(lambda v: merged.get(v, v) if isinstance(v, str) else v)
        if not trimmed and not merged:
            continue
        out[c] = text
        parts = []
        if trimmed:
            parts.append(f"{trimmed} value(s) trimmed of spaces")
        if merged:
            groups: dict[str, list[str]] = {}
            for v, keep in merged.items():
                groups.setdefault(keep, []).append(v)
            parts.append("spellings merged: " + "; ".join(f"{', '.join(map(repr, vs))} -> {k!r}" for k, vs in groups.items()))
        notes.append(f"sample table column {c!r}: {', '.join(parts)}")
    return out, notes


def is_panel(table: RawTable) -> bool:
    """A cytometry panel: a channel column (``fcs_colname``/``channel``...) and an antigen/marker column."""
    cols = [c.lower() for c in table.df.columns]
    channel = any(re.search(r"fcs|channel|colname|metal|fluor", c) for c in cols)
    antigen = any(re.search(r"antigen|marker|target|desc", c) for c in cols)
    return channel and antigen and table.df.shape[1] <= 10


def is_sample_sheet(table: RawTable, fcs_names: set[str]) -> str | None:
    """The column whose values are FCS file names (an FCS sample sheet), or None."""
    if not fcs_names:
        return None
    stems = {n.rsplit(".", 1)[0] for n in fcs_names}
    for c in table.df.columns:
        vals = table.df[c].dropna().astype(str).str.strip().map(lambda s: re.split(r"[\\/]", s)[-1])
        if len(vals) and (vals.isin(fcs_names) | vals.isin(stems)).mean() > 0.5:
            return str(c)
    return None
