"""Quality control and preprocessing of bulk layers: missingness, valid-value filter, normalisation,
imputation, batch effects and PCA outliers.

Design decision (documented here because every preprocessing tool follows it): a tool never
changes a layer in place. Each transformation is a pure function on an AnnData
(:func:`filter_valid`, :func:`normalize_layer`, :func:`impute_layer`) that returns a new AnnData;
the registered tool reports what the transformation does (counts, figures) and only when the call
names ``write_as`` adds the result to the study as a **new** modality under that name (an existing
name is refused), so the original stays available and every later step says which layer it used.

Conventions: values are on the log scale (zeros already NaN); valid-value filter modes follow
Perseus (``total``, ``each_group``, ``any_group``, min 3); down-shift imputation follows Perseus
(per sample, N(mean - 1.8 sd, (0.3 sd)^2), seeded by the run seed) and keeps a mask in
``layers["imputed"]``; kNN imputation uses neighbouring features (as R ``impute.knn``).
"""

from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from proteus.records import Entity, Relation, Stats, ToolResult
from proteus.stats.multitest import bh
from proteus.stats.sample_outliers import OUTLIER_Z, robust_z
from proteus.study import Study
from proteus.tools.registry import ToolContext, ToolFailed, ToolInputError, register

__all__ = [
    "filter_valid",
    "normalize_layer",
    "impute_layer",
    "pca_scores",
    "missingness_report",
    "filter_valid_values",
    "normalize",
    "impute",
    "batch_check",
    "pca_qc",
]


# --- pure functions on AnnData ----------------------------------------------------------------


def _values(adata: ad.AnnData) -> np.ndarray:
    X = np.array(adata.X, dtype=float, copy=True)
    X[~np.isfinite(X)] = np.nan
    return X


def _looks_linear(X: np.ndarray) -> bool:
    return bool(np.nanmin(X) >= 0 and np.nanmax(X) > 100)


def filter_valid(adata: ad.AnnData, *, min_count: int = 3, mode: str = "total",
                 groups: pd.Series | None = None) -> tuple[ad.AnnData, pd.DataFrame]:
    """Perseus valid-value filter; returns the kept features and a per-feature table.

    Parameters
    ----------
    adata : AnnData
        obs = samples, var = features, NaN = missing.
    min_count : int
        Minimum number of valid values.
    mode : {"total", "each_group", "any_group"}
        Count over all samples, require ``min_count`` in every group, or in at least one group.
    groups : Series, optional
        Group of each sample (aligned to ``adata.obs_names``; NaN samples count in no group).

    Returns
    -------
    filtered : AnnData
        A copy with the kept features; ``uns["filter_valid"]`` records the parameters.
    table : DataFrame
        ``feature, n_valid, kept`` (+ ``n_valid_<group>`` per group).
    """
    X = _values(adata)
    valid = np.isfinite(X)
    table = pd.DataFrame({"feature": adata.var_names.astype(str), "n_valid": valid.sum(0)})
    if mode == "total":
        keep = table["n_valid"].to_numpy() >= min_count
    else:
        if groups is None:
            msg = f"mode {mode!r} needs groups"
            raise ValueError(msg)
        g = pd.Series(np.asarray(groups), index=adata.obs_names)
        per = {}
        for lv in sorted(g.dropna().astype(str).unique()):
            per[lv] = valid[(g.astype(str) == lv).to_numpy() & g.notna().to_numpy()].sum(0)
            table[f"n_valid_{lv}"] = per[lv]
        M = np.column_stack(list(per.values()))
        keep = (M >= min_count).all(1) if mode == "each_group" else (M >= min_count).any(1)
    table["kept"] = keep
    out = adata[:, keep].copy()
    out.uns["filter_valid"] = {"min_count": min_count, "mode": mode}
    return out, table


