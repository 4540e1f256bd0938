r"""Confounder checks of a studied contrast against the sample table's other columns, before a claim.

A difference between the groups of one column is a claim about that column alone only when the
groups do not also differ in another biological factor or covariate. For a contrast (case levels
vs a control level of a factor), :func:`contrast_checks` tests every other column with a
biological or covariate role on the contrast's samples and decides what a hypothesis may say:

- association: categorical columns by a contingency table, Fisher's exact test for 2 x 2, else
  Pearson's chi-square, with a seeded Monte Carlo permutation p-value (2,000 relabellings) when an
  expected count is below 5 (Agresti, *Categorical Data Analysis*, 3rd ed., 3.5); effect
  Cramér's V. Continuous columns by Welch's t (effect: eta squared, the share of the column's
  variance the contrast explains). Benjamini-Hochberg over the columns checked.
- decision, per column: ``same grouping`` (one column's levels each lie within one group of the
  other on these samples: the same split at another resolution, e.g. subtype and the status it
  refines; nothing to separate); ``cannot be separated`` (associated and collinear: the contrast
  indicator regressed on the column's design has R^2 >= 0.8, a variance inflation of 5 or more,
  or leaves fewer than 3 effective samples, :math:`n_1 n_0/(n_1+n_0)\,(1-R^2)`, to estimate the
  adjusted contrast, so no model on these samples tells the two apart); ``associated`` (q < 0.05, separable:
  the hypothesis names it and its test adjusts for it); ``occurs within a group`` (associated, two
  levels, and its rarer level lies (almost, :data:`WITHIN_SHARE`) entirely inside one group: a subset or
  consequence of the grouping, e.g. a lesion one subtype causes, said as "occurs only in <level>", never as
  a confounder the comparison does not separate out); ``independent``; ``not testable`` (not recorded in
  both groups, or one value). A continuous column that a threshold separates the groups
  by (the Mann-Whitney AUC of the column between the groups >= 0.95, and q < 0.05) is decided
  ``measures the grouping``: the grouping is (nearly) a level set of it, as a phenotype and the
  measurement that defines it, so it is said as a definition, never as a confounder caveat.

A gene's mutation contrast (a ``mutation_association`` relation: mutated vs wild-type genotyped
samples) is checked the same way by :func:`mutation_checks`; for each column the mutated samples
differ in, the feature is refitted by least squares with that column added to the model, and when
the mutation's effect is no longer significant (p >= 0.05) the hit is said to follow that column.
A sample-table contrast's lead feature is refitted the same way with each biological column its groups
differ strongly in (:func:`lead_refits`), and the hypothesis reports the adjusted effect rather than
only naming the column.

A column that records a gene the hypothesis itself states (its feature's gene, or the mutated gene of
its comparison, by the column name's words) is the design or its mechanism, never a confounder of it.

Cluster hypotheses (``consensus_clustering`` relations) carry the clustering's stability and its
test against the sample table's technical columns (a cluster following a batch, plate or run order
is said to be possibly technical): a PAC above 0.2 (Senbabaoglu et al. 2014, doi:10.1038/srep06207) means many sample pairs are clustered
together in some resamples and apart in others, so the clusters are said to be unstable, not subtypes.

Tissue composition (:func:`composition_refits`): a contrast whose groups differ in a composition score
measured in both groups (purity, stromal / immune content, deconvolution fractions: decision
``associated``) has each evidence feature refitted with that score added to its model, and the adjusted
effect is reported (the statement says so where the difference is gone adjusted for it: it may reflect
composition). Where the table has composition scores but none is measured in both groups (scores
estimated for tumours only, set against normal tissue), or the groups differ in one and no evidence feature
can be refitted with it, the hypothesis says the contrast is unadjusted for tissue composition, and why.

Before planning, :func:`indication_confounder` finds the finer classification a contrast is nested in
(a therapy given for some diagnoses: every treated sample sits in a diagnosis that also holds
untreated ones, some diagnoses hold no treated sample); the profile adds it to the contrast's
covariates, and its hypotheses then say ``adjusted for`` it (decision ``adjusted``).

Values that mean "unknown" (``proteus.design.is_unknown_level``) count as missing. No column, level
or marker of any dataset is named here; sample-quality markers can be added later as curated data
with their source, checked by the same record.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from scipy import stats

from proteus.design import is_composition_score, power as effective_n, recorded
from proteus.records import KeyEdge
from proteus.stats.design import covariate_block, is_factor, usable_covariates
from proteus.stats.multitest import bh

__all__ = ["DesignCheck", "association", "contrast_checks", "mutation_checks", "composition_refits", "cluster_stability", "explained_by", "adjusted_keys", "carrier_overlap", "classifications", "indication_confounder", "evidence_contrast", "hypothesis_checks", "held_out_said", "lead_refits", "cramers_v", "collinear_v", "COLLINEAR_R2", "COLLINEAR_V", "STRONG_V"]

COLLINEAR_R2 = 0.8
"""R^2 of the contrast on another column from which the two cannot be separated (variance inflation >= 5)."""
SEPARATION_AUC = 0.95
"""Mann-Whitney AUC of a continuous column between the groups from which it measures the grouping."""
UNSTABLE_PAC = 0.2
"""Proportion of ambiguous clustering above which clusters are not stable subtypes (Senbabaoglu et al. 2014)."""
WITHIN_SHARE = 0.9
"""Share of a two-level column's rarer level inside one group above which it occurs within that group."""
CARRIER_SHARE = 0.8
"""Share of a mutation's carriers inside one level of a grouping (or among the hypermutated samples) from which the
statement says so: carrier status and that level can hardly be told apart."""
MIN_ADJUSTED_N = 3.0
r"""Effective samples an adjusted contrast needs, :math:`n_1 n_0/(n_1+n_0)\,(1-R^2)` (its variance over sigma^2, inverted)."""
_ALPHA = 0.05
STRONG_V = 0.5
"""Cramér's V from which a biological column is strongly tied to a studied grouping: the lead feature is refitted with it."""
COLLINEAR_V = 0.7
"""Cramér's V from which a column and a sample-table grouping are too collinear for adjustment to tell them apart (a
mutation hit still follows the subtype its carriers sit in); validation does not re-test a refit for such a column."""
_MAX_REFITS = 6
_EFFECT_NAMES = {"cramers_v": "Cramér's V", "epsilon_squared": "epsilon squared"}
_N_PERM = 2000

Decision = Literal["same grouping", "own gene", "measures the grouping", "cannot be separated", "adjusted", "associated", "occurs within a group",
                   "independent", "not testable"]


class DesignCheck(BaseModel):
    """One column checked against a contrast: the test, its numbers and the decision."""

    column: str
    role: str = Field(description="the column's design role (biological factor or covariate)")
    test: str = Field("", description="Fisher exact, chi-square, chi-square (Monte Carlo), Welch t")
    effect_name: str = Field("", description="Cramér's V (categorical) or eta squared (continuous)")
    effect: float | None = None
    p: float | None = None
    q: float | None = Field(None, description="BH over the columns checked for this contrast")
    r2: float | None = Field(None, description="R^2 of the contrast indicator on the column's design")
    auc: float | None = Field(None, description="continuous columns: Mann-Whitney AUC between the groups (0.5-1, either direction)")
    adjusted: str = Field("", description="refits: the feature's effect without -> with this column added to the model")
    refit: tuple[float, float, float, float, int] | None = Field(
        None, description="refits: (effect, p) without and with the column, and the samples (those with it recorded)")
    edge: str | None = Field(None, description="refits: the evidence edge whose feature was refitted")
    collinear_v: float | None = Field(None, description="refits: Cramér's V of the column with the groups on the refit's samples where it "
                                      "reaches COLLINEAR_V (collinear_v): the refit cannot separate the two, and the statement claims neither "
                                      "that the effect holds nor (but for a mutation hit) that it is gone adjusted for it")
    n: int = 0
    decision: Decision
    reason: str = ""

    def text(self) -> str:
        """``"Drug therapy: cannot be separated (Cramér's V 0.71, p=2e-06, R^2 0.81)"``."""
        nums = ", ".join(x for x in (
            f"{self.effect_name} {self.effect:.2f}" if self.effect is not None else "",
            f"p={self.p:.1g}" if self.p is not None else "",
            f"R^2 {self.r2:.2f}" if self.r2 is not None else "") if x)
        return f"{self.column}: {self.decision}" + (f" ({nums})" if nums else "")


