"""``load_study``: read a data folder (or one file) into a :class:`~proteus.study.Study`.

Steps: discover files -> read raw tables -> refuse recognised but unsupported layouts -> classify
each (MAF, MaxQuant, DIA-NN matrix or long report, Spectronaut long report, FragPipe, cytometry
panel / sample sheet, sample table, plain matrix) -> pick the sample table whose ids match the
data and index it by that column -> read every layer, oriented by those ids -> merge runs of one
tool (or refuse) -> match each layer's and the MAF's sample ids to the sample table
(:class:`~proteus.study.SampleMatching`) -> add annotation found in the data (TMT plex, run) and
tidy level spellings (``Study.sample_notes``). Every file gets a :class:`FileReport`.
:func:`load_layers` does the same but builds only the layers of the kinds asked for, reading the
other layer files only as far as these steps use them (``proteus tools run``, via
:mod:`proteus.study_cache`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import pandas as pd

from proteus.io._text import RawTable, ReadProblem, read_excel_tables, read_parquet_table, read_text_column, read_text_head, read_text_table
from proteus.io.clinical import index_clinical, is_panel, is_sample_sheet, looks_clinical, tidy_levels
from proteus.io.diann import is_diann, is_diann_report, read_diann, read_diann_report
from proteus.io.exclusions import drop_excluded
from proteus.io.discover import DEFAULT_MAX_BYTES, HEAD_LINES, Candidate, discover, layer_files
from proteus.io.fragpipe import is_fragpipe, read_fragpipe
from proteus.io.h5ad import read_h5ad
from proteus.io.maf import SAMPLE_COLUMN, is_maf, read_maf
from proteus.io.matrix import read_matrix
from proteus.io.maxquant import is_maxquant, read_maxquant
from proteus.io.runs import merge_runs
from proteus.io.run_order import add_run_order
from proteus.io.samples import build_mapping, composite_keys, file_key, groups_from_names, match_samples, run_name, run_stem
from proteus.io.spectronaut import is_spectronaut_report, read_spectronaut_report
from proteus.io.unsupported import unsupported_layout
from proteus.study import FileReport, NoUsableDataError, SampleMatching, Study

__all__ = ["load_study", "load_layers", "LayerLoad"]

log = logging.getLogger("proteus.io")

_VENDORS = (
    ("maxquant", is_maxquant, read_maxquant),
    ("diann_report", is_diann_report, read_diann_report),
    ("spectronaut_report", is_spectronaut_report, read_spectronaut_report),
    ("diann", is_diann, read_diann),
    ("fragpipe", is_fragpipe, read_fragpipe),
)


def _problem(rep: FileReport, exc: Exception) -> None:
    rep.problem = f"{rep.path}: {exc}"


def _read_tables(
    cands: list[Candidate], max_bytes: int, reports: list[FileReport], heads: set[str], mutations: bool
) -> tuple[list[tuple[RawTable, FileReport]], set[str], dict[str, list[str]]]:
    """Every table candidate read; the ones read by their head; the columns of the MAFs read by
    their sample column. Those in ``heads`` only their first :data:`HEAD_LINES` lines where that
    reads like the whole file (:func:`~proteus.io._text.read_text_head`); without ``mutations``,
    of a file named ``.maf`` only its sample column where that reads like the whole file
    (:func:`~proteus.io._text.read_text_column`)."""
    headed = set()
    by_column = {}
    out = []
    for c in cands:
        if c.reader not in ("table", "excel", "parquet"):
            continue
        rep = FileReport(c.rel)
        reports.append(rep)
        try:
            head = read_text_head(c.path, c.rel, HEAD_LINES, _KIND_ROWS) if c.rel in heads else None
            if head is not None:
                headed.add(c.rel)
                out.append((head, rep))
            elif c.reader == "excel":
                try:
                    tables, skipped = read_excel_tables(c.path, c.rel)
                except ReadProblem as e:
                    if "zip signature" not in str(e):
                        raise
                    rep.notes.append("not an Excel workbook (no zip signature); read as a text table")
                    tables, skipped = [read_text_table(c.path, c.rel, max_bytes)], []
                rep.notes += skipped
                if not tables:
                    raise ReadProblem("workbook without usable sheets")
                if len(tables) == 1:
                    tables[0].source = c.rel
                    out.append((tables[0], rep))
                    continue
                rep.kind = "workbook"
                for t in tables:
                    r = FileReport(t.source)
                    reports.append(r)
                    rep.notes.append(f"sheet read as {t.source}")
                    out.append((t, r))
            elif c.reader == "parquet":
                out.append((read_parquet_table(c.path, c.rel), rep))
            elif ".maf" in c.rel.lower() and not mutations:
                t, columns = read_text_column(c.path, c.rel, max_bytes, SAMPLE_COLUMN, comment="#")
                if t.partial:
                    by_column[c.rel] = columns
                out.append((t, rep))
            else:
                comment = "#" if ".maf" in c.rel.lower() else None
                out.append((read_text_table(c.path, c.rel, max_bytes, comment=comment), rep))
        except ReadProblem as e:
            _problem(rep, e)
        except MemoryError:
            _problem(rep, ReadProblem("out of memory while reading"))
    return out, headed, by_column


_KIND_ROWS = 500
"""Rows of a layer file's head parsed: those :func:`~proteus.io.matrix.column_kinds` reads."""
_MAX_ID_ROWS = 5000
"""A matrix with at most this many rows may name samples in its first column (:func:`_data_ids`);
a layer file's head (:data:`~proteus.io.discover.HEAD_LINES`) holds one row more."""
_DATA_KINDS = ("matrix", "maxquant", "diann", "diann_report", "spectronaut_report", "fragpipe")
_MAX_SAMPLE_TABLE_COLUMNS = 30