def _glog_calibrated(X: np.ndarray) -> tuple[np.ndarray, float]:
    """Variance-stabilising generalised log of log2 intensities, then median centring (a VSN-like transform).

    Intensities :math:`y = 2^x` follow the two-component error model
    :math:`\\operatorname{var}(y) = \\sigma_a^2 + \\sigma_m^2 \\mu^2` (Rocke & Durbin 2001,
    doi:10.1089/106652701300099074), fitted as the squared CV against :math:`1/\\mu^2` on the medians of 20
    abundance bins of the features. :math:`\\operatorname{glog}_2(y) = \\log_2((y + \\sqrt{y^2 + c^2})/2)` with
    :math:`c = \\sigma_a / \\sigma_m` makes the variance constant (Durbin et al. 2002,
    doi:10.1093/bioinformatics/18.suppl_1.S105; the idea of VSN, Huber et al. 2002,
    doi:10.1093/bioinformatics/18.suppl_1.S96); it equals log2 well above :math:`c`. Samples are then
    median-centred on that scale. Returns the values and :math:`c` (0: no additive noise, plain log2).
    """
    Y = np.exp2(X)
    n = np.isfinite(Y).sum(0)
    ok = n >= 3
    mu, var = np.nanmean(Y[:, ok], 0), np.nanvar(Y[:, ok], 0, ddof=1)
    c = 0.0
    if ok.sum() >= 40:
        # squared CV = sigma_m^2 + sigma_a^2 / mu^2: a line in 1 / mu^2, well scaled at every abundance
        bins = np.array_split(np.argsort(mu), 20)
        inv = np.array([np.median(1 / mu[b] ** 2) for b in bins])
        cv2 = np.array([np.median(var[b] / mu[b] ** 2) for b in bins])
        sa2, sm2 = np.polyfit(inv, cv2, 1)
        if sa2 > 0 and sm2 > 0:
            c = float(np.sqrt(sa2 / sm2))
    G = np.log2((Y + np.sqrt(Y**2 + c**2)) / 2)
    med = np.nanmedian(G, axis=1)
    return G - med[:, None] + np.nanmean(med), c


def normalize_layer(adata: ad.AnnData, *, method: str = "median") -> ad.AnnData:
    """Normalise samples on the log scale.

    ``median``: subtract each sample's median and add back the mean of the medians (keeps the
    scale). ``quantile``: give every sample the same distribution (mean of the sorted samples,
    interpolated for samples with missing values, as limma ``normalizeQuantiles``; Bolstad et al.
    2003, doi:10.1093/bioinformatics/19.2.185). ``vsn``: for log2 intensities, a variance-stabilising
    generalised log with median centring (:func:`_glog_calibrated`; ``uns["normalization"]["glog_c"]``).
    """
    X = _values(adata)
    if method == "median":
        med = np.nanmedian(X, axis=1)
        Xn = X - med[:, None] + np.nanmean(med)
    elif method == "quantile":
        from scipy import stats  # imported when used: scipy.stats alone takes ~0.4 s

        n, _ = X.shape
        nobs = np.isfinite(X).sum(1)
        m = int(nobs.max())
        grid = np.linspace(0, 1, m)
        ref = np.zeros(m)
        for i in range(n):
            v = np.sort(X[i][np.isfinite(X[i])])
            ref += np.interp(grid, np.linspace(0, 1, v.size), v) if v.size > 1 else np.full(m, v[0] if v.size else 0)
        ref /= max(n, 1)
        Xn = np.full_like(X, np.nan)
        for i in range(n):
            ok = np.isfinite(X[i])
            if ok.sum() == 0:
                continue
            r = stats.rankdata(X[i][ok])  # ties get the average rank
            pos = (r - 1) / max(ok.sum() - 1, 1)
            Xn[i, ok] = np.interp(pos, grid, ref)
    elif method == "vsn":
        Xn, c = _glog_calibrated(X)
    else:
        msg = f"unknown normalisation {method!r}; use 'median', 'quantile' or 'vsn'"
        raise ValueError(msg)
    out = adata.copy()
    out.X = Xn
    out.uns["normalization"] = {"method": method} | ({"glog_c": c} if method == "vsn" else {})
    return out


