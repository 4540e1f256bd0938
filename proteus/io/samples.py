"""Sample-id harmonisation: map a file's sample ids onto the sample table's index.

The sample (clinical) table's index is the reference. Ids are matched rule by rule, each rule only
for the ids still unmatched and against the table column that matches most of them:

1. ``exact id`` -- the id as written (trimmed);
2. ``file name`` -- the file stem on both sides: vendor column prefixes (``LFQ intensity``,
   ``Intensity``, ``Reporter intensity corrected``, ``MaxLFQ Intensity``) removed, the last
   Windows or POSIX path component kept, raw-file extensions (``.raw``, ``.d``, ``.wiff``, ``.mzML``,
   ``.dia`` ...) dropped, case ignored (``D:\\runs\\S1.raw`` = ``S1``);
3. ``tumour/normal suffix`` -- a trailing tumour/normal/aliquot suffix stripped
   (``C3L-00006_T`` -> ``C3L-00006``; ``TCGA-AB-1234-01`` -> ``TCGA-AB-1234``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import pandas as pd

__all__ = ["normalise_id", "file_key", "run_name", "run_stem", "build_mapping", "match_samples", "composite_keys", "groups_from_names"]

_SUFFIX = re.compile(r"([_.\-](T|N|tumou?r|normal|primary|[0-9]{2}[A-Z]?))$", re.IGNORECASE)
_RAW_EXT = re.compile(r"(\.(raw|mzml|wiff|wiff2|scan|dia|d|mgf|mzxml|gz|zip))+$", re.IGNORECASE)
_VENDOR_PREFIX = re.compile(
    r"^(?:\[\d+\]\s*|(?:lfq intensity|reporter intensity corrected|reporter intensity|maxlfq intensity|intensity)[ _]+)", re.I)
_VENDOR_SUFFIX = re.compile(r"(?:[ _]+(?:maxlfq intensity|intensity)|\.PG\.(?:Quantity|MaxLFQ|Normalised|Normalized))$", re.I)

def normalise_id(s: object) -> str:
    """Upper-cased id without a trailing tumour/normal/aliquot suffix (``_T``, ``-T``, ``.T``, ``-01``)."""
    t = str(s).strip()
    t = _SUFFIX.sub("", t)
    return t.upper()


def run_stem(name: object) -> str:
    """Last Windows or POSIX path component without raw-file extensions (``D:\\x\\S1.raw`` -> ``S1``)."""
    base = re.split(r"[\\/]", str(name).strip().rstrip("\\/"))[-1]
    return _RAW_EXT.sub("", base) or base


def run_name(name: object) -> str:
    """A sample column's run name: vendor intensity prefixes and suffixes (MaxQuant ``LFQ intensity``,
    FragPipe ``MaxLFQ Intensity``, Spectronaut ``[1] ... .PG.Quantity``) removed, then :func:`run_stem`."""
    t = str(name).strip()
    t = _VENDOR_SUFFIX.sub("", _VENDOR_PREFIX.sub("", t))
    return run_stem(t)


def file_key(name: object) -> str:
    """Case-folded :func:`run_name`: the key of the ``file name`` matching rule."""
    return run_name(name).casefold()


def _tumour_first(clinical: pd.DataFrame) -> pd.Series:
    """True for rows that a tumour/normal column marks as tumour (preferred on ambiguous matches)."""
    pref = pd.Series(False, index=clinical.index)
    for c in clinical.columns:
        if re.search(r"tumou?r.?normal|sample.?type|tissue.?type", str(c), re.I):
            vals = clinical[c].astype(str).str.lower()
            pref |= vals.str.startswith(("tumor", "tumour", "primary"))
    return pref


def _strip(v: object) -> str:
    return str(v).strip()


_PASSES: tuple[tuple[str, Callable[[object], str], Callable[[object], str]], ...] = (
    ("exact id", _strip, _strip),
    ("file name", file_key, file_key),
    ("tumour/normal suffix", normalise_id, _strip),
    ("tumour/normal suffix", normalise_id, normalise_id),
)


def match_samples(ids: Iterable[str], clinical: pd.DataFrame, extra: dict[str, pd.Series] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Match file sample ids to sample-table rows, rule by rule (see the module docstring).

    Parameters
    ----------
    ids
        Sample ids as written in a file.
    clinical
        The sample table, indexed by the reference sample id; its text and integer columns are
        also searched (the index is preferred on ties).
    extra
        More id columns aligned to ``clinical``'s index (e.g. ``channel + plex`` of a TMT design).

    Returns
    -------
    (mapping, rule)
        ``mapping``: matched id -> sample-table index value (each row used at most once);
        ``rule``: matched id -> ``"<rule>"`` or ``"<rule> via column 'X'"``.
    """
    ids = list(dict.fromkeys(str(i) for i in ids))
    pref = _tumour_first(clinical)
    order = list(clinical.index[pref]) + list(clinical.index[~pref])
    candidates = [("__index__", pd.Series(clinical.index, index=clinical.index))]
    candidates += [(c, clinical[c]) for c in clinical.columns if clinical[c].dtype == object or clinical[c].dtype.kind in "iu"]
    candidates += list((extra or {}).items())
    mapping: dict[str, str] = {}
    rule: dict[str, str] = {}
    used: set[str] = set()
    for label, f_file, f_clin in _PASSES:
        todo = [i for i in ids if i not in mapping]
        if not todo:
            break
        want: dict[str, str] = {}
        taken = {f_file(m) for m in mapping}
        clash = False
        for i in todo:
            k = f_file(i)
            if k in want or k in taken:
                clash = True  # the rule would merge distinct file ids
                break
            want[k] = i
        if clash:
            continue
        best: dict[str, str] = {}
        best_name = ""
        for name, col in candidates:
            col = col.reindex(order)
            lookup: dict[str, str] = {}
            raw: dict[str, str] = {}
            ambiguous: set[str] = set()
            for idx, v in zip(col.index, col.to_numpy()):
                if pd.isna(v) or str(idx) in used:
                    continue
                k = f_clin(v)
                if raw.setdefault(k, str(v)) != str(v):
                    ambiguous.add(k)  # distinct values that look alike after normalising
                lookup.setdefault(k, str(idx))
            m = {orig: lookup[k] for k, orig in want.items() if k in lookup and k not in ambiguous}
            if len(set(m.values())) < len(m):
                continue
            if len(m) > len(best):
                best, best_name = m, name
        for i, target in best.items():
            mapping[i] = target
            used.add(target)
            rule[i] = label if best_name == "__index__" else f"{label} via column {best_name!r}"
    return mapping, rule