def association(groups: pd.Series, other: pd.Series, continuous: bool, seed: int = 0) -> tuple[str, str, float, float]:
    """(test, effect name, effect, p) of ``other`` against the two-or-more ``groups`` (same index, no missing)."""
    if continuous:
        x = pd.to_numeric(other, errors="coerce").to_numpy(float)
        labels = groups.to_numpy()
        parts = [x[labels == g] for g in pd.unique(labels)]
        total = ((x - x.mean()) ** 2).sum()
        eta2 = float(sum(len(v) * (v.mean() - x.mean()) ** 2 for v in parts) / total) if total > 0 else 0.0
        if len(parts) == 2:
            return "Welch t", "eta squared", eta2, float(stats.ttest_ind(*parts, equal_var=False).pvalue)
        return "one-way ANOVA", "eta squared", eta2, float(stats.f_oneway(*parts).pvalue)
    table = pd.crosstab(groups, other.astype(str)).to_numpy()
    chi2, p, _, expected = stats.chi2_contingency(table, correction=False)
    v = _cramers_v(chi2, table)
    if table.shape == (2, 2):
        return "Fisher exact", "Cramér's V", v, float(stats.fisher_exact(table).pvalue)
    if (expected < 5).any():
        return "chi-square (Monte Carlo)", "Cramér's V", v, _monte_carlo_chi2(groups, other.astype(str), chi2, seed)
    return "chi-square", "Cramér's V", v, float(p)


def _cramers_v(chi2: float, table: np.ndarray) -> float:
    """Cramér's V of a contingency table, :math:`\\sqrt{\\chi^2 / (n (\\min(r, c) - 1))}` (Cramér 1946)."""
    return float(np.sqrt(chi2 / (table.sum() * (min(table.shape) - 1))))


def cramers_v(groups: pd.Series, other: pd.Series) -> float:
    """Cramér's V of two categorical series (same index, no missing; 0 where either has one level)."""
    table = pd.crosstab(groups, other.astype(str)).to_numpy()
    if min(table.shape) < 2:
        return 0.0
    return _cramers_v(stats.chi2_contingency(table, correction=False)[0], table)


def collinear_v(groups: pd.Series, column: pd.Series) -> float | None:
    """Cramér's V of a factor ``column`` with a two-group ``groups`` on the samples of a refit (same index, no missing),
    where it reaches :data:`COLLINEAR_V`; else ``None`` (``None`` for a numeric column).

    The one rule for a refit that adjustment cannot separate from the grouping (the group's coefficient rests on the
    few samples where the two disagree): the statement says the claim "cannot be separated from" such a column
    instead of "holds adjusted for" it or "is gone adjusted for" it (:func:`_said_as`), and validation does not re-test its refit
    (:mod:`proteus.validation`)."""
    if not is_factor(column):
        return None
    v = cramers_v(groups, column)
    return v if v >= COLLINEAR_V else None


def _monte_carlo_chi2(groups: pd.Series, other: pd.Series, observed: float, seed: int) -> float:
    """Permutation p of Pearson's chi-square: the share of seeded relabellings (and the observed one) at least as large."""
    g = pd.factorize(groups)[0]
    o = pd.factorize(other)[0]
    r, c = g.max() + 1, o.max() + 1
    rng = np.random.default_rng(seed)
    perms = rng.permuted(np.broadcast_to(g, (_N_PERM, len(g))), axis=1)
    cells = (perms * c + o) + (np.arange(_N_PERM) * r * c)[:, None]
    counts = np.bincount(cells.ravel(), minlength=_N_PERM * r * c).reshape(_N_PERM, r, c).astype(float)
    expected = counts.sum(2, keepdims=True) * counts.sum(1, keepdims=True) / len(g)
    with np.errstate(invalid="ignore", divide="ignore"):
        chi = np.nansum(np.where(expected > 0, (counts - expected) ** 2 / expected, 0.0), axis=(1, 2))
    return float((1 + (chi >= observed - 1e-9).sum()) / (_N_PERM + 1))


def _nested(a: pd.Series, b: pd.Series) -> bool:
    """Whether every level of ``a`` lies within one level of ``b`` or every level of ``b`` within one of ``a``."""
    a, b = a.astype(str), b.astype(str)
    return bool(b.groupby(a).nunique().max() == 1 or a.groupby(b).nunique().max() == 1)


def _r2(y: np.ndarray, block: pd.DataFrame) -> float:
    """R^2 of ``y`` regressed (with an intercept) on the design columns ``block``."""
    X = np.column_stack([np.ones(len(y)), block.to_numpy(float)])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    total = ((y - y.mean()) ** 2).sum()
    return float(1 - (resid @ resid) / total) if total > 0 else 0.0