def impute_layer(adata: ad.AnnData, *, method: str = "downshift", shift: float = 1.8, width: float = 0.3,
                 k: int = 5, seed: int = 0) -> ad.AnnData:
    """Impute missing values; the mask of imputed cells goes to ``layers["imputed"]``.

    ``downshift`` (Perseus): per sample, missing values are drawn from
    :math:`N(\\mu - \\text{shift}\\cdot\\sigma, (\\text{width}\\cdot\\sigma)^2)` of that sample's
    valid values (Tyanova et al. 2016, doi:10.1038/nmeth.3901). ``knn``: mean of the ``k`` nearest
    features (nan-Euclidean over samples), as R ``impute.knn`` (Troyanskaya et al. 2001,
    doi:10.1093/bioinformatics/17.6.520); features without any value stay NaN.
    """
    X = _values(adata)
    miss = np.isnan(X)
    if method == "downshift":
        rng = np.random.default_rng(seed)
        Xi = X.copy()
        for i in range(X.shape[0]):
            v = X[i][~miss[i]]
            if v.size < 2 or not miss[i].any():
                continue
            mu, sd = v.mean(), v.std(ddof=1)
            Xi[i, miss[i]] = rng.normal(mu - shift * sd, width * sd, size=int(miss[i].sum()))
    elif method == "knn":
        try:
            from sklearn.impute import KNNImputer
        except ImportError as e:  # pragma: no cover
            e.add_note("kNN imputation needs scikit-learn: pip install scikit-learn")
            raise
        F = X.T  # features x samples: neighbours are features
        has = np.isfinite(F).any(1)
        Fi = F.copy()
        Fi[has] = KNNImputer(n_neighbors=k, keep_empty_features=True).fit_transform(F[has])
        Xi = Fi.T
        Xi[:, ~has] = np.nan
    else:
        msg = f"unknown imputation {method!r}; use 'downshift' or 'knn'"
        raise ValueError(msg)
    out = adata.copy()
    out.X = Xi
    out.layers["imputed"] = miss & np.isfinite(Xi)
    out.uns["imputation"] = {"method": method, "shift": shift, "width": width, "k": k, "seed": seed}
    return out


def pca_scores(adata: ad.AnnData, *, n_components: int = 5, max_missing: float = 0.2) -> tuple[np.ndarray, np.ndarray, int]:
    """PCA of samples on features with at most ``max_missing`` missing (mean-imputed per feature).

    Returns scores (samples x components), explained-variance ratios, and the number of features used.
    """
    X = _values(adata)
    keep = np.isnan(X).mean(0) <= max_missing
    keep[keep] = np.nanstd(X[:, keep], axis=0) > 0  # only where values are left (no all-missing slice)
    if keep.sum() < 3:
        msg = f"only {int(keep.sum())} features have <= {max_missing:.0%} missing values; PCA needs more"
        raise ToolFailed(msg)
    Z = X[:, keep]
    Z = Z - np.nanmean(Z, 0)
    Z[np.isnan(Z)] = 0.0
    # scores from the eigen-decomposition of the small samples x samples Gram matrix (= SVD of Z)
    ev, U = np.linalg.eigh(Z @ Z.T)
    ev, U = np.clip(ev[::-1], 0, None), U[:, ::-1]
    k = min(n_components, len(ev) - 1) if len(ev) > 1 else 1
    U = U * np.where(U[np.argmax(np.abs(U), axis=0), np.arange(U.shape[1])] < 0, -1, 1)  # deterministic signs
    return U[:, :k] * np.sqrt(ev[:k]), ev[:k] / ev.sum(), int(keep.sum())


# --- tools ------------------------------------------------------------------------------------


def _bulk(study: Study, modality: str) -> ad.AnnData:
    a = study.modalities[modality]
    if a.uns.get("level", "sample") != "sample":
        msg = f"{modality!r} is a cell-level layer; these QC tools take sample-level (bulk) layers"
        raise ToolInputError(msg)
    if a.n_obs < 3 or a.n_vars < 3:
        msg = f"{modality!r} has {a.n_obs} samples x {a.n_vars} features; too small for QC"
        raise ToolFailed(msg)
    return a


