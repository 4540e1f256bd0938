"""Study design read from a sample table: what each column is, and which comparisons it supports.

Three steps, each a rule that works on tables never seen before (no column or level of any
dataset is named here):

1. :func:`assign_roles` gives every column a role with the reason: a *biological* factor (what a
   study compares), a *technical* factor (batch, lab/site, instrument, plex, run order, fraction,
   replicate index, file name), a pairing *block* (donor, patient, subject), a continuous
   *covariate*, an *outcome* (survival time / event), an *identifier*, or *ignored* (constant, free
   text). Names decide first (whole words of the column name); content decides the rest: a small
   integer index that restarts inside every level of a factor is a replicate index (technical,
   nested), a factor whose small levels each span several conditions pairs samples (block).
2. :func:`factor_design` orders a biological factor's levels (numbers in otherwise equal level
   names such as doses, times, grades; Roman stages; ordinal words) and finds its reference level
   (a control-like word, else the lowest level of an ordered factor).
3. :func:`design_contrasts` follows the design, not pairs: two levels give one contrast; more give
   each level vs the reference (the lowest level when ordered) and the pooled contrast of every
   other level against it (:func:`pooled_label`), or all pairs when there is no reference and at
   most five levels. :func:`adjustment` lists the technical and block columns
   that cross a contrast (adjusted for in the linear model) and those confounded with it.

Words are matched as whole tokens (``ref`` is not ``refractory``, ``normal`` is not ``abnormal``,
``negative`` is not ``triple-negative``: hyphenated level words stay one token).
"""

from __future__ import annotations

import itertools
import re
from typing import Literal

import numpy as np
import pandas as pd

from proteus.stats.design import covariate_block

__all__ = [
    "Role",
    "is_unknown_level",
    "recorded",
    "is_composition_score",
    "column_words",
    "technical_word",
    "level_words",
    "is_reference_level",
    "is_case_level",
    "assign_roles",
    "level_order",
    "factor_design",
    "design_contrasts",
    "pooled_label",
    "pooled_power",
    "adjustment",
]

Role = Literal["biological", "technical", "block", "covariate", "outcome", "identifier", "ignored"]

_TECHNICAL_WORDS = {
    "batch", "plex", "tmt", "run", "runs", "plate", "lane", "channel", "center", "centre", "instrument", "fraction",
    "operator", "lab", "labs", "laboratory", "site", "replicate", "rep", "injection", "order", "file", "filename",
    "raw", "acquisition", "machine", "technical", "chip", "slide", "well", "spectrometer", "column",
}
_ANATOMY_WORDS = {"tumor", "tumour", "primary", "anatomic", "anatomical", "body", "organ", "metastasis", "metastatic",
                  "disease", "biopsy", "cancer", "lesion", "tissue", "sampling", "collection"}
"""With these, ``site`` is where in the body (biology), not where the sample was measured."""
_BLOCK_WORDS = {"donor", "patient", "subject", "individual", "participant", "animal", "mouse", "mice", "pair",
                "person", "volunteer", "twin", "litter"}
_REFERENCE_WORDS = {
    "control", "controls", "ctrl", "ctl", "healthy", "normal", "untreated", "baseline", "vehicle", "mock", "sham",
    "placebo", "wt", "wildtype", "wild-type", "reference", "ref", "naive", "unstimulated", "unstim", "dmso",
    "negative", "neg", "none", "no", "absent", "false", "adjacent", "nontumor", "non-tumor", "nontumour", "non-tumour",
    "intact", "0", "pbs", "saline", "scrambled", "non-targeting", "nontargeting", "uninfected", "uninduced",
    "untransfected", "sictrl", "shctrl", "sicontrol", "shcontrol", "hc",
}
_CASE_WORDS = {"tumor", "tumour", "tumors", "tumours", "cancer", "carcinoma", "malignant", "disease", "diseased",
               "case", "cases", "lesion", "metastasis", "metastatic"}
_ORDINAL = {
    "none": 0, "absent": 0, "negative": 0,
    "low": 1, "mild": 1, "minimal": 1, "weak": 1, "well": 1, "slight": 1, "early": 1,
    "medium": 2, "mid": 2, "intermediate": 2, "moderate": 2, "moderately": 2, "middle": 2,
    "high": 3, "severe": 3, "strong": 3, "poor": 3, "poorly": 3, "marked": 3, "late": 3, "advanced": 3,
}
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9, "X": 10}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_INDEX = re.compile(r"^(?:r|rep|replicate|s|#|n)?[ _.\-]?(\d{1,2})(?:\.0)?$", re.I)
_IGNORE_NAME = re.compile(r"^[^a-z0-9]*ignored?(?![a-z0-9])", re.I)
"""A curator's mark on a column not to analyse (``_IGNORE_age``, ``ignore: notes``)."""
_FILE = re.compile(r"(?:[\\/]|\.(?:raw|d|wiff|mzml|mzxml|dia|mgf)$)", re.I)


