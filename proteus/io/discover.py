"""Find the files of a data folder and decide which reader each goes to, refusing unsafe ones.

Refused (with a one-line problem): symlinks resolving outside the folder, broken symlinks, files
over the size limit, legacy ``.xls``. Ignored (reported, not errors): hidden files and folders,
README / Markdown / JSON and other non-data files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from proteus.io.modality import kind_from_name
from proteus.study import FileReport

__all__ = ["Candidate", "discover", "layer_files", "DEFAULT_MAX_BYTES", "HEAD_LINES"]

DEFAULT_MAX_BYTES = 1_500_000_000
"""Largest file (and decompressed content) read: 1.5 GB."""

HEAD_LINES = 5002
"""The head of a layer file (:func:`layer_files`): header and 5001 rows, one more than the loader
reads the first column of (``proteus.io.load``)."""

_TABLE_EXT = {".tsv", ".csv", ".txt", ".tab", ".maf", ".cct", ".cbt", ".dat", ".psv"}
_IGNORE_EXT = {
    ".md", ".json", ".pdf", ".png", ".jpg", ".jpeg", ".svg", ".html", ".htm", ".log", ".py", ".r",
    ".ipynb", ".yaml", ".yml", ".toml", ".sh", ".doc", ".docx", ".pptx", ".rmd", ".ini", ".cfg",
}
_ARCHIVE_EXT = {".zip", ".tar", ".tgz", ".7z", ".rar", ".bz2", ".xz"}


@dataclass
class Candidate:
    """A file to read: ``reader`` is ``table``, ``excel``, ``parquet``, ``h5ad`` or ``fcs``."""

    path: Path
    rel: str
    reader: str


def _reader_for(name: str) -> tuple[str | None, str | None]:
    """(reader, reason-if-ignored) from the file name."""
    low = name.lower()
    base = low[:-3] if low.endswith(".gz") else low
    ext = os.path.splitext(base)[1]
    if name.startswith("."):
        return None, "hidden file; ignored"
    if base.startswith("readme") or ext in _IGNORE_EXT:
        return None, "not a data file (documentation/metadata); ignored"
    if ext in _ARCHIVE_EXT:
        return None, "archive; not unpacked (extract it into the folder to read it)"
    if ext in (".xlsx", ".xlsm"):
        return "excel", None
    if ext == ".xls":
        return "xls", None
    if ext == ".h5ad":
        return "h5ad", None
    if ext == ".fcs":
        return "fcs", None
    if ext == ".parquet":
        return "parquet", None
    return "table", None  # known table extensions and anything else: content decides


def discover(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Path, list[Candidate], list[FileReport]]:
    """List readable files under ``path`` (a folder, or a single file).

    Returns
    -------
    (root, candidates, reports)
        ``root`` is the folder reading is confined to; ``reports`` hold ignored/refused entries.
    """
    path = Path(path)
    if path.is_file():
        root = path.parent.resolve()
        entries = [path]
    else:
        root = path.resolve()
        entries = []
        hidden: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
            dirnames.sort()
            keep = []
            for d in dirnames:
                full = Path(dirpath) / d
                if d.startswith("."):
                    hidden.append(full)
                    continue
                if full.is_symlink():
                    entries.append(full)  # judged below like a symlinked file
                    continue
                keep.append(d)
            dirnames[:] = keep
            entries += [Path(dirpath) / f for f in sorted(filenames)]
    cands: list[Candidate] = []
    reports: list[FileReport] = []
    for p in entries:
        try:
            rel = p.relative_to(path).as_posix() if p != path else p.name
        except ValueError:
            rel = p.name
        name = p.name
        if p.is_symlink():
            try:
                target = p.resolve(strict=True)
            except (OSError, RuntimeError):
                reports.append(FileReport(rel, kind="refused", problem=f"{rel}: broken symbolic link; not read"))
                continue
            if not target.is_relative_to(root):
                msg = f"{rel}: symbolic link pointing outside the data folder ({target}); refused"
                reports.append(FileReport(rel, kind="refused", problem=msg))
                continue
            if target.is_dir():
                reports.append(FileReport(rel, kind="ignored", notes=["symbolic link to a folder inside the data folder; not followed"]))
                continue
        reader, why = _reader_for(name)
        if reader is None:
            reports.append(FileReport(rel, kind="ignored", notes=[why]))
            continue
        try:
            size = p.stat().st_size
        except OSError as e:
            reports.append(FileReport(rel, kind="refused", problem=f"{rel}: cannot stat file ({e.strerror})"))
            continue
        if size > max_bytes:
            msg = f"{rel}: {size / 1e9:.2f} GB exceeds the size limit of {max_bytes / 1e9:.2f} GB; not read"
            reports.append(FileReport(rel, kind="refused", problem=msg))
            continue
        if reader == "xls":
            msg = f"{rel}: legacy Excel .xls is not supported; save it as .xlsx or .csv"
            reports.append(FileReport(rel, kind="refused", problem=msg))
            continue
        cands.append(Candidate(p, rel, reader))
    if path.is_dir():
        for h in hidden:
            reports.append(FileReport(h.relative_to(path).as_posix(), kind="ignored", notes=["hidden folder; ignored"]))
        for dirpath, dirnames, _ in os.walk(path, followlinks=False):
            for d in sorted(dirnames):
                low = d.lower().removesuffix(".gz")
                if not d.startswith(".") and os.path.splitext(low)[1] in _TABLE_EXT | {".xlsx", ".h5ad", ".fcs"}:
                    rel = (Path(dirpath) / d).relative_to(path).as_posix()
                    reports.append(FileReport(rel, kind="folder", notes=["a folder named like a data file; searched inside"]))
    return root, cands, reports


def layer_files(cands: list[Candidate]) -> dict[str, str]:
    """Text tables whose file name decides their layer's kind (``phospho...``, ``...rna...``; see
    :func:`~proteus.io.modality.kind_from_name`), as ``{rel: kind}``. MAFs hold no layer."""
    out = {}
    for c in cands:
        by_name = kind_from_name(c.rel.rsplit("/", 1)[-1]) if c.reader == "table" and ".maf" not in c.rel.lower() else None
        if by_name is not None:
            out[c.rel] = by_name[0]
    return out
