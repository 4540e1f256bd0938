"""A parsed-study cache: a ``proteus tools run`` call parses only the layers it names, once.

Layer files are the text tables whose name decides their layer's kind
(:func:`proteus.io.discover.layer_files`: ``proteomics.tsv``, ``phospho_sites.csv``...). The rest
(sample tables, MAFs, vendor reports, ...) is the study's shared part. Under ``<cache>/<key>/``:

- ``study.pkl``: the shared part, parsed on every miss: sample table, mutations (when asked for),
  reports, the layers read from files that are not layer files (``layers/<name>.pkl``);
- ``kinds/<kind>-<hash>.pkl``: the layers of one kind read from its layer files, their reports and
  sample matching, added when a call first needs that kind (:func:`proteus.io.load.load_layers`).

``key`` hashes the contents of every input file but the layer files
(:func:`proteus.rundir.fingerprint`), the layer files' names, the reader code, this module's (the
stored format) and the versions of
anndata, pandas and numpy. Of a layer file the shared part depends on its head only (its first
:data:`~proteus.io.discover.HEAD_LINES` lines: all the loader's study-wide decisions read of a layer
it leaves out); ``study.pkl`` keeps each layer file's hash and head hash, and a layer file whose
content changed but not its head leaves the shared part valid. ``<hash>`` hashes those heads and
the kind's files' whole contents. So a changed layer file is a miss for its kind only. Where the
shared part read a layer file whole (its head did not suffice), a change to it is a miss for
everything.

A layer is stored as its AnnData's parts (``X``, ``obs``, ``var``, ``uns``, and any non-empty
``layers``, ``obsm``, ``varm``, ``obsp``, ``varp``, ``raw``: numpy, scipy.sparse and pandas objects),
never as an AnnData, and read back as a :class:`CachedLayer`. So a hit imports pandas and numpy but
not anndata (with zarr and h5py, more than half of a warm ``tools run``'s imports): a tool that uses
a layer's ``X``, ``obs``, ``var`` and ``uns`` (the two-group differential test) runs without it.

``<cache>`` is ``$PROTEUS_CACHE``, else ``$XDG_CACHE_HOME/proteus``, else ``~/.cache/proteus``
(then ``studies/``). The cache holds pickles written by this user; it is not for sharing.
Files are written to a temporary name and renamed, so a killed writer leaves no partial entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import sys
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from proteus.io._text import head_bytes
from proteus.io.discover import HEAD_LINES, Candidate, discover, layer_files
from proteus.rundir import fingerprint, input_files
from proteus.study import Study

__all__ = ["cache_dir", "study_key", "load_study_cached", "CachedLayer", "import_anndata_without_dask"]

_MAPPINGS = ("layers", "obsm", "varm", "obsp", "varp")


def import_anndata_without_dask() -> None:
    """Import anndata with dask hidden, when neither is imported yet.

    anndata treats dask as optional: ``anndata.compat`` checks ``importlib.util.find_spec("dask")``
    and imports ``dask.array`` (a third of ``import anndata``) only where it is installed, else it
    defines a stand-in class. A ``tools run`` process holds in-memory layers only, never a
    dask-backed one, so it hides dask for that import (a ``None`` entry in ``sys.modules``, which
    Python's import system reads as "not importable" and ``find_spec`` as absent) and removes the
    entry afterwards: a later ``import dask`` in the process still works. A process that has
    imported either already (tests, ``proteus run``, ``eval``) is left as it is.
    """
    if "anndata" in sys.modules or "dask" in sys.modules:
        return
    sys.modules["dask"] = None
    try:
        import anndata  # noqa: F401
    finally:
        if sys.modules.get("dask", 0) is None:
            del sys.modules["dask"]


def _layer_parts(adata) -> dict:
    """What the cache stores of a layer: the AnnData's non-empty parts (see the module docstring)."""
    parts = {"X": adata.X, "obs": adata.obs, "var": adata.var, "uns": dict(adata.uns)}
    parts |= {k: dict(getattr(adata, k)) for k in _MAPPINGS if len(getattr(adata, k))}
    if adata.raw is not None:
        parts["raw"] = {"X": adata.raw.X, "var": adata.raw.var, "varm": dict(adata.raw.varm)}
    return parts


class CachedLayer:
    """A layer read from the cache: the AnnData's ``X``, ``obs``, ``var``, ``uns`` (and ``obs_names``,
    ``var_names``, ``shape``, ``n_obs``, ``n_vars``) as stored, without importing anndata; any other
    attribute, indexing or assignment builds the AnnData from the parts (once) and is its.

    After that the parts are the AnnData's, so a change made through either is seen by both.
    """

    __slots__ = ("_parts", "_adata")

    def __init__(self, parts: dict):
        object.__setattr__(self, "_parts", parts)
        object.__setattr__(self, "_adata", None)

    def anndata(self):
        """The AnnData of these parts (built on first call)."""
        if self._adata is None:
            import_anndata_without_dask()
            import anndata as ad

            object.__setattr__(self, "_adata", ad.AnnData(**self._parts))
        return self._adata

    def _part(self, name: str):
        return self._parts[name] if self._adata is None else getattr(self._adata, name)

    X = property(lambda self: self._part("X"))
    obs = property(lambda self: self._part("obs"))
    var = property(lambda self: self._part("var"))
    uns = property(lambda self: self._part("uns"))
    obs_names = property(lambda self: self.obs.index)
    var_names = property(lambda self: self.var.index)
    n_obs = property(lambda self: len(self.obs))
    n_vars = property(lambda self: len(self.var))
    shape = property(lambda self: (self.n_obs, self.n_vars))

    def __getattr__(self, name: str):
        if name.startswith("__"):  # copy / pickle protocols: not the AnnData's
            raise AttributeError(name)
        return getattr(self.anndata(), name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self.anndata(), name, value)

    def __getitem__(self, index):
        return self.anndata()[index]

    def __len__(self) -> int:
        return self.n_obs

    def __reduce__(self):
        return (CachedLayer, (self._parts,)) if self._adata is None else self._adata.__reduce__()

    def __repr__(self) -> str:
        return f"CachedLayer of {self.n_obs} x {self.n_vars}" if self._adata is None else repr(self._adata)


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
    for name in ("study.py", "study_cache.py"):  # the stored objects' classes and format
        h.update(resources.files("proteus").joinpath(name).read_bytes())
    return h.hexdigest()


def _pickle_versions() -> dict[str, str]:
    """Versions of the libraries whose objects the cache pickles (a pickle need not load in another)."""
    return {name: metadata.version(name) for name in ("anndata", "pandas", "numpy")}


def _head_sha(path: Path) -> str:
    data, more = head_bytes(path, HEAD_LINES)
    return hashlib.sha256(data + (b"\0more" if more else b"")).hexdigest()


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class _Inputs:
    """A data folder as the cache sees it: its readable files, which are layer files, their hashes."""

    key: str
    root: Path
    cands: list[Candidate]
    layer_files: dict[str, str]
    shas: dict[str, str]

    def path(self, rel: str) -> Path:
        return next(c.path for c in self.cands if c.rel == rel)

    def heads(self) -> dict[str, str]:
        return {rel: _head_sha(self.path(rel)) for rel in sorted(self.layer_files)}

    def kind_key(self, kind: str, heads: dict[str, str]) -> str:
        files = {rel: self.shas[rel] for rel, k in self.layer_files.items() if k == kind}
        return f"{kind}-{_hash({'study': self.key, 'heads': heads, 'files': files})}"


def _inputs(data: Path) -> _Inputs:
    root, cands, _ = discover(data)
    named = layer_files(cands)
    paths = {c.rel: c.path for c in cands if c.rel in named}
    layer_paths = {p.resolve() for p in paths.values()}
    rest = fingerprint([p for p in input_files(data) if p.resolve() not in layer_paths], data)
    shas = {rel: next(iter(fingerprint([p], p.parent).values())) for rel, p in paths.items()}
    key = _hash({"inputs": rest, "layer_files": named, "readers": _reader_digest(), "libraries": _pickle_versions()})
    return _Inputs(key, root, cands, named, shas)


def _valid(entry: dict, inp: _Inputs) -> bool:
    """Whether a stored shared part holds for the folder as it is: every layer file it read whole is
    unchanged, and every other changed layer file kept its head."""
    changed = [rel for rel in inp.layer_files if inp.shas.get(rel) != entry["shas"].get(rel)]
    return not any(rel in entry["read_whole"] or _head_sha(inp.path(rel)) != entry["heads"].get(rel) for rel in changed)


def study_key(data: str | Path) -> str:
    """The key of a data folder's shared part (see the module docstring)."""
    return _inputs(Path(data)).key


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


def _kind_of(layer: str) -> str:
    """``proteomics_2`` -> ``proteomics`` (the loader numbers a kind's second layer)."""
    return re.sub(r"_\d+$", "", layer)


def _rank(inp: _Inputs, source: str) -> tuple[int, int]:
    """A layer's place in ``load_study``'s order: tables (in file order), then h5ad, then FCS."""
    order = {c.rel: i for i, c in enumerate(inp.cands)}
    rel = source if source in order else source.rsplit(":", 1)[0]
    phase = {"h5ad": 1, "fcs": 2}.get(next((c.reader for c in inp.cands if c.rel == rel), ""), 0)
    return phase, order.get(rel, len(order))


def _parse(data: Path, inp: _Inputs, folder: Path, kinds: Collection[str], heads: dict[str, str] | None,
           mutations: bool) -> tuple[dict, dict[str, dict]]:
    """Parse the folder for the layer files of ``kinds`` (and the MAFs' mutations); store each kind
    read and, unless the stored shared part (with its layer files' ``heads``) holds, the shared
    part; return them."""
    import_anndata_without_dask()
    from proteus.io.load import load_layers

    shared = heads is None
    loaded = load_layers(data, kinds, read_mutations=mutations and shared)
    heads = heads if heads is not None else inp.heads()
    study = loaded.study
    source = {}
    for r in study.reports:
        if r.modality in study.modalities:
            source.setdefault(r.modality, r.path)
    rank = {name: _rank(inp, src) for name, src in source.items()}
    parts = {}
    for kind in set(inp.layer_files.values()) - set(loaded.left_out.values()):
        files = {rel for rel, k in inp.layer_files.items() if k == kind}
        names = [n for n in study.modalities if source.get(n) in files]
        parts[kind] = {"layers": {n: study.modalities[n] for n in names}, "rank": {n: rank[n] for n in names},
                       "reports": [r for r in study.reports if r.path in files],
                       "matching": [m for m in study.sample_matching if m.layer in names]}
        stored = {**parts[kind], "layers": {n: _layer_parts(a) for n, a in parts[kind]["layers"].items()}}
        _dump(stored, folder / "kinds" / f"{inp.kind_key(kind, heads)}.pkl")
    if not shared:
        return {}, parts
    own = [n for n in study.modalities if source.get(n) not in inp.layer_files]
    for name in own:
        _dump(_layer_parts(study.modalities[name]), folder / "layers" / f"{name}.pkl")
    meta = Study(study.root, {}, study.clinical, study.mutations, [r for r in study.reports if r.path not in inp.layer_files],
                 [m for m in study.sample_matching if m.layer in own], study.sample_notes)
    entry = {"meta": meta, "layers": {n: study.modalities[n] for n in own}, "rank": {n: rank[n] for n in own},
             "read_whole": sorted(loaded.read_whole), "heads": heads, "mutations": mutations, "shas": {rel: inp.shas[rel] for rel in inp.layer_files}}
    _dump({**entry, "layers": list(own)}, folder / "study.pkl")  # written last: its presence marks a usable entry
    return entry, parts


def load_study_cached(data: str | Path, *, layers: Collection[str] | None = None, mutations: bool = True,
                      cache: str | Path | None = None) -> Study:
    """:func:`proteus.io.load_study` through the cache, reading only the named layers.

    Parameters
    ----------
    data
        Data folder (or file), as for ``load_study``.
    layers
        Names of the layers to read (default: all). Where one is not a layer of the study, all are
        read (the caller's error then lists them). Sample table and reports of the other files
        are always read.
    mutations
        Whether to parse the MAFs' mutations (else only their sample ids, which the sample
        table's matching uses; ``mutations`` is then None unless an earlier call parsed them).
    cache
        Cache folder (default :func:`cache_dir`).

    Returns
    -------
    Study
        Equal to ``load_study(data)`` restricted to the chosen layers (reports: those of the files
        read).
    """
    data = Path(data)
    inp = _inputs(data)
    folder = Path(cache or cache_dir()) / inp.key
    all_kinds = set(inp.layer_files.values())
    kinds = all_kinds if layers is None else {_kind_of(n) for n in layers} & all_kinds
    entry = _load(folder / "study.pkl") if (folder / "study.pkl").is_file() else None
    if entry is None or not _valid(entry, inp) or (mutations and not entry["mutations"]):
        entry, parts = _parse(data, inp, folder, kinds, None, mutations)
    else:
        entry["layers"] = {n: CachedLayer(_load(folder / "layers" / f"{n}.pkl")) for n in entry["layers"] if layers is None or n in layers}
        parts = {}
        for kind in kinds:
            path = folder / "kinds" / f"{inp.kind_key(kind, entry['heads'])}.pkl"
            if path.is_file():
                part = _load(path)
                parts[kind] = {**part, "layers": {n: CachedLayer(a) for n, a in part["layers"].items()}}
        if kinds - set(parts):
            parts.update(_parse(data, inp, folder, kinds - set(parts), entry["heads"], False)[1])
    names = set(entry["rank"]) | {n for p in parts.values() for n in p["layers"]}
    if layers is not None and not set(layers) <= names:
        return load_study_cached(data, mutations=mutations, cache=cache)
    chosen = {n: a for n, a in entry["layers"].items() if layers is None or n in layers}
    rank = dict(entry["rank"])
    meta: Study = entry["meta"]
    reports, matching = list(meta.reports), list(meta.sample_matching)
    for part in parts.values():
        chosen.update({n: a for n, a in part["layers"].items() if layers is None or n in layers})
        rank.update(part["rank"])
        reports += part["reports"]
        matching += part["matching"]
    order = sorted(chosen, key=lambda n: rank[n])
    return Study(inp.root, {n: chosen[n] for n in order}, meta.clinical, meta.mutations, sorted(reports, key=lambda r: r.path),
                 sorted((m for m in matching if m.layer in chosen), key=lambda m: rank[m.layer]), list(meta.sample_notes))
