"""Data profile: what a study holds, typed so that planning can follow it.

:func:`profile_study` types every clinical column (binary, categorical, continuous, survival time
and event, batch-like, identifier, free text, constant), gives it a design role with the reason
(:mod:`proteus.design`: biological factor, technical factor, pairing block, covariate, outcome,
identifier), lays out each biological factor's design (ordered levels, reference, the contrasts it
supports, ranked by power, and the technical columns each is adjusted for), summarises each omics
layer (features, samples, missingness, id type) and recurrent mutations. :meth:`DataProfile.summary` renders a bounded text for prompts; names that come from
the data are quoted so they read as data, never as instructions.
"""

from __future__ import annotations

import json
import re
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from proteus import design
from proteus.confounding import classifications, indication_confounder
from proteus.study import Study

__all__ = ["ClinicalVariable", "ModalityProfile", "Contrast", "FactorDesign", "DataProfile", "profile_study", "quote"]

VariableKind = Literal[
    "binary", "categorical", "continuous", "survival_time", "survival_event", "batch", "id", "text", "constant"
]

_TIME_WORDS = ("surviv", "time", "days", "months", "years", "follow", "duration")
_TIME_TOKENS = {"os", "pfs", "dfs", "rfs", "dss", "efs", "ttp", "dmfs", "tdm"}
_EVENT_WORDS = ("event", "death", "dead", "vital", "relaps", "recur", "censor", "metast", "progress")
_EVENT_TOKENS = {"status", "e", "os", "pfs", "dfs", "rfs", "dss", "efs", "edm", "dmfs"}


def _is_time(name: str) -> bool:
    """Follow-up time: a time word or endpoint token; a bare ``t`` only as the whole name or beside an
    endpoint (``t.os``), never in names like ``T cells CD8``."""
    low = name.lower()
    toks = design.column_words(name)
    return any(w in low for w in _TIME_WORDS) or bool(toks & _TIME_TOKENS) or toks == {"t"}


def _is_event(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in _EVENT_WORDS) or bool(design.column_words(name) & _EVENT_TOKENS)


def _is_batch(name: str) -> bool:
    return design.technical_word(name) is not None


_NAME_HINTS = (
    (2.0, ("status", "subtype", "condition", "group", "diagnos", "disease", "treat", "arm", "genotype", "response")),
    (1.5, ("class", "histolog", "phenotype", "cohort")),
    (1.25, ("type", "grade", "stage", "tumor", "tumour", "normal", "sex", "gender")),
)
"""Weights of column names that announce a study's question (words starting with a stem)."""


def _name_weight(name: str) -> float:
    words = design.column_words(name)
    for weight, stems in _NAME_HINTS:
        if any(w.startswith(st) for w in words for st in stems):
            return weight
    return 1.0


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
    role: design.Role = Field("ignored", description="design role: biological, technical, block, covariate, outcome, identifier, ignored")
    role_reason: str = Field("", description="why the column has its role")
    nested_in: str | None = Field(None, description="factor inside which this replicate index restarts (never adjusted for)")


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
    organism: str | None = Field(None, description="species named by the feature annotation (None: not stated)")


class Contrast(BaseModel):
    group: str
    case: str
    control: str
    n_case: int
    n_control: int
    kind: str = Field("two_level", description="two_level, vs_reference, pooled_vs_reference or pairwise (see proteus.design)")
    case_levels: list[str] = Field(default_factory=list, description="pooled_vs_reference: the levels pooled as the case "
                                   "(case is the pool's label); empty: the level named by case")
    power: float = Field(0.0, description="effective sample size n_case*n_control/(n_case+n_control)")
    covariates: list[str] = Field(default_factory=list, description="technical / block columns adjusted for")
    confounded: list[str] = Field(default_factory=list, description="technical columns aliased with the contrast")
    confounders: list[str] = Field(default_factory=list, description="biological columns the contrast is nested in, adjusted for "
                                   "(also in covariates; proteus.confounding.indication_confounder)")


