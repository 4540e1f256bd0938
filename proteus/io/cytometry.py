"""Flow and mass cytometry: FCS files (+ sample sheet, + panel) -> one cell-level AnnData layer.

:func:`read_cytometry` reads FCS 2.0 / 3.0 / 3.1 files with :mod:`flowio` and stacks them into a
cells x markers :class:`~anndata.AnnData` that follows the :mod:`proteus.study` conventions for
cell-level layers:

- ``obs``: one row per event, ``sample_id`` (from the sample sheet, else the file stem) plus every
  sample-sheet column (``condition``, ``patient_id``, ...) as categoricals, and ``file``.
- ``var``: one row per marker, indexed by antigen name (panel ``antigen``, else ``$PnS``, else
  ``$PnN``); columns ``channel`` (``$PnN``), ``marker_class`` (``type`` = lineage, used for
  clustering; ``state`` = signalling / functional; ``none``) as CATALYST's panel defines them.
- ``X`` = ``layers["raw"]`` = the untransformed values (float32); the tools transform with
  ``arcsinh(x / cofactor)`` (CATALYST / diffcyt convention) and write ``layers["arcsinh"]``.
- ``uns``: ``modality="cytometry"``, ``level="cell"``, ``source``, ``instrument`` (``mass`` or
  ``fluorescence``), ``cofactor`` (5 for mass, 150 for fluorescence), ``files``, ``notes``.
- ``obsm["non_marker"]``: scatter, time and other non-marker channels (fluorescence data, no
  panel), kept for gating but not analysed as markers.

It returns the sample table too: indexed by ``sample_id`` with the sample-sheet columns and
``n_cells``; the dispatcher (:func:`proteus.io.load_study`) merges it into ``Study.clinical``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

__all__ = ["read_cytometry", "read_fcs", "is_panel", "is_sample_sheet", "guess_instrument", "COFACTOR"]

COFACTOR = {"mass": 5.0, "fluorescence": 150.0}
"""arcsinh cofactors by instrument (Bendall 2011 for CyTOF; 150 the usual choice for flow)."""

# metal-tagged channel names: "CD3(110:114)Dd", "CD45(In115)Dd", "Yb172Di", "141Pr", "(Nd142)"
_METAL = re.compile(r"(\(\s*[A-Z][a-z]?\d{2,3}\s*\)|\d{2,3}\s*[:-]\s*\d{2,3}\)|\b[A-Z][a-z]?\d{2,3}D[di]\b|^\d{2,3}[A-Z][a-z]?$|D[di]$)")
_NON_MARKER = re.compile(
    r"^(time|event.?length|event_length|cell.?length|center|offset|width|residual|beadDist|bead|"
    r"(fsc|ssc)(-[ahw])?|(fsc|ssc).*|dna\d?|cisplatin|live.?dead|viability|barcode|bc\d+|"
    r"ir19[13]di|pt19[4-8]di|ce140di|.*_?sampleid|sample.?id|original.?id)$",
    re.IGNORECASE,
)
_PHOSPHO = re.compile(r"^(p[A-Z0-9]|pp\d)")  # pS6, pStat5, pp38 (case-sensitive: not "PE-Cy7")
_STATE_WORD = re.compile(r"^(phospho|cleaved|ki-?67$|ifn|il-?\d|tnf|granzyme|perforin|cc3|cparp)", re.IGNORECASE)


def _is_state(label: str) -> bool:
    """Signalling/functional marker by name: phospho-epitopes, cytokines, cleaved caspase, Ki-67."""
    return bool(_PHOSPHO.match(label) or _STATE_WORD.match(label))
_SAMPLE_COLS = ("sample_id", "sample", "sample_name", "samplename", "id")


def is_panel(df: pd.DataFrame) -> bool:
    """Whether ``df`` is a cytometry panel: a channel column and an antigen/marker column.

    A channel column is named like ``fcs_colname``, ``channel``, ``metal`` or ``fluorochrome``; an
    antigen column like ``antigen``, ``marker``, ``target`` or ``desc``.
    """
    return _panel_columns(df) is not None


def is_sample_sheet(df: pd.DataFrame, fcs_names: Sequence[str]) -> str | None:
    """The column of ``df`` whose values name the FCS files (an FCS sample sheet), else ``None``.

    Values match a file name with or without its ``.fcs`` extension or a leading folder.
    """
    names = {Path(n).name for n in fcs_names}
    keys = names | {Path(n).stem for n in names}
    for c in df.columns:
        vals = df[c].dropna().astype(str).str.strip().map(lambda s: re.split(r"[\\/]", s)[-1])
        if len(vals) and vals.isin(keys).mean() > 0.5:
            return str(c)
    return None


def guess_instrument(channels: Sequence[str], text: dict[str, str] | None = None) -> str:
    """``"mass"`` when channel names carry metal masses (``(Nd142)Dd``, ``Yb172Di``) or the
    ``$CYT`` keyword names a CyTOF/Helios/Hyperion, else ``"fluorescence"``."""
    cyt = str((text or {}).get("cyt", "")).lower()
    if any(k in cyt for k in ("cytof", "helios", "hyperion", "xt")):
        return "mass"
    hits = sum(bool(_METAL.search(str(c))) for c in channels)
    return "mass" if channels and hits >= max(2, len(channels) // 3) else "fluorescence"


def read_fcs(path: str | Path) -> tuple[pd.DataFrame, dict[str, str], dict[str, str]]:
    """One FCS file -> (events x channels float32 DataFrame named by ``$PnN``, ``$PnN -> $PnS``, TEXT).

    ``flowio`` parses FCS 2.0 / 3.0 / 3.1 and applies ``$PnG`` / ``$PnE`` (gain and log
    amplification of integer data), so the values are on the instrument's linear scale.
    """
    import flowio

    f = flowio.FlowData(str(path), ignore_offset_error=True)
    pnn = [str(x).strip() for x in f.pnn_labels]
    pns = [str(x).strip() if x is not None else "" for x in f.pns_labels]
    arr = np.asarray(f.as_array(preprocess=True), dtype=np.float32).reshape(-1, f.channel_count)
    names = _unique(pnn)
    df = pd.DataFrame(arr, columns=names)
    text = {str(k).lower(): str(v) for k, v in f.text.items()}
    text["fcs_version"] = str(f.version)
    return df, dict(zip(names, pns)), text


def read_cytometry(
    fcs_files: Sequence[str | Path],
    sample_sheet: pd.DataFrame | None = None,
    panel: pd.DataFrame | None = None,
) -> tuple[ad.AnnData, pd.DataFrame]:
    """Read FCS files into one cell-level AnnData and a sample table.

    Parameters
    ----------
    fcs_files
        Paths of FCS files, one sample each.
    sample_sheet
        Optional table with a column of file names (see :func:`is_sample_sheet`), a sample id
        column (``sample_id``/``sample``...; else the file stem) and sample annotations
        (``condition``, ``patient_id``...). Files the sheet does not list are skipped (noted).
    panel
        Optional CATALYST-style panel: channel (``fcs_colname``), ``antigen`` and
        ``marker_class`` (``type``/``state``/``none``). With a panel only its channels are kept
        and named by antigen; without one, ``$PnS`` names markers and scatter/time/DNA/bead
        channels go to ``obsm["non_marker"]``.

    Returns
    -------
    adata
        Cells x markers, see the module docstring.
    samples
        Sample table indexed by ``sample_id``: sheet columns (without the file column) and
        ``n_cells``.

    Raises
    ------
    ValueError
        No file could be read, or no channel is shared by all files.
    """
    paths = [Path(p) for p in fcs_files]
    if not paths:
        msg = "read_cytometry needs at least one FCS file"
        raise ValueError(msg)
    notes: list[str] = []
    sheet, file_col = _sheet(sample_sheet, paths, notes)
    pan = _panel(panel, notes)

    frames, pns_map, texts, sample_rows = [], {}, [], []
    for p in sorted(paths, key=lambda x: x.name):
        row = _sheet_row(sheet, file_col, p)
        if sheet is not None and row is None:
            notes.append(f"{p.name}: not in the sample sheet, skipped")
            continue
        df, pns, text = read_fcs(p)
        tot = text.get("tot")
        if tot is not None and tot.strip().isdigit() and int(tot) != len(df):
            notes.append(f"{p.name}: $TOT={tot} but {len(df)} events read")
        frames.append(df)
        pns_map.update({k: v for k, v in pns.items() if v})
        texts.append(text)
        sample_rows.append((p, row, len(df)))
    if not frames:
        msg = "no FCS file could be matched to the sample sheet"
        raise ValueError(msg)

    common = [c for c in frames[0].columns if all(c in f.columns for f in frames[1:])]
    dropped = set().union(*(set(f.columns) for f in frames)) - set(common)
    if dropped:
        notes.append(f"{len(dropped)} channel(s) not present in every file dropped: {', '.join(sorted(dropped)[:6])}")
    if not common:
        msg = "the FCS files share no channel"
        raise ValueError(msg)
    instrument = guess_instrument(common, texts[0])

    # channel -> (antigen, marker_class)
    markers: dict[str, tuple[str, str]] = {}
    non_marker: list[str] = []
    if pan is not None:
        for ch in common:
            hit = pan.get(ch) or pan.get(_norm_channel(ch))
            if hit is not None:
                markers[ch] = hit
        missing = [ch for ch in pan if ch not in {_norm_channel(c) for c in common} and ch not in common]
        if missing:
            notes.append(f"{len(missing)} panel channel(s) not in the files: {', '.join(missing[:6])}")
        if not markers:
            notes.append("no panel channel matched the FCS channels; panel ignored")
    if not markers:
        for ch in common:
            label = pns_map.get(ch) or ch
            if _NON_MARKER.match(ch) or _NON_MARKER.match(label) or (instrument == "mass" and not pns_map.get(ch) and not _METAL.search(ch)):
                non_marker.append(ch)
            else:
                markers[ch] = (label, "state" if _is_state(label) else "type")
        if not markers:
            msg = "no marker channel found (every channel looks like scatter, time or DNA)"
            raise ValueError(msg)
        notes.append(
            "no panel: markers named by $PnS; marker_class guessed from names (p* = state, others = type); "
            f"{len(non_marker)} non-marker channel(s) kept in obsm['non_marker']"
        )

    chans = list(markers)
    var = pd.DataFrame(
        {"channel": chans, "marker_class": [markers[c][1] for c in chans]},
        index=_unique([markers[c][0] for c in chans]),
    )
    X = np.vstack([f[chans].to_numpy(np.float32) for f in frames])

    obs_parts, samples = [], []
    extra_cols = [c for c in (sheet.columns if sheet is not None else []) if c not in (file_col, "sample_id", "_key")]
    for p, row, n in sample_rows:
        sid = str(row["sample_id"]) if row is not None else p.stem
        rec = {"sample_id": sid}
        for c in extra_cols:
            rec[c] = row[c]
        rec["n_cells"] = n
        samples.append(rec)
        obs_parts.append(pd.DataFrame({"sample_id": [sid] * n, "file": [p.name] * n, **{c: [row[c]] * n for c in extra_cols}}))
    obs = pd.concat(obs_parts, ignore_index=True)
    for c in obs.columns:
        obs[c] = pd.Categorical(obs[c].astype(str), categories=list(dict.fromkeys(obs[c].astype(str))))
    obs.index = [f"{s}_{i}" for s, i in zip(obs["sample_id"].astype(str), _within_index(obs["sample_id"]))]

    adata = ad.AnnData(X=X.copy(), obs=obs, var=var)
    adata.layers["raw"] = X
    if non_marker:
        adata.obsm["non_marker"] = pd.DataFrame(
            np.vstack([f[non_marker].to_numpy(np.float32) for f in frames]), index=adata.obs_names, columns=non_marker
        )
    sample_table = pd.DataFrame(samples).drop_duplicates("sample_id").set_index("sample_id")
    if sample_table.index.duplicated().any() or len(sample_table) < len(samples):
        notes.append("several files share a sample id; their cells are pooled under that id")
        counts = obs["sample_id"].astype(str).value_counts()
        sample_table["n_cells"] = counts.reindex(sample_table.index).to_numpy()
    sample_table.index = sample_table.index.astype(str)
    sample_table.index.name = "sample_id"
    adata.uns.update(
        {
            "modality": "cytometry",
            "level": "cell",
            "source": ", ".join(p.name for p, _, _ in sample_rows) if len(sample_rows) <= 3 else f"{len(sample_rows)} FCS files",
            "files": [p.name for p, _, _ in sample_rows],
            "instrument": instrument,
            "cofactor": COFACTOR[instrument],
            "fcs_version": texts[0].get("fcs_version", ""),
            "notes": notes,
        }
    )
    return adata, sample_table


# --- helpers --------------------------------------------------------------------------------


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0) + 1
        seen[n] = k
        out.append(n if k == 1 else f"{n}_{k}")
    return out


def _within_index(s: pd.Series) -> np.ndarray:
    return s.groupby(s, observed=True).cumcount().to_numpy()


def _norm_channel(ch: str) -> str:
    return re.sub(r"\s+", "", str(ch)).lower()


def _panel_columns(df: pd.DataFrame | None) -> tuple[str, str, str | None] | None:
    if df is None or df.empty or df.shape[1] > 10:
        return None
    cols = [str(c) for c in df.columns]
    low = [c.lower() for c in cols]
    ch = next((c for c, l in zip(cols, low) if re.search(r"fcs|channel|colname|metal|fluor|pnn", l)), None)
    ag = next((c for c, l in zip(cols, low) if re.search(r"antigen|marker(?!.?class)|target|desc|pns", l) and c != ch), None)
    cl = next((c for c, l in zip(cols, low) if re.search(r"class|type|category|use", l) and c not in (ch, ag)), None)
    if ch is None or ag is None:
        return None
    return ch, ag, cl


def _panel(panel: pd.DataFrame | None, notes: list[str]) -> dict[str, tuple[str, str]] | None:
    """Panel -> {channel (as written and normalised): (antigen, marker_class)}."""
    if panel is None:
        return None
    cols = _panel_columns(panel)
    if cols is None:
        notes.append("panel table has no channel/antigen columns; ignored")
        return None
    ch, ag, cl = cols
    out: dict[str, tuple[str, str]] = {}
    for _, r in panel.iterrows():
        if pd.isna(r[ch]) or pd.isna(r[ag]):
            continue
        klass = str(r[cl]).strip().lower() if cl is not None and pd.notna(r[cl]) else ""
        if klass not in ("type", "state", "none"):
            klass = "state" if _is_state(str(r[ag])) else "type"
        val = (str(r[ag]).strip(), klass)
        out[str(r[ch]).strip()] = val
        out[_norm_channel(r[ch])] = val
    return out


def _sheet(sheet: pd.DataFrame | None, paths: list[Path], notes: list[str]) -> tuple[pd.DataFrame | None, str | None]:
    if sheet is None or sheet.empty:
        return None, None
    file_col = is_sample_sheet(sheet, [p.name for p in paths])
    if file_col is None:
        notes.append("sample sheet has no column of FCS file names; ignored")
        return None, None
    df = sheet.copy()
    df.columns = [str(c).strip() for c in df.columns]
    df["_key"] = df[file_col].astype(str).str.strip().map(lambda s: Path(re.split(r"[\\/]", s)[-1]).stem)
    sid = next((c for c in df.columns if c.lower() in _SAMPLE_COLS and c != file_col), None)
    df["sample_id"] = df[sid].astype(str).str.strip() if sid is not None else df["_key"]
    if sid is not None and sid != "sample_id":
        df = df.drop(columns=[sid])
    return df, file_col


def _sheet_row(sheet: pd.DataFrame | None, file_col: str | None, path: Path) -> pd.Series | None:
    if sheet is None:
        return None
    hit = sheet[sheet["_key"] == path.stem]
    if hit.empty:
        return None
    return hit.drop(columns=["_key"]).iloc[0]
