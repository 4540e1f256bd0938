"""Sample-id harmonisation: map a file's sample ids onto the clinical table's index.

The clinical index is the reference. A file whose ids do not match it directly is matched against
every clinical column, first as written and then after stripping common tumour/normal suffixes
(``C3L-00006_T`` -> ``C3L-00006``; ``TCGA-AB-1234-01`` -> ``TCGA-AB-1234``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

__all__ = ["normalise_id", "build_mapping"]

_SUFFIX = re.compile(r"([_.\-](T|N|tumou?r|normal|primary|[0-9]{2}[A-Z]?))$", re.IGNORECASE)


def normalise_id(s: object) -> str:
    """Upper-cased id without a trailing tumour/normal/aliquot suffix (``_T``, ``-T``, ``.T``, ``-01``)."""
    t = str(s).strip()
    t = _SUFFIX.sub("", t)
    return t.upper()


def _tumour_first(clinical: pd.DataFrame) -> pd.Series:
    """True for rows that a tumour/normal column marks as tumour (preferred on ambiguous matches)."""
    pref = pd.Series(False, index=clinical.index)
    for c in clinical.columns:
        if re.search(r"tumou?r.?normal|sample.?type|tissue.?type", str(c), re.I):
            vals = clinical[c].astype(str).str.lower()
            pref |= vals.str.startswith(("tumor", "tumour", "primary"))
    return pref


def build_mapping(ids: Iterable[str], clinical: pd.DataFrame) -> tuple[dict[str, str], str]:
    """Map file ids to clinical index values.

    Parameters
    ----------
    ids
        Sample ids as written in a file.
    clinical
        The clinical table, indexed by the reference sample id.

    Returns
    -------
    (mapping, how)
        ``mapping`` holds only the ids that were matched (id -> clinical index); ``how`` is a short
        description ("index", "column 'X'", "column 'X' after suffix stripping", or "").
    """
    ids = [str(i) for i in ids]
    index = [str(i) for i in clinical.index]
    direct = {i: i for i in ids if i in set(index)}
    if len(direct) == len(ids) or clinical.shape[1] == 0:
        return direct, "index" if direct else ""
    pref = _tumour_first(clinical)
    order = list(clinical.index[pref]) + list(clinical.index[~pref])
    best: tuple[dict[str, str], str] = (direct, "index" if direct else "")
    candidates = [("__index__", pd.Series(clinical.index, index=clinical.index))]
    candidates += [(c, clinical[c]) for c in clinical.columns if clinical[c].dtype == object or clinical[c].dtype.kind in "iu"]
    strip = lambda v: str(v).strip()  # noqa: E731
    passes = ((strip, strip, ""), (normalise_id, strip, " after suffix stripping"), (normalise_id, normalise_id, " after suffix stripping"))
    for f_file, f_clin, label_extra in passes:
        want = {f_file(i): i for i in ids}
        if len(want) < len(set(ids)):
            continue  # normalising would merge distinct file ids
        for name, col in candidates:
            col = col.reindex(order)
            lookup: dict[str, str] = {}
            raw: dict[str, str] = {}
            ambiguous: set[str] = set()
            for idx, v in zip(col.index, col.to_numpy()):
                if pd.isna(v):
                    continue
                k = f_clin(v)
                if raw.setdefault(k, str(v)) != str(v):
                    ambiguous.add(k)  # distinct values that look alike after normalising
                lookup.setdefault(k, str(idx))
            for k in ambiguous:
                del lookup[k]
            m = {orig: lookup[k] for k, orig in want.items() if k in lookup}
            if len(m) > len(best[0]):
                label = "index" if name == "__index__" else f"column {name!r}"
                best = (m, label + label_extra)
        if len(best[0]) == len(ids):
            break
    return best


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
