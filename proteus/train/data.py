"""Decision prompts for tuning, read from ``proteus export-rl`` files.

A prompt row is ``{"prompt": [chat messages], "task": "<JSON>", "decision": ..., "key": ...}``:
the messages a model is asked, and (as a JSON string, so that rows of different decisions share
one dataset schema) the ``task`` that :mod:`proteus.train.rewards` checks an answer against.
Only records with a decision schema are kept (offline runs record one for every decision), each
distinct prompt once. :func:`split_held_out` sets prompts aside by a stable hash of the run and
decision id (the run folder's name, not its location), so the same runs always give the same
held-out prompts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

__all__ = ["load_prompts", "split_held_out"]


def _records(paths: Iterable[str | Path]) -> Iterable[dict[str, Any]]:
    for path in paths:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
        for line in text.splitlines():
            if line.strip():
                yield json.loads(line)


def load_prompts(paths: str | Path | Iterable[str | Path], *, decisions: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Prompt rows (see the module docstring) from the export-rl JSONL file(s) ``paths``
    (gzip-compressed when the name ends in ``.gz``).

    ``decisions`` keeps only those decision names (default: all).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    wanted = set(decisions) if decisions is not None else None
    rows, seen = [], set()
    for rec in _records(paths):
        task = rec.get("task") or {}
        messages = rec.get("prompt") or []
        if not task.get("schema") or not messages or messages[-1].get("role") != "user":
            continue
        if wanted is not None and task.get("decision") not in wanted:
            continue
        text = json.dumps(messages, sort_keys=True)
        if text in seen:
            continue
        seen.add(text)
        extra = rec.get("extra_info") or {}
        rows.append(
            {
                "prompt": [{"role": m["role"], "content": m["content"]} for m in messages],
                "task": json.dumps(task, ensure_ascii=False),
                "decision": task.get("decision", ""),
                "key": f"{Path(extra.get('run') or '').name}#{extra.get('decision_id', len(rows))}",
            }
        )
    return rows


def split_held_out(rows: list[dict[str, Any]], fraction: float = 0.25, *, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training rows, held-out rows): a row is held out when the stable hash of its key and
    ``seed`` falls below ``fraction``."""
    if not 0 <= fraction < 1:
        msg = f"held-out fraction must be in [0, 1), got {fraction}"
        raise ValueError(msg)
    train, held = [], []
    for r in rows:
        h = int(hashlib.sha256(f"{seed}:{r['key']}".encode()).hexdigest()[:8], 16) / 16**8
        (held if h < fraction else train).append(r)
    return train, held