def _data_ids(tables: list[tuple[RawTable, str]]) -> set[str]:
    """Every id that could name a sample: headers and first columns of data tables, MAF barcodes."""
    ids: set[str] = set()
    for t, kind in tables:
        if kind == "maf":
            ids |= set(t.df[SAMPLE_COLUMN].dropna().astype(str))
        elif kind in ("diann_report", "spectronaut_report"):
            ids |= {run_stem(r) for c in ("Run", "File.Name", "R.FileName") if c in t.df for r in t.df[c].dropna().unique()}
        elif kind in _DATA_KINDS:
            ids |= {run_name(h) for h in t.df.columns[1:]} | set(map(str, t.df.columns))
            if kind == "matrix" and not t.partial and len(t.df) <= _MAX_ID_ROWS:  # long first columns hold features, not samples
                ids |= set(t.df.iloc[:, 0].dropna().astype(str).str.strip())
    return ids


def _merge_clinical(primary: pd.DataFrame, other: pd.DataFrame, rep: FileReport) -> pd.DataFrame:
    """Join ``other``'s new columns onto matching rows; rows of a table with the same columns
    that match no row (a second run's sample table) are appended."""
    mapping, how = build_mapping(other.index, primary)
    rep.notes.append(f"merged into the clinical table: {len(mapping)}/{len(other)} rows matched ({how or 'no match'})")
    out = primary
    if mapping:
        sub = other.loc[[i for i in other.index if i in mapping]]
        sub.index = [mapping[i] for i in sub.index]
        sub = sub[~sub.index.duplicated()]
        new = [c for c in sub.columns if c not in primary.columns]
        out = primary.join(sub[new], how="left") if new else primary
    rest = other.loc[[i for i in other.index if i not in mapping and i not in out.index]]
    if len(rest) and len(set(other.columns) & set(primary.columns)) >= max(1, len(other.columns) / 2):
        out = pd.concat([out, rest])
        rep.notes.append(f"{len(rest)} row(s) with the same columns appended to the sample table")
    return out


def _harmonise(a: ad.AnnData, clinical: pd.DataFrame, rep: FileReport) -> tuple[ad.AnnData, SampleMatching | None]:
    """Rename a layer's samples to the sample table's ids; the record says how each was matched."""
    if clinical.empty and clinical.shape[0] == 0:
        return a, None
    ids = list(map(str, a.obs_names))
    parts = a.uns.get("sample_id_parts")
    extra = composite_keys(a.obs[list(parts)], clinical) if parts else None
    mapping, rule = match_samples(ids, clinical, extra)
    record = SampleMatching(layer="", source=str(a.uns.get("source", rep.path)), n_samples=len(ids), n_rows=clinical.shape[0])
    new = [mapping.get(i, i) for i in ids]
    if new != ids:
        a.obs["original_id"] = ids
        a.obs_names = new
    kept = ~pd.Index(new).duplicated()
    for i, k in zip(ids, kept):
        if i not in mapping:
            record.left_out[i] = "no sample-table row with this id or file name"
        elif not k:
            first = ids[new.index(mapping[i])]
            record.left_out[i] = f"matches the row {mapping[i]!r} already used by {first!r}; dropped"
    for i, k in zip(ids, kept):
        if i in mapping and k:
            record.rules[rule[i]] = record.rules.get(rule[i], 0) + 1
    if not kept.all():
        rep.notes.append(f"{int((~kept).sum())} sample(s) mapping to an already used clinical id dropped")
        a = a[kept].copy()
    rep.notes.append(f"{record.n_matched}/{len(ids)} samples match clinical rows")
    return a, record


