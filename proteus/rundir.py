"""The run directory: everything a run writes, written so that nothing is half-written or lost.

Layout (``runs/<run-id>/`` or ``--out``)::

    run.json           config, versions, data fingerprint, policy/model, seed, wall time, usage
    checkpoint.sqlite  LangGraph checkpoints (resume), zlib-compressed; they cite tables and relations by path
    kg.json            knowledge graph, networkx node-link JSON
    hypotheses.jsonl   one hypothesis per line
    report.html        self-contained report
    trace.jsonl        every decision and tool call (append-only, one JSON object a line); large
                       values (prompts, per-call schemas) stored once in blobs/ (:func:`read_trace`)
    figures/           PNGs of tool results
    tables/            tool result tables, gzip TSV (``<step>_<name>.tsv.gz``)
    relations/         each step's knowledge-graph relations (``<step>.jsonl.gz``); checkpoints hold
                       these paths, not the relations
    profile.json       the data profile
    state.json         objectives, workflows and steps (readable copy of the final graph state)
    study.h5mu         only after ``proteus export h5mu``: the study and its contrasts as MuData (:mod:`proteus.h5mu`)

Artifacts are written to a temporary file in the same folder and renamed (atomic on POSIX). A
lock file (``.lock``, ``fcntl.flock``) keeps a second process out of a run directory in use.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import re
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CompressedSerializer", "RunDir", "RunLockedError", "fingerprint", "input_files", "package_versions", "read_jsonl", "read_trace", "redact"]


def read_jsonl(path: str | Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (gzip-compressed when it ends in ``.gz``), read tolerantly.

    A missing or unreadable file gives ``[]``. Blank lines are ignored; a line that is not a JSON object (a line
    torn by a killed process, a hand edit) is skipped and, when ``problems`` is given, noted there.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        raw = path.read_bytes()
        lines = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as e:  # EOFError, gzip.BadGzipFile (an OSError): a torn .gz
        if problems is not None:
            problems.append(f"{path.name}: unreadable ({type(e).__name__})")
        return []
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif problems is not None:
            problems.append(f"{path.name}: line {i} is not JSON (skipped)")
    return rows


BLOB_MIN_BYTES = 16 * 1024
"""Trace values larger than this (as JSON) are stored once by content under ``blobs/``."""


def read_trace(run_dir: str | Path) -> list[dict[str, Any]]:
    """The events of ``trace.jsonl`` (read tolerantly, :func:`read_jsonl`) with ``{"$blob": path}``
    values replaced by the stored value (``None`` when the blob is missing or unreadable)."""
    run_dir = Path(run_dir)
    cache: dict[str, Any] = {}

    def load(rel: str) -> Any:
        if rel not in cache:
            try:
                cache[rel] = json.loads(gzip.decompress((run_dir / rel).read_bytes()))
            except (OSError, EOFError, ValueError):
                cache[rel] = None
        return cache[rel]

    def resolve(v: Any) -> Any:
        return load(v["$blob"]) if isinstance(v, dict) and len(v) == 1 and isinstance(v.get("$blob"), str) else v

    return [{k: resolve(v) for k, v in e.items()} for e in read_jsonl(run_dir / "trace.jsonl")]


class CompressedSerializer:
    """LangGraph checkpoint serializer: LangGraph's own (``JsonPlusSerializer``) output, zlib-compressed.

    The type tag gets a ``+zlib`` suffix; an uncompressed value (no suffix) still loads.
    """

    _SUFFIX = "+zlib"

    def __init__(self) -> None:
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        self.inner = JsonPlusSerializer()

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        typ, data = self.inner.dumps_typed(obj)
        return typ + self._SUFFIX, zlib.compress(data, 6)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        typ, blob = data
        if typ.endswith(self._SUFFIX):
            return self.inner.loads_typed((typ[: -len(self._SUFFIX)], zlib.decompress(blob)))
        return self.inner.loads_typed(data)


class RunLockedError(RuntimeError):
    """Another process holds the run directory."""


_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.I)


def _secrets() -> list[str]:
    return [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8]


def redact(text: str) -> str:
    """Replace the values of secret-looking environment variables (API keys, tokens) in ``text``."""
    for s in _secrets():
        text = text.replace(s, "[REDACTED]")
    return re.sub(r"\b(sk-[A-Za-z0-9_\-]{16,}|sk-ant-[A-Za-z0-9_\-]{16,})", "[REDACTED]", text)


def input_files(data: Path) -> list[Path]:
    """Every regular file under ``data`` (symlinks pointing outside it excluded)."""
    data = Path(data)
    if data.is_file():
        return [data]
    root = data.resolve()
    out = []
    for p in sorted(data.rglob("*")):
        try:
            if p.is_file() and (root == p.resolve() or root in p.resolve().parents):
                out.append(p)
        except OSError:
            continue
    return out


def fingerprint(paths: Iterable[Path], root: Path) -> dict[str, str]:
    """SHA-256 of every input file, keyed by its path relative to ``root``."""
    out = {}
    for p in sorted(paths):
        h = hashlib.sha256()
        try:
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError:
            continue
        try:
            rel = str(Path(p).resolve().relative_to(Path(root).resolve()))
        except ValueError:
            rel = Path(p).name
        out[rel] = h.hexdigest()
    return out


def package_versions() -> dict[str, str]:
    names = ["proteus-discovery", "numpy", "pandas", "scipy", "statsmodels", "anndata", "scanpy", "gseapy", "lifelines", "langgraph", "networkx", "pydantic", "openai", "anthropic"]
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


class RunDir:
    """A run directory with atomic artifact writes, an append-only trace and a process lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "figures").mkdir(exist_ok=True)
        (self.path / "tables").mkdir(exist_ok=True)
        self._lock_fd: int | None = None

    # --- lock -------------------------------------------------------------------------------
    def lock(self) -> None:
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            msg = f"run directory {self.path} is in use by another PROTEUS process"
            raise RunLockedError(msg) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        self._recover()

    def _recover(self) -> None:
        """Clean up after a process killed mid-write (called once the lock is held).

        Removes leftover temporary files of :meth:`write_text` and cuts a torn last line off
        ``trace.jsonl`` so that the next event starts on a line of its own.
        """
        for folder in (self.path, self.path / "tables", self.path / "figures", self.path / "relations", self.path / "blobs"):
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        trace = self.path / "trace.jsonl"
        if not trace.exists():
            return
        with open(trace, "rb+") as f:
            end = f.seek(0, os.SEEK_END)
            if end == 0 or (f.seek(end - 1), f.read(1))[1] == b"\n":
                return
            pos = end  # scan back (in chunks) to the last complete line
            while pos > 0:
                start = max(0, pos - (1 << 16))
                f.seek(start)
                i = f.read(pos - start).rfind(b"\n")
                if i >= 0:
                    pos = start + i + 1
                    break
                pos = start
            f.truncate(pos)
            f.flush()
            os.fsync(f.fileno())

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- writing ----------------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes) -> Path:
        """Atomically write ``data`` to ``name`` (temp file in the same folder, fsync, rename)."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def write_text(self, name: str, text: str) -> Path:
        """Atomically write ``text`` (secrets redacted) to ``name``."""
        return self.write_bytes(name, redact(text).encode("utf-8"))

    def write_table(self, name: str, table: pd.DataFrame) -> str:
        """Write ``table`` as ``tables/<name>.tsv.gz`` and return that path relative to the run directory.

        Gzip TSV without the index, floats to 6 significant digits (the statistics behind the
        knowledge graph keep full precision in ``relations/``); byte-identical for the same table.
        """
        rel = f"tables/{name}.tsv.gz"
        text = table.to_csv(sep="\t", index=False, float_format="%.6g")
        self.write_bytes(rel, gzip.compress(redact(text).encode("utf-8"), compresslevel=6, mtime=0))
        return rel

    def write_json(self, name: str, obj: Any, *, indent: int | None = 2) -> Path:
        """Atomically write ``obj`` as JSON (non-finite numbers become null); ``indent=None`` is compact."""
        seps = (",", ":") if indent is None else None
        if _finite(obj):
            return self.write_text(name, json.dumps(obj, indent=indent, separators=seps, default=str, allow_nan=False))
        return self.write_text(name, json.dumps(_clean(obj), indent=indent, separators=seps, default=str))

    def write_jsonl(self, name: str, rows: Iterable[Any]) -> Path:
        """Atomically write one JSON object a line; gzip-compressed when ``name`` ends in ``.gz``."""
        text = "".join(json.dumps(_clean(r), default=str) + "\n" for r in rows)
        if name.endswith(".gz"):
            return self.write_bytes(name, gzip.compress(redact(text).encode("utf-8"), compresslevel=6, mtime=0))
        return self.write_text(name, text)

    def append_trace(self, event: dict[str, Any]) -> None:
        """Append one event to ``trace.jsonl`` (a single write of one line, flushed and fsynced).

        A top-level value whose JSON exceeds :data:`BLOB_MIN_BYTES` (a decision's per-call schema,
        its prompt) is stored once by content as ``blobs/<sha256>.json.gz`` before the line is
        written, and the event holds ``{"$blob": path}`` instead; :func:`read_trace` resolves it.
        """
        event = {k: self._blob_if_large(v) for k, v in {"t": round(time.time(), 3), **event}.items()}
        line = redact(json.dumps(_clean(event), default=str)) + "\n"
        with open(self.path / "trace.jsonl", "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def _blob_if_large(self, value: Any) -> Any:
        text = redact(json.dumps(_clean(value), default=str, sort_keys=True))
        if len(text) < BLOB_MIN_BYTES:
            return value
        rel = f"blobs/{hashlib.sha256(text.encode('utf-8')).hexdigest()[:32]}.json.gz"
        if not (self.path / rel).exists():
            self.write_bytes(rel, gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0))
        return {"$blob": rel}

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        """Rows of a JSON-lines file of this run (see :func:`read_jsonl`)."""
        return read_jsonl(self.path / name)

    def read_table(self, name: str) -> pd.DataFrame | None:
        """A table written by a step (``tables/<step>_<name>.tsv.gz``, see :meth:`write_table`); ``None`` when absent."""
        import pandas as pd

        p = self.path / name
        return pd.read_csv(p, sep="\t") if p.is_file() else None

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.sqlite"

    @contextmanager
    def checkpointer(self) -> Iterator[Any]:
        """LangGraph ``SqliteSaver`` on ``checkpoint.sqlite`` with :class:`CompressedSerializer`; closed on exit."""
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(self.checkpoint_path, check_same_thread=False)
        try:
            yield SqliteSaver(conn, serde=CompressedSerializer())
        finally:
            conn.close()

    def compact_checkpoints(self) -> None:
        """Keep only the latest checkpoint of each graph namespace (LangGraph's ``keep_latest``), then
        VACUUM; for a finished run, whose resume needs nothing older. One transaction: a kill leaves
        the file as it was. The research graph's channels are plain values (no ``DeltaChannel``), so
        the latest checkpoint holds the whole state."""
        import sqlite3

        if not self.checkpoint_path.exists():
            return
        conn = sqlite3.connect(self.checkpoint_path)
        try:
            with conn:
                latest = "SELECT thread_id, checkpoint_ns, MAX(checkpoint_id) FROM checkpoints GROUP BY thread_id, checkpoint_ns"
                keep = "(thread_id, checkpoint_ns, checkpoint_id) IN (" + latest + ")"
                conn.execute("DELETE FROM writes WHERE NOT " + keep)
                conn.execute("DELETE FROM checkpoints WHERE NOT " + keep)
            conn.execute("VACUUM")
        finally:
            conn.close()


def _finite(obj: Any) -> bool:
    try:
        json.dumps(obj, allow_nan=False, default=str)
        return True
    except ValueError:
        return False


def _clean(obj: Any) -> Any:
    """Replace NaN/inf with None so every artifact is strict JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return _clean(obj.item())
        except (ValueError, TypeError):
            return str(obj)
    return obj