def column_words(name: str) -> set[str]:
    """Lower-case words of a column name, split on anything not a letter or digit and at camelCase
    joins (``BioReplicate`` -> bio, replicate; ``PatientID`` -> patient, id; ``TMTPlex`` -> tmt,
    plex). An acronym is split from a capitalised word after it only when two or more capitals stay
    before the join, so an acronym run into a lower-case word stays one word (``ERstatus``,
    ``OSmonths``; never ``e`` + ``rstatus``)."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z]{2})(?=[A-Z][a-z])", " ", str(name))
    return {t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t}


def level_words(level: str) -> set[str]:
    """Lower-case words of a level value; hyphenated compounds (``triple-negative``) and decimal
    numbers (``25.0`` is not ``0``) stay one word."""
    tokens = re.findall(r"\d+\.\d+(?!\d)|[a-z0-9\-]+", str(level).lower())
    return {t.strip("-") for t in tokens if t.strip("-")}


def is_reference_level(level: str) -> bool:
    """A control-like level: a whole word such as control, healthy, normal, untreated, vehicle, wild-type, 0 (or 0.0)."""
    words = level_words(level)
    return bool(words & _REFERENCE_WORDS) or any(re.fullmatch(r"0+\.0+", w) for w in words)


def is_case_level(level: str) -> bool:
    """A disease-like sample type: a whole word such as tumour, cancer, carcinoma, lesion."""
    return bool(level_words(level) & _CASE_WORDS)


# --- roles --------------------------------------------------------------------------------------------


def technical_word(name: str) -> str | None:
    words = column_words(name)
    hits = [w for w in sorted(words & _TECHNICAL_WORDS) if not (w == "site" and words & _ANATOMY_WORDS)]
    return hits[0] if hits else None


def _index_values(s: pd.Series) -> pd.Series | None:
    """Small integers of a replicate-index-like column (``1``, ``R2``, ``rep_3``), else None."""
    vals = s.dropna().astype(str).str.strip()
    m = vals.str.extract(_INDEX)[0]
    if vals.empty or m.isna().any():
        return None
    return m.astype(int)


def _nested_index_of(s: pd.Series, clin: pd.DataFrame, factors: list[str], repeats: bool = False) -> str | None:
    """The factor inside whose every level ``s`` restarts as 1..k (or 0..k-1), each value once (or,
    with ``repeats``, for a column named as a replicate: the same values 1..k, e.g. a biological
    replicate measured twice)."""
    idx = _index_values(s)
    if idx is None or idx.nunique() < 2:
        return None
    for f in factors:
        g = clin.loc[idx.index, f]
        ok = g.notna()
        if g[ok].nunique() < 2:
            continue
        per = idx[ok].groupby(g[ok].astype(str))
        restarts = all((repeats or v.is_unique) and v.min() in (0, 1) and v.max() - v.min() == v.nunique() - 1 for _, v in per)
        if restarts and sum(len(v) > 1 for _, v in per) >= 2:
            return f
    return None


def _blocks_across(s: pd.Series, clin: pd.DataFrame, factors: list[str]) -> str | None:
    """The factor whose levels the small levels of ``s`` span (each block holds samples of several levels)."""
    vals = s.dropna().astype(str)
    counts = vals.value_counts()
    if len(counts) < 3 or counts.max() < 2:
        return None
    for f in factors:
        g = clin.loc[vals.index, f].astype(str)
        k = g.nunique()
        if k < 2 or len(counts) <= k:
            continue
        spans = g.groupby(vals).nunique()
        if (counts <= k).all() and (spans >= 2).mean() >= 0.8:
            return f
    return None


def assign_roles(clin: pd.DataFrame, kinds: dict[str, str]) -> dict[str, tuple[Role, str, str | None]]:
    """Role, reason and nesting factor of every column of ``clin`` given its value kind (see profile).

    ``kinds`` maps a column to the kind :mod:`proteus.profile` typed it as (binary, categorical,
    continuous, survival_time, survival_event, batch, id, text, constant).
    """
    out: dict[str, tuple[Role, str, str | None]] = {}
    for col, kind in kinds.items():
        s = clin[col]
        words = column_words(col)
        tech = technical_word(col)
        if kind == "constant":
            out[col] = ("ignored", "a single value", None)
        elif _IGNORE_NAME.match(str(col)):
            out[col] = ("ignored", "the sample table marks it to be ignored (name starts with 'ignore')", None)
        elif kind in ("survival_time", "survival_event"):
            out[col] = ("outcome", "follow-up time" if kind == "survival_time" else "event indicator of a follow-up", None)
        elif tech:
            out[col] = ("technical", f"named as a technical factor ({tech!r})", None)
        elif s.dropna().astype(str).str.contains(_FILE).mean() > 0.8:
            out[col] = ("technical", "values are file or run names", None)
        elif words & _BLOCK_WORDS:
            word = sorted(words & _BLOCK_WORDS)[0]
            if s.dropna().astype(str).is_unique:
                out[col] = ("identifier", f"one {word} per sample", None)
            else:
                out[col] = ("block", f"samples from the same {word} share a value (pairing / blocking)", None)
        elif kind in ("id",):
            out[col] = ("identifier", "a unique value per sample", None)
        elif kind == "text":
            out[col] = ("ignored", "free text", None)
        elif kind == "continuous":
            out[col] = ("covariate", "a continuous measurement", None)
        elif kind == "batch":
            out[col] = ("technical", "a technical grouping", None)
        else:
            out[col] = ("biological", "a sample grouping (candidate condition)", None)
    factors = [c for c, (r, _, _) in out.items() if r == "biological"]
    for col in [c for c, (r, _, _) in out.items() if r in ("biological", "technical")]:
        named = any(w.endswith("replicate") or w in ("rep", "reps") for w in column_words(col))
        nest = _nested_index_of(clin[col], clin, [f for f in factors if f != col], repeats=named)
        if nest is not None:
            out[col] = ("technical", f"replicate index: restarts at 1 inside every level of {nest!r} (nested, never a contrast)", nest)
    factors = [c for c, (r, _, _) in out.items() if r == "biological"]
    for col in factors:
        across = _blocks_across(clin[col], clin, [f for f in factors if f != col])
        if across is not None:
            out[col] = ("block", f"small groups that each span several levels of {across!r} (pairs / blocks)", None)
    return out


# --- levels and references -----------------------------------------------------------------------------


def _roman_to_numbers(level: str) -> str:
    return re.sub(r"\b(VIII|VII|VI|IV|IX|V|X|III|II|I)\b", lambda m: str(_ROMAN[m.group(1)]), str(level))


def _numeric_scores(levels: list[str]) -> list[float] | None:
    """Scores when the levels are one name template differing in one number (``10 uM``, ``day 3``, ``Stage II``)."""
    text = [_roman_to_numbers(lv).strip().lower() for lv in levels]
    templates = {_NUMBER.sub("#", t) for t in text}
    if len(templates) != 1 or "#" not in next(iter(templates)):
        return None
    nums = [[float(x) for x in _NUMBER.findall(t)] for t in text]
    varying = [i for i in range(len(nums[0])) if len({n[i] for n in nums}) > 1]
    if len(varying) != 1:
        return None
    scores = [n[varying[0]] for n in nums]
    return scores if len(set(scores)) == len(scores) else None


def _ordinal_scores(levels: list[str]) -> list[float] | None:
    """Scores when each level holds one ordinal word (low / medium / high, well / moderately / poorly ...)."""
    scores = []
    for lv in levels:
        hit = level_words(lv) & _ORDINAL.keys()
        if len(hit) != 1:
            return None
        scores.append(float(_ORDINAL[hit.pop()]))
    return scores if len(set(scores)) == len(scores) else None


def level_order(levels: list[str]) -> tuple[list[str], bool, str]:
    """Levels in design order, whether they are ordered, and why.

    Ordered levels (doses, concentrations, times, grades, stages, ordinal words) ascend; a
    control-like level that carries no number (``vehicle`` beside ``1 uM``, ``10 uM``) comes first.
    """
    levels = [str(x) for x in levels]
    if len(levels) < 2:
        return levels, False, ""
    refs = [lv for lv in levels if is_reference_level(lv)]
    for head in ([], refs[:1]):
        rest = [lv for lv in levels if lv not in head]
        if len(rest) < 2:
            continue
        for scorer, why in ((_numeric_scores, "a number in otherwise equal level names"), (_ordinal_scores, "ordinal words")):
            scores = scorer(rest)
            if scores is not None:
                return head + [lv for _, lv in sorted(zip(scores, rest))], True, why + (f"; {head[0]!r} first" if head else "")
    return sorted(levels), False, ""


def factor_design(levels: dict[str, int]) -> dict:
    """Design of one factor from its usable level counts: ordered levels, reference(s) and why.

    Returns ``{"levels", "ordered", "order_reason", "references", "reference_reason"}``; references
    are control-like levels (largest first), else the lowest level of an ordered factor.
    """
    order, ordered, why = level_order(list(levels))
    refs = sorted([lv for lv in order if is_reference_level(lv)], key=lambda lv: -levels[lv])
    if refs and len(refs) < len(order):
        reason = f"control-like level name{'s' if len(refs) > 1 else ''}"
    elif ordered:
        refs, reason = [order[0]], "lowest level of an ordered factor"
    else:
        refs, reason = [], ""
    return {"levels": order, "ordered": ordered, "order_reason": why, "references": refs, "reference_reason": reason}


def design_contrasts(levels: dict[str, int], design: dict, max_pairs_levels: int = 5) -> list[tuple[str, str, str]]:
    """(case, control, kind) pairs that follow the design of a factor with usable ``levels`` counts.

    kind: ``two_level``; ``vs_reference`` (each other level vs each reference); ``pooled_vs_reference``
    (two or more other levels beside a control-like reference: their mean against it, case :func:`pooled_label`, the
    shared effect no single level shows with its own few samples); ``pairwise`` (no reference and at
    most ``max_pairs_levels`` levels: all pairs, the multiplicity they imply). An unordered factor
    with more levels and no reference gets only its F-test.
    """
    order, refs = design["levels"], design["references"]
    if len(order) == 2:
        control = refs[0] if refs else order[0] if design["ordered"] else max(order)
        case = next(lv for lv in order if lv != control)
        return [(case, control, "two_level")]
    if refs:
        others = [lv for lv in order if lv not in refs]
        control_like = is_reference_level(refs[0])  # not merely the lowest dose or time, whose series the trend tests
        pooled = [(pooled_label(refs[0]), refs[0], "pooled_vs_reference")] if len(others) >= 2 and control_like else []
        return [(lv, r, "vs_reference") for r in refs for lv in others] + pooled
    if len(order) <= max_pairs_levels:
        return [(b, a, "pairwise") if a < b else (a, b, "pairwise") for a, b in itertools.combinations(order, 2)]
    return []


def pooled_label(reference: str) -> str:
    """The case label of a pooled contrast: ``"all non-<reference>"`` (every other level of the factor)."""
    return f"all non-{reference}"


def pooled_power(n_levels: list[int], n_reference: int) -> float:
    r"""Effective sample size of the pooled contrast (the mean of ``m`` level means minus the reference
    mean), in the units of :func:`power`: :math:`1 / (1/n_0 + \sum_j (1/n_j) / m^2)`, the inverse of
    the contrast's variance over :math:`\sigma^2` (10, 10, 10, 8 levels vs 10: 7.9, above each level's 5.0)."""
    m = len(n_levels)
    if m == 0 or n_reference == 0 or not all(n_levels):
        return 0.0
    return 1.0 / (1.0 / n_reference + sum(1.0 / n for n in n_levels) / m**2)


def power(n_case: int, n_control: int) -> float:
    """Effective sample size of a two-group comparison, :math:`n_1 n_2 / (n_1 + n_2)`.

    The standard error of a difference in means scales as :math:`\\sqrt{1/n_1 + 1/n_2}`, so this
    rewards both a larger smaller arm and balance (7 vs 96: 6.5; 14 vs 86: 12.0).
    """
    return n_case * n_control / (n_case + n_control) if n_case and n_control else 0.0


def factor_power(n_per_level: dict[str, int]) -> float:
    r"""Power of a factor's whole design (its F-test), in the units of :func:`power`: :math:`N(1 - \sum_k p_k^2)/2`.

    With independent level effects of one variance, the one-way F-test's expected noncentrality
    is :math:`\sum_k n_k E(\mu_k - \bar\mu)^2 \propto N(1 - \sum_k p_k^2)` (:math:`p_k = n_k/N`);
    halved it equals :func:`power` for two levels, so a five-level factor is not ranked by its best
    pair alone (10+10+10+8+10: 19.2, above a 15 vs 33 binary column's 10.3).
    """
    n = sum(n_per_level.values())
    if n == 0 or sum(1 for v in n_per_level.values() if v) < 2:
        return 0.0
    return n * (1 - sum((v / n) ** 2 for v in n_per_level.values())) / 2


# --- adjustment -------------------------------------------------------------------------------------------


def _full_rank(X: np.ndarray) -> bool:
    return np.linalg.matrix_rank(X) == X.shape[1]


def adjustment(clin: pd.DataFrame, group: str, levels: list[str], candidates: list[tuple[str, Role]],
               min_complete: float = 0.9) -> tuple[list[str], list[str], list[str]]:
    """Columns to adjust a comparison of ``levels`` of ``group`` for: (covariates, confounded, notes).

    A technical column is adjusted for when it varies among the compared samples, is recorded for at
    least ``min_complete`` of them, and keeps the design ``~ group + covariates`` of full rank with at
    least half the residual degrees of freedom (and >= 2); a column fully aliased with the group is
    *confounded* (cannot be adjusted; reported). A pairing block is used when at least 80% of the
    samples sit in blocks that hold two or more of the levels (a paired design). Finer technical
    factors are tried first, so a plex nested in a batch is used and the batch then adds nothing.
    """
    rows = clin[group].astype(str).isin(levels) & clin[group].notna()
    tab = clin.loc[rows]
    g = tab[group].astype(str)
    n, k = len(tab), g.nunique()
    base_df = n - k
    X = np.column_stack([np.ones(n)] + [(g == lv).to_numpy(float) for lv in sorted(set(g))[1:]])
    covariates: list[str] = []
    confounded: list[str] = []
    notes: list[str] = []

    def levels_of(c: str) -> int:
        return tab[c].nunique()

    for col, role in sorted(candidates, key=lambda cr: (cr[1] != "block", -levels_of(cr[0]))):
        s = tab[col]
        if s.value_counts().max() < 2 if s.notna().any() else True:
            continue  # one value per sample (a file name): nothing to adjust
        if s.notna().mean() < min_complete or s.nunique() < 2:
            if s.nunique() >= 2:
                notes.append(f"{col}: recorded for {s.notna().mean():.0%} of the samples; not adjusted")
            continue
        if role == "block":
            spans = g.groupby(s.astype(str)).nunique()
            paired = s.astype(str).map(spans).fillna(0) >= 2
            if paired.mean() < 0.8:
                notes.append(f"{col}: only {paired.mean():.0%} of samples paired; not used as a block")
                continue
        block = covariate_block(tab, [col]).to_numpy()
        keep = s.notna().to_numpy()
        trial = np.column_stack([X, block])[keep]
        if not _full_rank(trial):
            base = X[keep]
            if not _full_rank(np.column_stack([base[:, :1], block[keep]])):
                continue
            if s[keep].astype(str).groupby(g[keep]).nunique().max() < 2 and s[keep].nunique() > 1:
                confounded.append(col)
                notes.append(f"{col}: every {group} level lies within one {col} level (confounded: a difference "
                             "between them may be technical; cannot be adjusted)")
            else:
                notes.append(f"{col}: nested in an adjusted column; adds nothing")
            continue
        df = trial.shape[0] - trial.shape[1]
        if df < max(2, base_df / 2):
            notes.append(f"{col}: would leave {df} residual degrees of freedom of {base_df}; not adjusted")
            continue
        X = np.column_stack([X[keep], block[keep]]) if not keep.all() else np.column_stack([X, block])
        tab, g = tab.loc[keep], g.loc[keep]
        covariates.append(col)
    return covariates, confounded, notes


_UNKNOWN = re.compile(
    r"^(unknown|unk|unkn?own|unknow|na|n/a|nan|none|not reported|not available|not known|not applicable|not evaluated|"
    r"cannot be determined|staging incomplete|other.*|p?[ntm]x|missing|\?|-)$",
    re.I,
)


def is_unknown_level(value: object) -> bool:
    """Whether a level means "not known" ('unknown', 'NA', 'not reported', 'cannot be determined', 'pNX', ...)."""
    return bool(_UNKNOWN.match(str(value).strip()))


def recorded(s: pd.Series) -> pd.Series:
    """A sample-table column with the values that mean "not known" (:func:`is_unknown_level`) as missing: the one
    reading of which samples have it recorded, shared by the confounder checks, the refits they quote (and the
    collinearity of each refit, :func:`proteus.confounding.collinear_v`) and validation's re-tests of them."""
    return s.where(s.notna() & ~s.astype(str).map(is_unknown_level))


_COMPOSITION = re.compile(
    r"(purity|strom|immune|estimate|cellularit|infiltrat|tumou?r.?(content|cell.?fraction)|fibroblast|endothel|"
    r"cibersort|xcell|\bepic|mcp.?counter|deconvol|macrophage|lymphocyte|leukocyte)",
    re.I,
)


def is_composition_score(name: str) -> bool:
    """A clinical column that measures tissue composition (purity, stromal / immune content, cell-type fractions)."""
    return bool(_COMPOSITION.search(name.replace("_", " ")))