def contrast_checks(clin: pd.DataFrame, group: str, cases: list[str], controls: list[str],
                    columns: list[tuple[str, str, bool]], *, seed: int = 0) -> list[DesignCheck]:
    """Check the contrast ``cases`` vs ``controls`` (levels of ``group``) against each of ``columns``
    (name, role, continuous) on the contrast's samples (see the module docstring); most
    consequential first (cannot be separated, associated, same grouping, then the rest)."""

    g = clin[group].astype(str).where(clin[group].notna())
    rows = g.isin([*cases, *controls])
    arm = pd.Series(np.where(g[rows].isin(cases), "case", "control"), index=g[rows].index)
    out: list[DesignCheck] = []
    for col, role, continuous in columns:
        if col == group or col not in clin:
            continue
        s = clin.loc[rows, col]
        if continuous:
            s = pd.to_numeric(s, errors="coerce")
        else:
            s = recorded(s)
        ok = s.notna()
        a, v = arm[ok], s[ok]
        if a.nunique() < 2:
            out.append(DesignCheck(column=col, role=role, n=int(ok.sum()), decision="not testable",
                                   reason=f"recorded for the {'case' if (a == 'case').any() else 'control'} samples only" if len(a) else "not recorded"))
            continue
        if v.nunique() < 2 or min((a == "case").sum(), (a == "control").sum()) < 2:
            out.append(DesignCheck(column=col, role=role, n=int(ok.sum()), decision="not testable", reason="one value, or one sample in a group"))
            continue
        if continuous and v.groupby(a).nunique().max() == 1:  # one value per group (a dose the design set): the grouping itself
            out.append(DesignCheck(column=col, role=role, n=int(ok.sum()), decision="same grouping",
                                   reason="one value in each group: it encodes the grouping itself, nothing to test or separate"))
            continue
        test, name, eff, p = association(a, v, continuous, seed)
        r2 = _r2((a == "case").to_numpy(float), covariate_block(pd.DataFrame({col: v}), [col]))
        auc = _separation(v[a == "case"], v[a == "control"]) if continuous else None
        out.append(DesignCheck(column=col, role=role, test=test, effect_name=name, effect=round(eff, 4), p=p, r2=round(r2, 4), auc=auc,
                               n=int(ok.sum()), decision="independent",
                               reason="nested" if not continuous and _nested(a, v) else "" if continuous else _within(a, v.astype(str), cases, controls)))
    n1, n0 = int((arm == "case").sum()), int((arm == "control").sum())
    eff_n = effective_n(n1, n0)
    tested = [c for c in out if c.p is not None]
    for c, q in zip(tested, bh(np.array([c.p for c in tested]))) if tested else ():
        c.q = float(q)
        if c.reason == "nested":
            c.decision, c.reason = "same grouping", "each level of one lies within one group of the other: the same split at another resolution"
        elif q < _ALPHA and c.auc is not None and c.auc >= SEPARATION_AUC and c.role == "technical":
            c.decision, c.reason = "cannot be separated", (
                f"the groups lie in separate stretches of {c.column} (AUC {c.auc:.2f}): a drift along it cannot be told from the grouping")
        elif q < _ALPHA and c.auc is not None and c.auc >= SEPARATION_AUC:
            c.decision, c.reason = "measures the grouping", (
                f"a threshold of {c.column} separates the groups (AUC {c.auc:.2f}): the grouping is defined by or measures it, "
                "so it is not a confounder to adjust for")
        elif q < _ALPHA and (c.r2 >= COLLINEAR_R2 or eff_n * (1 - c.r2) < MIN_ADJUSTED_N):
            c.decision, c.reason = "cannot be separated", (
                f"the contrast is collinear with {c.column} (R^2 {c.r2:.2f}; adjusted for it, {eff_n * (1 - c.r2):.1f} effective "
                f"samples of {eff_n:.1f} remain): no model of these samples separates them")
        elif q < _ALPHA and c.reason.startswith("occurs only in"):
            c.decision = "occurs within a group"
        elif q < _ALPHA:
            c.decision, c.reason = "associated", f"the groups differ in {c.column}; adjust for it or test within its levels"
    for c in out:
        if c.decision in ("independent", "not testable") and c.reason.startswith("occurs only in"):
            c.reason = ""
    return sorted(out, key=lambda c: (_ORDER[c.decision], c.q if c.q is not None else 1.0, c.column))


_ORDER = {"cannot be separated": 0, "adjusted": 1, "associated": 2, "occurs within a group": 3, "measures the grouping": 4, "same grouping": 5,
          "own gene": 6, "independent": 7, "not testable": 8}


def _within(arm: pd.Series, v: pd.Series, cases: list[str], controls: list[str]) -> str:
    """``"occurs only in <levels> (k of its n samples)"`` when ``v`` has two levels and its rarer one lies
    (:data:`WITHIN_SHARE`) inside one arm of the contrast without filling it; else ``""``."""
    counts = v.value_counts()
    if len(counts) != 2:
        return ""
    rare = counts.index[-1]
    inside = arm[v == rare].value_counts()
    side = inside.index[0]
    if inside.iloc[0] < WITHIN_SHARE * inside.sum() or inside.iloc[0] >= (arm == side).sum():
        return ""
    return (f"occurs only in {', '.join(cases if side == 'case' else controls)} ({rare}: {inside.iloc[0]} of its {inside.sum()} samples): "
            "a subset or consequence of the grouping, not a confounder of it")


def _separation(x: pd.Series, y: pd.Series) -> float:
    """Mann-Whitney AUC of ``x`` against ``y``, folded to 0.5-1 (1: a threshold separates them)."""
    u = stats.mannwhitneyu(x, y).statistic / (len(x) * len(y))
    return round(float(max(u, 1 - u)), 4)


def classifications(clin: pd.DataFrame, columns: list[tuple[str, str, bool]]) -> dict[str, np.ndarray]:
    """Integer codes (-1: missing or unknown) of the categorical biological ``columns`` with three or more
    known levels: the finer classifications :func:`indication_confounder` looks for a contrast inside."""

    out = {}
    for col, role, continuous in columns:
        if continuous or role != "biological" or col not in clin:
            continue
        s = clin[col]
        known = recorded(s).notna().to_numpy()
        codes = np.where(known, pd.factorize(s.astype(str))[0], -1)
        if len(np.unique(codes[known])) >= 3:
            out[col] = codes
    return out


def indication_confounder(clin: pd.DataFrame, group: str, cases: list[str], controls: list[str],
                          candidates: dict[str, np.ndarray], *, seed: int = 0) -> DesignCheck | None:
    """The finer classification a contrast is nested in, to adjust for (confounding by indication).

    The shape of a treatment given for some diagnoses: the column (one of ``candidates``, from
    :func:`classifications`: three or more levels, not a yes/no status the contrast may define or be
    part of) is known for every sample of the contrast, every case sample lies in a level of it that
    holds control samples too (so each case has controls to be compared with inside its level), and
    some control samples lie in levels that hold no case (the column decides who can be a case).
    Such a column is adjusted for when the groups differ in it (:func:`association` p < 0.05) and the
    adjusted contrast stays estimable (R^2 < 0.8 and >= 3 effective samples, as :func:`contrast_checks`
    decides); of several, the most strongly associated. ``None`` when no column has that shape.
    """
    g = clin[group].astype(str).where(clin[group].notna()).to_numpy()
    rows = np.isin(g, [*cases, *controls])
    is_case = np.isin(g, cases)
    best = None
    for col, codes in candidates.items():
        if col == group or (codes[rows] < 0).any():
            continue
        in_case, in_control = set(codes[rows & is_case]), set(codes[rows & ~is_case])
        if not in_case <= in_control or not in_control - in_case:
            continue
        checks = contrast_checks(clin, group, cases, controls, [(col, "biological", False)], seed=seed)
        c = checks[0] if checks else None
        if c is None or c.p is None or c.p >= _ALPHA or c.decision in ("cannot be separated", "same grouping"):
            continue
        if best is None or (c.effect or 0) > (best.effect or 0):
            best = c.model_copy(update={"decision": "adjusted", "reason": (
                f"every {', '.join(cases)} sample lies in a level of {col} that also holds {', '.join(controls)} samples, and some "
                f"{', '.join(controls)} samples lie in levels with none: {col} decides who can be a case (adjusted for in the model)")})
    return best


def evidence_contrast(r) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """(group, case levels, control levels) a knowledge-graph relation compares, from its provenance:
    a two-group contrast (a pooled case with its levels), or an F-test hit's level against the
    factor's other levels; ``None`` for relations about no sample grouping (correlations, mutations,
    clusters found in the run)."""
    p = r.provenance.params or {}
    group = p.get("group")
    if not isinstance(group, str):
        return None
    if r.predicate == "differs_across":
        level, levels = (r.stats.extra or {}).get("level") or (r.stats.extra or {}).get("top_level"), p.get("levels") or []
        others = tuple(str(x) for x in levels if str(x) != str(level))
        return (group, (str(level),), others) if level is not None and others else None
    if r.object.type == "sample_group" and p.get("control") is not None and p.get("case") is not None:
        return group, tuple(str(x) for x in (p.get("case_levels") or [p["case"]])), (str(p["control"]),)
    return None


