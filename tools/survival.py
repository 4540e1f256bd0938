"""Survival tools: per-feature Cox models, Kaplan-Meier with log-rank, and grouping-clinical association.

``cox_per_feature`` fits, for every feature *j* separately, the Cox proportional-hazards model

.. math::

    h_i(t) = h_0(t)\\exp(\\beta_j x_{ij} + \\gamma^\\top z_i)

by Newton-Raphson on Efron's partial likelihood for tied event times (Efron 1977,
doi:10.1080/01621459.1977.10480613), vectorised over features. It is the model
``lifelines.CoxPHFitter`` fits (Efron ties, Wald test); ``tests/test_survival.py`` pins the
coefficients, standard errors and p-values to lifelines on GSE7390 (Desmedt 2007).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from proteus.records import Entity, Stats, ToolResult, feature_entity
from proteus.stats.design import dropped_text, usable_covariates
from proteus.stats.features import agrees_with_canonical, canonical_features, feature_genes, gene_annotation
from proteus.stats.multitest import bh
from proteus.study import Study
from proteus.tools.correlation import (
    _rel,
    associate_grouping,
    covariate_matrix,
    modality_frame,
    modality_kind,
    restricted_samples,
)
from proteus.tools._plots import volcano
from proteus.tools.registry import ToolContext, ToolFailed, ToolInputError, register

__all__ = ["cox_per_feature", "kaplan_meier", "cluster_clinical_association", "cox_efron", "event_indicator"]

_EVENT_WORDS = {"1", "true", "yes", "dead", "deceased", "died", "event", "relapse", "recurrence", "progression"}
_CENSOR_WORDS = {"0", "false", "no", "alive", "living", "censored", "none", "no event"}


def event_indicator(s: pd.Series) -> pd.Series:
    """Event column as 1.0/0.0/NaN from bool, 0/1 numbers or words (dead/alive, yes/no, ...)."""
    if s.dtype == bool:
        return s.astype(float)
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().sum() == s.notna().sum():
        vals = set(num.dropna().unique())
        if not vals <= {0, 1}:
            msg = f"event column {s.name!r} must be 0/1 (or bool / dead-alive words); found values {sorted(vals)[:10]}"
            raise ToolInputError(msg)
        return num.astype(float)
    out = pd.Series(np.nan, index=s.index)
    low = s.astype(str).str.strip().str.lower()
    out[low.isin(_EVENT_WORDS)] = 1.0
    out[low.isin(_CENSOR_WORDS)] = 0.0
    unknown = sorted(set(low[s.notna() & out.isna()]))
    if unknown:
        msg = f"event column {s.name!r} has values not read as event/censored: {unknown[:10]}"
        raise ToolInputError(msg)
    return out


def _survival_frame(study: Study, time: str, event: str, samples: list[str]) -> pd.DataFrame:
    clin = study.clinical.reindex(samples)
    t = pd.to_numeric(clin[time], errors="coerce")
    if clin[time].notna().sum() and t.notna().sum() < 0.95 * clin[time].notna().sum():
        msg = f"time column {time!r} is not numeric"
        raise ToolInputError(msg)
    e = event_indicator(clin[event])
    df = pd.DataFrame({"time": t, "event": e}, index=clin.index).dropna()
    df = df[df["time"] >= 0]
    return df


# --------------------------------------------------------------------------------------------
# vectorised Cox (Efron ties)
# --------------------------------------------------------------------------------------------


def _efron_terms(D: np.ndarray, obs: np.ndarray, beta: np.ndarray, first: np.ndarray, E: np.ndarray,
                 dmax: int, need_derivs: bool = True):
    """Log partial likelihood (Efron), gradient and Hessian for a batch of models.

    D (F, n, p) designs over samples sorted by time, obs (F, n) which samples each model uses,
    beta (F, p), first (G,) position where each distinct event time's risk set starts,
    E (n, G) event-at-time indicator.
    """
    eta = np.einsum("fnp,fp->fn", D, beta)
    eta = np.where(obs, eta, -np.inf)
    m = np.max(eta, axis=1, keepdims=True)
    w = np.exp(eta - m)  # 0 for unused samples
    evi = obs * E.sum(1)[None, :]  # (F, n) event indicator of each model
    d = obs.astype(float) @ E  # (F, G) tied events per event time
    # risk-set sums: reverse cumulative sums, read at the first position of each event time
    S0R = np.flip(np.cumsum(np.flip(w, 1), 1), 1)[:, first]
    wD = w[:, :, None] * D
    S1R = np.flip(np.cumsum(np.flip(wD, 1), 1), 1)[:, first]
    S0D = w @ E
    S1D = np.einsum("fnp,ng->fgp", wD, E)
    # the shift m cancels: every event adds m to its eta term and to its log(phi) term
    ll = (np.where(obs, eta - m, 0.0) * evi).sum(1)
    grad = np.einsum("fnp,fn->fp", D, evi)
    if need_derivs:
        wDD = wD[:, :, :, None] * D[:, :, None, :]
        S2R = np.flip(np.cumsum(np.flip(wDD, 1), 1), 1)[:, first]
        S2D = np.einsum("fnpq,ng->fgpq", wDD, E)
        hess = np.zeros(beta.shape + (beta.shape[1],))
    with np.errstate(divide="ignore", invalid="ignore"):
        for lidx in range(dmax):
            valid = lidx < d  # (F, G)
            c = np.where(valid, lidx / np.where(d > 0, d, 1), 0.0)
            phi = S0R - c * S0D
            phi_safe = np.where(valid, phi, 1.0)
            ll = ll - np.where(valid, np.log(phi_safe), 0.0).sum(1)
            s1 = S1R - c[..., None] * S1D
            grad = grad - np.where(valid[..., None], s1 / phi_safe[..., None], 0.0).sum(1)
            if need_derivs:
                s2 = S2R - c[..., None, None] * S2D
                term = s2 / phi_safe[..., None, None] - s1[..., :, None] * s1[..., None, :] / phi_safe[..., None, None] ** 2
                hess = hess - np.where(valid[..., None, None], term, 0.0).sum(1)
    return (ll, grad, hess) if need_derivs else (ll, grad, None)


def cox_efron(
    x: np.ndarray, Z: np.ndarray, time: np.ndarray, event: np.ndarray, *, max_iter: int = 50, tol: float = 1e-10,
    chunk: int = 256,
) -> pd.DataFrame:
    """Fit one Cox model per row of ``x`` (features x samples, NaN = not used) with shared covariates ``Z``.

    Newton-Raphson with step halving on Efron's log partial likelihood; returns per feature the
    coefficient of the feature, its standard error (inverse observed information), Wald z and p,
    log-likelihood, n, events and whether it converged. ``Z`` (samples x k) must be complete.
    """
    x = np.atleast_2d(np.asarray(x, float))
    Z = np.asarray(Z, float).reshape(len(time), -1)
    order = np.argsort(time, kind="stable")
    x, Z, time, event = x[:, order], Z[order], np.asarray(time, float)[order], np.asarray(event, float)[order]
    ev_times = np.unique(time[event > 0])
    first = np.searchsorted(time, ev_times, side="left")
    E = ((time[:, None] == ev_times[None, :]) & (event[:, None] > 0)).astype(float)
    dmax = int(E.sum(0).max()) if E.size else 0
    F, p = x.shape[0], 1 + Z.shape[1]
    out = {k: np.full(F, np.nan) for k in ("coef", "se", "loglik")}
    out["converged"] = np.zeros(F, bool)
    out["n"] = np.zeros(F, int)
    out["events"] = np.zeros(F, int)
    for lo in range(0, F, chunk):
        xs = x[lo:lo + chunk]
        obs = np.isfinite(xs)
        f = xs.shape[0]
        D = np.concatenate([np.where(obs, xs, 0.0)[:, :, None], np.broadcast_to(Z, (f,) + Z.shape)], axis=2)
        # centre each column over the samples a model uses (Cox is shift invariant)
        cnt = obs.sum(1)
        mu = np.einsum("fnp,fn->fp", D, obs) / np.maximum(cnt, 1)[:, None]
        D = np.where(obs[:, :, None], D - mu[:, None, :], 0.0)
        beta = np.zeros((f, p))
        ll, g, H = _efron_terms(D, obs, beta, first, E, dmax)
        done = np.zeros(f, bool)
        for _ in range(max_iter):
            info = -H
            try:
                step = np.linalg.solve(info, g[..., None])[..., 0]
            except np.linalg.LinAlgError:
                step = np.stack([np.linalg.lstsq(info[i], g[i], rcond=None)[0] for i in range(f)])
            step[done] = 0.0
            scale = np.ones(f)
            for _h in range(30):
                cand = beta + scale[:, None] * step
                ll_new, _, _ = _efron_terms(D, obs, cand, first, E, dmax, need_derivs=False)
                worse = ~(ll_new >= ll - 1e-12 * np.abs(ll)) & ~done
                if not worse.any():
                    break
                scale[worse] *= 0.5
            beta = cand
            newly = (np.abs(scale[:, None] * step).max(1) < tol) | ~np.isfinite(step).all(1)
            ll, g, H = _efron_terms(D, obs, beta, first, E, dmax)
            done |= newly
            if done.all():
                break
        with np.errstate(invalid="ignore"):
            try:
                cov = np.linalg.inv(-H)
            except np.linalg.LinAlgError:
                cov = np.stack([np.linalg.pinv(-H[i]) for i in range(f)])
            se = np.sqrt(np.diagonal(cov, axis1=1, axis2=2)[:, 0])
        out["coef"][lo:lo + f] = beta[:, 0]
        out["se"][lo:lo + f] = se
        out["loglik"][lo:lo + f] = ll
        out["converged"][lo:lo + f] = done & np.isfinite(beta).all(1)
        out["n"][lo:lo + f] = cnt
        out["events"][lo:lo + f] = (obs * (event > 0)).sum(1)
    res = pd.DataFrame(out)
    res["z"] = res["coef"] / res["se"]
    res["p"] = 2 * stats.norm.sf(np.abs(res["z"]))
    return res


# --------------------------------------------------------------------------------------------
# cox_per_feature
# --------------------------------------------------------------------------------------------


class CoxParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="bulk modality whose features are tested one at a time")
    time: str = Field(description="clinical column with follow-up time (any unit)")
    event: str = Field(description="clinical column with the event indicator (1/0, bool, or dead/alive words)")
    covariates: list[str] = Field(default_factory=list, description="clinical columns added to every model (categorical ones one-hot coded)")
    scale: Literal["zscore", "none"] = Field(
        "zscore", description="'zscore': hazard ratio per standard deviation of the feature; 'none': per unit (e.g. per log2 unit)"
    )
    restrict: dict[str, str | list[str]] | None = Field(
        None, description="keep only samples whose clinical column equals the value, as {column: level}"
    )
    min_samples: int = Field(20, ge=5, description="features observed in fewer samples are skipped")
    min_events: int = Field(5, ge=1, description="features with fewer observed events are skipped")
    max_features: int = Field(20000, ge=1, description="test at most this many features (highest variance first)")
    fdr: float = Field(0.05, gt=0, lt=1, description="BH q-value threshold")
    max_relations: int = Field(100, ge=0, le=500, description="at most this many significant features become relations")


@register("cox_per_feature", family="survival", params=CoxParams, requires=("bulk", "clinical"))
def cox_per_feature(study: Study, params: CoxParams, ctx: ToolContext) -> ToolResult:
    """Cox proportional-hazards regression of survival on each feature separately (optionally adjusted for covariates), reporting hazard ratio, 95% CI, Wald p and BH q.

    Efron ties, as lifelines' CoxPHFitter. With scale='zscore' the hazard ratio is per standard
    deviation of the feature. Relations: ``feature --associated_with_survival--> clinical_variable:<time>``
    (direction positive = higher abundance, higher hazard).
    """
    name = "cox_per_feature"
    p = params
    samples = restricted_samples(study, list(study.modalities[p.modality].obs_names.astype(str)), p.restrict)
    surv = _survival_frame(study, p.time, p.event, samples)
    # a Cox model's effective sample size is its number of events (Harrell 4.4): covariates are judged on the event rows
    covs, dropped = usable_covariates(study.clinical.reindex(surv.index[surv["event"].to_numpy() == 1]), p.covariates, 1)
    Zdf = covariate_matrix(study.clinical.reindex(surv.index), covs)
    keep = Zdf.notna().all(axis=1)
    surv, Zdf = surv[keep], Zdf[keep]
    if len(surv) < p.min_samples or surv["event"].sum() < p.min_events:
        msg = (f"{len(surv)} samples with time, event{' and covariates' if covs else ''} and "
               f"{int(surv['event'].sum())} events; need {p.min_samples} samples and {p.min_events} events")
        raise ToolFailed(msg)
    const = [c for c in Zdf.columns if Zdf[c].nunique() < 2]
    if const:
        msg = f"covariate columns constant over the usable samples: {const}"
        raise ToolFailed(msg)
    X = modality_frame(study, p.modality, list(surv.index))
    sd = X.std()
    okf = (X.notna().sum() >= p.min_samples) & (sd > 0)
    okf &= (X.notna().astype(float).T @ surv["event"].reindex(X.index).to_numpy()) >= p.min_events
    n_filtered = int((~okf).sum())
    X = X.loc[:, okf]
    if X.shape[1] > p.max_features:
        X = X[sd[X.columns].sort_values(ascending=False).index[: p.max_features]]
    if X.shape[1] == 0:
        msg = f"no {p.modality} feature has {p.min_samples} observed samples, {p.min_events} events and non-zero variance"
        raise ToolFailed(msg)
    if p.scale == "zscore":
        X = (X - X.mean()) / X.std()
    fit = cox_efron(X.to_numpy().T, Zdf.to_numpy(float), surv["time"].to_numpy(), surv["event"].to_numpy())
    fit.index = X.columns
    bad = ~fit["converged"] | (fit["coef"].abs() > 20) | ~np.isfinite(fit["se"])
    z975 = stats.norm.ppf(0.975)
    table = pd.DataFrame({
        "feature": X.columns,
        **gene_annotation(study.modalities[p.modality], X.columns),
        "coef": fit["coef"].to_numpy(),
        "hazard_ratio": np.exp(fit["coef"]).to_numpy(),
        "ci_lower": np.exp(fit["coef"] - z975 * fit["se"]).to_numpy(),
        "ci_upper": np.exp(fit["coef"] + z975 * fit["se"]).to_numpy(),
        "se": fit["se"].to_numpy(),
        "z": fit["z"].to_numpy(),
        "p": fit["p"].to_numpy(),
        "n": fit["n"].to_numpy(),
        "events": fit["events"].to_numpy(),
    })
    table = table[~bad.to_numpy()].copy()
    table["q"] = bh(table["p"].to_numpy())
    table = table.sort_values(["p", "feature"]).reset_index(drop=True)
    sig = table[(table["q"] < p.fdr) & agrees_with_canonical(table, "coef", p.fdr)]
    kind = modality_kind(study, p.modality)
    obj = Entity(type="clinical_variable", label=p.time)
    rels = [
        _rel(ctx, name, p, feature_entity(kind, r.label), "associated_with_survival", obj,
             Stats(effect=float(r.hazard_ratio), effect_type="hazard_ratio" + ("_per_sd" if p.scale == "zscore" else ""),
                   p=float(r.p), q=float(r.q), n=int(r.n), direction="positive" if r.coef > 0 else "negative",
                   extra={"feature_id": str(r.feature), "ci": [float(r.ci_lower), float(r.ci_upper)], "events": int(r.events), "event_column": p.event,
                          "covariates": covs}),
             p.modality)
        for r in sig.head(p.max_relations).itertuples()
    ]
    ranked = table.sort_values("p", kind="stable")
    figures = []
    if ctx.figures:
        path = volcano(ctx, f"cox_per_feature_{p.modality}", ranked["coef"], ranked["p"], ranked["q"], p.fdr,
                       labels=ranked["feature"].to_numpy(), xlabel="log hazard ratio" + (" per SD" if p.scale == "zscore" else ""),
                       title=f"Cox per feature, {p.modality} ({len(surv)} samples, {int(surv['event'].sum())} events)")
        figures.append(path)
    n_harm = int((sig["coef"] > 0).sum())
    top = ", ".join(f"{r.feature} (HR {r.hazard_ratio:.2f}, q={r.q:.2g})" for r in sig.head(5).itertuples())
    summary = (f"Cox PH (Efron ties) per feature on {len(table)} {p.modality} features, {len(surv)} samples, "
               f"{int(surv['event'].sum())} events{', adjusted for ' + ', '.join(covs) if covs else ''}: "
               f"{len(sig)} significant at BH q<{p.fdr} ({n_harm} with higher hazard at higher abundance). "
               f"{n_filtered} features filtered (too few samples/events or constant), {int(bad.sum())} did not converge."
               + (f" Top: {top}." if top else "") + dropped_text(dropped))
    return ToolResult(summary=summary, tables={"cox": table}, figures=figures, relations=rels,
                      metrics={"n_tested": len(table), "n_significant": len(sig), "n_skipped": n_filtered + int(bad.sum()),
                               "n_not_converged": int(bad.sum()), "n_samples": len(surv), "n_events": int(surv["event"].sum()),
                               "covariates": covs, "covariates_dropped": dropped})


# --------------------------------------------------------------------------------------------
# kaplan_meier
# --------------------------------------------------------------------------------------------


class KMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    time: str = Field(description="clinical column with follow-up time")
    event: str = Field(description="clinical column with the event indicator (1/0, bool, or dead/alive words)")
    group: str | None = Field(None, description="categorical clinical column to stratify by (give this or feature)")
    modality: str | None = Field(None, description="modality holding `feature` (needed with feature)")
    feature: str | None = Field(None, description="feature name to stratify by, split at `split` into high/low")
    split: Literal["median", "tertiles"] = Field(
        "median", description="'median': high vs low halves; 'tertiles': top vs bottom third (middle dropped)"
    )
    restrict: dict[str, str | list[str]] | None = Field(
        None, description="keep only samples whose clinical column equals the value, as {column: level}"
    )
    min_group_size: int = Field(5, ge=2, description="strata smaller than this are dropped")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of the log-rank test for a relation")


@register("kaplan_meier", family="survival", params=KMParams, requires=("clinical",))
def kaplan_meier(study: Study, params: KMParams, ctx: ToolContext) -> ToolResult:
    """Kaplan-Meier survival curves stratified by a categorical clinical column or by a feature split at its median, with a log-rank test.

    Uses lifelines' KaplanMeierFitter and (multivariate) log-rank test (Mantel 1966). For two
    strata the hazard ratio (high vs low, or second vs first level) comes from a Cox model on the
    stratum indicator. Returns the per-stratum table (n, events, median survival), the KM plot and,
    if p < alpha, a ``--associated_with_survival--> clinical_variable:<time>`` relation.
    """
    from lifelines import CoxPHFitter, KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    name = "kaplan_meier"
    p = params
    if (p.group is None) == (p.feature is None):
        msg = "give exactly one of group (a clinical column) or feature (with modality)"
        raise ToolInputError(msg)
    if p.feature is not None:
        if p.modality is None:
            msg = "feature needs modality"
            raise ToolInputError(msg)
        if p.feature not in set(study.modalities[p.modality].var_names.astype(str)):
            a = study.modalities[p.modality]
            genes = feature_genes(a)[canonical_features(a)]
            hits = genes.index[genes == p.feature]
            if len(hits) != 1:
                msg = f"feature {p.feature!r} is not in {p.modality!r}" + (f" (gene maps to {list(hits)[:10]})" if len(hits) else "")
                raise ToolInputError(msg)
            fname = str(hits[0])
        else:
            fname = p.feature
        samples = restricted_samples(study, list(study.modalities[p.modality].obs_names.astype(str)), p.restrict)
    else:
        samples = restricted_samples(study, list(map(str, study.clinical.index)), p.restrict)
    surv = _survival_frame(study, p.time, p.event, samples)
    if p.feature is not None:
        v = modality_frame(study, p.modality, list(surv.index))[fname].dropna()
        if v.nunique() < 2:
            msg = f"feature {fname!r} is constant or missing over the samples with survival data"
            raise ToolFailed(msg)
        if p.split == "median":
            lab = pd.Series(np.where(v > v.median(), "high", "low"), index=v.index)
        else:
            lo, hi = v.quantile([1 / 3, 2 / 3])
            lab = pd.Series(np.where(v >= hi, "high", np.where(v <= lo, "low", None)), index=v.index).dropna()
        order = ["low", "high"]
    else:
        lab = study.clinical.reindex(surv.index)[p.group].dropna().astype(str)
        order = sorted(lab.unique())
    surv = surv.loc[lab.index]
    sizes = lab.value_counts()
    small = [g for g in order if sizes.get(g, 0) < p.min_group_size]
    order = [g for g in order if g not in small]
    lab = lab[lab.isin(order)]
    surv = surv.loc[lab.index]
    if len(order) < 2:
        msg = f"fewer than two strata with at least {p.min_group_size} samples with survival data (sizes {sizes.to_dict()})"
        raise ToolFailed(msg)
    if surv["event"].sum() == 0:
        msg = "no events among the samples with survival data"
        raise ToolFailed(msg)
    lr = multivariate_logrank_test(surv["time"], lab, surv["event"])
    rows = []
    ax = None
    if ctx.figures:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(5, 4)).subplots()
    for g in order:
        m = lab == g
        km = KaplanMeierFitter().fit(surv.loc[m, "time"], surv.loc[m, "event"], label=f"{g} (n={int(m.sum())})")
        if ax is not None:
            km.plot_survival_function(ax=ax, ci_show=False)
        rows.append({"stratum": g, "n": int(m.sum()), "events": int(surv.loc[m, "event"].sum()),
                     "median_survival": float(km.median_survival_time_)})
    table = pd.DataFrame(rows)
    hr = ci = None
    if len(order) == 2:
        d = pd.DataFrame({"T": surv["time"], "E": surv["event"], "x": (lab == order[1]).astype(float)})
        cph = CoxPHFitter().fit(d, "T", "E")
        hr = float(cph.hazard_ratios_["x"])
        ci = [float(np.exp(cph.confidence_intervals_.loc["x"].iloc[0])), float(np.exp(cph.confidence_intervals_.loc["x"].iloc[1]))]
    what = f"{p.feature} ({p.split} split)" if p.feature is not None else p.group
    figures = []
    if ax is not None:
        ax.set_title(f"{what}: log-rank p={lr.p_value:.2g}", fontsize=9)
        ax.set_xlabel(p.time)
        ax.set_ylabel("survival probability")
        path = ctx.figure_path(f"kaplan_meier_{p.feature or p.group}")
        ax.figure.savefig(path, dpi=120)
        figures.append(path)
    rels = []
    if lr.p_value < p.alpha:
        if p.feature is not None:
            subj = feature_entity(modality_kind(study, p.modality), fname)
        else:
            subj = Entity(type="clinical_variable", label=p.group)
        rels.append(_rel(ctx, name, p, subj, "associated_with_survival", Entity(type="clinical_variable", label=p.time),
                         Stats(effect=hr, effect_type=f"hazard_ratio_{order[1]}_vs_{order[0]}" if hr is not None else None,
                               p=float(lr.p_value), n=len(surv),
                               direction=("positive" if hr > 1 else "negative") if hr is not None else "none",
                               extra={"test": "log-rank", "strata": table.to_dict("records"), "ci": ci, "event_column": p.event}),
                         p.modality))
    med = "; ".join(f"{r['stratum']}: n={r['n']}, events={r['events']}, median {r['median_survival']:.3g}" for r in rows)
    summary = (f"Kaplan-Meier by {what} over {len(surv)} samples ({int(surv['event'].sum())} events): {med}. "
               f"Log-rank chi2={lr.test_statistic:.2f}, df={len(order) - 1}, p={lr.p_value:.2g}"
               + (f"; HR {order[1]} vs {order[0]} = {hr:.2f} (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if hr is not None else "")
               + (f". Dropped strata smaller than {p.min_group_size}: {small}" if small else "") + ".")
    return ToolResult(summary=summary, tables={"strata": table}, figures=figures, relations=rels,
                      metrics={"n_tested": 1, "n_significant": int(lr.p_value < p.alpha), "n_skipped": len(small),
                               "logrank_p": float(lr.p_value), "logrank_statistic": float(lr.test_statistic),
                               "hazard_ratio": hr, "n_samples": len(surv)})


# --------------------------------------------------------------------------------------------
# cluster_clinical_association
# --------------------------------------------------------------------------------------------


class AssociationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = Field(description="categorical clinical column holding the grouping (e.g. cluster labels, subtype)")
    variables: list[str] | None = Field(
        None, description="clinical columns to test against the grouping; None tests every usable column "
        "(continuous, or 2-10 levels; ids and constants skipped)"
    )
    restrict: dict[str, str | list[str]] | None = Field(
        None, description="keep only samples whose clinical column equals the value, as {column: level}"
    )
    min_samples: int = Field(6, ge=3, description="columns with fewer samples holding a value are skipped")
    fdr: float = Field(0.05, gt=0, lt=1, description="BH q-value threshold")
    max_relations: int = Field(50, ge=0, le=300, description="at most this many significant associations become relations")


def association_relations(ctx: ToolContext, tool: str, params: BaseModel, subject: Entity, table: pd.DataFrame,
                          fdr: float, cap: int, modality: str | None = None) -> list:
    """``subject --associated_with--> clinical_variable`` relations for rows of an association table with q < fdr."""
    sig = table[table["q"] < fdr].head(cap)
    return [
        _rel(ctx, tool, params, subject, "associated_with", Entity(type="clinical_variable", label=r.variable),
             Stats(effect=float(r.effect), effect_type=r.effect_type, p=float(r.p), q=float(r.q), n=int(r.n),
                   direction="none", extra={"test": r.test}),
             modality)
        for r in sig.itertuples()
    ]


@register("cluster_clinical_association", family="survival", params=AssociationParams, requires=("clinical",))
def cluster_clinical_association(study: Study, params: AssociationParams, ctx: ToolContext) -> ToolResult:
    """Test whether a categorical grouping of samples (clusters, subtypes) is associated with clinical variables: chi-square or Fisher's exact test for categorical columns, Kruskal-Wallis for continuous ones, BH-corrected.

    Returns one row per clinical column (test, statistic, effect size Cramer's V or epsilon-squared,
    p, q) and ``group --associated_with--> clinical_variable`` relations for significant columns.
    """
    name = "cluster_clinical_association"
    p = params
    samples = restricted_samples(study, list(map(str, study.clinical.index)), p.restrict)
    labels = study.clinical.reindex(samples)[p.group].dropna().astype(str)
    if labels.nunique() < 2:
        msg = f"group {p.group!r} has fewer than two levels over the selected samples"
        raise ToolFailed(msg)
    if p.variables:
        missing = [v for v in p.variables if v not in study.clinical.columns]
        if missing:
            msg = f"variables not in the clinical table: {missing}; columns include {list(study.clinical.columns)[:40]}"
            raise ToolInputError(msg)
    table, skipped = associate_grouping(labels, study.clinical.loc[samples], p.variables, min_samples=p.min_samples,
                                        exclude=(p.group,))
    if table.empty:
        msg = f"no clinical column could be tested against {p.group!r} (skipped: {skipped[:10]})"
        raise ToolFailed(msg)
    subj = Entity(type="clinical_variable", label=p.group)
    rels = association_relations(ctx, name, p, subj, table, p.fdr, p.max_relations)
    sig = table[table["q"] < p.fdr]
    top = ", ".join(f"{r.variable} ({r.test}, q={r.q:.2g})" for r in sig.head(6).itertuples())
    summary = (f"{p.group} ({labels.nunique()} groups, {len(labels)} samples) tested against {len(table)} clinical columns: "
               f"{len(sig)} associated at BH q<{p.fdr}" + (f": {top}" if top else "") + f". {len(skipped)} columns skipped.")
    return ToolResult(summary=summary, tables={"associations": table}, figures=[], relations=rels,
                      metrics={"n_tested": len(table), "n_significant": len(sig), "n_skipped": len(skipped),
                               "n_samples": len(labels), "n_groups": int(labels.nunique())})
