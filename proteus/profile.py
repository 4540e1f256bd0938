"""Data profile: what a study holds, typed so that planning can follow it.

:func:`profile_study` types every clinical column (binary, categorical, continuous, survival time
and event, batch-like, identifier, free text, constant), finds candidate sample groups and
contrasts, summarises each omics layer (features, samples, missingness, id type) and recurrent
mutations. :meth:`DataProfile.summary` renders a bounded text for prompts; names that come from
the data are quoted so they read as data, never as instructions.
"""

from __future__ import annotations

import json
import re
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from proteus.study import Study

__all__ = ["ClinicalVariable", "ModalityProfile", "DataProfile", "profile_study", "quote"]

VariableKind = Literal[
    "binary", "categorical", "continuous", "survival_time", "survival_event", "batch", "id", "text", "constant"
]

_TIME_WORDS = ("surviv", "time", "days", "months", "years", "follow", "duration")
_TIME_TOKENS = {"os", "pfs", "dfs", "rfs", "dss", "efs", "ttp", "dmfs", "tdm"}
_EVENT_WORDS = ("event", "death", "dead", "vital", "relaps", "recur", "censor", "metast", "progress")
_EVENT_TOKENS = {"status", "e", "os", "pfs", "dfs", "rfs", "dss", "efs", "edm", "dmfs"}
_BATCH_TOKENS = {"batch", "plex", "tmt", "run", "plate", "lane", "channel", "center", "centre", "instrument", "fraction", "operator"}


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t]


def _is_time(name: str) -> bool:
    """Follow-up time: a time word or endpoint token; a bare ``t`` only as the whole name or beside an
    endpoint (``t.os``), never in names like ``T cells CD8``."""
    low = name.lower()
    toks = set(_tokens(name))
    return any(w in low for w in _TIME_WORDS) or bool(toks & _TIME_TOKENS) or toks == {"t"}


def _is_event(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in _EVENT_WORDS) or bool(set(_tokens(name)) & _EVENT_TOKENS)


def _is_batch(name: str) -> bool:
    return bool(set(_tokens(name)) & _BATCH_TOKENS)
_STRONG_HINT = re.compile(r"(status|subtype|condition|group|diagnos|disease|treat|arm|msi|genotype|response)", re.I)
_MEDIUM_HINT = re.compile(r"(class|histolog|phenotype|cohort)", re.I)
_WEAK_HINT = re.compile(r"(type|grade|stage|tumou?r|normal|sex|gender)", re.I)
_UNKNOWN = re.compile(
    r"^(unknown|unk|unkn?own|unknow|na|n/a|nan|none|not reported|not available|not known|not applicable|not evaluated|"
    r"cannot be determined|staging incomplete|other.*|p?[ntm]x|missing|\?|-)$",
    re.I,
)


def quote(name: object, limit: int = 60) -> str:
    """Render a data-derived name as an inert, bounded JSON string literal."""
    text = str(name)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


class ClinicalVariable(BaseModel):
    name: str
    kind: VariableKind
    n: int = Field(description="non-missing values")
    n_missing: int
    levels: dict[str, int] = Field(default_factory=dict, description="level counts (categorical/binary)")
    summary: dict[str, float] = Field(default_factory=dict, description="min/median/max (continuous)")


class ModalityProfile(BaseModel):
    name: str
    kind: str
    level: str
    n_samples: int
    n_features: int
    missing_fraction: float
    id_type: str
    source: str = ""
    scale: str = Field("", description="log2 (intensities, log-transformed on reading), centred (log ratios), linear")
    n_conditions: int | None = None


class Contrast(BaseModel):
    group: str
    case: str
    control: str
    n_case: int
    n_control: int