def _as_text(col: pd.Series) -> pd.Series:
    """Values as the text a header would hold (``1.0`` -> ``1``)."""
    num = pd.to_numeric(col, errors="coerce")
    whole = num.notna() & (num == num.round())
    return col.astype(str).str.strip().where(~whole, num.round().astype("Int64").astype(str))


def composite_keys(parts: pd.DataFrame, clinical: pd.DataFrame) -> dict[str, pd.Series]:
    """Sample-table columns that together name a layer's samples (``channel`` + ``plex``).

    ``parts`` holds, per layer sample, the pieces its id is made of, in order (the id is the
    pieces joined by a space). For each piece, the sample-table columns holding all of its values
    (case-insensitive) are found; each combination becomes one candidate id column named
    ``'A + B'``.
    """
    choices: list[list[str]] = []
    for p in parts.columns:
        want = set(parts[p].astype(str).str.casefold())
        cols = [c for c in clinical.columns if want <= set(_as_text(clinical[c].dropna()).str.casefold())]
        if not cols:
            return {}
        choices.append(cols)
    out: dict[str, pd.Series] = {}
    combos: list[list[str]] = [[]]
    for cols in choices:
        combos = [combo + [c] for combo in combos for c in cols if c not in combo]
    for combo in combos[:20]:
        key = _as_text(clinical[combo[0]])
        for c in combo[1:]:
            key = key + " " + _as_text(clinical[c])
        out[" + ".join(map(str, combo))] = key
    return out


def build_mapping(ids: Iterable[str], clinical: pd.DataFrame) -> tuple[dict[str, str], str]:
    """:func:`match_samples` with the rules summarised in one phrase.

    Returns
    -------
    (mapping, how)
        ``mapping`` holds only the matched ids; ``how`` is e.g. ``"exact id"``,
        ``"file name via column 'raw_file'"`` or several such phrases with counts ("" if none).
    """
    mapping, rule = match_samples(ids, clinical)
    counts = pd.Series(list(rule.values()), dtype=object).value_counts()
    if len(counts) == 1:
        return mapping, str(counts.index[0])
    return mapping, ", ".join(f"{k} ({n})" for k, n in counts.items())


_REPLICATE_SUFFIX = re.compile(r"(?:[\s_.\-]+(?:rep(?:licate)?|bio|tech|br|tr|r|s))?[\s_.\-]*\d{1,3}[a-z]?$", re.I)


def groups_from_names(samples: list[str]) -> pd.Series | None:
    """Replicate groups read from sample names (``Ctrl_1, Ctrl_2, KO_rep1 ...`` -> ``Ctrl, KO``).

    Used only when no sample table exists. The trailing replicate number (with an optional
    ``rep``/``r``/``bio``/``tech`` tag) is removed; the result counts when it gives 2 or more groups
    of at least 2 samples and fewer groups than half the samples. Singletons become missing.
    """
    if len(samples) < 4:
        return None
    stems = pd.Series([_REPLICATE_SUFFIX.sub("", s) or s for s in samples], index=samples, dtype=object)
    counts = stems.value_counts()
    real = counts[counts >= 2]
    if len(real) < 2 or len(real) > len(samples) / 2:
        return None
    return stems.where(stems.isin(real.index))
