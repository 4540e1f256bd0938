"""Sample order read from sample names, for a study whose sample table records none.

Labs name runs by a scheme: a project prefix, a running number, a plate well, a date stamp
(``1_31_C6``, ``20190312_QE1_S017``). When the sample table has no technical column (no run order,
batch, plate or plex: those already say how the samples were acquired), :func:`run_order_from_names`
reads the scheme:

- the names split into the same number of tokens (at ``_ - . space``);
- a **running number** is a token position whose tokens are a constant letter prefix and a number, the
  numbers distinct across samples and dense (their span at most twice the number of samples, as a
  running count is; scattered patient numbers are not), with at least 6 samples; of several, the last
  one. It counts only when the names are technical names: another position holds plate wells (``A1`` ..
  ``P24``) or date stamps, or a token names a technical factor (``run``, ``injection``, ``plate``:
  :func:`proteus.design.technical_word`), so a numbered patient or sample id (``Patient_07``) is never
  taken for an order;
- a **run date** is a token position of ``YYYYMMDD`` stamps with two or more distinct dates.

What the running number is called follows what the names show of it. Only a date stamp or a word of
acquisition (``run``, ``injection``, ``acquisition``, ``order``, ``raw``, ``file``) makes it the **run order**
(:data:`RUN_ORDER`), the order the samples were measured in. Beside plate wells (or a ``plate`` / ``well``
word) alone it is the **plate position** (:data:`PLATE_POSITION`): where a sample sat on the plate it was
prepared on, which says nothing verified of when it was measured. Beside another technical word (batch,
plex) it is the **sample-name order** (:data:`NAME_ORDER`).

The columns come back named ``run order (from sample names)``, ``plate position (from sample names)`` or
``sample-name order (from sample names)``, and ``run date (from sample names)``: technical by their names
(:func:`proteus.design.technical_word`), so the design checks test them against every grouping and the
clustering checks test clusters against them.
"""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["run_order_from_names", "add_run_order", "RUN_ORDER", "PLATE_POSITION", "NAME_ORDER", "RUN_DATE"]

RUN_ORDER = "run order (from sample names)"
PLATE_POSITION = "plate position (from sample names)"
NAME_ORDER = "sample-name order (from sample names)"
RUN_DATE = "run date (from sample names)"
_SPLIT = re.compile(r"[_\-.\s]+")
_NUMBERED = re.compile(r"^([A-Za-z]*)(\d+)$")
_DATE = re.compile(r"^(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")
_WELL = r"[A-Pa-p](0?[1-9]|1\d|2[0-4])"
_MIN_SAMPLES = 6
_ACQUISITION_WORDS = {"run", "runs", "injection", "acquisition", "order", "raw", "file", "filename"}
_PLATE_WORDS = {"plate", "well"}


def _run_number(column: pd.Series, n: int) -> pd.Series | None:
    m = column.str.extract(_NUMBERED)
    if m[1].isna().any() or m[0].nunique() != 1:
        return None
    num = m[1].astype(int)
    if not num.is_unique or num.max() - num.min() + 1 > 2 * n:
        return None
    return num


def _order_name(table: pd.DataFrame, number: int) -> str | None:
    """What the running number at position ``number`` of the name tokens (``table``, one column per position)
    is, by the other cues the names carry (see the module docstring): :data:`RUN_ORDER` with a date stamp or a
    word of acquisition, else :data:`PLATE_POSITION` with plate wells or a plate word, else :data:`NAME_ORDER`
    with another technical word; ``None`` without any cue (a numbered patient or sample id)."""
    from proteus.design import technical_word

    others = [table[pos] for pos in table.columns if pos != number]
    words = {w.lower() for col in table.columns for w in table[col].str.extract(r"^([A-Za-z]+)", expand=False).dropna().unique()}
    technical = {t for w in words if (t := technical_word(w))}
    if any(col.str.fullmatch(_DATE.pattern).all() for col in others) or technical & _ACQUISITION_WORDS:
        return RUN_ORDER
    if any(col.str.fullmatch(_WELL).all() and col.nunique() > 1 for col in others) or technical & _PLATE_WORDS:
        return PLATE_POSITION
    return NAME_ORDER if technical else None


def run_order_from_names(samples: list[str]) -> pd.DataFrame:
    """The running number (as :data:`RUN_ORDER`, :data:`PLATE_POSITION` or :data:`NAME_ORDER`, ranked) and the run
    date read from ``samples`` (see the module docstring); an empty frame (indexed by ``samples``) when the names
    carry neither."""
    out = pd.DataFrame(index=pd.Index(list(map(str, samples)), name="sample"))
    if len(samples) < _MIN_SAMPLES:
        return out
    tokens = [_SPLIT.split(s.strip()) for s in out.index]
    if len({len(t) for t in tokens}) != 1:
        return out
    table = pd.DataFrame(tokens, index=out.index)
    for pos in reversed(table.columns):
        num = _run_number(table[pos], len(samples))
        if num is not None and not table[pos].str.fullmatch(_DATE.pattern).all() and (name := _order_name(table, pos)):
            out[name] = num.rank(method="first").astype(int)
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