class DataProfile(BaseModel):
    """Everything the planner needs to know about a study, and nothing raw."""

    modalities: list[ModalityProfile]
    variables: list[ClinicalVariable]
    contrasts: list[Contrast] = Field(description="candidate two-group comparisons, best first")
    multi_groups: list[str] = Field(default_factory=list, description="categorical columns with 3-8 levels")
    continuous: list[str] = Field(default_factory=list)
    survival: list[tuple[str, str]] = Field(default_factory=list, description="(time, event) column pairs")
    batch_columns: list[str] = Field(default_factory=list)
    sample_type_column: str | None = Field(None, description="column separating tumour from normal-like samples")
    tumour_level: str | None = None
    recurrent_mutations: dict[str, int] = Field(default_factory=dict)
    n_samples: int = 0
    files: list[str] = Field(default_factory=list, description="one line per input file")

    def modality(self, kind: str) -> ModalityProfile | None:
        return next((m for m in self.modalities if m.kind == kind), None)

    def variable(self, name: str) -> ClinicalVariable | None:
        return next((v for v in self.variables if v.name == name), None)

    def summary(self, max_chars: int = 6000) -> str:
        """Bounded plain-text summary for prompts and logs; data names are quoted."""
        lines = [f"Samples: {self.n_samples}. Layers:"]
        for m in self.modalities:
            lines.append(
                f"- {quote(m.name)} ({m.kind}, {m.level}-level): {m.n_features} features x {m.n_samples} "
                f"{'cells' if m.level == 'cell' else 'samples'}, {m.missing_fraction:.0%} missing, ids: {m.id_type}"
            )
        if self.contrasts:
            lines.append("Candidate contrasts (group: case vs control, n):")
            for c in self.contrasts[:12]:
                lines.append(f"- {quote(c.group)}: {quote(c.case)} (n={c.n_case}) vs {quote(c.control)} (n={c.n_control})")
        if self.multi_groups:
            lines.append("Multi-level groups: " + ", ".join(map(quote, self.multi_groups[:12])))
        if self.continuous:
            lines.append("Continuous variables: " + ", ".join(map(quote, self.continuous[:25])))
        if self.survival:
            lines.append("Survival (time, event): " + ", ".join(f"({quote(t)}, {quote(e)})" for t, e in self.survival))
        if self.batch_columns:
            lines.append("Batch-like columns: " + ", ".join(map(quote, self.batch_columns[:8])))
        if self.sample_type_column:
            lines.append(f"Sample type column: {quote(self.sample_type_column)}; tumour level {quote(self.tumour_level)}")
        if self.recurrent_mutations:
            top = list(self.recurrent_mutations.items())[:15]
            lines.append("Recurrently mutated genes (samples): " + ", ".join(f"{quote(g)} {n}" for g, n in top))
        text = "\n".join(lines)
        return text if len(text) <= max_chars else text[: max_chars - 20] + "\n[... truncated]"


_PROBE = re.compile(r"^(\d+(_[a-z])?_at|AFFX-.+|ILMN_\d+|A_\d+_P\d+)$", re.I)
"""Microarray probe ids (Affymetrix ``211762_s_at``, Illumina ``ILMN_123``, Agilent ``A_23_P123``)."""
_ID_TOKENS = {"id", "ids", "identifier", "barcode", "accession", "uuid"}


def _id_type(names: pd.Index) -> str:
    sample = [str(x) for x in names[:200]]
    if not sample:
        return "none"
    if all(re.match(r"^[A-Za-z0-9.\-]+-[STYK]\d+", s) for s in sample[:50]):
        return "site (GENE-S123)"
    if sum(bool(re.match(r"^[OPQ][0-9][A-Z0-9]{3}[0-9]|^[A-NR-Z][0-9]([A-Z][A-Z0-9]{2}[0-9]){1,2}", s)) for s in sample) > len(sample) / 2:
        return "uniprot"
    if sum(s.startswith("ENSG") for s in sample) > len(sample) / 2:
        return "ensembl"
    if sum(s.lower().startswith("hsa-") for s in sample) > len(sample) / 2:
        return "mirna"
    if sum(bool(_PROBE.match(s)) for s in sample) > len(sample) / 2:
        return "probe"
    return "symbol"


