"""The run directory: everything a run writes, written so that nothing is half-written or lost.

Layout (``runs/<run-id>/`` or ``--out``)::

    run.json           config, versions, data fingerprint, policy/model, seed, wall time, usage
    checkpoint.sqlite  LangGraph checkpoints (resume)
    kg.json            knowledge graph, networkx node-link JSON
    hypotheses.jsonl   one hypothesis per line
    report.html        self-contained report
    trace.jsonl        every decision and tool call (append-only, one JSON object a line)
    figures/ tables/   PNGs and TSVs of tool results
    profile.json       the data profile
    state.json         objectives, workflows and steps (readable copy of the final graph state)

Artifacts are written to a temporary file in the same folder and renamed (atomic on POSIX). A
lock file (``.lock``, ``fcntl.flock``) keeps a second process out of a run directory in use.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RunDir", "RunLockedError", "fingerprint", "package_versions", "read_jsonl", "redact"]


def read_jsonl(path: str | Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, read tolerantly.

    A missing file gives ``[]``. Blank lines are ignored; a line that is not a JSON object (a line
    torn by a killed process, a hand edit) is skipped and, when ``problems`` is given, noted there.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
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
        for folder in (self.path, self.path / "tables", self.path / "figures"):
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
    def write_text(self, name: str, text: str) -> Path:
        """Atomically write ``text`` to ``name`` (temp file in the same folder, fsync, rename)."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(redact(text))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2, default=str, allow_nan=False) if _finite(obj) else json.dumps(_clean(obj), indent=2, default=str))

    def write_jsonl(self, name: str, rows: Iterable[Any]) -> Path:
        return self.write_text(name, "".join(json.dumps(_clean(r), default=str) + "\n" for r in rows))

    def append_trace(self, event: dict[str, Any]) -> None:
        """Append one event to ``trace.jsonl`` (a single write of one line, flushed and fsynced)."""
        event = {"t": round(time.time(), 3), **event}
        line = redact(json.dumps(_clean(event), default=str)) + "\n"
        with open(self.path / "trace.jsonl", "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        """Rows of a JSON-lines file of this run (see :func:`read_jsonl`)."""
        return read_jsonl(self.path / name)

    def read_table(self, name: str) -> pd.DataFrame | None:
        """A tab-separated table written by a step (``tables/<step>_<name>.tsv``); ``None`` when absent."""
        import pandas as pd

        p = self.path / name
        return pd.read_csv(p, sep="\t") if p.is_file() else None

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.sqlite"


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