def mutation_checks(study, r, columns: list[tuple[str, str, bool]], cache: dict | None = None,
                    *, seed: int = 0) -> tuple[str, list[DesignCheck], list[DesignCheck]] | None:
    """Confounder checks of a ``mutation_association`` relation's contrast (the gene's mutated vs
    wild-type genotyped samples, as the tool chose them) against ``columns``, and for each column
    the mutated samples differ in (decision ``associated``) the feature refitted with it.

    Returns ``(contrast, checks, refitted)``: ``refitted`` holds the associated columns refitted by
    :func:`_refitted` (the mutation's least-squares effect on the feature without and with the column, on the
    samples with it recorded, :func:`proteus.design.recorded`, the gene's model covariates kept, a column it holds
    refitted without and with it); ``None`` for another relation.
    """
    from proteus.io.maf import carrier_matrix
    from proteus.tools.correlation import modality_frame, restricted_samples

    params, extra = r.provenance.params or {}, r.stats.extra or {}
    if r.provenance.tool != "mutation_association" or not str(extra.get("mutation", "")).startswith("mutation:"):
        return None
    cache = {} if cache is None else cache
    gene, modality = str(extra["mutation"]).split(":", 1)[1], r.modality or params.get("modality")
    restrict, classes = params.get("restrict") or {}, params.get("variant_classes") or "nonsilent"
    key = ("mutation", gene, modality, repr(sorted(restrict.items())), classes)
    name = f"{gene} mutation"
    if key not in cache:
        samples = restricted_samples(study, list(study.modalities[modality].obs_names.astype(str)), restrict)
        mat, geno = carrier_matrix(study.mutations, samples, classes)
        clin = study.clinical.reindex(geno).copy()
        clin[name] = np.where(mat[gene], "mutated", "wild-type") if gene in mat else "wild-type"
        cache[key] = (clin, contrast_checks(clin, name, ["mutated"], ["wild-type"], [c for c in columns if c[0] not in restrict], seed=seed),
                      modality_frame(study, modality, geno))
    clin, checks, y = cache[key]
    contrast = f"{name}: mutated vs wild-type"
    feature = str(extra.get("feature_id", ""))
    if feature not in y:
        return contrast, checks, []
    covs = [c for c in extra.get("covariates", params.get("covariates")) or [] if c in clin]  # the gene's own model
    # a column the model holds is refitted without and with it too
    refitted = [x for c in checks if c.decision == "associated"
                and (x := _refitted(c, r.subject.label, r.id, y[feature], clin[name] == "mutated", clin,
                                    [k for k in covs if k != c.column], "the mutation's effect is")) is not None]
    return contrast, checks, refitted


def _refitted(c: DesignCheck, label: str, edge: str, y: pd.Series, is_case: pd.Series, clin: pd.DataFrame,
              covariates: list[str], said: str) -> DesignCheck | None:
    """``c`` with its feature ``y`` refitted: the least-squares effect of ``is_case`` without -> with ``c.column``
    added to ``covariates`` (:func:`_adjusted_fit`), both on the samples with ``y`` and every one of them recorded
    (:func:`proteus.design.recorded`: a value meaning unknown is no level and no recorded sample), and the column's
    collinearity with the groups on those same samples (:func:`collinear_v`). The one refit of a mutation hit
    (:func:`mutation_checks`) and of a contrast's lead feature (:func:`lead_refits`); ``None`` where not estimable.

    ``reason``: "<said> gone adjusted for it" (p < 0.05 without, >= 0.05 with the column), "... held ..." (p < 0.05
    both ways: on the samples with the column recorded the unadjusted effect must itself be significant for the
    refit to say anything), else not significant on those samples."""
    clin = clin.assign(**{c.column: recorded(clin[c.column])})  # the model's own covariates stay as its tool read them
    fits = [_adjusted_fit(y, is_case, clin, covariates + extra, rows_of=[c.column]) for extra in ([], [c.column])]
    if None in fits:
        return None
    (b, pb, n, _), (a, pa, _, ok) = fits
    verdict = "gone" if pb < _ALPHA <= pa else "held" if max(pb, pa) < _ALPHA else "not significant on the samples with it recorded, so not"
    return c.model_copy(update={"adjusted": f"{label} {b:+.2f} (p={pb:.1g}) -> {a:+.2f} (p={pa:.1g}) adjusted for {c.column}, n={n}",
                                "refit": (round(b, 4), pb, round(a, 4), pa, n), "edge": edge,
                                "collinear_v": collinear_v(is_case[ok], clin.loc[ok, c.column]),
                                "reason": f"{said} {verdict} adjusted for it"})


def _adjusted_fit(y: pd.Series, is_case: pd.Series, clin: pd.DataFrame, covariates: list[str], rows_of: list[str]
                  ) -> tuple[float, float, int, pd.Series] | None:
    """Least-squares effect of case vs control (``is_case``, aligned with ``clin``) on ``y`` with ``covariates``
    (:func:`proteus.stats.adjusted.adjusted_t`), its two-sided p and the samples used (their number and mask): those with
    ``y`` and every column of ``rows_of`` recorded; ``None`` with fewer than 2 residual df or one group."""
    from proteus.stats.adjusted import adjusted_t

    block = covariate_block(clin, covariates)
    ok = y.reindex(clin.index).notna() & block.notna().all(axis=1) & clin[rows_of].notna().all(axis=1)
    g = is_case[ok].to_numpy(float)
    if g.std() == 0:
        return None
    fit = adjusted_t(y.reindex(clin.index)[ok].to_numpy(float), g, block.loc[ok].to_numpy(float) if covariates else None)
    if not fit.df[0, 0] >= 2:
        return None
    return float(fit.coef[0, 0]), float(2 * stats.t.sf(abs(fit.t[0, 0]), fit.df[0, 0])), int(ok.sum()), ok


def composition_refits(study, relations, key: tuple[str, tuple[str, ...], tuple[str, ...]], checks: list[DesignCheck],
                       continuous: dict[str, bool]) -> tuple[list[DesignCheck], list[str]]:
    """Tissue composition against a contrast ``key`` (group, case levels, control levels) of ``relations``.

    Returns ``(refitted, unadjusted, why)``: for each composition score (:func:`proteus.design.is_composition_score`,
    a continuous column) the groups differ in (decision ``associated``; the two with the smallest q), the contrast's
    first evidence feature refitted with it (:func:`lead_refits`); and, when the table holds composition scores
    but none is measured in both groups, or the groups differ in one and no evidence feature could be refitted
    with it, their names and why (the contrast is unadjusted for composition).
    """
    scores = [c for c in checks if continuous.get(c.column) and is_composition_score(c.column)]
    if not scores:
        return [], [], ""
    if all(c.decision == "not testable" for c in scores):
        return [], [c.column for c in scores], "no composition score is recorded for both groups"
    ranked = sorted((c for c in scores if c.decision == "associated"), key=lambda c: c.q if c.q is not None else 1.0)[:2]
    refits = lead_refits(study, relations, key, ranked, "tissue composition: the difference is")
    if ranked and not refits:
        names = [c.column for c in ranked]
        return [], names, f"the groups differ in {' and '.join(names)}, and no evidence feature could be refitted with {'it' if len(names) == 1 else 'them'}"
    return refits, [], ""