def _annotate_from_layers(clinical: pd.DataFrame, layers: dict[str, ad.AnnData], notes: list[str]) -> pd.DataFrame:
    """Add the sample annotation a reader found in the data (TMT plex, tool run) as sample-table columns."""
    for name, a in layers.items():
        for col in a.uns.get("sample_annotation", []):
            target = col if col not in clinical.columns else f"{col}_{name}"
            values = a.obs[col].astype(str)
            new_rows = [i for i in values.index if i not in clinical.index]
            if new_rows:
                clinical = pd.concat([clinical, pd.DataFrame(index=pd.Index(new_rows, name=clinical.index.name))])
            clinical[target] = values.reindex(clinical.index)
            levels = ", ".join(f"{k} ({v})" for k, v in values.value_counts(sort=False).items())
            notes.append(f"column {target!r} added to the sample table from {a.uns.get('source')}: {levels}")
    return clinical


def _sample_tables_among_matrices(classified: list[tuple[RawTable, FileReport, str]]) -> list[tuple[RawTable, FileReport, str]]:
    """A narrow table read as a matrix is a sample table when one of its columns names the samples
    of another data table (its column headers, by file name) and another column repeats values like
    a design factor (replicate, dose, batch), e.g. a numeric-only sheet of raw files; a small panel
    of measurements per sample (all values distinct) stays a matrix."""
    headers = {id(t): {file_key(h) for h in t.df.columns} for t, _, k in classified if k in _DATA_KINDS}
    out = []
    for t, rep, kind in classified:
        if kind == "matrix" and t.df.shape[1] <= _MAX_SAMPLE_TABLE_COLUMNS:
            others = set().union(*[h for i, h in headers.items() if i != id(t)])
            for c in t.df.columns:
                vals = t.df[c].dropna().astype(str).str.strip()
                factor = any(t.df[o].nunique() <= len(t.df) / 2 for o in t.df.columns if o != c)
                if factor and len(vals) >= 2 and vals.is_unique and vals.map(file_key).isin(others).mean() >= 0.5:
                    t.notes.append(f"column {c!r} names the samples of another data table: read as a sample table")
                    kind = "clinical"
                    break
        out.append((t, rep, kind))
    return out


def _sample_table(tables: list[tuple[RawTable, FileReport]], data_ids: set[str], sample_notes: list[str]) -> pd.DataFrame:
    """The sample table: the table whose ids match the data's sample ids best (not the largest) is
    the reference; the others merge into it or, matching nothing, are not used. How its ids were
    read (raw-file paths shortened to stems) goes to ``sample_notes``."""
    indexed = []
    for t, rep in tables:
        rep.kind = "clinical"
        n_notes = len(t.notes)
        try:
            table, col, n_match = index_clinical(t, data_ids)
        except ReadProblem as e:
            _problem(rep, e)
            continue
        sample_notes += [f"{rep.path}: {n}" for n in t.notes[n_notes:]]
        rep.notes += t.notes + [f"sample id column {col!r} ({n_match} id(s) match the data)"]
        rep.shape = table.shape
        if table.index.has_duplicates:
            rep.notes.append("duplicated sample ids; first row kept")
            table = table[~table.index.duplicated()]
        indexed.append((n_match, table.shape[0], table, rep))
    indexed.sort(key=lambda x: (-x[0], -x[1]))
    clinical = pd.DataFrame()
    for n_match, _, table, rep in indexed:
        if clinical.empty and clinical.shape[1] == 0:
            clinical = table
            continue
        before = clinical.shape
        clinical = _merge_clinical(clinical, table, rep)
        if clinical.shape == before and n_match == 0:
            rep.kind = "ignored"
            rep.notes.append("no column matches the data's sample ids or the sample table: not used as a sample table")
    return clinical