def _type_variable(name: str, s: pd.Series) -> ClinicalVariable:
    x = s.replace(r"^\s*$", np.nan, regex=True) if s.dtype == object else s
    nonmissing = x.dropna()
    n, n_missing = int(nonmissing.shape[0]), int(x.isna().sum())
    nunique = nonmissing.astype(str).nunique()
    base = dict(name=str(name), n=n, n_missing=n_missing)
    if nunique <= 1:
        return ClinicalVariable(kind="constant", **base)
    numeric = pd.to_numeric(nonmissing, errors="coerce")
    is_numeric = numeric.notna().mean() > 0.95
    counts = nonmissing.astype(str).value_counts()
    levels = {str(k): int(v) for k, v in counts.head(20).items()}
    if _is_batch(name) and nunique <= max(40, n // 2) and not (is_numeric and nunique > 40):
        return ClinicalVariable(kind="batch", levels=levels, **base)
    if is_numeric and nunique > 2 and _is_time(name) and (numeric >= 0).all():
        return ClinicalVariable(kind="survival_time", summary=_num_summary(numeric), **base)
    if nunique == 2:
        kind = "survival_event" if _is_event(name) and is_numeric else "binary"
        return ClinicalVariable(kind=kind, levels=levels, **base)
    if nunique >= 0.9 * n and n > 10 and set(_tokens(name)) & _ID_TOKENS:
        return ClinicalVariable(kind="id", **base)  # numeric identifiers are not measurements
    if is_numeric and nunique > 10:
        return ClinicalVariable(kind="continuous", summary=_num_summary(numeric), **base)
    if nunique >= 0.9 * n and n > 10:
        mean_len = nonmissing.astype(str).str.len().mean()
        return ClinicalVariable(kind="text" if mean_len > 25 else "id", **base)
    if nunique <= 12:
        return ClinicalVariable(kind="categorical", levels=levels, **base)
    if is_numeric:
        return ClinicalVariable(kind="continuous", summary=_num_summary(numeric), **base)
    return ClinicalVariable(kind="text", **base)


def _num_summary(x: pd.Series) -> dict[str, float]:
    return {"min": float(x.min()), "median": float(x.median()), "max": float(x.max())}


_NORMAL = re.compile(r"(normal|healthy|control|ctrl|ref|reference|unstim|baseline|wt|wild|negative|no$|^0$|mss|adjacent)", re.I)
_TUMOUR = re.compile(r"^(tumou?r|cancer|primary|case|disease|malignant)", re.I)


def _control_first(levels: list[str]) -> tuple[str, str]:
    """Order two levels as (case, control), control being the normal-like / reference level."""
    a, b = levels
    if _NORMAL.search(a) and not _NORMAL.search(b):
        return b, a
    if _NORMAL.search(b) and not _NORMAL.search(a):
        return a, b
    return (a, b) if a > b else (b, a)


def _contrasts(variables: list[ClinicalVariable], min_n: int = 3) -> list[Contrast]:
    out = []
    for v in variables:
        if v.kind not in ("binary", "categorical"):
            continue
        lv = {k: c for k, c in v.levels.items() if c >= min_n and not _UNKNOWN.match(k.strip())}
        if len(lv) < 2:
            continue
        ranked = sorted(lv, key=lambda k: -lv[k])
        if len(ranked) == 2:
            pairs = [_control_first(ranked)]
        else:
            normal = [k for k in ranked if _NORMAL.search(k)]
            tumour = [k for k in ranked if _TUMOUR.search(k)]
            if normal and tumour:
                pairs = [(tumour[0], normal[0])]
            elif normal:  # every other level against the reference level (e.g. each disease vs healthy)
                pairs = [(k, normal[0]) for k in ranked if k not in normal][:4]
            else:
                pairs = [_control_first(ranked[:2])]
        for case, control in pairs:
            out.append(Contrast(group=v.name, case=case, control=control, n_case=lv[case], n_control=lv[control]))

    def priority(c: Contrast) -> tuple:
        if _TUMOUR.search(c.case) and _NORMAL.search(c.control):
            hint = 0
        elif _STRONG_HINT.search(c.group):
            hint = 1
        elif _MEDIUM_HINT.search(c.group):
            hint = 2
        elif _WEAK_HINT.search(c.group):
            hint = 3
        else:
            hint = 4
        return (hint, -min(c.n_case, c.n_control))

    return sorted(out, key=priority)


def _distinct(contrasts: list[Contrast], clin: pd.DataFrame) -> list[Contrast]:
    """Drop contrasts that split (almost) the same samples as an earlier one (e.g. two sample-type columns)."""

    def members(c: Contrast) -> tuple[frozenset, frozenset]:
        col = clin[c.group].astype(str)
        return frozenset(col.index[col == c.case]), frozenset(col.index[col == c.control])

    def overlap(a: frozenset, b: frozenset) -> float:
        return len(a & b) / max(1, min(len(a), len(b)))

    kept: list[tuple[Contrast, tuple[frozenset, frozenset]]] = []
    for c in contrasts:
        m = members(c)
        if any(overlap(m[0], k[0]) >= 0.9 and overlap(m[1], k[1]) >= 0.9 for _, k in kept):
            continue
        kept.append((c, m))
    return [c for c, _ in kept]


def profile_study(study: Study) -> DataProfile:
    """Profile ``study``: modalities, typed clinical variables, contrasts, survival, batches, mutations."""
    mods = []
    for name, a in study.modalities.items():
        x = a.X
        miss = float(np.isnan(x).mean()) if np.issubdtype(np.asarray(x[:1]).dtype, np.floating) and a.n_obs * a.n_vars < 5e8 else 0.0
        level = a.uns.get("level", "sample")
        n_cond = None
        if level == "cell" and "sample_id" in a.obs:
            n_cond = int(a.obs["sample_id"].nunique())
        mods.append(
            ModalityProfile(
                name=name,
                kind=str(a.uns.get("modality", name)),
                level=level,
                n_samples=int(a.n_obs),
                n_features=int(a.n_vars),
                missing_fraction=miss,
                id_type=_id_type(a.var_names),
                source=str(a.uns.get("source", "")),
                scale=str(a.uns.get("scale", "")),
                n_conditions=n_cond,
            )
        )
    clin = study.clinical
    variables = [_type_variable(str(c), clin[c]) for c in clin.columns]
    times = [v.name for v in variables if v.kind == "survival_time"]
    events = [v.name for v in variables if v.kind == "survival_event"]
    survival = []
    for t in times:
        # pair each time with the event column sharing the most name tokens
        def overlap(e: str) -> int:
            tok = lambda s: set(re.split(r"[^a-z0-9]+", s.lower())) - {""}
            return len(tok(t) & tok(e))
        if events:
            survival.append((t, max(events, key=overlap)))
    contrasts = _distinct(_contrasts(variables), clin)
    sample_type = None
    tumour_level = None
    for c in contrasts:
        if _TUMOUR.search(c.case) and _NORMAL.search(c.control):
            sample_type, tumour_level = c.group, c.case
            break
    rec: dict[str, int] = {}
    if study.mutations is not None and not study.mutations.empty:
        m = study.mutations
        if "variant_class" in m:
            m = m[~m["variant_class"].astype(str).str.lower().isin({"silent", "synonymous_variant", "3'utr", "5'utr", "intron", "igr", "3'flank", "5'flank", "rna"})]
        counts = m.drop_duplicates(["sample", "gene"]).groupby("gene").size().sort_values(ascending=False)
        rec = {str(g): int(n) for g, n in counts[counts >= 3].head(40).items()}
    return DataProfile(
        modalities=mods,
        variables=variables,
        contrasts=contrasts,
        multi_groups=[v.name for v in variables if v.kind == "categorical" and 3 <= len(v.levels) <= 8],
        continuous=[v.name for v in variables if v.kind == "continuous"],
        survival=survival,
        batch_columns=[v.name for v in variables if v.kind == "batch"],
        sample_type_column=sample_type,
        tumour_level=tumour_level,
        recurrent_mutations=rec,
        n_samples=len(study.samples()),
        files=[f"{r.path}: {r.kind or 'skipped'}{' (' + r.modality + ')' if r.modality else ''}{' - ' + r.problem if r.problem else ''}" for r in study.reports],
    )