def lead_refits(study, relations, key: tuple[str, tuple[str, ...], tuple[str, ...]], checks: list[DesignCheck],
                said: str = "the effect is") -> list[DesignCheck]:
    """The first evidence feature of contrast ``key`` in ``relations`` (a two-group difference, or an F-test hit's
    level against the factor's other levels) refitted with each column of ``checks``
    (columns the groups differ in) added to the tool's covariates, on the contrast's samples with it recorded (the
    covariates those samples afford, :func:`proteus.stats.design.usable_covariates`, the column first):
    copies of ``checks`` with ``adjusted`` (effect and p without -> with the column) and ``reason`` ("<said> gone
    adjusted for it" or "... held ..."). The layer's values are used as stored (no re-normalisation)."""
    group, cases, controls = key
    rel = next((r for r in relations if evidence_contrast(r) == key and r.predicate in ("higher_in", "lower_in", "differs_across")
                and (r.stats.extra or {}).get("feature_id") and r.modality in study.modalities), None)
    if rel is None or not checks:
        return []
    a = study.modalities[rel.modality]
    feature = str(rel.stats.extra["feature_id"])
    if feature not in set(map(str, a.var_names)):
        return []
    clin = study.sample_table(rel.modality)
    clin = clin[clin[group].astype(str).isin([*cases, *controls]) & clin[group].notna()]
    clin = clin.assign(**{c.column: recorded(clin[c.column]) for c in checks})  # as the refit reads them (_refitted)
    y = pd.Series(np.asarray(a[:, [feature]].X, dtype=float).ravel(), index=a.obs_names.astype(str)).reindex(clin.index)
    is_case = clin[group].astype(str).isin(cases)
    covs = usable_covariates(clin.loc[y.notna()], [c for c in (rel.provenance.params or {}).get("covariates") or [] if c in clin], 2)[0]
    refitted = []
    for c in checks:
        # the model the samples with the column recorded can afford (the column first, then the tool's covariates): the
        # model validation re-tests (proteus.edge_data.with_covariates)
        factors = [k for k in (c.column, *covs) if is_factor(clin[k])]  # as the refit encodes them (on the contrast's samples)
        kept = usable_covariates(clin.loc[y.notna() & clin[c.column].notna()], [c.column, *covs], 2, factors)[0]
        if c.column not in kept:
            continue
        if (x := _refitted(c, rel.subject.label, rel.id, y, is_case, clin, [k for k in kept if k != c.column], said)) is not None:
            refitted.append(x)
    return refitted


def _said_as(c: DesignCheck, mutation: bool) -> str:
    """The one verdict a statement gives a refit (:func:`_refitted`): ``"cannot be separated"`` where the column is
    collinear with the groups on the refit's samples (:func:`collinear_v`: the adjusted coefficient rests on the few
    samples where the two disagree, so neither its loss nor its survival says which of the two the effect follows),
    else ``"gone"`` or ``"held"`` as its p-values say (``""`` where not significant on its samples). A mutation hit
    whose effect is gone adjusted for a column follows that column, collinear or not (:func:`explained_by`)."""
    gone, held = c.reason.endswith("gone adjusted for it"), c.reason.endswith("held adjusted for it")
    if gone and mutation:
        return "gone"
    if c.collinear_v is not None and (gone or held):
        return "cannot be separated"
    return "gone" if gone else "held" if held else ""


def _refit_said(c: DesignCheck) -> str:
    """A refit as a clause says: the effect without -> with the column, and on how many samples (those with the
    column recorded, which can be fewer than the edge's own test used, so its unadjusted effect can differ)."""
    effects, _, rest = (c.adjusted or "").partition(" adjusted for")
    n = rest.rsplit(", n=", 1)[-1] if ", n=" in rest else ""
    return f"{effects}, {_samples_said(n, _measured(c), c.column)}" if n.isdigit() else effects


def _measured(c: DesignCheck) -> str:
    """The feature a refit models (``"GENE1"`` from ``"GENE1 +2.11 (p=3e-12) -> ..."``)."""
    return (c.adjusted or "").split(" (p=")[0].rsplit(" ", 1)[0]


def _samples_said(n: int | str, feature: str, column: str) -> str:
    """``"on the 77 samples with GENE1 measured and subtype recorded"``: a refit uses the samples with both,
    which can be fewer than those with the column recorded."""
    return f"on the {n} samples with {feature} measured and {column} recorded" if feature else f"on the {n} samples with {column} recorded"


def _holds_said(holds: list[tuple[DesignCheck, str]]) -> str:
    """The clause of refits that held: one column with its numbers (:func:`_refit_said`); several, each adjusted for in
    turn, as the effect without -> with each (columns that split these samples alike share one entry), grouped by the
    samples used (those with the column recorded, so the unadjusted effect is given for each set)."""
    (c, who), cols = holds[0], [x for x, _ in holds]
    if len(cols) == 1 or any(x.refit is None for x in cols):
        return f"it holds adjusted for {c.column}, in which {who} differ ({_refit_said(c)})"
    sets: dict[tuple, dict[tuple, list[str]]] = {}
    for x in cols:  # each refit names its own feature (a hypothesis may cite several)
        b, pb, a, pa, n = x.refit
        lead = _measured(x)
        sets.setdefault((lead, b, pb, n), {}).setdefault((a, pa), []).append(x.column)
    parts = []
    for (lead, b, pb, n), adjusted in sets.items():
        names = [" / ".join(v) for v in adjusted.values()]
        parts.append(f"{lead} {b:+.2f} (p={pb:.1g}) -> " + ", ".join(f"{a:+.2f} (p={pa:.1g}) adjusted for {v}" for (a, pa), v in zip(adjusted, names))
                     + f", {_samples_said(n, lead, names[0] if len(names) == 1 else 'each column')}")
    v = [x.effect or 0.0 for x in cols]
    return (f"it holds adjusted for each of the {len({x.column for x in cols})} columns {who} differ in (Cramér's V {min(v):.2f}-{max(v):.2f}) in turn: "
            + "; ".join(parts))


_HELD_OUT = {"not specific": "not specific", "no stronger than chance": "no stronger than chance", "power unknown": "its power unknown",
             "low power": "too little power to tell", "borderline": "short by no more than chance", "did not replicate": "did not replicate"}
"""A held-out re-test's grounds (:func:`proteus.validation._key_verdict`) in the few words a statement gives them."""


def held_out_said(statement: str, records: list[dict], validation: dict | None) -> str:
    """``statement`` with its clause of refits that hold (:func:`_holds_said`) said no more strongly than their held-out
    re-tests found (``validation``'s keys and supporting refits adjusted for one column, :mod:`proteus.validation`), each
    column's refit of each evidence edge on its own (a hypothesis can refit several differences with one column).

    Where every column's re-test replicated, the clause stands. Otherwise it is said as the discovery samples' and the
    held-out counts follow, the weakest re-test of each column with its grounds: ``"in the discovery samples it holds
    adjusted for GENE3, in which the groups differ (...); held out, adjusted for GENE3 it replicated in 3/20 splits (too
    little power to tell)"``. ``records`` are the hypothesis's design checks (:func:`hypothesis_checks`); a statement
    without the clause is returned as it is."""
    said = next((r["holds_said"] for r in records if r.get("holds_said")), None)
    if not said or not validation or said not in statement or f"in the discovery samples {said}" in statement:  # said once
        return statement
    retests = [k for k in (validation.get("key_edges") or []) + (validation.get("supporting_refits") or []) if len(k.get("adjusted_for") or []) == 1]
    per = {}
    for col, edge in dict.fromkeys((a["column"], a.get("edge")) for r in records for a in r.get("adjusted_claims", [])):
        tested = [k for k in retests if k["adjusted_for"][0] == col and k.get("status") == "tested" and k.get("grounds")
                  and (edge is None or k.get("edge") == edge)]
        per[col, edge] = min(tested, key=lambda k: (k["verdict"] == "validated", k["replicated_splits"])) if tested else None
    if all(k is not None and k["verdict"] == "validated" for k in per.values()):
        return statement
    several = len({edge for _, edge in per}) > 1  # refits of several differences: each count names its refit's effect, as the clause gave it
    parts, first = [], True
    for (col, _), k in per.items():
        if k is None:
            parts.append(f"for {col} it was not re-tested")
            continue
        why = f" ({_HELD_OUT[k['grounds']]})" if k["grounds"] in _HELD_OUT else ""
        which = f" ({k['effect']:+.2f})" if several and k.get("effect") is not None else ""
        parts.append(f"for {col}{which} {'it replicated in ' if first else 'in '}{k['replicated_splits']}/{k['n_splits']}{' splits' if first else ''}{why}")
        first = False
    return statement.replace(said, f"in the discovery samples {said}; held out, adjusted " + ", ".join(parts), 1)