def _head_reads_as_whole(t: RawTable, kind: str) -> bool:
    """Whether the head of a layer file (:func:`read_text_head`) fixes everything the study-wide
    decisions take from it: a plain matrix (too wide to be read as a sample table) whose header,
    column kinds and, for a short table, first column (:func:`_data_ids`) are in the head."""
    if kind != "matrix" or t.df.shape[1] <= _MAX_SAMPLE_TABLE_COLUMNS:
        return False
    if not t.partial:
        return True
    return t.min_rows > _MAX_ID_ROWS and not t.df.isna().all().any()  # no column_kinds "empty" in its rows


def load_study(
    path: str | Path,
    *,
    on_problem: Callable[[FileReport], None] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Study:
    """Read every usable file under ``path`` into a :class:`~proteus.study.Study`.

    Parameters
    ----------
    path
        A data folder (searched recursively; reading is confined to it) or a single file.
    on_problem
        Called with each :class:`FileReport` that has a problem (default: a logged warning).
    max_bytes
        Files, and decompressed contents, larger than this are refused (default 1.5 GB).

    Returns
    -------
    Study
        Layers in ``modalities`` (``proteomics``, ``phosphoproteomics``, ... ; a second layer of a
        kind is ``proteomics_2``), ``clinical`` indexed by the harmonised sample id, ``mutations``
        from MAF files, and one report per file in ``reports``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    NoUsableDataError
        Nothing analysable was found (no omics layer and no mutations).
    """
    return load_layers(path, None, on_problem=on_problem, max_bytes=max_bytes).study


@dataclass
class LayerLoad:
    """What :func:`load_layers` read: the study, the layer files left out (``{rel: kind}``) and the
    layer files whose content past their head the study-wide decisions (sample table, sample ids,
    classification) may depend on (all of them when no layer was left out by design)."""

    study: Study
    left_out: dict[str, str]
    read_whole: set[str]


def load_layers(
    path: str | Path,
    kinds: Collection[str] | None,
    *,
    read_mutations: bool = True,
    on_problem: Callable[[FileReport], None] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LayerLoad:
    """:func:`load_study` that leaves out the layers of kinds other than ``kinds`` (None: none left
    out) where that changes nothing else.

    A layer file (:func:`layer_files`) of another kind is read only as far as the loader's
    study-wide decisions use it (header, first column of a short table;
    :func:`_head_reads_as_whole`), and its layer is not built. Everything else equals
    ``load_study(path)``: where leaving a file out could change it (no sample table, so the layers
    name the samples; a layer read from another file whose content says it is of a left-out kind,
    which could change layer numbering; FCS files, whose sheet is recognised by content), every
    layer is read. ``kinds=None`` reads everything, as :func:`load_study`. Without ``read_mutations``,
    a MAF is read only as far as the study-wide decisions use it (its sample column) and
    ``mutations`` is None.
    """
    path = Path(path).expanduser()
    if not path.exists():
        msg = f"data path {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    root, cands, reports = discover(path, max_bytes)
    fcs = [c for c in cands if c.reader == "fcs"]
    fcs_names = {c.path.name for c in fcs}
    named = layer_files(cands)
    split = {} if kinds is None or fcs else named
    tables, headed, by_column = _read_tables(cands, max_bytes, reports, set(split), read_mutations)
    read_whole = set(named) - headed
    left_out: dict[str, str] = {}
    paths = {c.rel: c.path for c in cands}

    classified: list[tuple[RawTable, FileReport, str]] = []
    for t, rep in tables:
        if t.source in by_column:
            kind = _classify(RawTable(t.source, pd.DataFrame(columns=by_column[t.source]), t.header), fcs_names)
            if kind != "maf":
                del by_column[t.source]
                try:
                    t = read_text_table(paths[t.source], t.source, max_bytes, comment="#")
                except ReadProblem as e:
                    _problem(rep, e)
                    continue
        kind = _classify(t, fcs_names) if t.source not in by_column else "maf"
        if t.source in headed:
            if not _head_reads_as_whole(t, kind):
                read_whole.add(t.source)
            elif split[t.source] not in kinds:
                left_out[t.source] = split[t.source]
            if t.partial and t.source not in left_out:
                try:
                    t = read_text_table(paths[t.source], t.source, max_bytes)
                except ReadProblem as e:
                    _problem(rep, e)
                    continue
                kind = _classify(t, fcs_names)
        if kind.startswith("unsupported: "):
            rep.kind = "unsupported"
            _problem(rep, ReadProblem(kind.removeprefix("unsupported: ")))
            continue
        classified.append((t, rep, kind))
    classified = _sample_tables_among_matrices(classified)
    data_ids = _data_ids([(t, k) for t, _, k in classified])
    sample_notes: list[str] = []
    clinical = _sample_table([(t, r) for t, r, k in classified if k == "clinical"], data_ids, sample_notes)

    modalities: dict[str, ad.AnnData] = {}
    matching: list[SampleMatching] = []

    def add(a: ad.AnnData, rep: FileReport, record: SampleMatching | None = None) -> str:
        kind = a.uns["modality"]
        name, n = kind, 1
        while name in modalities:
            n += 1
            name = f"{kind}_{n}"
        modalities[name] = a
        rep.modality = name
        rep.shape = (a.n_obs, a.n_vars)
        if record is not None:
            record.layer = name
            matching.append(record)
        return name

    known = set(map(str, clinical.index))
    for c in clinical.columns:
        if clinical[c].dtype == object:
            known |= set(clinical[c].dropna().astype(str))
    mutations = []
    read: list[tuple[ad.AnnData, FileReport, str]] = []
    for t, rep, kind in classified:
        if kind == "clinical":
            continue
        rep.kind = rep.kind or kind
        rep.notes = t.notes + rep.notes
        notes = rep.notes
        try:
            if kind == "maf" and t.source in by_column:
                notes.append("mutations not read (not asked for)")
            elif kind == "maf":
                m = read_maf(t, notes)
                mapping, how = build_mapping(m["sample"].unique(), clinical) if not clinical.empty else ({}, "")
                n_ids = m["sample"].nunique()
                if mapping:
                    m["sample_barcode"] = m["sample"]
                    m["sample"] = m["sample"].map(lambda s: mapping.get(s, s))
                    notes.append(f"{len(mapping)}/{n_ids} tumour sample barcodes mapped to clinical ids via {how}")
                elif not clinical.empty:
                    notes.append(f"0/{n_ids} tumour sample barcodes match the clinical table")
                rep.shape = m.shape
                mutations.append(m)
            elif kind in ("panel", "sample_sheet"):
                rep.shape = t.df.shape
            elif t.source in left_out:
                rep.modality = left_out[t.source]
                notes.append(f"{left_out[t.source]} layer not read (not asked for)")
            else:
                reader = {n: r for n, _, r in _VENDORS}.get(kind)
                read.append((reader(t, notes) if reader else read_matrix(t, known, notes), rep, kind))
        except ReadProblem as e:
            _problem(rep, e)
        except (ValueError, KeyError, TypeError) as e:
            _problem(rep, ReadProblem(f"could not interpret the table as {kind} ({type(e).__name__}: {str(e)[:120]})"))

    harmonised = [(*_harmonise(a, clinical, rep), rep, merged) for a, rep, merged in merge_runs(read)]
    matched_sheets = {rep.path.rsplit(":", 1)[0] for _, rec, rep, _ in harmonised if rec and rec.n_matched and ":" in rep.path}
    for a, record, rep, merged in harmonised:
        if record and not record.n_matched and rep.path.rsplit(":", 1)[0] in matched_sheets:
            _problem(rep, ReadProblem("no sample id matches the sample table, unlike the other sheets of the workbook: not a data sheet; not analysed"))
            continue
        name = add(a, rep, record)
        for r in merged:
            r.modality, r.shape = name, None

    for c in cands:
        if c.reader != "h5ad":
            continue
        rep = FileReport(c.rel, kind="h5ad")
        reports.append(rep)
        try:
            a = read_h5ad(c.path, c.rel, rep.notes)
            record = None
            if a.uns["level"] == "sample":
                a, record = _harmonise(a, clinical, rep)
            add(a, rep, record)
        except ReadProblem as e:
            _problem(rep, e)

    if fcs:
        clinical = _read_fcs(fcs, classified, clinical, reports, add)

    if left_out and (clinical.shape[1] == 0 or any(a.uns["modality"] in left_out.values() for a in modalities.values())):
        return load_layers(path, None, read_mutations=read_mutations, on_problem=on_problem, max_bytes=max_bytes)
    if clinical.shape[1] == 0:
        read_whole |= set(named)  # the layers name the samples
        ids: dict[str, None] = dict.fromkeys(map(str, clinical.index))
        for a in modalities.values():
            if a.uns.get("level") == "sample":
                ids.update(dict.fromkeys(map(str, a.obs_names)))
        clinical = pd.DataFrame(index=pd.Index(list(ids), name="sample"))
        groups = groups_from_names(list(ids))
        if groups is not None:
            clinical["group"] = groups
            levels = ", ".join(f"{k} ({v})" for k, v in groups.value_counts().items())
            reports.append(FileReport("(sample names)", kind="sample_groups", notes=[f"no sample table: groups read from sample names: {levels}"]))
    clinical = _annotate_from_layers(clinical, modalities, sample_notes)
    clinical = add_run_order(clinical, [s for a in modalities.values() if a.uns.get("level", "sample") == "sample" for s in a.obs_names], sample_notes)
    clinical, tidied = tidy_levels(clinical)
    sample_notes += tidied
    clinical.index = clinical.index.astype(str)
    muts = pd.concat(mutations, ignore_index=True) if mutations else None

    reports.sort(key=lambda r: r.path)
    for rep in reports:
        if rep.problem:
            (on_problem or (lambda r: log.warning("%s", r.problem)))(rep)
    if not modalities and muts is None:
        bad = [r for r in reports if r.problem]
        if bad:
            reason = f"no usable data in {path}: {len(bad)} file(s) unreadable (first: {bad[0].problem})"
        elif any(r.kind == "clinical" for r in reports):
            reason = f"no usable data in {path}: only a clinical/sample table, no omics layer or mutations"
        else:
            reason = f"no usable data in {path}: no data files found"
        raise NoUsableDataError(reason)
    study = Study(root=root, modalities=modalities, clinical=clinical, mutations=muts, reports=reports,
                  sample_matching=matching, sample_notes=sample_notes)
    return LayerLoad(drop_excluded(study), left_out, read_whole)


def _classify(t: RawTable, fcs_names: set[str]) -> str:
    """What a raw table holds: a vendor report kind, ``maf``, ``panel`` / ``sample_sheet`` (beside
    FCS files), ``clinical``, ``matrix``, or ``unsupported: <why>``."""
    cols = list(t.df.columns)
    refusal = unsupported_layout(cols)
    if refusal:
        return f"unsupported: {refusal}"
    kind = next((name for name, test, _ in _VENDORS if test(cols)), None)
    if kind is not None:
        return kind
    if is_maf(cols):
        return "maf"
    if fcs_names and is_panel(t):
        return "panel"
    if fcs_names and is_sample_sheet(t, fcs_names):
        return "sample_sheet"
    return "clinical" if looks_clinical(t) else "matrix"


def _read_fcs(fcs, classified, clinical, reports, add) -> pd.DataFrame:
    """Hand FCS files, the sample sheet and the panel to ``proteus.io.cytometry.read_cytometry``."""
    sheet = next((t.df for t, _, k in classified if k == "sample_sheet"), None)
    panel = next((t.df for t, _, k in classified if k == "panel"), None)
    try:
        from proteus.io.cytometry import read_cytometry
    except ImportError as e:
        for c in fcs:
            msg = f"{c.rel}: skipped, the cytometry reader (proteus.io.cytometry) is not available ({e})"
            reports.append(FileReport(c.rel, kind="fcs", problem=msg))
        return clinical
    reps = [FileReport(c.rel, kind="fcs") for c in fcs]
    reports.extend(reps)
    try:
        a, samples = read_cytometry([c.path for c in fcs], sheet, panel)
    except Exception as e:  # a foreign reader: report its failure as a file problem, keep the study
        for r in reps:
            r.problem = f"{r.path}: cytometry reader failed ({type(e).__name__}: {str(e)[:150]})"
        return clinical
    a.uns.setdefault("modality", "cytometry")
    a.uns.setdefault("level", "cell")
    a.uns.setdefault("source", fcs[0].rel if len(fcs) == 1 else f"{len(fcs)} FCS files")
    a.uns.setdefault("scale", "linear")
    a.uns.setdefault("transform", "none")
    add(a, reps[0])
    per_file = a.obs["file"].astype(str).value_counts() if "file" in a.obs else pd.Series(dtype=int)
    summary = f"layer of {a.n_obs} cells x {a.n_vars} markers from {len(fcs)} file(s), {a.obs['sample_id'].nunique()} samples"
    for c, r in zip(fcs, reps):
        r.modality = reps[0].modality
        r.shape = (int(per_file[c.path.name]), a.n_vars) if c.path.name in per_file else None
        r.notes.append(summary)
    if samples is None or samples.empty:
        return clinical
    samples = samples.copy()
    samples.index = samples.index.astype(str)
    if clinical.empty and clinical.shape[1] == 0:
        return samples
    return _merge_clinical(clinical, samples, reps[0])
