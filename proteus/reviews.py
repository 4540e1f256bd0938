"""The review log: the append-only ``reviews.jsonl`` a reviewer writes and its replay into states.

``reviews.jsonl`` format
------------------------
One JSON object per line, appended in time order, never rewritten::

    {"time": "2025-05-01T14:03:07+00:00", "hypothesis": "H_1a2b3c4d", "action": "accept",
     "value": null, "reviewer": "jdoe"}

``time``
    ISO 8601 with UTC offset, when the action was recorded.
``hypothesis``
    the hypothesis ``id`` from ``hypotheses.jsonl``.
``reviewer``
    free-text name (``PROTEUS_REVIEWER`` or the login name by default).
``action`` and ``value``
    - ``"accept"`` / ``"reject"``: ``value`` is ``null`` or a short reason (string). The latest
      accept/reject of a hypothesis sets its status; with neither it is ``"pending"``.
    - ``"edit"``: ``value`` is the new statement (non-empty string); the latest edit wins.
    - ``"score"``: ``value`` maps one or more of the five judge metrics (``reliability``,
      ``logical_coherence``, ``biological_plausibility``, ``novelty``, ``evaluability``) to an
      integer 1-5; the latest score per metric wins.
    - ``"comment"``: ``value`` is a string; comments accumulate.

Replaying the lines in order with :func:`replay` gives each hypothesis's current
:class:`ReviewState`. The report (:mod:`proteus.report`) and the notebook (:mod:`proteus.review`)
both read it; ``proteus export-rl`` reads the same file as human reward.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from proteus.records import METRICS
from proteus.rundir import read_jsonl

__all__ = ["ACTIONS", "STATUSES", "REVIEWS_FILE", "ReviewLog", "ReviewState", "default_reviewer", "replay"]

REVIEWS_FILE = "reviews.jsonl"
ACTIONS = ("accept", "reject", "edit", "score", "comment")
STATUSES = ("pending", "accepted", "rejected")


def default_reviewer() -> str:
    name = os.environ.get("PROTEUS_REVIEWER")
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "reviewer"


# --- the log --------------------------------------------------------------------------------------


def _check(action: str, value: Any) -> Any:
    """Validate an action's value and return it normalised; raises ``ValueError`` with the rule."""
    if action not in ACTIONS:
        msg = f"unknown review action {action!r}; one of {', '.join(ACTIONS)}"
        raise ValueError(msg)
    if action in ("accept", "reject"):
        if value is not None and not isinstance(value, str):
            msg = f"{action}: value must be a reason string or None, got {type(value).__name__}"
            raise ValueError(msg)
        return value or None
    if action in ("edit", "comment"):
        if not isinstance(value, str) or not value.strip():
            msg = f"{action}: value must be a non-empty string"
            raise ValueError(msg)
        return value.strip()
    # score
    if not isinstance(value, dict) or not value:
        msg = f"score: value must map some of {', '.join(METRICS)} to an integer 1-5"
        raise ValueError(msg)
    out = {}
    for k, v in value.items():
        if k not in METRICS:
            msg = f"score: unknown metric {k!r}; metrics are {', '.join(METRICS)}"
            raise ValueError(msg)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or not 1 <= int(v) <= 5:
            msg = f"score: {k} must be an integer 1-5, got {v!r}"
            raise ValueError(msg)
        out[k] = int(v)
    return out


class ReviewLog:
    """The append-only ``reviews.jsonl`` of a run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / REVIEWS_FILE

    def records(self) -> list[dict[str, Any]]:
        """Every well-formed record in file order (a torn last line from a crash is skipped)."""
        return read_jsonl(self.path)

    def append(self, hypothesis: str, action: str, value: Any = None, *, reviewer: str | None = None) -> dict[str, Any]:
        """Validate, then append one record as a single line, flushed and fsynced; returns it."""
        value = _check(action, value)
        rec = {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "hypothesis": str(hypothesis),
            "action": action,
            "value": value,
            "reviewer": reviewer or default_reviewer(),
        }
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        new = not self.path.exists()
        # a torn line from an earlier crash must not swallow this record
        if not new and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        if new:
            try:
                fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                pass
        return rec


@dataclass
class ReviewState:
    """The reviewed state of one hypothesis after replaying the log."""

    status: str = "pending"
    reason: str | None = None
    statement: str | None = None
    scores: dict[str, int] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)
    reviewers: set[str] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mean(self) -> float | None:
        """Mean of the reviewer's own scores (``None`` before any)."""
        return sum(self.scores.values()) / len(self.scores) if self.scores else None


def replay(records: Iterable[dict[str, Any]]) -> dict[str, ReviewState]:
    """Replay review records in order into one :class:`ReviewState` per hypothesis id.

    Malformed records (unknown action, bad value) are skipped, so a hand-edited log still loads.
    """
    states: dict[str, ReviewState] = {}
    for rec in records:
        if not isinstance(rec, dict) or rec.get("hypothesis") is None:
            continue
        action = rec.get("action")
        try:
            value = _check(str(action), rec.get("value"))
        except ValueError:
            continue
        st = states.setdefault(str(rec["hypothesis"]), ReviewState())
        if action == "accept":
            st.status, st.reason = "accepted", value
        elif action == "reject":
            st.status, st.reason = "rejected", value
        elif action == "edit":
            st.statement = value
        elif action == "score":
            st.scores.update(value)
        elif action == "comment":
            st.comments.append(value)
        if rec.get("reviewer"):
            st.reviewers.add(str(rec["reviewer"]))
        st.history.append(rec)
    return states
