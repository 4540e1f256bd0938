"""Correlation tools: features vs clinical variables, mRNA-protein concordance, CNA cis effects,
co-abundance modules.

Every correlation is computed per feature over the samples where both values are observed
(pairwise-complete, as ``scipy.stats.spearmanr`` on the complete pairs), vectorised over
features. Spearman's rho is the Pearson correlation of average ranks; its p-value uses the
t approximation :math:`t = r\\sqrt{(n-2)/(1-r^2)}` with :math:`n-2` degrees of freedom, exactly as
``scipy.stats.spearmanr`` / ``pearsonr``. Partial correlation residualises the (ranked) feature and
variable on an intercept plus the (ranked) covariates and correlates the residuals, with
:math:`n-2-k` degrees of freedom (Kim 2015, ppcor, doi:10.5351/CSAM.2015.22.6.665).
Multiple testing: Benjamini-Hochberg (doi:10.1111/j.2517-6161.1995.tb02031.x).

This module also holds the small helpers the other tool families reuse (matrices from a study,
sample restriction, BH, typing of clinical columns, association tests of a grouping with clinical
variables).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import linalg, stats
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from proteus.records import (
    MODALITY_ENTITY,
    Entity,
    Relation,
    Stats,
    ToolResult,
    feature_entity,
)
from proteus.stats.design import covariate_block, dropped_text, usable_covariates
from proteus.stats.features import agrees_with_canonical, canonical_features, feature_genes, gene_annotation
from proteus.stats.multitest import bh
from proteus.study import Study
from proteus.tools._plots import volcano
from proteus.tools.registry import ToolContext, ToolFailed, ToolInputError, register

__all__ = [
    "clinical_correlation",
    "mrna_protein_concordance",
    "cna_cis_effect",
    "coabundance_modules",
    "paired_correlation",
    "partial_correlation",
    "clinical_kind",
    "associate_grouping",
]

# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def modality_kind(study: Study, modality: str) -> str:
    """The modality kind (``adata.uns['modality']``), falling back to the layer name."""
    return str(study.modalities[modality].uns.get("modality", modality))


def modality_frame(study: Study, modality: str, samples: list[str] | None = None) -> pd.DataFrame:
    """Samples x features float matrix of a bulk modality (optionally restricted to ``samples``)."""
    a = study.modalities[modality]
    if a.uns.get("level", "sample") == "cell":
        msg = f"modality {modality!r} is cell-level; this tool needs a sample-level (bulk) layer"
        raise ToolInputError(msg)
    x = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
    df = pd.DataFrame(x.astype(float), index=a.obs_names.astype(str), columns=a.var_names.astype(str))
    df = df.replace([np.inf, -np.inf], np.nan)
    if samples is not None:
        df = df.loc[[s for s in samples if s in df.index]]
    return df


def restricted_samples(study: Study, samples: list[str], restrict: dict[str, Any] | None) -> list[str]:
    """Samples whose clinical values match every ``column: value`` (or list of values) in ``restrict``."""
    if not restrict:
        return list(samples)
    keep = list(samples)
    cols = list(map(str, study.clinical.columns))
    for col, val in restrict.items():
        if col not in cols:
            msg = f"restrict column {col!r} is not a clinical column; columns include: {cols[:40]}"
            raise ToolInputError(msg)
        vals = {str(v) for v in (val if isinstance(val, list | tuple | set) else [val])}
        levels = sorted(map(str, study.clinical[col].dropna().unique()))
        if not vals & set(levels):
            msg = f"restrict value {sorted(vals)} is not a level of {col!r}; levels: {levels[:40]}"
            raise ToolInputError(msg)
        colv = study.clinical[col].astype(object).where(study.clinical[col].notna(), None)
        ok = {str(i) for i, v in colv.items() if v is not None and str(v) in vals}
        keep = [s for s in keep if s in ok]
    return keep


def clinical_kind(s: pd.Series, max_levels: int = 10, min_per_level: int = 2) -> str | None:
    """Type a clinical column: ``"continuous"``, ``"categorical"`` or None (unusable: ids, constants).

    Numeric with more than ``max_levels`` distinct values is continuous; anything with 2 to
    ``max_levels`` levels holding at least ``min_per_level`` samples each is categorical.
    """
    v = s.dropna()
    if v.empty:
        return None
    num = pd.to_numeric(v, errors="coerce")
    if num.notna().mean() >= 0.95 and num.nunique() > max_levels:
        return "continuous"
    counts = v.astype(str).value_counts()
    counts = counts[counts >= min_per_level]
    if 2 <= len(counts) <= max_levels:
        return "categorical"
    return None


def covariate_matrix(clin: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    """Numeric design columns for ``covariates`` (:func:`proteus.stats.design.covariate_block`:
    measurements as numbers, codes such as batch 1..5 and text one-hot with the first level dropped)."""
    return covariate_block(clin, covariates)


def _t_pvalue(r: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided p of a correlation via :math:`t = r\\sqrt{df/(1-r^2)}` (as scipy.stats.pearsonr)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rr = np.clip(np.abs(r), 0, 1)
        t = rr * np.sqrt(df / np.maximum(1 - rr**2, 1e-300))
        p = 2 * stats.t.sf(t, df)
    p = np.where(rr >= 1 - 1e-15, 0.0, p)
    return np.where(np.isfinite(r) & (df > 0), p, np.nan)


def paired_correlation(
    X: np.ndarray, Y: np.ndarray, method: str = "spearman", min_n: int = 3, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column-wise correlation of ``X[:, j]`` with ``Y[:, j]`` over rows where both are finite.

    ``Y`` may be a single column (broadcast). Returns ``(r, p, n)``; r and p are NaN where fewer
    than ``min_n`` pairs or a constant column.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    F = X.shape[1]
    r = np.full(F, np.nan)
    n = np.zeros(F, dtype=int)
    for lo in range(0, F, chunk):
        hi = min(F, lo + chunk)
        x = X[:, lo:hi]
        y = np.broadcast_to(Y if Y.shape[1] == 1 else Y[:, lo:hi], x.shape)
        m = np.isfinite(x) & np.isfinite(y)
        x = np.where(m, x, np.nan)
        y = np.where(m, y, np.nan)
        if method == "spearman":
            x = stats.rankdata(x, axis=0, nan_policy="omit")
            y = stats.rankdata(y, axis=0, nan_policy="omit")
        nn = m.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-missing columns: handled below
            xc = np.where(m, x - np.nanmean(x, axis=0), 0.0)
            yc = np.where(m, y - np.nanmean(y, axis=0), 0.0)
            sxx = (xc**2).sum(0)
            syy = (yc**2).sum(0)
            rr = (xc * yc).sum(0) / np.sqrt(sxx * syy)
            tiny = 1e-12 * np.maximum(1.0, np.abs(np.where(m, x, 0)).max(axis=0)) ** 2
        rr = np.where((nn >= min_n) & (sxx > tiny) & (syy > tiny), np.clip(rr, -1, 1), np.nan)
        r[lo:hi] = rr
        n[lo:hi] = nn
    return r, _t_pvalue(r, (n - 2).astype(float)), n


def partial_correlation(
    X: np.ndarray, y: np.ndarray, Z: np.ndarray, method: str = "spearman", min_n: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlation of each column of ``X`` with ``y`` given covariates ``Z`` (ppcor's definition).

    ``y`` and ``Z`` must be complete; ``X`` may hold NaN. Features sharing a missingness pattern are
    solved together: within the observed samples, ranks (Spearman) of X, y and Z are taken, X and y
    residualised on ``[1, Z]`` and the residuals correlated; df = n - 2 - rank(Z) (Fisher 1924;
    Kim 2015, ppcor, doi:10.5351/CSAM.2015.22.6.665).

    A feature is tested only when its residual df reach those of a plain correlation of ``min_n``
    samples (``n - 1 - rank([1, Z]) >= min_n - 2``): each covariate column costs one sample. With
    fewer, the residuals of a few samples after many covariates can line up exactly (r = 1, p = 0 on
    11 samples after a 25-column design); such a feature gets NaN, never a relation.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    Z = np.asarray(Z, dtype=float).reshape(len(y), -1)
    F = X.shape[1]
    r = np.full(F, np.nan)
    n = np.zeros(F, dtype=int)
    df = np.zeros(F)
    obs = np.isfinite(X)
    packed = np.packbits(obs, axis=0).T
    _, inv = np.unique(packed, axis=0, return_inverse=True)
    inv = inv.ravel()
    order = np.argsort(inv, kind="stable")
    bounds = np.flatnonzero(np.diff(inv[order])) + 1
    for cols in np.split(order, bounds):
        s = obs[:, cols[0]]
        ns = int(s.sum())
        if ns < min_n:
            continue
        xs, ys, zs = X[np.ix_(s, cols)], y[s], Z[s]
        if method == "spearman":
            xs = stats.rankdata(xs, axis=0)
            ys = stats.rankdata(ys)
            zs = stats.rankdata(zs, axis=0) if zs.shape[1] else zs
        Q = linalg.orth(np.column_stack([np.ones(ns), zs]))
        if ns - 1 - Q.shape[1] < min_n - 2:
            continue
        rx = xs - Q @ (Q.T @ xs)
        ry = ys - Q @ (Q.T @ ys)
        with np.errstate(invalid="ignore", divide="ignore"):
            den = np.sqrt((rx**2).sum(0) * (ry**2).sum())
            rr = (rx * ry[:, None]).sum(0) / den
        rr = np.where(den > 1e-12 * max(1.0, ns), np.clip(rr, -1, 1), np.nan)
        r[cols] = rr
        n[cols] = ns
        df[cols] = ns - 1 - Q.shape[1]
    return r, _t_pvalue(r, df), n


def _kw_epsilon2(h: float, n: int) -> float:
    """Kruskal-Wallis effect size :math:`\\epsilon^2 = H/(n-1)` (Tomczak & Tomczak 2014)."""
    return float(h / (n - 1)) if n > 1 else float("nan")


def associate_grouping(
    labels: pd.Series,
    clinical: pd.DataFrame,
    variables: list[str] | None = None,
    *,
    min_samples: int = 6,
    max_levels: int = 10,
    exclude: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, list[str]]:
    """Test a sample grouping against clinical columns.

    Continuous columns: Kruskal-Wallis across groups (effect epsilon-squared). Categorical columns:
    Pearson chi-square on the contingency table, or Fisher's exact test for a 2x2 table (effect
    Cramer's V). Benjamini-Hochberg over the tested columns. Returns the table (sorted by p) and
    the skipped columns with reasons.
    """
    labels = labels.dropna().astype(str)
    clin = clinical.reindex(labels.index)
    cols = list(variables) if variables is not None else [c for c in map(str, clinical.columns)]
    rows, skipped = [], []
    for c in cols:
        if c in exclude:
            continue
        s = clin[c]
        kind = clinical_kind(clinical[c], max_levels=max_levels)
        if kind is None:
            skipped.append(f"{c} (not continuous or 2-{max_levels} levels)")
            continue
        ok = s.notna()
        if ok.sum() < min_samples:
            skipped.append(f"{c} (fewer than {min_samples} samples with a value)")
            continue
        g = labels[ok]
        if g.nunique() < 2:
            skipped.append(f"{c} (one group only among samples with a value)")
            continue
        if kind == "continuous":
            v = pd.to_numeric(s[ok], errors="coerce")
            groups = [v[g == lv].dropna().to_numpy() for lv in sorted(g.unique())]
            groups = [x for x in groups if len(x)]
            if len(groups) < 2 or np.ptp(np.concatenate(groups)) == 0:
                skipped.append(f"{c} (constant)")
                continue
            h, p = stats.kruskal(*groups)
            n = int(sum(len(x) for x in groups))
            rows.append(dict(variable=c, kind=kind, test="kruskal_wallis", statistic=h, p=p, n=n,
                             effect=_kw_epsilon2(h, n), effect_type="epsilon_squared", note=""))
        else:
            gi, _ = pd.factorize(g)
            vi, _ = pd.factorize(s[ok].astype(str))
            tab = np.zeros((gi.max() + 1, vi.max() + 1))
            np.add.at(tab, (gi, vi), 1)
            if tab.shape[0] < 2 or tab.shape[1] < 2:
                skipped.append(f"{c} (one level among samples with a value)")
                continue
            n = int(tab.sum())
            chi2, p, dof, exp = stats.chi2_contingency(tab, correction=False)
            test, note = "chi_square", ""
            if tab.shape == (2, 2):
                _, p = stats.fisher_exact(tab)
                test = "fisher_exact"
            elif (exp < 5).mean() > 0.2:
                note = "over 20% of expected counts < 5: chi-square approximate"
            v = float(np.sqrt(chi2 / (n * (min(tab.shape) - 1))))
            rows.append(dict(variable=c, kind=kind, test=test, statistic=chi2, p=p, n=n,
                             effect=v, effect_type="cramers_v", note=note))
    table = pd.DataFrame(rows, columns=["variable", "kind", "test", "statistic", "p", "n", "effect",
                                        "effect_type", "note"])
    table["q"] = bh(table["p"].to_numpy()) if len(table) else []
    return table.sort_values("p", kind="stable").reset_index(drop=True), skipped


def _rel(ctx: ToolContext, tool: str, params: BaseModel, subject: Entity, predicate: str,
         obj: Entity, stats_: Stats, modality: str | None) -> Relation:
    return Relation(subject=subject, predicate=predicate, object=obj, stats=stats_, modality=modality,
                    provenance=ctx.provenance_for(tool, params))


def _fmt(x: float) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.2g}"


def _check_numeric(study: Study, column: str, samples: list[str]) -> pd.Series:
    raw = study.clinical.reindex(samples)[column]
    v = pd.to_numeric(raw, errors="coerce")
    if raw.notna().sum() and v.notna().sum() < 0.95 * raw.notna().sum():
        levels = sorted(map(str, raw.dropna().unique()))[:20]
        msg = (f"variable {column!r} is not numeric (levels {levels}); use a differential or "
               f"cluster_clinical_association tool for categorical columns")
        raise ToolInputError(msg)
    return v


# --------------------------------------------------------------------------------------------
# clinical_correlation
# --------------------------------------------------------------------------------------------


class ClinicalCorrelationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="bulk modality whose features are correlated, e.g. 'proteomics'")
    variable: str = Field(description="continuous clinical column of the sample table")
    method: Literal["spearman", "pearson"] = Field("spearman", description="correlation coefficient")
    covariates: list[str] = Field(
        default_factory=list,
        description="clinical columns to adjust for (partial correlation by residualisation); "
        "categorical ones are one-hot coded",
    )
    restrict: dict[str, str | list[str]] | None = Field(
        None, description="keep only samples whose clinical column equals the value, "
        "as {column: level}"
    )
    min_samples: int = Field(10, ge=4, description="minimum complete pairs per feature; features with fewer are skipped")
    fdr: float = Field(0.05, gt=0, lt=1, description="BH q-value threshold for a significant correlation")
    max_relations: int = Field(100, ge=0, le=500, description="at most this many significant features become relations")


@register("clinical_correlation", family="correlation", params=ClinicalCorrelationParams,
          requires=("bulk", "clinical"))
def clinical_correlation(study: Study, params: ClinicalCorrelationParams, ctx: ToolContext) -> ToolResult:
    """Correlate every feature of a modality with one continuous clinical variable (Spearman or Pearson), optionally as a partial correlation adjusted for covariates, with Benjamini-Hochberg FDR.

    Use for questions like "which proteins track tumour purity / immune score / age / BMI".
    Returns a table (feature, gene, r, p, q, n, direction), a volcano-style figure, and
    ``feature --correlates_with--> clinical_variable:<variable>`` relations for significant features.
    """
    name = "clinical_correlation"
    p = params
    samples = restricted_samples(study, list(study.modalities[p.modality].obs_names.astype(str)), p.restrict)
    y = _check_numeric(study, p.variable, samples)
    clin = study.clinical.reindex(samples)
    covs, dropped = usable_covariates(clin.loc[y.reindex(samples).notna().to_numpy()], p.covariates, 2)
    Z = covariate_matrix(clin, covs)
    ok = y.notna() & Z.notna().all(axis=1)
    use = [s for s in samples if ok.get(s, False)]
    if len(use) < p.min_samples:
        msg = (f"only {len(use)} samples have {p.variable!r}"
               f"{' and all covariates' if covs else ''}; need at least {p.min_samples}")
        raise ToolFailed(msg)
    if y[use].nunique() < 3:
        msg = f"variable {p.variable!r} has fewer than 3 distinct values over the {len(use)} samples"
        raise ToolFailed(msg)
    X = modality_frame(study, p.modality, use)
    yv = y[use].to_numpy(float)
    if covs:
        r, pv, n = partial_correlation(X.to_numpy(), yv, Z.loc[use].to_numpy(float), p.method, p.min_samples)
    else:
        r, pv, n = paired_correlation(X.to_numpy(), yv, p.method, p.min_samples)
    r = np.where(n >= p.min_samples, r, np.nan)
    pv = np.where(np.isfinite(r), pv, np.nan)
    q = bh(pv)
    table = pd.DataFrame({"feature": X.columns, **gene_annotation(study.modalities[p.modality], X.columns),
                          "r": r, "p": pv, "q": q, "n": n})
    tested = table[np.isfinite(table["r"])].copy()
    n_skipped = len(table) - len(tested)
    if tested.empty:
        msg = (f"no {p.modality} feature had {p.min_samples} observed, non-constant values "
               f"alongside {p.variable!r}")
        raise ToolFailed(msg)
    tested["direction"] = np.where(tested["r"] > 0, "positive", "negative")
    tested = tested.sort_values(["p", "feature"]).reset_index(drop=True)
    sig = tested[(tested["q"] < p.fdr) & agrees_with_canonical(tested, "r", p.fdr)]

    kind = modality_kind(study, p.modality)
    obj = Entity(type="clinical_variable", label=p.variable)
    effect_type = f"{p.method}_{'partial_' if covs else ''}{'rho' if p.method == 'spearman' else 'r'}"
    rels = [
        _rel(ctx, name, p, feature_entity(kind, row.label), "correlates_with", obj,
             Stats(effect=float(row.r), effect_type=effect_type, p=float(row.p), q=float(row.q), n=int(row.n),
                   direction=row.direction, extra={"feature_id": str(row.feature)} | ({"covariates": covs} if covs else {})),
             p.modality)
        for row in sig.head(p.max_relations).itertuples()
    ]

    ranked = tested.sort_values("p", kind="stable")
    figures = []
    if ctx.figures:
        path = volcano(ctx, f"clinical_correlation_{p.modality}_{p.variable}", ranked["r"], ranked["p"], ranked["q"], p.fdr,
                       labels=ranked["feature"].to_numpy(), xlabel=effect_type, title=f"{p.modality} vs {p.variable} (n={len(use)})")
        figures.append(path)

    npos = int((sig["r"] > 0).sum())
    top = ", ".join(f"{r.feature} ({_fmt(r.r)}, q={_fmt(r.q)})" for r in sig.head(5).itertuples())
    summary = (
        f"{p.method.capitalize()} {'partial ' if covs else ''}correlation of {len(tested)} {p.modality} features "
        f"with {p.variable} over {len(use)} samples"
        f"{' adjusted for ' + ', '.join(covs) if covs else ''}: {len(sig)} significant at BH q<{p.fdr} "
        f"({npos} positive, {len(sig) - npos} negative); {n_skipped} features skipped (too few values, constant, or too few residual df after the covariates)."
        + (f" Top: {top}." if top else "") + dropped_text(dropped)
    )
    return ToolResult(
        summary=summary,
        tables={"correlations": tested},
        figures=figures,
        relations=rels,
        metrics={"n_tested": len(tested), "n_significant": len(sig), "n_positive": npos,
                 "n_negative": len(sig) - npos, "n_skipped": n_skipped, "n_samples": len(use),
                 "covariates": covs, "covariates_dropped": dropped},
    )


# --------------------------------------------------------------------------------------------
# mrna_protein_concordance
# --------------------------------------------------------------------------------------------


class ConcordanceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="protein-level modality, e.g. 'proteomics'")
    other_modality: str = Field(description="RNA modality matched by gene symbol, e.g. 'transcriptomics'")
    method: Literal["spearman", "pearson"] = Field("spearman", description="correlation coefficient")
    restrict: dict[str, str | list[str]] | None = Field(
        None, description="keep only samples whose clinical column equals the value, as {column: level}"
    )
    min_samples: int = Field(10, ge=4, description="minimum samples with both values per gene")
    fdr: float = Field(0.05, gt=0, lt=1, description="BH q-value threshold")
    max_relations: int = Field(100, ge=0, le=500, description="at most this many top concordant genes become relations")


def _one_per_gene(adata) -> pd.Series:
    """Map gene -> its canonical feature (:func:`proteus.stats.features.canonical_features`; of a site
    layer, the site observed in the most samples)."""
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X, dtype=float)
    genes = feature_genes(adata)
    df = pd.DataFrame({"feature": genes.index, "gene": genes.to_numpy(), "n": np.isfinite(x).sum(0)})
    df = df[genes.notna().to_numpy() & canonical_features(adata).to_numpy()]
    df = df.sort_values(["gene", "n", "feature"], ascending=[True, False, True]).drop_duplicates("gene")
    return pd.Series(df["feature"].to_numpy(), index=df["gene"].to_numpy())


def _paired_by_gene(study: Study, mod_a: str, mod_b: str, samples: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    A = modality_frame(study, mod_a, samples)
    B = modality_frame(study, mod_b, samples)
    shared = [s for s in A.index if s in set(B.index)]
    A, B = A.loc[shared], B.loc[shared]
    ma = _one_per_gene(study.modalities[mod_a])
    mb = _one_per_gene(study.modalities[mod_b])
    genes = sorted(set(ma.index) & set(mb.index))
    A = A[ma[genes].to_numpy()]
    B = B[mb[genes].to_numpy()]
    A.columns = genes
    B.columns = genes
    return A, B


@register("mrna_protein_concordance", family="correlation", params=ConcordanceParams, requires=("two_layers",))
def mrna_protein_concordance(study: Study, params: ConcordanceParams, ctx: ToolContext) -> ToolResult:
    """Per gene, correlate protein abundance with its own mRNA across shared samples (Spearman default), reporting the distribution of mRNA-protein concordance.

    CPTAC cohorts typically show a median Spearman rho of about 0.4-0.5 with a long tail of
    discordant genes (post-transcriptional regulation, complex subunits). Returns a per-gene
    table, a rho histogram, and ``protein:X --concordant_with--> gene:X`` for the most concordant
    significant genes.
    """
    name = "mrna_protein_concordance"
    p = params
    if p.modality == p.other_modality:
        msg = "modality and other_modality must be different layers"
        raise ToolInputError(msg)
    samples = restricted_samples(study, study.samples(), p.restrict)
    A, B = _paired_by_gene(study, p.modality, p.other_modality, samples)
    if len(A) < p.min_samples:
        msg = f"only {len(A)} samples are shared by {p.modality} and {p.other_modality}; need {p.min_samples}"
        raise ToolFailed(msg)
    if A.shape[1] == 0:
        msg = f"no gene symbol is shared by {p.modality} and {p.other_modality}"
        raise ToolFailed(msg)
    r, pv, n = paired_correlation(A.to_numpy(), B.to_numpy(), p.method, p.min_samples)
    q = bh(pv)
    table = pd.DataFrame({"gene": A.columns, "r": r, "p": pv, "q": q, "n": n})
    tested = table[np.isfinite(table["r"])].sort_values("r", ascending=False).reset_index(drop=True)
    if tested.empty:
        msg = "no gene had enough paired, non-constant values"
        raise ToolFailed(msg)
    sig_pos = tested[(tested["q"] < p.fdr) & (tested["r"] > 0)]
    med = float(tested["r"].median())

    ka, kb = modality_kind(study, p.modality), modality_kind(study, p.other_modality)
    ea = MODALITY_ENTITY.get(ka, "protein")
    eb = MODALITY_ENTITY.get(kb, "gene")
    rels = [
        _rel(ctx, name, p, Entity.of(ea, row.gene), "concordant_with", Entity.of(eb, row.gene),
             Stats(effect=float(row.r), effect_type=f"{p.method}_rho" if p.method == "spearman" else "pearson_r",
                   p=float(row.p), q=float(row.q), n=int(row.n), direction="positive",
                   extra={"other_modality": p.other_modality}),
             p.modality)
        for row in sig_pos.head(p.max_relations).itertuples()
    ]
    figures = []
    if ctx.figures:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 3.5))
        ax = fig.subplots()
        ax.hist(tested["r"], bins=60, color="steelblue")
        ax.axvline(med, color="crimson", lw=1)
        ax.set_xlabel(f"{p.method} correlation, {p.modality} vs {p.other_modality}")
        ax.set_ylabel("genes")
        ax.set_title(f"median {med:.2f} over {len(tested)} genes, {len(A)} samples", fontsize=9)
        path = ctx.figure_path(f"mrna_protein_concordance_{p.modality}_{p.other_modality}")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        figures.append(path)

    frac = len(sig_pos) / len(tested)
    n_neg = int(((tested["q"] < p.fdr) & (tested["r"] < 0)).sum())
    summary = (
        f"{p.modality} vs {p.other_modality} concordance over {len(tested)} genes and {len(A)} shared samples: "
        f"median {p.method} {med:.2f} (IQR {tested['r'].quantile(.25):.2f}-{tested['r'].quantile(.75):.2f}); "
        f"{len(sig_pos)} genes ({frac:.0%}) significantly positive at BH q<{p.fdr}, {n_neg} significantly negative. "
        f"Most concordant: {', '.join(tested['gene'].head(5))}; least: {', '.join(tested['gene'].tail(5))}."
    )
    return ToolResult(
        summary=summary,
        tables={"concordance": tested},
        figures=figures,
        relations=rels,
        metrics={"n_tested": len(tested), "n_significant": len(sig_pos), "n_skipped": int(len(table) - len(tested)),
                 "median_rho": med, "mean_rho": float(tested["r"].mean()), "fraction_significant": frac,
                 "n_samples": len(A)},
    )


# --------------------------------------------------------------------------------------------
# cna_cis_effect
# --------------------------------------------------------------------------------------------


class CnaCisParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="copy-number modality (gene-level), e.g. 'cna'")
    modalities: list[str] | None = Field(
        None, description="target layers matched by gene symbol (e.g. ['transcriptomics', 'proteomics']); "
        "default: every other bulk layer whose kind is transcriptomics or proteomics"
    )
    method: Literal["spearman", "pearson"] = Field("spearman", description="correlation coefficient")
    restrict: dict[str, str | list[str]] | None = Field(
        None, description="keep only samples whose clinical column equals the value, as {column: level}"
    )
    min_samples: int = Field(10, ge=4, description="minimum samples with both values per gene")
    fdr: float = Field(0.05, gt=0, lt=1, description="BH q-value threshold for a significant cis effect")
    max_relations: int = Field(150, ge=0, le=500, description="at most this many cis effects become relations (split over targets)")


@register("cna_cis_effect", family="correlation", params=CnaCisParams, requires=("two_layers",))
def cna_cis_effect(study: Study, params: CnaCisParams, ctx: ToolContext) -> ToolResult:
    """Per gene, correlate copy number with the gene's own RNA and protein (cis effects) and report buffering: the fraction of genes whose copy number significantly drives RNA versus protein.

    Many copy-number effects on mRNA are attenuated at the protein level (dosage compensation,
    e.g. Mertins 2016, Zhang 2016 CPTAC); comparison is over genes measured in every target.
    Returns per-gene rho/q per target, a rho distribution figure, and
    ``gene:X --cis_effect_on--> protein:X / gene:X`` (modality-tagged) relations.
    """
    name = "cna_cis_effect"
    p = params
    targets = p.modalities
    if targets is None:
        targets = [m for m in study.bulk() if m != p.modality
                   and modality_kind(study, m) in ("transcriptomics", "proteomics")]
    targets = [t for t in targets if t != p.modality]
    if not targets:
        msg = f"no target layer besides {p.modality!r}; loaded modalities: {list(study.modalities)}"
        raise ToolInputError(msg)
    samples = restricted_samples(study, study.samples(), p.restrict)
    per = {}
    for t in targets:
        C, T = _paired_by_gene(study, p.modality, t, samples)
        if len(C) < p.min_samples:
            msg = f"only {len(C)} samples shared by {p.modality} and {t}; need {p.min_samples}"
            raise ToolFailed(msg)
        r, pv, n = paired_correlation(C.to_numpy(), T.to_numpy(), p.method, p.min_samples)
        per[t] = pd.DataFrame({"r": r, "p": pv, "n": n}, index=C.columns)
    common = sorted(set.intersection(*[set(d.index[np.isfinite(d["r"])]) for d in per.values()]))
    if not common:
        msg = "no gene had a testable copy-number correlation in every target layer"
        raise ToolFailed(msg)
    table = pd.DataFrame(index=pd.Index(common, name="gene"))
    for t, d in per.items():
        d = d.loc[common]
        table[f"r_{t}"] = d["r"]
        table[f"p_{t}"] = d["p"]
        table[f"q_{t}"] = bh(d["p"].to_numpy())
        table[f"n_{t}"] = d["n"]
        table[f"sig_{t}"] = (table[f"q_{t}"] < p.fdr) & (table[f"r_{t}"] > 0)
    frac = {t: float(table[f"sig_{t}"].mean()) for t in targets}
    kinds = {t: modality_kind(study, t) for t in targets}
    rna = [t for t in targets if kinds[t] == "transcriptomics"]
    prot = [t for t in targets if kinds[t] == "proteomics"]
    buffered = None
    if rna and prot:
        table["buffered"] = table[f"sig_{rna[0]}"] & ~table[f"sig_{prot[0]}"]
        buffered = int(table["buffered"].sum())
    table = table.reset_index().sort_values(f"r_{targets[0]}", ascending=False).reset_index(drop=True)

    rels = []
    per_target = max(1, p.max_relations // len(targets)) if p.max_relations else 0
    for t in targets:
        sig = table[table[f"sig_{t}"]].sort_values(f"r_{t}", ascending=False).head(per_target)
        ent = MODALITY_ENTITY.get(kinds[t], "feature")
        for row in sig.itertuples(index=False):
            d = row._asdict()
            rels.append(_rel(ctx, name, p, Entity.of("gene", d["gene"]), "cis_effect_on", Entity.of(ent, d["gene"]),
                             Stats(effect=float(d[f"r_{t}"]), effect_type=f"{p.method}_rho", p=float(d[f"p_{t}"]),
                                   q=float(d[f"q_{t}"]), n=int(d[f"n_{t}"]), direction="positive",
                                   extra={"source_modality": p.modality, "target_modality": t}),
                             t))

    figures = []
    if ctx.figures:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 3.5))
        ax = fig.subplots()
        for t in targets:
            ax.hist(table[f"r_{t}"], bins=60, histtype="step", lw=1.2, label=f"{t} ({frac[t]:.0%} sig)")
        ax.set_xlabel(f"{p.method} rho, {p.modality} vs own gene")
        ax.set_ylabel("genes")
        ax.legend(fontsize=7)
        ax.set_title(f"copy-number cis effects over {len(table)} genes", fontsize=9)
        path = ctx.figure_path(f"cna_cis_effect_{p.modality}")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        figures.append(path)

    med = {t: float(table[f"r_{t}"].median()) for t in targets}
    parts = [f"{t}: {frac[t]:.0%} significant (median rho {med[t]:.2f})" for t in targets]
    summary = (f"Copy-number cis effects of {p.modality} over {len(table)} genes measured in every target: "
               + "; ".join(parts) + ".")
    if buffered is not None:
        summary += (f" {buffered} genes have a significant effect on RNA but not on protein "
                    f"({'buffering at protein level' if frac[prot[0]] < frac[rna[0]] else 'no net buffering'}).")
    metrics: dict[str, Any] = {"n_tested": len(table), "n_significant": int(sum(table[f'sig_{t}'].sum() for t in targets)),
                               "n_skipped": int(max(len(d) for d in per.values()) - len(table))}
    for t in targets:
        metrics[f"fraction_significant_{t}"] = frac[t]
        metrics[f"median_rho_{t}"] = med[t]
    if buffered is not None:
        metrics["n_buffered"] = buffered
    return ToolResult(summary=summary, tables={"cis_effects": table}, figures=figures, relations=rels, metrics=metrics)


# --------------------------------------------------------------------------------------------
# coabundance_modules
# --------------------------------------------------------------------------------------------


class ModulesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="bulk modality to build co-abundance modules from")
    n_features: int = Field(1000, ge=20, le=5000, description="number of most variable features used")
    method: Literal["spearman", "pearson"] = Field("pearson", description="feature-feature correlation")
    n_modules: int | None = Field(
        None, ge=2, le=50, description="cut the tree into this many clusters; None cuts at cut_height instead"
    )
    cut_height: float = Field(
        0.7, gt=0, lt=2, description="average-linkage height (1 - correlation) at which the tree is cut when n_modules is None"
    )
    min_module_size: int = Field(10, ge=3, description="smaller clusters are left unassigned (module 'grey')")
    max_missing: float = Field(0.2, ge=0, lt=1, description="features missing in more than this fraction of samples are dropped")
    variables: list[str] | None = Field(
        None, description="clinical columns to relate module eigengenes to; None tests every usable column"
    )
    restrict: dict[str, str | list[str]] | None = Field(
        None, description="keep only samples whose clinical column equals the value, as {column: level}"
    )
    n_hubs: int = Field(10, ge=1, le=50, description="hub features per module (highest correlation with the eigengene) that become relations")
    fdr: float = Field(0.05, gt=0, lt=1, description="BH q-value threshold for eigengene-clinical associations")


def _eigengene(Zm: np.ndarray) -> np.ndarray:
    """First principal component of z-scored members, signed to correlate with their mean (WGCNA)."""
    u, s, _ = np.linalg.svd(Zm - Zm.mean(0), full_matrices=False)
    e = u[:, 0] * s[0]
    if np.corrcoef(e, Zm.mean(1))[0, 1] < 0:
        e = -e
    return (e - e.mean()) / e.std()


@register("coabundance_modules", family="correlation", params=ModulesParams, requires=("bulk",))
def coabundance_modules(study: Study, params: ModulesParams, ctx: ToolContext) -> ToolResult:
    """Find co-abundance modules: cluster the most variable features by correlation (average linkage on 1 - r), summarise each module by its eigengene, and relate eigengenes to clinical variables.

    WGCNA-style (Langfelder & Horvath 2008, doi:10.1186/1471-2105-9-559) with a signed
    distance, a fixed-height or fixed-k cut and unassigned small clusters. Returns module
    membership (with kME), eigengene-clinical tests, a clustered correlation heatmap, and
    ``feature --member_of--> module`` (hub features) and ``module --correlates_with--> clinical_variable``.
    """
    name = "coabundance_modules"
    p = params
    samples = restricted_samples(study, list(study.modalities[p.modality].obs_names.astype(str)), p.restrict)
    X = modality_frame(study, p.modality, samples)
    if len(X) < 10:
        msg = f"{len(X)} samples; co-abundance modules need at least 10"
        raise ToolFailed(msg)
    X = X.loc[:, X.isna().mean() <= p.max_missing]
    sd = X.std()
    X = X.loc[:, sd > 0]
    if X.shape[1] < 2 * p.min_module_size:
        msg = f"only {X.shape[1]} features pass the missingness/variance filters"
        raise ToolFailed(msg)
    X = X[sd[X.columns].sort_values(ascending=False).index[: p.n_features]]
    Zs = ((X - X.mean()) / X.std()).fillna(0.0)
    M = Zs.rank().to_numpy() if p.method == "spearman" else Zs.to_numpy()
    C = np.corrcoef(M, rowvar=False)
    D = np.clip(1 - C, 0, 2)
    np.fill_diagonal(D, 0)
    tree = hierarchy.linkage(squareform(D, checks=False), method="average")
    if p.n_modules is not None:
        raw = hierarchy.fcluster(tree, p.n_modules, criterion="maxclust")
    else:
        raw = hierarchy.fcluster(tree, p.cut_height, criterion="distance")
    sizes = pd.Series(raw).value_counts()
    big = [c for c in sizes.index if sizes[c] >= p.min_module_size]
    rename = {c: f"M{i + 1}" for i, c in enumerate(big)}  # ordered by size
    labels = pd.Series([rename.get(c, "grey") for c in raw], index=X.columns)
    if not big:
        msg = (f"no cluster reached {p.min_module_size} features; lower min_module_size or raise cut_height "
               f"(largest cluster {int(sizes.max())})")
        raise ToolFailed(msg)
    kind = modality_kind(study, p.modality)
    ann = gene_annotation(study.modalities[p.modality], X.columns).set_index(X.columns)
    eig = {}
    members = []
    for m in rename.values():
        cols = labels.index[labels == m]
        e = _eigengene(Zs[cols].to_numpy())
        eig[m] = e
        kme = np.corrcoef(np.column_stack([e, Zs[cols].to_numpy()]), rowvar=False)[0, 1:]
        members.append(pd.DataFrame({"feature": cols, "gene": ann.loc[cols, "gene"].to_numpy(), "label": ann.loc[cols, "label"].to_numpy(),
                                     "module": m, "kME": kme}))
    membership = pd.concat(members).sort_values(["module", "kME"], ascending=[True, False]).reset_index(drop=True)
    eig_df = pd.DataFrame(eig, index=X.index)

    # eigengene vs clinical: Spearman for continuous, Kruskal-Wallis for categorical columns
    clin = study.clinical.reindex(X.index)
    cols = p.variables if p.variables is not None else list(map(str, study.clinical.columns))
    for c in cols:
        if c not in study.clinical.columns:
            msg = f"variable {c!r} is not a clinical column; columns include: {list(study.clinical.columns)[:40]}"
            raise ToolInputError(msg)
    rows, skipped = [], []
    for c in cols:
        k = clinical_kind(clin[c])
        if k is None or clin[c].notna().sum() < 10:
            skipped.append(c)
            continue
        for m, e in eig.items():
            ok = clin[c].notna().to_numpy()
            if k == "continuous":
                v = pd.to_numeric(clin[c], errors="coerce").to_numpy()
                ok &= np.isfinite(v)
                rho, pv = stats.spearmanr(e[ok], v[ok])
                rows.append(dict(module=m, variable=c, kind=k, test="spearman", effect=rho, effect_type="spearman_rho",
                                 p=pv, n=int(ok.sum())))
            else:
                g = clin[c].astype(str).to_numpy()
                groups = [e[ok & (g == lv)] for lv in np.unique(g[ok])]
                groups = [x for x in groups if len(x)]
                if len(groups) < 2:
                    continue
                h, pv = stats.kruskal(*groups)
                rows.append(dict(module=m, variable=c, kind=k, test="kruskal_wallis", effect=_kw_epsilon2(h, int(ok.sum())),
                                 effect_type="epsilon_squared", p=pv, n=int(ok.sum())))
    assoc = pd.DataFrame(rows, columns=["module", "variable", "kind", "test", "effect", "effect_type", "p", "n"])
    assoc["q"] = bh(assoc["p"].to_numpy()) if len(assoc) else []
    assoc = assoc.sort_values("p").reset_index(drop=True)
    sig = assoc[assoc["q"] < p.fdr]

    rels = []
    for m in rename.values():
        mod = Entity(type="module", label=f"{p.modality} {m}")
        hubs = membership[membership["module"] == m].head(p.n_hubs)
        size = int((labels == m).sum())
        for row in hubs.itertuples():
            rels.append(_rel(ctx, name, p, feature_entity(kind, row.label), "member_of", mod,
                             Stats(effect=float(row.kME), effect_type="kME", n=len(X), direction="positive",
                                   extra={"feature_id": str(row.feature), "module_size": size, "hub_rank": int(hubs.index.get_loc(row.Index)) + 1}),
                             p.modality))
    for row in sig.head(100).itertuples():
        rels.append(_rel(ctx, name, p, Entity(type="module", label=f"{p.modality} {row.module}"), "correlates_with",
                         Entity(type="clinical_variable", label=row.variable),
                         Stats(effect=float(row.effect), effect_type=row.effect_type, p=float(row.p), q=float(row.q),
                               n=int(row.n), direction=("positive" if row.effect > 0 else "negative")
                               if row.kind == "continuous" else "none", extra={"test": row.test}),
                         p.modality))

    order = hierarchy.leaves_list(tree)
    figures = []
    if ctx.figures:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.5, 5))
        ax = fig.subplots()
        im = ax.imshow(C[np.ix_(order, order)], cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{p.modality}: {len(rename)} modules from {X.shape[1]} features", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.7, label=f"{p.method} r")
        path = ctx.figure_path(f"coabundance_modules_{p.modality}")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        figures.append(path)

    sizes_txt = ", ".join(f"{m} ({int((labels == m).sum())})" for m in rename.values())
    top = "; ".join(f"{r.module}~{r.variable} ({r.effect_type} {_fmt(r.effect)}, q={_fmt(r.q)})" for r in sig.head(5).itertuples())
    summary = (f"{len(rename)} co-abundance modules among the {X.shape[1]} most variable {p.modality} features over "
               f"{len(X)} samples: {sizes_txt}; {int((labels == 'grey').sum())} features unassigned. "
               f"{len(sig)} of {len(assoc)} eigengene-clinical tests significant at BH q<{p.fdr}"
               + (f": {top}." if top else "."))
    return ToolResult(
        summary=summary,
        tables={"membership": membership, "eigengenes": eig_df.reset_index(names="sample"), "associations": assoc},
        figures=figures,
        relations=rels,
        metrics={"n_tested": len(assoc), "n_significant": len(sig), "n_modules": len(rename),
                 "n_features": int(X.shape[1]), "n_unassigned": int((labels == "grey").sum()),
                 "n_skipped": len(skipped), "n_samples": len(X)},
    )