def _whose(label: str, key) -> str:
    """Whose difference a contrast's refit adjusts: ``"the difference"``, or a mutation contrast's
    ``"the GENE2 carriers' difference"`` (``label`` ``"GENE2 mutation: mutated vs wild-type"``, no sample-table ``key``)."""
    return "the difference" if key is not None else f"the {label.split(' mutation: ')[0]} carriers' difference"


def _tied_v(c: DesignCheck) -> str:
    """``"Cramér's V 0.75 on the 36 samples with GENE1 measured and GENE3 recorded"``: a collinear refit's V (:func:`collinear_v`)."""
    return f"Cramér's V {c.collinear_v:.2f} {_samples_said(c.refit[4], _measured(c), c.column)}" if c.refit else f"Cramér's V {c.collinear_v:.2f}"


def _tied_said(tied: list[tuple[DesignCheck, str]]) -> str:
    """The refits a column collinear with the grouping makes (:func:`collinear_v`), said as what they are: ``"the
    difference cannot be separated from GENE3 (Cramér's V 0.75 on the 36 samples with GENE1 measured and GENE3 recorded)"``; each column
    once (several features refitted with one column share its entry), grouped by whose difference."""
    by: dict[str, dict[str, DesignCheck]] = {}
    for c, whose in tied:
        by.setdefault(whose, {}).setdefault(c.column, c)
    return "; ".join(f"{whose} cannot be separated from " + ", ".join(f"{col} ({_tied_v(c)})" for col, c in cols.items())
                     for whose, cols in by.items())


def _stated_genes(relations) -> set[str]:
    """Genes a hypothesis's evidence states: the genes of its features and of the mutations it compares."""
    out = set()
    for r in relations:
        extra = r.stats.extra or {}
        if str(extra.get("mutation", "")).startswith("mutation:"):
            out.add(str(extra["mutation"]).split(":", 1)[1])
        for e in (r.subject, r.object):
            if e.type in ("protein", "gene", "phosphosite", "acetylsite", "mutation"):
                out.add(str(extra.get("gene") or e.label.split("-")[0]) if e is r.subject and e.type != "mutation" else e.label.split("-")[0])
    return out


def _own_gene(column: str, genes: set[str]) -> str | None:
    """The stated gene among the words of a column's name (``PI3K_PTEN`` names PTEN), if any; case kept, as
    gene symbols are (:func:`proteus.design.column_words` lower-cases, and would match ``SET`` to a training set)."""
    return next((w for w in re.split(r"[^A-Za-z0-9]+", column) if w in genes), None)


def adjusted_keys(records: list[dict]) -> list[KeyEdge]:
    """The key edges of the refits a hypothesis's statement says it holds adjusted for (``records`` of
    :func:`hypothesis_checks`): each edge refitted with its column, the claim's model (:class:`~proteus.records.KeyEdge`)."""
    return [KeyEdge(edge=a["edge"], role=f"adjusted for {a['column']}", model="adjusted", adjusted_for=[a["column"]])
            for rec in records for a in rec.get("adjusted_claims", []) if a.get("edge")]


def carrier_overlap(study, r, columns: list[tuple[str, str, bool]], cache: dict | None = None) -> dict | None:
    """Where the carriers of a relation's mutation sit (a ``mutation_group_enrichment`` or ``mutation_cis_effect``
    relation: a claim about a gene's carriers), on the genotyped samples its tool compared.

    For each categorical biological column of ``columns`` (the study's groupings; a column that records the gene
    itself is left out) and for hypermutator status (:func:`proteus.io.maf.hypermutated`), the level holding
    the most carriers: it is said when it holds at least :data:`CARRIER_SHARE` of the carriers with a known level
    (at least 3), more than its share of the non-carriers, with Fisher's exact p < 0.05 for carriers in that level
    against the others, and holding at most half of the non-carriers (a level most samples share is no mark of the
    carriers). Returns a record (``kind`` "carrier overlap", the gene, each level found with its counts and p)
    and its ``clause`` (``"15 of 16 RBM27 carriers are hypermutated (> 131 non-silent mutations; 17 of 79 non-carriers), so
    what the RBM27 carriers show may be what hypermutated samples show"``), or ``None``."""
    from proteus.io.maf import carrier_matrix, hypermutated
    from proteus.tools.correlation import restricted_samples

    p, ex = r.provenance.params or {}, r.stats.extra or {}
    if r.subject.type != "mutation" or r.provenance.tool not in ("mutation_group_enrichment", "mutation_cis_effect"):
        return None
    gene = r.subject.label
    if r.provenance.tool == "mutation_group_enrichment":
        lab = study.clinical[p["group"]]
        samples = [str(x) for x in lab.index[lab.notna() & lab.astype(str).isin([str(p["case"]), str(p["control"])])]]
    elif r.modality in study.modalities:
        samples = list(study.modalities[r.modality].obs_names.astype(str))
    else:
        return None
    samples = restricted_samples(study, samples, p.get("restrict"))
    key = ("carriers", gene, ex.get("variant_classes") or p.get("variant_classes") or "nonsilent", hash(tuple(samples)))
    cache = {} if cache is None else cache
    if key in cache:
        return cache[key]
    mat, geno = carrier_matrix(study.mutations, samples, key[2])
    found = []
    if gene in mat.columns:
        carriers = mat[gene]
        clin = study.clinical.reindex(geno)
        groupings = [(c, recorded(clin[c]).astype(object)) for c, role, continuous in columns
                     if not continuous and role == "biological" and c in clin and not _own_gene(c, {gene})]
        status, cut = hypermutated(study.mutations, geno)
        if cut is not None:
            groupings.append(("hypermutator status", status.map({True: "hypermutated", False: "not hypermutated"}).astype(object)))
        for col, v in groupings:
            known = v.notna()
            n = int((carriers & known).sum())
            if n < 3:
                continue
            counts = v[carriers & known].astype(str).value_counts()
            level, k = str(counts.index[0]), int(counts.iloc[0])
            rest = known & ~carriers
            inside = int((v[rest].astype(str) == level).sum())
            m = int(rest.sum())
            if k < CARRIER_SHARE * n or inside > m / 2:  # a level most non-carriers share too is no mark of the carriers
                continue
            fisher = float(stats.fisher_exact([[k, n - k], [inside, m - inside]]).pvalue)
            if fisher < _ALPHA:
                where = ("hypermutated" if col == "hypermutator status" else
                         f"{col} = {float(level):g}" if _is_number(level) else f"{level} ({col})")
                found.append({"column": col, "level": level, "k": k, "n": n, "non_carriers": [inside, m], "p": fisher, "where": where,
                              "said": (f"{k} of {n} {gene} carriers are hypermutated (> {cut:.0f} non-silent mutations; {inside} of {m} non-carriers)"
                                       if col == "hypermutator status" else f"{k} of {n} {gene} carriers are {'' if _is_number(level) else 'in '}"
                                       f"{where} ({inside} of {m} non-carriers)")})
    seen, said = set(), []
    for f in sorted(found, key=lambda f: f["p"]):
        split = (f["k"], f["n"], *f["non_carriers"])
        if split not in seen:  # the same samples in a level two columns share (a subtype and the status it refines)
            seen.add(split)
            said.append(f)
    cache[key] = ({"kind": "carrier overlap", "contrast": f"{gene} carriers", "gene": gene, "n_genotyped": len(geno), "levels": said[:3],
                   "clause": ", ".join(f["said"] for f in said[:2]) + f", so what the {gene} carriers show may be what "
                             + " or ".join("hypermutated" if f["column"] == "hypermutator status" else f["where"] for f in said[:2])
                             + " samples show"} if said else None)
    return cache[key]