class FactorDesign(BaseModel):
    """The design of one biological factor: levels in order, reference, tests, adjustment."""

    name: str
    levels: list[str] = Field(description="usable levels in design order (reference / lowest first when known)")
    n_per_level: dict[str, int]
    ordered: bool = False
    order_reason: str = ""
    references: list[str] = Field(default_factory=list)
    reference_reason: str = ""
    covariates: list[str] = Field(default_factory=list, description="technical / block columns adjusted for")
    confounded: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="adjustment decisions and their reasons")
    power: float = Field(0.0, description="power of its whole design (proteus.design.factor_power; effective sample size)")

    @property
    def tests(self) -> list[str]:
        """The tests the design calls for, in words."""
        out = ["F-test across levels"] if len(self.levels) > 2 else []
        if self.ordered and len(self.levels) > 2:
            out.append("linear trend over ordered levels")
        if self.references:
            out.append(f"each level vs {', '.join(self.references)}")
            if len(self.levels) - len(self.references) >= 2:
                out.append(f"the other levels pooled vs {self.references[0]}")
        elif len(self.levels) == 2:
            out.append("two-group comparison")
        elif len(self.levels) <= 5:
            out.append("all pairs of levels")
        return out


class DataProfile(BaseModel):
    """Everything the planner needs to know about a study, and nothing raw."""

    modalities: list[ModalityProfile]
    variables: list[ClinicalVariable]
    contrasts: list[Contrast] = Field(description="two-group comparisons that follow the designs, most powerful first")
    factors: list[FactorDesign] = Field(default_factory=list, description="biological factors and their designs, most powerful first")
    multi_groups: list[str] = Field(default_factory=list, description="biological factors with 3-8 usable levels")
    continuous: list[str] = Field(default_factory=list)
    survival: list[tuple[str, str]] = Field(default_factory=list, description="(time, event) column pairs")
    batch_columns: list[str] = Field(default_factory=list, description="technical grouping columns (QC tests them)")
    adjust_for: list[str] = Field(default_factory=list, description="technical columns adjusted for in analyses of all samples (correlation)")
    sample_type_column: str | None = Field(None, description="column separating tumour from normal-like samples")
    tumour_level: str | None = None
    recurrent_mutations: dict[str, int] = Field(default_factory=dict)
    n_samples: int = 0
    files: list[str] = Field(default_factory=list, description="one line per input file")

    def modality(self, kind: str) -> ModalityProfile | None:
        return next((m for m in self.modalities if m.kind == kind), None)

    def variable(self, name: str) -> ClinicalVariable | None:
        return next((v for v in self.variables if v.name == name), None)

    def confounder_columns(self) -> list[tuple[str, str, bool]]:
        """``(name, role, continuous)`` of the columns a contrast is checked against before a claim
        (:func:`proteus.confounding.contrast_checks`): biological factors and covariates, and continuous
        technical columns (a run order: a grouping measured in its own stretch of the run cannot be told
        from drift); technical groupings are adjusted for by the models instead."""
        return [(v.name, v.role, v.kind == "continuous") for v in self.variables
                if (v.role in ("biological", "covariate") and v.kind in ("binary", "categorical", "continuous"))
                or (v.role == "technical" and v.kind == "continuous")]

    def summary(self, max_chars: int = 6000) -> str:
        """Bounded plain-text summary for prompts and logs; data names are quoted."""
        lines = [f"Samples: {self.n_samples}. Layers:"]
        for m in self.modalities:
            lines.append(
                f"- {quote(m.name)} ({m.kind}, {m.level}-level): {m.n_features} features x {m.n_samples} "
                f"{'cells' if m.level == 'cell' else 'samples'}, {m.missing_fraction:.0%} missing, ids: {m.id_type}"
                + (f", organism {m.organism}" if m.organism else "")
            )
        said = {"technical": "Technical columns (QC checks them, models adjust for them; never a research question)",
                "block": "Pairing / block columns (adjusted for; never a research question)",
                "identifier": "Identifier columns (one value per sample; ignore)"}
        for role, label in said.items():
            names = [f"{quote(v.name)} ({v.role_reason})" if role != "identifier" else quote(v.name) for v in self.variables if v.role == role]
            if names:
                lines.append(f"{label}: " + ", ".join(names[:8]) + (" ..." if len(names) > 8 else ""))
        if self.factors:
            lines.append("Biological factors (design: levels in order; tests; adjusted for):")
            for f in self.factors[:10]:
                lv = ", ".join(f"{quote(k)} n={f.n_per_level[k]}" for k in f.levels[:8])
                adj = f"; adjust for {', '.join(map(quote, f.covariates))}" if f.covariates else ""
                lines.append(f"- {quote(f.name)}{' (ordered)' if f.ordered else ''}: {lv}; {'; '.join(f.tests)}{adj}")
        if self.contrasts:
            lines.append("Candidate contrasts (group: case vs control, n), most powerful first:")
            for c in self.contrasts[:12]:
                adj = f" adjusting for {', '.join(map(quote, c.covariates))}" if c.covariates else ""
                pool = f" (pooled: case_levels {', '.join(map(quote, c.case_levels))})" if c.case_levels else ""
                lines.append(f"- {quote(c.group)}: {quote(c.case)} (n={c.n_case}){pool} vs {quote(c.control)} (n={c.n_control}){adj}")
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
    if _is_batch(name) and nunique < n and nunique <= max(40, n // 2) and not (is_numeric and nunique > 40):
        return ClinicalVariable(kind="batch", levels=levels, **base)
    if is_numeric and nunique > 2 and _is_time(name) and (numeric >= 0).all():
        return ClinicalVariable(kind="survival_time", summary=_num_summary(numeric), **base)
    if nunique == 2:
        kind = "survival_event" if _is_event(name) and is_numeric else "binary"
        return ClinicalVariable(kind=kind, levels=levels, **base)
    if nunique >= 0.9 * n and n > 10 and design.column_words(name) & _ID_TOKENS:
        return ClinicalVariable(kind="id", **base)  # numeric identifiers are not measurements
    if is_numeric and nunique == n and nunique > 2:
        return ClinicalVariable(kind="continuous", summary=_num_summary(numeric), **base)  # a measurement per sample
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


def _usable_levels(col: pd.Series, min_n: int) -> dict[str, int]:
    """Known levels (not 'unknown', 'NA', ...: :func:`proteus.design.is_unknown_level`) with at least ``min_n`` measured samples."""
    counts = col.dropna().astype(str).value_counts()
    return {str(k): int(c) for k, c in counts.items() if c >= min_n and not design.is_unknown_level(k)}


def _adjustable(variables: list[ClinicalVariable]) -> list[tuple[str, design.Role]]:
    """Technical and block columns that may enter a model (a nested replicate index never does)."""
    return [(v.name, v.role) for v in variables if v.role in ("technical", "block") and v.nested_in is None]


def _factor_designs(variables: list[ClinicalVariable], clin: pd.DataFrame, min_n: int) -> tuple[list[FactorDesign], list[Contrast]]:
    """Designs of the biological factors and the contrasts they support, each adjusted for the
    technical / block columns that cross it (:func:`proteus.design.adjustment`). ``clin`` holds the
    measured samples only, so every count is a promise the tools can keep."""
    adjustable = _adjustable(variables)
    finer = classifications(clin, [(v.name, v.role, False) for v in variables if v.role == "biological" and v.kind in ("binary", "categorical")])
    factors, contrasts = [], []
    for v in variables:
        if v.role != "biological" or v.kind not in ("binary", "categorical"):
            continue
        lv = _usable_levels(clin[v.name], min_n)
        if len(lv) < 2:
            continue
        d = design.factor_design(lv)
        pairs = design.design_contrasts(lv, d)
        covs, confounded, notes = design.adjustment(clin, v.name, d["levels"], [c for c in adjustable if c[0] != v.name])
        mine = []
        for case, control, kind in pairs:
            pool = [k for k in d["levels"] if k != control and k not in d["references"]] if kind == "pooled_vs_reference" else []
            cases = pool or [case]
            c_covs, c_conf, _ = design.adjustment(clin, v.name, [*cases, control], [c for c in adjustable if c[0] != v.name])
            pw = design.pooled_power([lv[k] for k in pool], lv[control]) if pool else design.power(lv[case], lv[control])
            nest = indication_confounder(clin, v.name, cases, [control], finer)
            confounders = [nest.column] if nest is not None else []
            mine.append(Contrast(group=v.name, case=case, control=control, n_case=sum(lv[k] for k in cases), n_control=lv[control],
                                 kind=kind, case_levels=pool, power=round(pw, 3), covariates=c_covs + confounders, confounded=c_conf,
                                 confounders=confounders))
        factors.append(FactorDesign(
            name=v.name, levels=d["levels"], n_per_level={k: lv[k] for k in d["levels"]}, ordered=d["ordered"],
            order_reason=d["order_reason"], references=d["references"], reference_reason=d["reference_reason"],
            covariates=covs, confounded=confounded, notes=notes, power=round(design.factor_power({k: lv[k] for k in d['levels']}), 3),
        ))
        contrasts += mine
    return factors, contrasts


def _sample_type(factors: list[FactorDesign]) -> tuple[str | None, str | None]:
    """The factor separating disease-like samples (tumour, lesion) from control-like ones (normal, healthy):
    every level is one or the other (a factor with other levels too, such as several diagnoses, is a
    comparison, not a sample type to restrict within-disease analyses to)."""
    for f in factors:
        refs = [k for k in f.levels if design.is_reference_level(k)]
        cases = [k for k in f.levels if design.is_case_level(k) and k not in refs]
        if cases and refs and len(cases) + len(refs) == len(f.levels):
            return f.name, max(cases, key=lambda k: f.n_per_level[k])
    return None, None


def _rank(contrasts: list[Contrast], factors: list[FactorDesign], sample_type: str | None) -> tuple[list[Contrast], list[FactorDesign]]:
    """Most powerful first: the sample-type factor leads, then effective sample size weighted by how
    clearly the column name announces a study question (:data:`_NAME_HINTS`); a contrast confounded
    with a technical column comes after every unconfounded one."""

    def key(group: str, pw: float, confounded: list[str]) -> tuple:
        return (group != sample_type, bool(confounded), -pw * _name_weight(group))

    return (sorted(contrasts, key=lambda c: key(c.group, c.power, c.confounded)),
            sorted(factors, key=lambda f: key(f.name, f.power, [])))


def _distinct(contrasts: list[Contrast], clin: pd.DataFrame) -> list[Contrast]:
    """Drop contrasts that split (almost) the same samples as an earlier one of another column (e.g.
    two sample-type columns), or the same two groups in the opposite orientation (a condition and the
    amount column that encodes it). Contrasts of one column are distinct by design (a level inside
    the pooled contrast of its column is its own question)."""

    def members(c: Contrast) -> tuple[frozenset, frozenset]:
        col = clin[c.group].astype(str)
        return frozenset(col.index[col.isin(c.case_levels or [c.case])]), frozenset(col.index[col == c.control])

    def overlap(a: frozenset, b: frozenset) -> float:
        return len(a & b) / max(1, min(len(a), len(b)))

    def same(a: frozenset, b: frozenset) -> bool:  # reversed orientation: the same groups, not one inside the other
        return len(a & b) >= 0.9 * max(len(a), len(b), 1)

    def duplicate(c: Contrast, m: tuple[frozenset, frozenset], kc: Contrast, k: tuple[frozenset, frozenset]) -> bool:
        if kc.group == c.group:
            return False
        if c.case_levels or kc.case_levels:  # a pool holds other contrasts' groups: only the same split is a duplicate
            return (same(m[0], k[0]) and same(m[1], k[1])) or (same(m[0], k[1]) and same(m[1], k[0]))
        return (overlap(m[0], k[0]) >= 0.9 and overlap(m[1], k[1]) >= 0.9) or (same(m[0], k[1]) and same(m[1], k[0]))

    kept: list[tuple[Contrast, tuple[frozenset, frozenset]]] = []
    for c in contrasts:
        m = members(c)
        if any(duplicate(c, m, kc, k) for kc, k in kept):
            continue
        kept.append((c, m))
    return [c for c, _ in kept]


def _measured_samples(study: Study) -> pd.Index:
    """Sample-table rows that some layer measured (all rows when the study has no layer)."""
    clin = study.clinical
    seen = set()
    for a in study.bulk().values():
        seen.update(map(str, a.obs_names))
    for a in study.cell_level().values():
        if "sample_id" in a.obs:
            seen.update(map(str, a.obs["sample_id"].unique()))
    return clin.index[clin.index.astype(str).isin(seen)] if seen else clin.index


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
                organism=a.uns.get("organism"),
            )
        )
    clin = study.clinical
    variables = [_type_variable(str(c), clin[c]) for c in clin.columns]
    events = [v.name for v in variables if v.kind == "survival_event"]
    for i, v in enumerate(variables):
        values = clin[v.name].dropna().astype(str)
        if v.kind == "survival_time" and not events and 2 < values.nunique() <= 12 and values.value_counts().min() >= 2:
            # no event to pair with and a few repeated values: sampling times of a time course, a design factor
            variables[i] = v.model_copy(update={"kind": "categorical", "summary": {},
                                                "levels": {str(k): int(n) for k, n in values.value_counts().items()}})
    times = [v.name for v in variables if v.kind == "survival_time"]
    survival = []
    for t in times:
        # pair each time with the event column sharing the most name tokens
        def overlap(e: str) -> int:
            return len(design.column_words(t) & design.column_words(e))
        if events:
            survival.append((t, max(events, key=overlap)))
    roles = design.assign_roles(clin, {v.name: v.kind for v in variables})
    for v in variables:
        v.role, v.role_reason, v.nested_in = roles[v.name]
    measured = _measured_samples(study)
    min_n = 3 if len(measured) >= 12 else 2
    factors, contrasts = _factor_designs(variables, clin.loc[measured], min_n)
    sample_type, tumour_level = _sample_type(factors)
    contrasts, factors = _rank(contrasts, factors, sample_type)
    contrasts = _distinct(contrasts, clin)
    kept = {c.group for c in contrasts}
    factors = [f for f in factors if f.name in kept or len(f.levels) > 5]
    every = "__all_samples__"
    adjust_for = design.adjustment(clin.loc[measured].assign(**{every: "all"}), every, ["all"], _adjustable(variables))[0] if len(measured) else []
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
        factors=factors,
        multi_groups=[f.name for f in factors if 3 <= len(f.levels) <= 8],
        continuous=[v.name for v in variables if v.kind == "continuous" and v.role == "covariate"],
        survival=survival,
        batch_columns=[v.name for v in variables if v.role == "technical" and v.levels and len(v.levels) < v.n],
        adjust_for=adjust_for,
        sample_type_column=sample_type,
        tumour_level=tumour_level,
        recurrent_mutations=rec,
        n_samples=len(study.samples()),
        files=[f"{r.path}: {r.kind or 'skipped'}{' (' + r.modality + ')' if r.modality else ''}{' - ' + r.problem if r.problem else ''}" for r in study.reports],
    )
