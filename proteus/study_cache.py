"""A parsed-study cache, so that repeated single-tool calls (``proteus tools run``) skip parsing.

The first call reads the folder with :func:`proteus.io.load_study` and stores the result under
``<cache>/<key>/``: ``study.pkl`` (everything but the layers: clinical table, mutations, file
reports, layer names) and ``layers/<name>.pkl`` (one AnnData each). Later calls read
``study.pkl`` and only the layers they ask for. ``key`` hashes the input files' contents
(:func:`proteus.rundir.fingerprint`) together with the reader code's own bytes and the versions of
anndata, pandas and numpy, so a changed input file, reader or library is a miss, never a stale hit.

``<cache>`` is ``$PROTEUS_CACHE``, else ``$XDG_CACHE_HOME/proteus``, else ``~/.cache/proteus``
(then ``studies/``). The cache holds pickles written by this user; it is not for sharing.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable
from importlib import metadata, resources
from pathlib import Path

from proteus.rundir import fingerprint, input_files
from proteus.study import Study

__all__ = ["cache_dir", "study_key", "load_study_cached"]


def cache_dir() -> Path:
    """Where parsed studies are kept (see the module docstring)."""
    if os.environ.get("PROTEUS_CACHE"):
        return Path(os.environ["PROTEUS_CACHE"]) / "studies"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "proteus" / "studies"


def _reader_digest() -> str:
    h = hashlib.sha256()
    for f in sorted(resources.files("proteus.io").iterdir(), key=lambda f: f.name):
        if f.name.endswith(".py"):
            h.update(f.name.encode() + f.read_bytes())
    h.update(resources.files("proteus").joinpath("study.py").read_bytes())
    return h.hexdigest()


def _pickle_versions() -> dict[str, str]:
    """Versions of the libraries whose objects the cache pickles (a pickle need not load in another)."""
    return {name: metadata.version(name) for name in ("anndata", "pandas", "numpy")}


def study_key(data: str | Path) -> str:
    """Content hash of the input files under ``data``, of the reader code and of the versions of the
    pickled libraries."""
    data = Path(data)
    fp = fingerprint(input_files(data), data)
    blob = json.dumps({"inputs": fp, "readers": _reader_digest(), "libraries": _pickle_versions()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _dump(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> object:
    with open(path, "rb") as f:
        return pickle.load(f)


def load_study_cached(
    data: str | Path,
    *,
    layers: Callable[[list[str]], Iterable[str]] | None = None,
    cache: str | Path | None = None,
) -> Study:
    """:func:`proteus.io.load_study` through the cache.

    Parameters
    ----------
    data
        Data folder (or file), as for ``load_study``.
    layers
        Picks, from the names of all the study's layers, the ones to read (default: all). The
        returned study holds only those; clinical table, mutations and reports are always read.
    cache
        Cache folder (default :func:`cache_dir`).

    Returns
    -------
    Study
        Equal to ``load_study(data)`` restricted to the chosen layers.
    """
    folder = Path(cache or cache_dir()) / study_key(data)
    meta_path = folder / "study.pkl"
    if not meta_path.is_file():
        from proteus.io import load_study

        study = load_study(data)
        for name, adata in study.modalities.items():
            _dump(adata, folder / "layers" / f"{name}.pkl")
        meta = Study(study.root, {}, study.clinical, study.mutations, study.reports)
        _dump((meta, list(study.modalities)), meta_path)  # written last: its presence marks a complete entry
        if layers is None:
            return study
        keep = set(layers(list(study.modalities)))
        return Study(study.root, {k: a for k, a in study.modalities.items() if k in keep}, study.clinical, study.mutations, study.reports)
    meta, names = _load(meta_path)
    meta.root = Path(data)
    chosen = set(layers(list(names))) if layers is not None else set(names)
    meta.modalities = {n: _load(folder / "layers" / f"{n}.pkl") for n in names if n in chosen}
    return meta