def _is_number(level: str) -> bool:
    try:
        float(level)
    except ValueError:
        return False
    return True


def explained_by(records: list[dict]) -> str | None:
    """The column that explains every contrast of a hypothesis's checks (``records`` of
    :func:`hypothesis_checks`): each is a mutation contrast whose effect is gone once adjusted for a
    biological column its mutated samples differ in. Such a hypothesis is about that column, not the mutation."""
    contrasts = [r for r in records if r["contrast"] != "clinical variables of the association" and "kind" not in r]
    cols = [r.get("explained_by") for r in contrasts]
    return cols[0] if cols and all(cols) else None


def cluster_stability(relations) -> tuple[float, int, dict] | None:
    """(PAC, k, technical checks) of the consensus clustering the cluster ``relations`` come from (the
    least stable, if several); the technical checks map each technical column to its test of the clusters."""
    found = [((x := r.stats.extra or {})["pac"], x.get("k"), x.get("technical") or {}) for r in relations
             if r.provenance.tool == "consensus_clustering" and (r.stats.extra or {}).get("pac") is not None]
    return max(found, key=lambda f: f[0]) if found else None


def hypothesis_checks(relations, clin: pd.DataFrame, columns: list[tuple[str, str, bool]],
                      cache: dict | None = None, *, study=None) -> tuple[list[dict], str, str]:
    """Confounder checks of the contrasts a hypothesis's evidence ``relations`` compare.

    Returns ``(records, statement clause, rationale clause)``: one record per contrast (every column
    checked, by decision; the full test for those that matter), a clause the statement must carry
    when a contrast cannot be separated from another column, differs strongly in another
    biological factor (Cramér's V >= 0.5: with ``study``, the lead feature refitted with it, and the
    adjusted effect said), loses its effect once adjusted for a column, or when the clusters cited are
    unstable. Each refit is said with one verdict (:func:`_said_as`): "it holds adjusted for" its column, the
    difference "is gone" adjusted for it, or, for a column collinear with the grouping on the refit's samples
    (:func:`collinear_v`), "cannot be separated from" it with its V (neither gone nor held is claimed); and each
    column with one verdict: a column one refit loses the effect to, or cannot separate, is never said to hold by
    another (each refit's samples are said, and every refit is in the rationale). Also a rationale clause naming
    every associated column, every column that measures the grouping, occurs within one group, or records a gene
    the hypothesis states.
    ``cache`` keeps checks between hypotheses that cite the same contrast.
    """
    cache = {} if cache is None else cache
    records, inseparable, named, associated, adjusted, same, independent, measures, within, own, gone, holds, tied = ([] for _ in range(13))
    composition_gone, composition_refitted, unmeasured = [], [], []
    holds_in: dict[int, dict] = {}  # a refit that holds -> its contrast's record
    continuous = {name: cont for name, _, cont in columns}
    covariates = {str(c) for r in relations for c in (r.provenance.params or {}).get("covariates") or []}
    genes = _stated_genes(relations)
    contrasts = {}
    for key in dict.fromkeys(k for r in relations if (k := evidence_contrast(r)) is not None):
        group, cases, controls = key
        if key not in cache:
            cache[key] = contrast_checks(clin, group, list(cases), list(controls), columns)
        label = f"{group}: {', '.join(cases)} vs {', '.join(controls)}"
        refits, missing, unadjusted_why = composition_refits(study, relations, key, cache[key], continuous) if study is not None else ([], [], "")
        contrasts[label] = (cache[key], refits, key)
        composition_refitted += refits
        composition_gone += [c for c in refits if c.reason.endswith("gone adjusted for it")]
        unmeasured += [(label, missing, unadjusted_why)] if missing else []
    for r in relations if study is not None else ():
        if (m := mutation_checks(study, r, columns, cache)) is not None:
            prior = contrasts.get(m[0], (m[1], [], None))[1]
            contrasts[m[0]] = (m[1], prior + m[2], None)
    for label, (found, refitted, key) in contrasts.items():
        checks = [c.model_copy(update={"decision": "adjusted", "reason": f"adjusted for in the model; {c.reason}"})
                  if c.column in covariates and c.decision in ("associated", "cannot be separated") else c for c in found]
        checks = [c.model_copy(update={"decision": "own gene", "reason": f"it records {g}, a gene the hypothesis states: the design or its "
                                                                       "mechanism, not a confounder"})
                  if c.decision not in ("independent", "not testable", "same grouping") and (g := _own_gene(c.column, genes)) else c
                  for c in checks]
        by = {d: [c for c in checks if c.decision == d] for d in _ORDER}
        # a biological column strongly tied to the groups, a confounder or a level set inside one group (a histology only
        # one group holds), is refitted: the claim says what is left of the effect adjusted for it
        strong = sorted((c for c in by["associated"] + by["occurs within a group"] if c.effect_name == "Cramér's V" and c.role == "biological"
                         and (c.effect or 0) >= STRONG_V), key=lambda c: (-(c.effect or 0), c.q if c.q is not None else 1.0))
        if key is not None and study is not None:  # a sample-table contrast: its lead feature refitted with what its groups differ in
            refitted = refitted + lead_refits(study, relations, key, strong[:_MAX_REFITS])
        records.append({
            "contrast": label, "n_columns": len(checks),
            "checks": [c.model_dump(exclude_none=True) for c in by["cannot be separated"] + by["adjusted"] + by["associated"]
                       + by["occurs within a group"] + by["measures the grouping"] + by["same grouping"] + by["own gene"]],
            "independent": [c.column for c in by["independent"]], "not_testable": [c.column for c in by["not testable"]],
        } | ({"refitted": [c.model_dump(exclude_none=True) for c in refitted]} if refitted else {})
          | ({"unadjusted_for_composition": missing} if (missing := next((m for lb, m, _ in unmeasured if lb == label), None)) else {}))
        inseparable += [c for c in by["cannot be separated"] if c.column not in {x.column for x in inseparable}]
        done = {c.column for c in refitted}
        # one not refitted is named as a confounder only when associated (a level inside one group is said as such)
        named += [c for c in strong if c.decision == "associated" and c.column not in {x.column for x in named} | done]
        associated += [c for c in by["associated"] if c.column not in {x.column for x in associated}]
        adjusted += [c for c in by["adjusted"] if c.column not in {x.column for x in adjusted}]
        same += [c for c in by["same grouping"] if c.column not in {x.column for x in same}]
        independent += [c for c in by["independent"] if c.column not in {x.column for x in independent}]
        measures += [c for c in by["measures the grouping"] if c.column not in {x.column for x in measures}]
        within += [c for c in by["occurs within a group"] if c.column not in {x.column for x in within}]
        own += [c for c in by["own gene"] if c.column not in {x.column for x in own}]
        who = "the mutated samples" if key is None else "the groups"
        biological = sorted((c for c in refitted if c.role == "biological" and c.effect_name == "Cramér's V"), key=lambda c: -(c.effect or 0))
        said = [(c, _said_as(c, key is None)) for c in biological]
        gone += [(c, who) for c, v in said if v == "gone"]
        if key is None and any(v == "gone" for _, v in said):  # a mutation hit another column explains
            records[-1]["explained_by"] = next(c.column for c, v in said if v == "gone")
        tied += [(c, _whose(label, key)) for c, v in said if v == "cannot be separated"]
        held = [c for c, v in said if v == "held"]
        holds += [(c, who) for c in held]
        holds_in.update({id(c): records[-1] for c in held})
    # one verdict a column: one whose refit is gone, or cannot be separated, is never also said to hold (another
    # feature's or contrast's refit with it, on other samples, is given in the rationale)
    settled = {c.column for c, _ in gone + tied}
    disputed, holds = [x for x in holds if x[0].column in settled], [x for x in holds if x[0].column not in settled]
    clause = f"; adjusted for {', '.join(c.column for c in adjusted[:2])}, in which the groups differ" if adjusted else ""
    linked = _linked_variables(relations, clin, columns)
    if linked:
        records.append({"contrast": "clinical variables of the association", "n_columns": len(linked), "checks": [c.model_dump(exclude_none=True) for c in linked],
                        "independent": [], "not_testable": []})
        clause += "; " + "; ".join(f"{c.column} is itself associated with {c.reason} ({c.effect_name} {c.effect:.2f}, p={c.p:.1g}), "
                                   "so its association may follow from that" for c in linked[:2])
    stability = cluster_stability(relations)
    batch = {c: t for c, t in (stability[2] if stability else {}).items() if t["p"] < _ALPHA}
    if batch:
        clause += ("; the clusters also follow the technical column" + ("s " if len(batch) > 1 else " ")
                   + ", ".join(f"{c} ({_EFFECT_NAMES.get(t['effect_type'], t['effect_type'])} {t['effect']:.2f}, p={t['p']:.1g})" for c, t in list(batch.items())[:2])
                   + ", so they may be a technical effect of how the samples were prepared or measured")
    if stability is not None and stability[0] > UNSTABLE_PAC:
        clause += (f"; the clusters are unstable (PAC {stability[0]:.2f} at k={stability[1]}: that share of sample pairs falls together in some "
                   "resamples and apart in others), so they are groupings of these samples, not distinct subtypes")
    if gone:
        clause += "; " + "; ".join(f"{who} differ in {c.column} ({c.effect_name} {c.effect:.2f}), and adjusted for it the difference is gone "
                                   f"({_refit_said(c)}), so it may follow {c.column}" for c, who in gone[:1])
    elif inseparable:
        clause += f"; in these samples this cannot be separated from {', '.join(c.column for c in inseparable[:2])}"
    if holds and (gone or not inseparable):  # what held is said beside what did not
        clause += "; " + (said := _holds_said(holds))
        for c, _ in holds:  # the statement now claims the adjusted effects: validation re-tests those refits (adjusted_keys)
            holds_in[id(c)].setdefault("adjusted_claims", []).append({"column": c.column, "edge": c.edge})
            holds_in[id(c)]["holds_said"] = said  # qualified by their held-out re-tests once validated (held_out_said)
    elif named and not gone and not inseparable:
        clause += f"; the groups also differ in {', '.join(c.column for c in named[:2])}, which this comparison does not separate out"
    if tied and (gone or not inseparable):
        clause += "; " + _tied_said(tied)
    if composition_gone:
        c = composition_gone[0]
        clause += (f"; the groups differ in {c.column} ({c.effect_name} {c.effect:.2f}), and adjusted for it the difference is gone "
                   f"({_refit_said(c)}), so it may reflect tissue composition")
    elif unmeasured:
        clause += f"; unadjusted for tissue composition ({unmeasured[0][2]})"
    shown = inseparable[:3] + adjusted[:2] + associated[:4]
    records_c = [r for r in records if r["contrast"] != "clinical variables of the association"]
    # a column that splits the samples as the grouping does is the design itself, no confounder; "no other column
    # differs" is said only of columns that were tested
    none_differ = (f"none of the {len(independent)} other columns tested differs between the groups (q >= 0.05)" if independent
                   else "no other column could be tested")
    why = ("Confounder check of " + "; ".join(r["contrast"] for r in records_c) + f" against {records_c[0]['n_columns']} other columns: "
           + ("; ".join(c.text() for c in shown) if shown else none_differ)
           + (f"; {', '.join(c.column for c in same)} split{'s' if len(same) == 1 else ''} the samples as the grouping does (the design "
              "itself, nothing to separate)" if same else "") + ".") if records_c else ""
    if within:
        why += " " + "; ".join(f"{c.column} {c.reason}" for c in within[:3]) + "."
    if own:
        why += " " + "; ".join(f"{c.column}: {c.reason}" for c in own[:3]) + "."
    if measures:
        why += " " + "; ".join(f"{c.column} measures the grouping (a threshold of it separates the groups, AUC {c.auc:.2f}): "
                               "it defines them, it does not confound them" for c in measures[:2]) + "."
    if gone or holds or tied or disputed:
        why += (" Refitted with each column the groups differ in: "
                + "; ".join(c.adjusted + (f" (cannot be separated: {_tied_v(c)})" if c.collinear_v is not None else "")
                            for c, _ in (gone + holds + tied + disputed)[:_MAX_REFITS]) + ".")
    if composition_refitted:
        why += " Refitted with the tissue-composition scores the groups differ in: " + "; ".join(c.adjusted for c in composition_refitted[:3]) + "."
    for label, missing, unadjusted_why in unmeasured[:1]:
        why += (f" {label} is not adjusted for tissue composition ({unadjusted_why}: {', '.join(missing[:3])}"
                f"{' and others' if len(missing) > 3 else ''}), so part of the difference may reflect the groups' cell make-up.")
    if linked:
        why = (why + " The associated clinical variables are checked against each other: " + "; ".join(c.text() for c in linked) + ".").strip()
    if stability is not None:
        why = (why + f" Consensus clustering stability: PAC {stability[0]:.2f} at k={stability[1]}"
               + (" (unstable)." if stability[0] > UNSTABLE_PAC else ".")
               + (" Technical columns against the clusters: " + "; ".join(f"{c} p={t['p']:.1g}" for c, t in stability[2].items()) + "."
                  if stability[2] else " The sample table has no technical column (batch, plate, run order) to check them against.")).strip()
    # where a claim's mutation carriers sit: a level holding nearly all of them cannot be told apart from carrier status
    overlaps = list({o["gene"]: o for r in relations if study is not None and (o := carrier_overlap(study, r, columns, cache)) is not None}.values())
    if overlaps:
        clause += "; " + "; ".join(o["clause"] for o in overlaps[:2])
        records += overlaps
    return records, clause, why.strip()


