"""Acquisition order read from sample names, for a study whose sample table records none.

Labs name runs by a scheme: a project prefix, a running number, a plate well, a date stamp
(``1_31_C6``, ``20190312_QE1_S017``). When the sample table has no technical column (no run order,
batch, plate or plex: those already say how the samples were acquired), :func:`run_order_from_names`
reads the scheme:

- the names split into the same number of tokens (at ``_ - . space``);
- a **run number** is a token position whose tokens are a constant letter prefix and a number, the
  numbers distinct across samples and dense (their span at most twice the number of samples, as a
  running acquisition count is; scattered patient numbers are not), with at least 6 samples; of
  several, the last one. It counts only when the names are acquisition names: another position holds
  plate wells (``A1`` .. ``P24``) or date stamps, or a token names a technical factor (``run``,
  ``injection``, ``plate``: :func:`proteus.design.technical_word`), so a numbered patient or sample id
  (``Patient_07``) is never taken for a run order;
- a **run date** is a token position of ``YYYYMMDD`` stamps with two or more distinct dates.

The columns come back named ``run order (from sample names)`` and ``run date (from sample names)``:
technical by their names (:func:`proteus.design.technical_word`), so the design checks test them
against every grouping and the clustering checks test clusters against them.
"""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["run_order_from_names", "add_run_order", "RUN_ORDER", "RUN_DATE"]

RUN_ORDER = "run order (from sample names)"
RUN_DATE = "run date (from sample names)"
_SPLIT = re.compile(r"[_\-.\s]+")
_NUMBERED = re.compile(r"^([A-Za-z]*)(\d+)$")
_DATE = re.compile(r"^(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")
_WELL = r"[A-Pa-p](0?[1-9]|1\d|2[0-4])"
_MIN_SAMPLES = 6


def _run_number(column: pd.Series, n: int) -> pd.Series | None:
    m = column.str.extract(_NUMBERED)
    if m[1].isna().any() or m[0].nunique() != 1:
        return None
    num = m[1].astype(int)
    if not num.is_unique or num.max() - num.min() + 1 > 2 * n:
        return None
    return num


def _acquisition_names(table: pd.DataFrame, number: int) -> bool:
    """Whether the name tokens (``table``, one column per position) carry a cue of acquisition besides the
    running number at position ``number``: plate wells, date stamps, or a technical word."""
    from proteus.design import technical_word

    for pos in table.columns:
        col = table[pos]
        if pos != number and (col.str.fullmatch(_WELL).all() and col.nunique() > 1 or col.str.fullmatch(_DATE.pattern).all()):
            return True
    words = {w for col in table.columns for w in table[col].str.extract(r"^([A-Za-z]+)", expand=False).dropna().unique()}
    return any(technical_word(w) for w in words)


def run_order_from_names(samples: list[str]) -> pd.DataFrame:
    """Run number and run date read from ``samples`` (see the module docstring); an empty frame
    (indexed by ``samples``) when the names carry neither."""
    out = pd.DataFrame(index=pd.Index(list(map(str, samples)), name="sample"))
    if len(samples) < _MIN_SAMPLES:
        return out
    tokens = [_SPLIT.split(s.strip()) for s in out.index]
    if len({len(t) for t in tokens}) != 1:
        return out
    table = pd.DataFrame(tokens, index=out.index)
    for pos in reversed(table.columns):
        num = _run_number(table[pos], len(samples))
        if num is not None and not table[pos].str.fullmatch(_DATE.pattern).all() and _acquisition_names(table, pos):
            out[RUN_ORDER] = num.rank(method="first").astype(int)
            break
    for pos in table.columns:
        col = table[pos]
        if col.str.fullmatch(_DATE.pattern).all() and col.nunique() >= 2:
            out[RUN_DATE] = pd.to_datetime(col, format="%Y%m%d").dt.strftime("%Y-%m-%d")
            break
    return out


def add_run_order(clinical: pd.DataFrame, samples: list[str], notes: list[str]) -> pd.DataFrame:
    """``clinical`` with the run order / date of :func:`run_order_from_names` on ``samples`` (the
    measured runs) added, when none of its columns is technical already; each addition is noted."""
    from proteus.design import technical_word

    if any(technical_word(str(c)) for c in clinical.columns):
        return clinical
    found = run_order_from_names([s for s in dict.fromkeys(map(str, samples)) if s in set(clinical.index.astype(str))])
    if found.empty or found.shape[1] == 0:
        return clinical
    clinical = clinical.copy()
    for col in found.columns:
        clinical[col] = found[col].reindex(clinical.index.astype(str)).to_numpy()
        notes.append(f"column {col!r} added to the sample table: the sample names carry it "
                     f"({found.index[0]} .. {found.index[-1]}); it is technical, checked against groupings and clusters")
    return clinical