def _subplots(*grid: int, figsize: tuple[float, float], **kw):
    """A matplotlib ``Figure`` (no pyplot state) and its axes; matplotlib is imported here, so a call
    that draws nothing (``ToolContext.figures`` off) never imports it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kw)


def _save(ctx: ToolContext, fig, name: str):
    path = ctx.figure_path(name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _write(study: Study, name: str | None, adata: ad.AnnData) -> str | None:
    if name is None:
        return None
    if name in study.modalities:
        msg = f"write_as {name!r} already names a loaded modality; choose a new name"
        raise ToolInputError(msg)
    study.modalities[name] = adata
    return name


def _clinical_column(study: Study, column: str | None, what: str) -> None:
    if column is not None and column not in study.clinical.columns:
        msg = f"{what} {column!r} is not a clinical column; columns include: {list(map(str, study.clinical.columns))[:40]}"
        raise ToolInputError(msg)


MIN_DEPENDENCE_RHO = 0.1
"""|Spearman rho| of feature mean vs missing fraction from which missingness is called intensity-dependent:
the bound of a small correlation (Cohen, *Statistical power analysis for the behavioral sciences*, 2nd ed. 1988)."""


def missingness_type(rho: float, p: float, alpha: float = 0.05) -> str:
    """What the correlation of feature mean with missing fraction (Spearman ``rho``, its ``p``) says of the missingness.

    Intensity-dependent when the correlation is significant (``p < alpha``) and at least
    :data:`MIN_DEPENDENCE_RHO` in size: negative (low-intensity features missing more often, left censoring)
    is ``"MNAR-like (intensity-dependent)"``, the pattern down-shift imputation or a censored model suits
    (Lazar et al. 2016, doi:10.1021/acs.jproteome.5b00981); positive is said as such. Otherwise no intensity
    dependence is seen (``"MAR-like"``); ``"undetermined"`` without a correlation.
    """
    if rho is None or p is None or not (np.isfinite(rho) and np.isfinite(p)):
        return "undetermined"
    if p < alpha and rho <= -MIN_DEPENDENCE_RHO:
        return "MNAR-like (intensity-dependent)"
    if p < alpha and rho >= MIN_DEPENDENCE_RHO:
        return "intensity-dependent (high-intensity features missing more often)"
    return "MAR-like (no intensity dependence)"


class MissingnessParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="bulk layer to describe")
    group: str | None = Field(None, description="optional clinical column: missingness is also summarised per group")


@register("missingness_report", family="qc", params=MissingnessParams, requires=("bulk",))
def missingness_report(study: Study, params: MissingnessParams, ctx: ToolContext) -> ToolResult:
    """Describe missing values of a layer per sample and per feature, and whether they look missing-not-at-random (low-abundance features missing more often, a Spearman correlation of feature mean with missing fraction), optionally per group.

    The call follows :func:`missingness_type`: a significant correlation of at least Cohen's small size
    says the missingness depends on intensity.
    """
    from scipy import stats  # imported when used: scipy.stats alone takes ~0.4 s

    a = _bulk(study, params.modality)
    X = _values(a)
    miss = np.isnan(X)
    per_sample = pd.DataFrame({"sample": a.obs_names.astype(str), "missing_fraction": miss.mean(1),
                               "n_valid": (~miss).sum(1)})
    frac = miss.mean(0)
    observed = ~miss.all(0)  # a feature missing everywhere has no mean (NaN), without numpy's empty-slice warning
    means = np.full(X.shape[1], np.nan)
    means[observed] = np.nanmean(np.where(miss, np.nan, X)[:, observed], 0)
    per_feature = pd.DataFrame({"feature": a.var_names.astype(str), "missing_fraction": frac, "mean": means})
    ok = np.isfinite(means) & (frac > 0) & (frac < 1)
    rho, rho_p = (stats.spearmanr(means[ok], frac[ok]) if ok.sum() > 10 and np.ptp(frac[ok]) > 0 else (np.nan, np.nan))
    hint = missingness_type(rho, rho_p)
    complete = int((frac == 0).sum())
    tables = {"per_sample": per_sample, "per_feature": per_feature}
    metrics = {
        "missing_fraction": float(miss.mean()), "n_complete_features": complete,
        "n_all_missing_features": int((frac == 1).sum()), "n_features_over_50pct": int((frac > 0.5).sum()),
        "spearman_mean_vs_missing": None if not np.isfinite(rho) else float(rho), "spearman_p": None
        if not np.isfinite(rho_p) else float(rho_p), "missingness_type_hint": hint,
        "worst_sample": str(per_sample.sort_values("missing_fraction").iloc[-1]["sample"]),
    }
    if params.group:
        _clinical_column(study, params.group, "group")
        g = study.sample_table(params.modality)[params.group]
        by = per_sample.assign(group=g.to_numpy()).dropna(subset=["group"]).groupby("group")["missing_fraction"]
        tables["per_group"] = by.agg(["mean", "median", "count"]).reset_index()
        groups = [v.to_numpy() for _, v in by]
        if len(groups) >= 2 and all(len(v) >= 2 for v in groups):
            metrics["kruskal_p_missing_by_group"] = float(stats.kruskal(*groups).pvalue)
    figures = []
    if ctx.figures:
        fig, ax = _subplots(1, 2, figsize=(10, 4))
        ax[0].hist(per_sample["missing_fraction"], bins=30, color="tab:gray")
        ax[0].set_xlabel("missing fraction per sample")
        ax[0].set_ylabel("samples")
        ax[1].scatter(means[ok], frac[ok], s=4, alpha=0.4)
        ax[1].set_xlabel("feature mean (observed)")
        ax[1].set_ylabel("missing fraction")
        ax[1].set_title(f"Spearman rho = {rho:.2f}: {hint}", fontsize=9)
        fig.suptitle(f"{params.modality}: {miss.mean():.1%} missing, {complete} complete features", fontsize=10)
        figures.append(_save(ctx, fig, f"missingness_{params.modality}"))
    summary = (f"{params.modality}: {miss.mean():.1%} of values missing; {complete} of {a.n_vars} features complete, "
               f"{metrics['n_features_over_50pct']} over 50% missing; per-sample missingness "
               f"{per_sample['missing_fraction'].min():.1%}-{per_sample['missing_fraction'].max():.1%}; "
               f"feature mean vs missing fraction Spearman rho = {rho:.2f}" + (f", p={rho_p:.1g}" if np.isfinite(rho_p) else "")
               + f" ({hint}).")
    return ToolResult(summary=summary, tables=tables, figures=figures, metrics=metrics)


class FilterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="bulk layer to filter")
    min_count: int = Field(3, ge=1, description="minimum number of valid (non-missing) values (Perseus default 3)")
    mode: Literal["total", "each_group", "any_group"] = Field(
        "total", description="count valid values in total, in each group, or in at least one group (Perseus modes)")
    group: str | None = Field(None, description="clinical column defining groups (needed for each_group / any_group)")
    write_as: str | None = Field(None, description="if set, add the filtered layer to the study under this new "
                                 "modality name; otherwise only report")


@register("filter_valid_values", family="qc", params=FilterParams, requires=("bulk",))
def filter_valid_values(study: Study, params: FilterParams, ctx: ToolContext) -> ToolResult:
    """Apply a Perseus-style valid-value filter (at least min_count values in total, in each group, or in any group) and report how many features it keeps; with write_as the filtered layer is added to the study as a new modality (the original is never changed)."""
    a = _bulk(study, params.modality)
    groups = None
    if params.mode != "total":
        if params.group is None:
            msg = f"mode {params.mode!r} needs `group` (a clinical column)"
            raise ToolInputError(msg)
        _clinical_column(study, params.group, "group")
        groups = study.sample_table(params.modality)[params.group]
    out, table = filter_valid(a, min_count=params.min_count, mode=params.mode, groups=groups)
    if out.n_vars == 0:
        msg = f"no feature of {params.modality!r} passes {params.min_count} valid values ({params.mode})"
        raise ToolFailed(msg)
    out.uns["modality"] = a.uns.get("modality", params.modality)
    written = _write(study, params.write_as, out)
    n0, n1 = a.n_vars, out.n_vars
    figures = []
    if ctx.figures:
        fig, ax = _subplots(figsize=(5, 4))
        ax.hist(table["n_valid"], bins=min(50, a.n_obs + 1), color="tab:gray")
        ax.axvline(params.min_count - 0.5, c="tab:red")
        ax.set_xlabel("valid values per feature")
        ax.set_ylabel("features")
        ax.set_title(f"{params.modality}: keep {n1}/{n0} ({params.mode} >= {params.min_count})", fontsize=9)
        figures.append(_save(ctx, fig, f"valid_values_{params.modality}"))
    metrics = {"n_before": n0, "n_after": n1, "n_removed": n0 - n1, "mode": params.mode,
               "min_count": params.min_count, "new_modality": written}
    summary = (f"Valid-value filter on {params.modality} ({params.mode}, >= {params.min_count}): keeps {n1} of {n0} "
               f"features, removes {n0 - n1}" + (f"; written as modality {written!r}." if written else
                                                  " (report only; set write_as to keep the result)."))
    return ToolResult(summary=summary, tables={"features": table}, figures=figures, metrics=metrics)


class NormalizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="bulk layer (log scale) to normalise")
    method: Literal["median", "quantile", "vsn"] = Field(
        "median", description="median centring, quantile normalisation, or 'vsn' (log2 intensities only: "
        "variance-stabilising generalised log, then median centring)")
    write_as: str | None = Field(None, description="if set, add the normalised layer under this new modality name")


@register("normalize", family="qc", params=NormalizeParams, requires=("bulk",))
def normalize(study: Study, params: NormalizeParams, ctx: ToolContext) -> ToolResult:
    """Normalise samples of a log-scale layer by median centring or quantile normalisation and report the spread of sample medians before and after; with write_as the result is added as a new modality."""
    a = _bulk(study, params.modality)
    X = _values(a)
    if _looks_linear(X):
        msg = f"{params.modality!r} looks unlogged (min >= 0, max > 100); log2-transform it before normalising"
        raise ToolFailed(msg)
    out = normalize_layer(a, method=params.method)
    med0, med1 = np.nanmedian(X, 1), np.nanmedian(np.asarray(out.X), 1)
    written = _write(study, params.write_as, out)
    figures = []
    if ctx.figures:
        fig, ax = _subplots(1, 2, figsize=(10, 4), sharey=True)
        order = np.argsort(med0)
        for axis, M, t in ((ax[0], X, "before"), (ax[1], np.asarray(out.X), "after")):
            axis.boxplot([v[np.isfinite(v)] for v in M[order]], showfliers=False, widths=0.6)
            axis.set_xticks([])
            axis.set_title(f"{t} ({params.method})", fontsize=9)
        ax[0].set_ylabel("log value")
        figures.append(_save(ctx, fig, f"normalize_{params.modality}"))
    metrics = {"median_sd_before": float(np.nanstd(med0)), "median_sd_after": float(np.nanstd(med1)),
               "method": params.method, "new_modality": written}
    summary = (f"{params.method} normalisation of {params.modality}: SD of sample medians "
               f"{metrics['median_sd_before']:.3f} -> {metrics['median_sd_after']:.3f}"
               + (f"; written as modality {written!r}." if written else " (report only)."))
    return ToolResult(summary=summary, tables={"sample_medians": pd.DataFrame(
        {"sample": a.obs_names.astype(str), "median_before": med0, "median_after": med1})},
        figures=figures, metrics=metrics)


class ImputeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="bulk layer (log scale) to impute")
    method: Literal["downshift", "knn"] = Field("downshift", description="Perseus down-shifted normal draws, or kNN")
    shift: float = Field(1.8, description="down-shift in sample SDs (Perseus 1.8)")
    width: float = Field(0.3, gt=0, description="width of the imputation distribution in sample SDs (Perseus 0.3)")
    k: int = Field(5, ge=1, description="neighbours for kNN imputation")
    write_as: str | None = Field(None, description="if set, add the imputed layer (mask in layers['imputed']) under "
                                 "this new modality name")


@register("impute", family="qc", params=ImputeParams, requires=("bulk",))
def impute(study: Study, params: ImputeParams, ctx: ToolContext) -> ToolResult:
    """Impute missing values of a log-scale layer (Perseus down-shift from N(mean - 1.8 sd, (0.3 sd)^2) per sample with the run seed, or kNN), keep a mask of imputed values, and report how many were imputed per sample; with write_as the result is added as a new modality."""
    a = _bulk(study, params.modality)
    X = _values(a)
    if _looks_linear(X):
        msg = f"{params.modality!r} looks unlogged (min >= 0, max > 100); log2-transform it before imputing"
        raise ToolFailed(msg)
    if not np.isnan(X).any():
        msg = f"{params.modality!r} has no missing values; nothing to impute"
        raise ToolFailed(msg)
    out = impute_layer(a, method=params.method, shift=params.shift, width=params.width, k=params.k, seed=ctx.seed)
    mask = np.asarray(out.layers["imputed"])
    left = int(np.isnan(np.asarray(out.X)).sum())
    written = _write(study, params.write_as, out)
    figures = []
    if ctx.figures:
        fig, ax = _subplots(figsize=(6, 4))
        Xo = np.asarray(out.X)
        ax.hist(Xo[~mask & np.isfinite(Xo)], bins=80, alpha=0.6, label="measured", density=True)
        ax.hist(Xo[mask], bins=80, alpha=0.6, label="imputed", density=True)
        ax.legend()
        ax.set_xlabel("log value")
        ax.set_title(f"{params.modality}: {mask.sum()} values imputed ({params.method})", fontsize=9)
        figures.append(_save(ctx, fig, f"impute_{params.modality}"))
    per_sample = pd.DataFrame({"sample": a.obs_names.astype(str), "n_imputed": mask.sum(1)})
    metrics = {"n_imputed": int(mask.sum()), "fraction_imputed": float(mask.mean()), "n_left_missing": left,
               "method": params.method, "seed": ctx.seed, "new_modality": written}
    summary = (f"{params.method} imputation of {params.modality}: {mask.sum()} values ({mask.mean():.1%}) imputed"
               f", {left} left missing (features with no value)" + (f"; written as {written!r}." if written else
                                                                   " (report only)."))
    return ToolResult(summary=summary, tables={"per_sample": per_sample}, figures=figures, metrics=metrics)


class BatchParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="bulk layer to check")
    batch: str = Field(description="clinical column naming the batch, e.g. a TMT plex or run date")
    n_components: int = Field(5, ge=1, le=20, description="number of principal components tested")
    max_missing: float = Field(0.2, ge=0, le=1, description="features with more missing values are left out of PCA")


@register("batch_check", family="qc", params=BatchParams, requires=("bulk", "clinical"))
def batch_check(study: Study, params: BatchParams, ctx: ToolContext) -> ToolResult:
    """Test whether a batch-like clinical column (e.g. TMT plex) explains the main axes of variation: Kruskal-Wallis of principal components 1..n by batch, with BH over components; significant components give associated_with relations."""
    from scipy import stats  # imported when used: scipy.stats alone takes ~0.4 s

    _clinical_column(study, params.batch, "batch")
    a = _bulk(study, params.modality)
    b = study.sample_table(params.modality)[params.batch]
    ok = b.notna().to_numpy()
    if b[ok].nunique() < 2:
        msg = f"{params.batch!r} has fewer than 2 levels among samples of {params.modality!r}"
        raise ToolFailed(msg)
    if b[ok].nunique() == int(ok.sum()):
        msg = f"every level of {params.batch!r} holds one sample: a batch effect cannot be told from sample-to-sample variation"
        raise ToolFailed(msg)
    scores, var, n_feat = pca_scores(a[ok], n_components=params.n_components, max_missing=params.max_missing)
    bb = b[ok].astype(str).to_numpy()
    levels = sorted(set(bb))
    rows = []
    for k in range(scores.shape[1]):
        groups = [scores[bb == lv, k] for lv in levels]
        H, pv = stats.kruskal(*groups)
        n, g = len(bb), len(levels)
        rows.append({"component": f"PC{k + 1}", "variance_ratio": float(var[k]), "H": float(H), "p": float(pv),
                     "eta_squared": float(max(0.0, (H - g + 1) / (n - g)))})
    table = pd.DataFrame(rows)
    table["q"] = bh(table["p"].to_numpy())
    prov = ctx.provenance_for("batch_check", params)
    relations = [
        Relation(subject=Entity(type="module", label=f"{params.modality} {r['component']}"),
                 predicate="associated_with", object=Entity(type="clinical_variable", label=params.batch),
                 stats=Stats(effect=r["eta_squared"], effect_type="eta_squared", p=r["p"], q=r["q"], n=int(ok.sum()),
                             extra={"variance_ratio": r["variance_ratio"], "H": r["H"], "test": "kruskal"}),
                 modality=params.modality, provenance=prov)
        for _, r in table.loc[table["q"] < 0.05].iterrows()
    ]
    figures = []
    if ctx.figures:
        fig, ax = _subplots(1, 2, figsize=(10, 4))
        for lv in levels:
            m = bb == lv
            ax[0].scatter(scores[m, 0], scores[m, 1] if scores.shape[1] > 1 else np.zeros(m.sum()), s=14, label=lv)
        ax[0].set_xlabel(f"PC1 ({var[0]:.0%})")
        ax[0].set_ylabel(f"PC2 ({var[1]:.0%})" if len(var) > 1 else "")
        ax[0].legend(title=params.batch, fontsize=7)
        ax[1].bar(table["component"], -np.log10(table["p"]))
        ax[1].axhline(-np.log10(0.05), c="tab:red", lw=1)
        ax[1].set_ylabel("-log10 p (Kruskal-Wallis)")
        figures.append(_save(ctx, fig, f"batch_{params.modality}_{params.batch}".replace(" ", "_")))
    hit = table.loc[table["q"] < 0.05, "component"].tolist()
    summary = (f"PCA of {params.modality} ({n_feat} features, {int(ok.sum())} samples) vs {params.batch} "
               f"({len(levels)} levels): " + (f"batch associated with {', '.join(hit)} (q < 0.05); consider it as a "
                                              "covariate." if hit else "no component associated with batch (q >= 0.05)."))
    metrics = {"n_components_associated": len(hit), "components_associated": hit, "n_features_used": n_feat,
               "min_p": float(table["p"].min())}
    return ToolResult(summary=summary, tables={"components": table}, figures=figures, relations=relations,
                      metrics=metrics)


class PcaQcParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="bulk layer to check")
    group: str | None = Field(None, description="optional clinical column used to colour samples")
    n_components: int = Field(5, ge=2, le=20, description="principal components used for outlier detection")
    max_missing: float = Field(0.2, ge=0, le=1, description="features with more missing values are left out of PCA")
    z_threshold: float = Field(OUTLIER_Z, gt=0, description="robust z (median/MAD) beyond which a sample is flagged")


@register("pca_qc", family="qc", params=PcaQcParams, requires=("bulk",))
def pca_qc(study: Study, params: PcaQcParams, ctx: ToolContext) -> ToolResult:
    """Principal component analysis of samples with outlier flags (robust z of PC scores beyond z_threshold, or Mahalanobis distance on the first components beyond the chi-square 0.999 quantile) and a score plot coloured by an optional group."""
    from scipy import stats  # imported when used: scipy.stats alone takes ~0.4 s

    a = _bulk(study, params.modality)
    _clinical_column(study, params.group, "group")
    scores, var, n_feat = pca_scores(a, n_components=params.n_components, max_missing=params.max_missing)
    rz = np.abs(robust_z(scores, axis=0))
    C = np.cov(scores, rowvar=False)
    d2 = np.einsum("ij,jk,ik->i", scores - scores.mean(0), np.linalg.pinv(np.atleast_2d(C)), scores - scores.mean(0))
    cut = stats.chi2.ppf(0.999, scores.shape[1])
    flag_z = rz.max(1) > params.z_threshold
    flag_m = d2 > cut
    table = pd.DataFrame({"sample": a.obs_names.astype(str),
                          **{f"PC{k + 1}": scores[:, k] for k in range(scores.shape[1])},
                          "max_robust_z": rz.max(1), "mahalanobis_d2": d2,
                          "outlier": flag_z | flag_m})
    table["reason"] = np.where(flag_z & flag_m, "robust z and Mahalanobis",
                               np.where(flag_z, "robust z", np.where(flag_m, "Mahalanobis", "")))
    out = table["outlier"].to_numpy()
    figures = []
    if ctx.figures:
        fig, ax = _subplots(figsize=(6, 5))
        if params.group:
            g = study.sample_table(params.modality)[params.group].astype(object).fillna("NA").astype(str).to_numpy()
            for lv in sorted(set(g)):
                m = g == lv
                ax.scatter(scores[m, 0], scores[m, 1], s=14, label=lv)
            ax.legend(title=params.group, fontsize=7)
        else:
            ax.scatter(scores[:, 0], scores[:, 1], s=14)
        ax.scatter(scores[out, 0], scores[out, 1], s=60, facecolors="none", edgecolors="k", label="outlier")
        for i in np.flatnonzero(out):
            ax.annotate(table["sample"].iloc[i], (scores[i, 0], scores[i, 1]), fontsize=7)
        ax.set_xlabel(f"PC1 ({var[0]:.0%})")
        ax.set_ylabel(f"PC2 ({var[1]:.0%})")
        figures.append(_save(ctx, fig, f"pca_{params.modality}"))
    outl = table.loc[out, "sample"].tolist()
    metrics = {"n_outliers": len(outl), "outliers": outl, "variance_ratio": [float(v) for v in var],
               "n_features_used": n_feat}
    summary = (f"PCA of {params.modality} ({n_feat} features with <= {params.max_missing:.0%} missing): PC1 "
               f"{var[0]:.0%}, PC2 {var[1]:.0%} of variance; {len(outl)} outlier sample(s)"
               + (f": {', '.join(outl[:10])}" if outl else "") + ".")
    return ToolResult(summary=summary, tables={"scores": table}, figures=figures, metrics=metrics)