def _linked_variables(relations, clin: pd.DataFrame, columns: list[tuple[str, str, bool]]) -> list[DesignCheck]:
    """For a hypothesis that associates one thing (sample clusters, a feature) with several clinical
    variables: each later variable tested against the first (strongest) one on the samples with both;
    those associated (p < 0.05) are checks whose ``reason`` names the first variable."""

    kinds = {c: cont for c, _, cont in columns}
    names = list(dict.fromkeys(r.object.label for r in relations if r.predicate == "associated_with" and r.object.type == "clinical_variable"))
    names = [n for n in names if n in kinds and n in clin]
    if len(names) < 2 or kinds[names[0]]:
        return []
    first = recorded(clin[names[0]])
    out = []
    for other in names[1:]:
        v = pd.to_numeric(clin[other], errors="coerce") if kinds[other] else recorded(clin[other])
        ok = first.notna() & v.notna()
        if first[ok].nunique() < 2 or v[ok].nunique() < 2:
            continue
        test, name, eff, p = association(first[ok].astype(str), v[ok], kinds[other])
        if p < _ALPHA:
            out.append(DesignCheck(column=other, role="biological", test=test, effect_name=name, effect=round(eff, 4), p=p, n=int(ok.sum()),
                                   decision="associated", reason=names[0]))
    return out
