"""Differential abundance between sample groups: limma moderated t / F, a missing-value (dropout)
model, Welch (SAM s0), Mann-Whitney.

Conventions followed (say so in a methods section):

- **auto** (default): the method, normalisation and variance prior are chosen from the data and the
  reasons returned in ``metrics["choices"]``: MS intensities on a log2 scale (the reader's
  ``uns["scale"]``) get a variance-stabilising generalised log and median centring (``vsn``), processed
  layers (log ratios) are used as delivered; with missing values on a log-intensity layer whose
  missingness depends on abundance (probit slope z < -3) the **censored** model is used, else
  **limma**; a ``var["n_peptides"]`` column gives the DEqMS count-dependent variance prior where it
  fits the variances better than one prior (larger prior df); label-free intensities whose replicates
  are repeat measurements of one sample (typical within-group CV below 15 %,
  :mod:`proteus.stats.replicates`) are tested against a 1.5-fold change (TREAT, ``lfc='auto'``).
- **limma**: ``lmFit`` + ``eBayes`` as in R limma (:mod:`proteus.stats.limma`, Smyth 2004),
  per-feature fits on observed values (no imputation), optional covariates in the design.
- **censored**: missing values enter the likelihood as dropouts below a per-sample detection
  curve (:mod:`proteus.stats.censored`, proDA-style); a feature needs ``min_valid`` values in at
  least one group, features detected in one group only are tested and marked in ``detection``; the
  missing values of a group with no value count as one dropout, since replicates of one condition
  lose a feature together (calibrated on a random split of real samples). Without missing values it
  is limma, number for number.
- **welch**: two-sided Welch t on observed values; with ``s0 > 0`` the SAM / Perseus statistic
  :math:`d = \\Delta / (s + s_0)` with p-values from 250 label permutations pooled over features
  (Tusher et al. 2001, doi:10.1073/pnas.091062498), seeded by the run seed.
- **mann_whitney**: two-sided Wilcoxon rank-sum, normal approximation with tie and continuity
  correction (as ``scipy.stats.mannwhitneyu(method="asymptotic")``).
- Features with fewer than ``min_valid`` values in either group (censored: in both groups), or
  constant, are skipped and listed in the ``skipped`` table; q-values are Benjamini-Hochberg over
  tested features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from proteus.design import level_order
from proteus.io.values import INTENSITY_KINDS
from proteus.records import Entity, Relation, Stats, ToolResult, contrast_entity, feature_entity
from proteus.stats.censored import DropoutCurves, censored_test, fit_dropout_curves
from proteus.stats.contrasts import TEST_FIELDS, ContrastTable, ContrastTest, cached_table
from proteus.stats.deqms import count_variance_prior
from proteus.stats.distributions import fisher_exact_p, norm_sf, t_sf
from proteus.stats.features import agrees_with_canonical, gene_annotation
from proteus.stats.design import covariate_block, dropped_text, is_factor, usable_covariates
from proteus.stats.limma import contrasts_fit, ebayes, lm_fit, treat, two_group_moderated
from proteus.stats.multitest import bh
from proteus.stats.replicates import TECHNICAL_CV, TREAT_FOLD, cv_to_log2_sd, technical_replicates
from proteus.stats.welch import welch_t
from proteus.study import Study
from proteus.tools._plots import volcano
from proteus.tools.registry import ToolContext, ToolFailed, ToolInputError, register

__all__ = [
    "DifferentialParams",
    "AnovaParams",
    "differential_abundance",
    "differential_anova",
    "differential_table",
    "build_design",
    "choose_defaults",
]

MAX_RELATIONS = 150
HEATMAP_ROWS = 40


class DifferentialParams(ContrastTest):
    """The test (:class:`proteus.stats.contrasts.ContrastTest`: every parameter that changes the table)
    and the significance cut of its relations."""

    control: str = Field(description="reference level of `group` (denominator of the fold change)")
    fdr: float = Field(0.05, gt=0, lt=1, description="Benjamini-Hochberg q-value threshold for significance")


class AnovaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="name of the bulk layer to test, e.g. 'proteomics'")
    group: str = Field(description="clinical column with three or more levels to compare")
    levels: list[str] = Field(
        default_factory=list, description="levels of `group` to include (default: every level with enough samples)"
    )
    covariates: list[str] = Field(default_factory=list, description="clinical columns adjusted for in the design")
    ordered: bool = Field(
        False, description="the levels are ordered (doses, times, grades; in the order of `levels`, else read from "
        "the level names): also test a linear trend across them"
    )
    min_valid: int = Field(2, ge=1, description="minimum non-missing values in every level for a feature to be tested")
    fdr: float = Field(0.05, gt=0, lt=1, description="Benjamini-Hochberg q-value threshold for significance")


# --- shared helpers ---------------------------------------------------------------------------


def build_design(table: pd.DataFrame, covariates: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Design columns for ``covariates`` (:func:`proteus.stats.design.covariate_block`: measurements as
    numbers, codes and text as treatment dummies) and a note on how each was entered."""
    notes = [f"{c}: factor with {table[c].nunique()} levels" if is_factor(table[c]) else f"{c}: numeric" for c in covariates]
    return covariate_block(table, covariates), notes


def _samples(study: Study, modality: str, group: str, levels: list[str], covariates: list[str], n_fixed: int):
    """Sample table restricted to ``levels`` of ``group`` and complete covariates, with the covariates kept.

    Covariates the tested samples cannot afford (:func:`proteus.stats.design.usable_covariates`, with
    ``n_fixed`` non-covariate design columns) are dropped before completeness is required.
    """
    tab = study.sample_table(modality)
    g = tab[group]
    in_levels = g.notna() & g.astype(str).isin(levels)
    n_group_na = int(g.isna().sum())
    tab = tab.loc[in_levels]
    covariates, dropped = usable_covariates(tab, covariates, n_fixed) if covariates else ([], {})
    n_cov_na = 0
    if covariates:
        complete = tab[covariates].notna().all(axis=1)
        n_cov_na = int((~complete).sum())
        tab = tab.loc[complete]
    return tab, tab[group].astype(str), n_group_na, n_cov_na, covariates, dropped


def _nansd(Y: np.ndarray) -> np.ndarray:
    """Standard deviation of the observed values of each row (NaN for all-missing rows), quietly."""
    n = np.isfinite(Y).sum(1)
    m = np.nansum(Y, 1) / np.maximum(n, 1)
    return np.where(n > 0, np.sqrt(np.nansum((Y - m[:, None]) ** 2, 1) / np.maximum(n, 1)), np.nan)


def _full_rank(X: np.ndarray) -> bool:
    return np.linalg.matrix_rank(X) == X.shape[1]


def _welch(a: np.ndarray, b: np.ndarray, s0: float, rng: np.random.Generator | None, n_perm: int = 250):
    """Welch t per row (NaN ignored; :func:`proteus.stats.welch.welch_t`); with ``s0`` > 0 the SAM d and
    pooled permutation p-values.

    .. math:: d = \\frac{\\bar x_a - \\bar x_b}{\\sqrt{s_a^2/n_a + s_b^2/n_b} + s_0}

    With ``s0 == 0`` the p-value is Welch's (Satterthwaite df). With ``s0 > 0`` the statistic has no
    reference distribution, so p-values come from ``n_perm`` random relabellings of the samples,
    the null statistics pooled over all features (Tusher et al. 2001).
    """
    both = np.concatenate([a, b], axis=1)
    na = a.shape[1]
    observed = welch_t(both, np.arange(both.shape[1]) < na)
    if s0 == 0:
        return observed.t, 2 * t_sf(np.abs(observed.t), observed.df)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = observed.diff / (observed.se + s0)
    rng = rng if rng is not None else np.random.default_rng(0)
    null = []
    for start in range(0, n_perm, 50):
        k = min(50, n_perm - start)
        W = np.zeros((both.shape[1], k))
        for j in range(k):
            W[rng.permutation(both.shape[1])[:na], j] = 1.0
        perm = welch_t(both, W)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.abs(perm.diff / (perm.se + s0)).ravel()
        null.append(z[np.isfinite(z)])
    null = np.sort(np.concatenate(null))
    exceed = null.size - np.searchsorted(null, np.abs(d), side="left")
    return d, (exceed + 1) / (null.size + 1)


def _mann_whitney(a: np.ndarray, b: np.ndarray):
    """Rank-sum U per row on observed values; normal approximation with tie + continuity correction."""
    from scipy import stats

    both = np.concatenate([a, b], axis=1)
    ranks = stats.rankdata(both, axis=1, nan_policy="omit")
    n1, n2 = np.isfinite(a).sum(1), np.isfinite(b).sum(1)
    n = n1 + n2
    r1 = np.nansum(ranks[:, : a.shape[1]], axis=1)
    u1 = r1 - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    # tie term: sum(t^3 - t) over tie groups, per row
    srt = np.sort(ranks, axis=1)  # NaN last; equal ranks are adjacent
    start = np.ones(srt.shape, dtype=bool)
    start[:, 1:] = ~(srt[:, 1:] == srt[:, :-1])
    run = np.cumsum(start.ravel()) - 1
    cnt = np.bincount(run, weights=np.isfinite(srt).ravel())
    run_row = np.repeat(np.arange(srt.shape[0]), start.sum(1))
    tie = np.bincount(run_row, weights=cnt**3 - cnt, minlength=srt.shape[0])
    sigma = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie / (n * (n - 1))))
    z = (np.abs(u1 - mu) - 0.5) / sigma
    p = np.minimum(2 * norm_sf(z), 1.0)
    return np.sign(u1 - mu) * np.maximum(z, 0), p


def _heatmap(ctx: ToolContext, name: str, Y: np.ndarray, labels: list[str], groups: pd.Series, title: str):
    """Rows z-scored over samples, samples ordered by group; NaN drawn grey."""
    order = np.argsort(groups.to_numpy(), kind="stable")
    Z = Y[:, order]
    Z = (Z - np.nanmean(Z, 1, keepdims=True)) / np.nanstd(Z, 1, keepdims=True)
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, max(3, 0.18 * len(labels) + 1.5)))
    ax = fig.subplots()
    cmap = colormaps["RdBu_r"].with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_invalid(Z), aspect="auto", cmap=cmap, vmin=-2.5, vmax=2.5, interpolation="nearest")
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    g = groups.to_numpy()[order]
    bounds = [i for i in range(1, len(g)) if g[i] != g[i - 1]]
    for b in bounds:
        ax.axvline(b - 0.5, c="k", lw=1)
    starts = [0, *bounds]
    ends = [*bounds, len(g)]
    ax.set_xticks([(s + e - 1) / 2 for s, e in zip(starts, ends)], [g[s] for s in starts], fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="z-score", fraction=0.03)
    fig.tight_layout()
    path = ctx.figure_path(name)
    fig.savefig(path, dpi=110)
    return path


# --- choosing method, normalisation and variance prior from the data ----------------------------

DROPOUT_Z = -3.0  # probit slope of missingness on abundance below which missing values count as MNAR


@dataclass
class Choice:
    """What ``auto`` resolved to, and why (reasons go to ``metrics["choices"]``)."""

    method: str
    normalize: str
    variance_prior: str
    reasons: list[str]
    curves: DropoutCurves | None = None
    lfc: float = 0.0


def _log_intensities(uns, Y: np.ndarray) -> bool:
    """MS abundances on a log2 intensity scale (the reader's ``scale``; without one, median > 5), not log ratios."""
    if uns.get("modality", "proteomics") not in INTENSITY_KINDS:
        return False
    return uns["scale"] == "log2" if "scale" in uns else bool(np.nanmedian(Y) > 5)


def _label_free(adata, Y: np.ndarray) -> bool:
    """Label-free MS intensities: log2 intensities (:func:`_log_intensities`) not read from isobaric
    reporter channels (TMT / iTRAQ, whose samples are named by channel)."""
    return _log_intensities(adata.uns, Y) and "channel" not in adata.uns.get("sample_id_parts", [])


def resolve_lfc(lfc: float | str, method: str, Y: np.ndarray, groups: np.ndarray, label_free: bool) -> tuple[float, str | None]:
    """``lfc='auto'`` -> ``log2(1.5)`` (TREAT) for limma / censored tests of label-free intensities whose
    replicates are repeat measurements of one sample (:func:`proteus.stats.replicates.technical_replicates`
    on the normalised values ``Y``, features x samples, ``groups`` per sample), else 0; and the reason."""
    if lfc != "auto":
        return float(lfc), None
    if method not in ("limma", "censored") or not label_free:
        return 0.0, None
    technical, sd = technical_replicates(Y, groups)
    cv = float(np.sqrt(np.expm1((sd * np.log(2)) ** 2)))
    spread = f"typical within-group SD {sd:.2f} log2 (CV {cv:.0%})"
    limit = f"CV {TECHNICAL_CV:.0%} (SD {cv_to_log2_sd(TECHNICAL_CV):.2f})"
    if technical:
        return float(np.log2(TREAT_FOLD)), (
            f"tested against a {TREAT_FOLD:g}-fold threshold (TREAT, |log2FC| > {np.log2(TREAT_FOLD):.3f}) because the "
            f"replicates look like repeat measurements of one sample: {spread} is below the {limit} that separates them "
            "from independent samples, so sample-to-sample differences are not in the error term")
    return 0.0, f"no fold-change threshold: {spread} is that of independent samples (at least {limit})"


def resolve_normalize(normalize: str, intensities: bool) -> str:
    """``auto`` -> ``vsn`` for MS intensities on a log2 scale (:func:`_log_intensities`), else ``none``;
    other values as given."""
    if normalize != "auto":
        return normalize
    return "vsn" if intensities else "none"


def choose_defaults(p: DifferentialParams, Y: np.ndarray, is_case: np.ndarray, uns, counts: np.ndarray | None) -> Choice:
    """Resolve ``auto`` parameters from the values (features x samples, ``is_case`` per sample) and the layer's
    annotation."""
    reasons: list[str] = []
    intensities = _log_intensities(uns, Y)
    normalize = resolve_normalize(p.normalize, intensities)
    if p.normalize == "auto":
        reasons.append("variance-stabilising (VSN-like) normalisation: MS intensities on a log2 scale"
                       if intensities else "no normalisation: values are not MS intensities (e.g. log ratios)")
    if normalize == "vsn" and not intensities:
        msg = "normalize='vsn' needs log2 intensities; these values look like log ratios (use 'median' or 'none')"
        raise ToolInputError(msg)
    method, curves = p.method, None
    missing = bool(np.isnan(Y).any())
    if (method == "censored" or (method == "auto" and intensities)) and missing and p.impute == "none":
        curves = fit_dropout_curves(Y, is_case)
    if method == "auto":
        if p.impute != "none":
            method = "limma"
            reasons.append(f"limma on {p.impute}-imputed values (imputation requested)")
        elif not missing:
            method = "limma"
            reasons.append("limma: no missing values")
        elif not intensities:
            method = "limma"
            reasons.append("limma on observed values: values are not log intensities, missingness not modelled")
        elif curves.slope_z < DROPOUT_Z:
            method = "censored"
            reasons.append(f"censored model: missing values depend on abundance (probit slope z = {curves.slope_z:.1f})")
        else:
            method = "limma"
            reasons.append(f"limma on observed values: missingness does not depend on abundance "
                           f"(probit slope z = {curves.slope_z:.1f})")
    elif method == "censored" and curves is None:
        method = "limma"
        reasons.append("limma: nothing missing, the censored model reduces to it")
    prior = p.variance_prior
    has_counts = counts is not None and np.unique(counts[np.isfinite(counts)]).size > 1
    if prior == "auto":
        prior = "peptide_count" if has_counts and method in ("limma", "censored") else "constant"
        if prior == "peptide_count":
            reasons.append("DEqMS prior: variance depends on the peptides per protein (var['n_peptides'])")
        # the tool keeps it only where it fits the variances better than one prior (larger prior df)
    elif prior == "peptide_count" and not has_counts:
        msg = "variance_prior='peptide_count' needs var['n_peptides'] with peptide counts in the layer"
        raise ToolInputError(msg)
    elif prior == "peptide_count" and method not in ("limma", "censored"):
        msg = f"variance_prior='peptide_count' applies to limma or censored, not {method}"
        raise ToolInputError(msg)
    return Choice(method, normalize, prior, reasons, curves)


# --- differential_abundance -------------------------------------------------------------------


@register("differential_abundance", family="differential", params=DifferentialParams, requires=("bulk", "clinical"))
def differential_abundance(study: Study, params: DifferentialParams, ctx: ToolContext) -> ToolResult:
    """Find features (proteins, sites, genes) whose abundance differs between two sample groups (case vs control), optionally adjusting for covariates; by default the method, normalisation and variance prior are chosen from the data (reasons in metrics 'choices'); returns a ranked table, volcano plot, heatmap and higher_in / lower_in relations for features with q < fdr.

    Defaults (``method='auto'``): MS intensities get a variance-stabilising log and median
    centring; label-free intensities whose missing values depend on abundance get the censored
    (dropout) model, which also tests
    features detected in one group only (``detection`` column, counts in metrics; a group with no value
    counts as one dropout, not one per replicate); otherwise limma
    on observed values (identical to R limma when nothing is missing). Peptide counts in the layer
    give the DEqMS variance prior. Label-free replicates that are repeat measurements of one sample
    (within-group CV below 15 %) are tested against a 1.5-fold change (TREAT; ``lfc=0`` turns it off),
    since their variance misses sample-to-sample differences. Pre-filter: ``min_valid`` values in each group (limma) or in at
    least one group (censored, imputation); skipped features are listed with the reason. Missing
    values are never imputed unless ``impute='downshift'`` (Perseus; Tyanova et al. 2016) is asked
    for, seeded by ``ctx.seed``, with imputed counts per group in the table. A pooled case
    (``case_levels``: e.g. every level of a factor but its reference) is the mean of those levels'
    means against the control on the full design (:func:`pooled_columns`); its relations need every
    pooled level on the side of the pooled effect (``level_effects`` in their extra).

    A relation is a measured change of its feature (:mod:`proteus.stats.features`): at least 2 values
    in each group (fewer is a detection pattern, tested by Fisher's exact test on the detected counts,
    ``detection_p``, and named in the summary), and a protein group that is not its gene's canonical one
    only where the canonical group is significant the same way. Its ``n`` counts the samples tested,
    ``observed`` the samples with a value per group.
    """
    name = "differential_abundance"
    p = params
    res = differential_table(study, p, seed=ctx.seed)
    table, skipped, d, method = res.table.copy(), res.skipped.copy(), res.details, res.method
    kind, choice = d["kind"], d["choice"]
    layer = study.modalities[p.modality]
    if "organism" in layer.var:  # a layer that mixes organisms: each feature's, for positive / negative controls
        table["organism"] = table["feature"].astype(str).map(layer.var["organism"].astype(str)).replace("", None)
        skipped["organism"] = skipped["feature"].astype(str).map(layer.var["organism"].astype(str)).replace("", None)
    excluded = pd.DataFrame(dict(layer.uns.get("excluded_features") or {}), columns=["feature", "organism", "reason"])
    doses = _group_doses(study, p.modality, p.group, p.case, p.control)
    sig = table["q"] < p.fdr
    not_shared = 0
    if p.case_levels:  # a pooled effect is claimed only where every pooled level shows it
        not_shared = int((sig & ~table["levels_agree"]).sum())
        sig &= table["levels_agree"].astype(bool)
    n_up, n_down = int((sig & (table["logFC"] > 0)).sum()), int((sig & (table["logFC"] < 0)).sum())
    # a relation is a measured fold change of a gene: >= 2 values in each group, and a minor protein
    # group of a gene only where the gene's canonical feature agrees (proteus.stats.features)
    measured = np.minimum(table["n_case"], table["n_control"]) >= 2
    speaks = agrees_with_canonical(table, "logFC", p.fdr)
    claim = sig & measured & speaks
    if (~measured).any():  # a detection pattern is tested as one: detected k of n samples per group
        table["detection_p"] = [fisher_exact_p(int(a), d["n_case"], int(b), d["n_control"]) if not m else np.nan
                                for a, b, m in zip(table["n_case"], table["n_control"], measured)]

    contrast = contrast_entity(p.group, p.case, p.control)
    prov = ctx.provenance_for(name, p)
    relations = []
    for _, r in table.loc[claim].head(MAX_RELATIONS).iterrows():
        up = r["logFC"] > 0
        relations.append(Relation(
            subject=feature_entity(kind, r["label"]), predicate="higher_in" if up else "lower_in", object=contrast,
            stats=Stats(effect=float(r["logFC"]), effect_type="log2FC", p=float(r["p"]), q=float(r["q"]),
                        n=d["n_case"] + d["n_control"], direction="up" if up else "down",
                        observed={p.case: (int(r["n_case"]), d["n_case"]), p.control: (int(r["n_control"]), d["n_control"])},
                        extra={"t": float(r["t"]), "feature_id": str(r["feature"]), "method": method}
                        | ({"gene": r["gene"]} if pd.notna(r["gene"]) and r["gene"] != r["label"] else {})
                        | ({"detection": r["detection"]} if r.get("detection", "both") != "both" else {})
                        | ({"level_effects": {lv: float(r[f"logFC[{lv}]"]) for lv in p.case_levels}} if p.case_levels else {})),
            modality=p.modality, provenance=prov,
        ))

    title = f"{p.modality}: {p.case} vs {p.control} ({method}); {int(sig.sum())} with q < {p.fdr}"
    slug = f"{p.modality}_{p.group}_{p.case}_vs_{p.control}".replace(" ", "_").replace("/", "-")
    figures = []
    if ctx.figures:
        figures.append(volcano(ctx, f"volcano_{slug}", table["logFC"], table["p"], table["q"], p.fdr, labels=table["label"].to_numpy(),
                               xlabel="log2 fold change", title=title))
        top = table.head(HEATMAP_ROWS)
        figures.append(_heatmap(ctx, f"heatmap_{slug}", res.values.to_numpy(), list(top["label"]),
                                res.groups, f"top {len(top)} features by p ({method})"))

    n_case, n_control, covs, n_imputed = d["n_case"], d["n_control"], d["covariates"], d["n_imputed"]
    metrics = {
        "n_tested": int(len(table)), "n_significant": int(sig.sum()), "n_up": n_up, "n_down": n_down,
        "n_skipped": int(len(skipped)), "n_case": n_case, "n_control": n_control,
        "n_samples_dropped_missing_covariate": d["n_cov_na"], "n_samples_missing_group": d["n_group_na"],
        "s2_prior": d["s2_prior"], "df_prior": d["df_prior"], "method": method, "s0": p.s0, "fdr": p.fdr, "lfc": choice.lfc,
        "impute": p.impute,
        "n_imputed": n_imputed, "normalize": choice.normalize,
        "variance_prior": choice.variance_prior, "choices": list(choice.reasons),
        "n_detected_only_case": int((table.get("detection", pd.Series(dtype=str)) == f"only in {p.case}").sum()),
        "n_detected_only_control": int((table.get("detection", pd.Series(dtype=str)) == f"only in {p.control}").sum()),
        "covariates": d["notes"], "covariates_dropped": d["dropped"],
        "n_significant_detection_only": int((sig & ~measured).sum()), "n_significant_minor_group": int((sig & measured & ~speaks).sum()),
    } | ({"case_levels": list(p.case_levels), "n_significant_not_shared": not_shared} if p.case_levels else {})
    head = ", ".join(f"{lab} ({fc:+.2f})" for lab, fc in zip(table.loc[claim, "label"].head(5), table.loc[claim, "logFC"]))
    summary = (
        f"{method} test of {p.modality} between {p.group}={p.case} (n={n_case}) and {p.control} (n={n_control})"
        + (f" adjusting for {', '.join(covs)}" if covs else "")
        + (f" after down-shift imputation of {n_imputed} missing values" if p.impute != "none" else "")
        + (f" against a {2 ** choice.lfc:.3g}-fold change (TREAT: |log2FC| > {choice.lfc:.3g})" if choice.lfc > 0 else "")
        + (f"; {p.case} pools {', '.join(p.case_levels)} (the mean of their level means, each level its own mean in the "
           f"design); a feature counts only when every pooled level differs from {p.control} in the pooled direction "
           f"({not_shared} significant features left out for a level that disagrees)" if p.case_levels else "")
        + f": {len(table)} features tested, {len(skipped)} skipped; {int(sig.sum())} with q < {p.fdr} "
        f"({n_up} higher, {n_down} lower in {p.case})" + (f"; top: {head}" if head else "")
        + (f". Detected in one group only: {metrics['n_detected_only_case']} in {p.case}, "
           f"{metrics['n_detected_only_control']} in {p.control}" if method == "censored" else "")
        + (f". {metrics['n_significant_detection_only']} significant with at most 1 value in a group are a detection "
           "pattern, not a measured fold change (no relation): " + "; ".join(
               f"{r.label} observed in {r.n_case}/{n_case} {p.case} vs {r.n_control}/{n_control} {p.control} "
               f"(Fisher p={r.detection_p:.2g})" for r in table.loc[sig & ~measured].head(3).itertuples())
           if metrics["n_significant_detection_only"] else "")
        + (f". {metrics['n_significant_minor_group']} significant minor protein groups of a gene whose canonical group "
           "does not agree (no relation)" if metrics["n_significant_minor_group"] else "")
        + (f". Choices: {'; '.join(choice.reasons)}" if choice.reasons else "") + "." + dropped_text(d["dropped"])
    )
    return ToolResult(summary=summary, tables={"results": table, "skipped": skipped} | ({"doses": doses} if len(doses) else {})
                      | ({"excluded": excluded} if len(excluded) and "organism" in table else {}),
                      figures=figures, relations=relations, metrics=metrics)


def _group_doses(study: Study, modality: str, group: str, case: str, control: str) -> pd.DataFrame:
    """Numeric sample-table columns that hold one positive value in every ``case`` sample and another in
    every ``control`` sample (a dose or spike amount the design states): ``column, case, control``."""
    samples = study.modalities[modality].obs_names.astype(str)
    clin = study.clinical.reindex(samples)
    g = clin[group].astype(str)
    in_case, in_control = (g == str(case)).to_numpy(), (g == str(control)).to_numpy()
    rows = []
    for col in clin.columns:
        if col == group:
            continue
        x = pd.to_numeric(clin[col], errors="coerce")
        if not x.notna().all():
            continue
        a, b = x[in_case].unique(), x[in_control].unique()
        if len(a) == 1 and len(b) == 1 and a[0] > 0 and b[0] > 0 and a[0] != b[0]:
            rows.append({"column": str(col), "case": float(a[0]), "control": float(b[0])})
    return pd.DataFrame(rows, columns=["column", "case", "control"])


def differential_table(study: Study, params: ContrastTest, *, seed: int = 0) -> ContrastTable:
    """The table of a contrast through the contrast-table service
    (:func:`proteus.stats.contrasts.cached_table`: computed once per study, full test parameters and
    seed); every step that builds on a contrast asks here.

    With a ``control``, the test of ``differential_abundance``; without one, ``case`` against all other
    samples with a value by limma's moderated t on observed values, against ``lfc`` (:func:`_case_vs_rest_table`).
    """
    test = ContrastTest.model_validate(params.model_dump(include=TEST_FIELDS))
    if test.control is None:
        options = [k for k in sorted(TEST_FIELDS - {"modality", "group", "case", "control", "covariates", "lfc"})
                   if getattr(test, k) != ContrastTest.model_fields[k].get_default(call_default_factory=True)]
        if options:
            msg = (f"{', '.join(options)} apply to a test against a control level; with control=None (case vs all other "
                   f"samples) the test is limma on observed values, against lfc as the two-group test: name a control or leave them at their defaults")
            raise ToolInputError(msg)
        return cached_table(study, test, seed, lambda: _case_vs_rest_table(study, test))
    return cached_table(study, test, seed, lambda: _two_group_table(study, test, seed))


def _case_vs_rest_table(study: Study, p: ContrastTest) -> ContrastTable:
    """limma moderated t of ``case`` against every other level, on observed values with at least 2 in
    each group, adjusted for the covariates the samples can afford
    (:func:`proteus.stats.design.usable_covariates`), against ``lfc`` as the two-group test
    (:func:`resolve_lfc`; limma's treat); the method note names the covariates dropped and the threshold."""
    a = study.modalities[p.modality]
    if a.uns.get("level", "sample") == "cell":
        msg = f"modality {p.modality!r} is cell-level; a contrast needs a sample-level (bulk) layer"
        raise ToolInputError(msg)
    samples = list(a.obs_names.astype(str))
    clin = study.clinical.reindex(samples)
    g = clin[p.group].astype(object).where(clin[p.group].notna(), None).map(lambda v: None if v is None else str(v))
    is_case = g == str(p.case)
    is_ctrl = g.notna() & ~is_case
    use = is_case | is_ctrl
    covs, dropped = usable_covariates(clin.loc[use.to_numpy()], p.covariates, 2)
    Z = covariate_block(clin.loc[use.to_numpy()], covs).reindex(clin.index)
    use &= Z.notna().all(axis=1)
    n_case, n_ctrl = int((use & is_case).sum()), int((use & is_ctrl).sum())
    if n_case < 2 or n_ctrl < 2:
        msg = f"{p.group}: {p.case} has {n_case} and the other levels {n_ctrl} usable samples in {p.modality}; need at least 2 each"
        raise ToolFailed(msg)
    keep = use[use].index
    x = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
    Y = pd.DataFrame(np.asarray(x, dtype=float), index=samples, columns=a.var_names.astype(str)).loc[keep].T
    Y = Y.replace([np.inf, -np.inf], np.nan)
    ci = is_case[keep].to_numpy()
    lfc, why = resolve_lfc(p.lfc, "limma", Y.to_numpy(), ci, _label_free(a, Y.to_numpy()))
    tab = two_group_moderated(Y, is_case[keep], Z.loc[keep], lfc=lfc)
    out = pd.DataFrame({"feature": tab.index, **gene_annotation(a, tab.index), "logFC": tab["logFC"].to_numpy(),
                        "t": tab["t"].to_numpy(), "p": tab["P.Value"].to_numpy()})
    out["q"] = bh(out["p"].to_numpy())
    method = (f"limma moderated t (proteus.stats.limma), {p.case} vs all other samples"
              + (f", TREAT |log2FC| > {lfc:.3g}" if lfc > 0 else "") + (f" ({why})" if why else "") + dropped_text(dropped))
    return ContrastTable(out, pd.DataFrame(columns=["feature", "reason"]), method,
                         {"n_case": n_case, "n_control": n_ctrl, "lfc": lfc})


def _two_group_table(study: Study, p: ContrastTest, seed: int) -> ContrastTable:
    """Compute the table of :func:`differential_table` (see the ``differential_abundance`` docstring)."""
    if p.case == p.control:
        msg = f"case and control are both {p.case!r}; choose two different levels of {p.group!r}"
        raise ToolInputError(msg)
    if p.lfc != "auto" and p.lfc > 0 and p.method not in ("auto", "limma", "censored"):
        msg = f"lfc (TREAT) applies to limma or censored, not {p.method}"
        raise ToolInputError(msg)
    if p.covariates and p.method not in ("auto", "limma", "censored"):
        msg = f"covariates need method='limma' ({p.method} cannot adjust for {p.covariates})"
        raise ToolInputError(msg)
    if p.group in p.covariates:
        msg = f"group {p.group!r} cannot also be a covariate"
        raise ToolInputError(msg)
    cases = list(p.case_levels) or [p.case]
    if p.case_levels and (p.control in cases or len(set(cases)) < 2):
        msg = f"case_levels {cases} must name two or more levels of {p.group!r} other than the control {p.control!r}"
        raise ToolInputError(msg)
    if p.case_levels and p.method not in ("auto", "limma", "censored"):
        msg = f"a pooled case (case_levels) is a contrast of the full design: method 'limma' or 'censored', not {p.method}"
        raise ToolInputError(msg)
    adata = study.modalities[p.modality]
    if adata.uns.get("level", "sample") != "sample":
        msg = f"{p.modality!r} is a cell-level layer; aggregate to samples first (pseudobulk)"
        raise ToolInputError(msg)
    kind = adata.uns.get("modality", p.modality)

    tab, g, n_group_na, n_cov_na, covs, dropped = _samples(study, p.modality, p.group, [*cases, p.control], p.covariates, 1 + len(cases))
    is_case = g.isin(cases).to_numpy()
    n_case, n_control = int(is_case.sum()), int((~is_case).sum())
    if n_case < 2 or n_control < 2:
        msg = (f"too few samples with {p.modality} data: {n_case} {p.case!r} and {n_control} {p.control!r} "
               f"(need >= 2 each; {n_cov_na} dropped for missing covariates)")
        raise ToolFailed(msg)

    idx = adata.obs_names.get_indexer(tab.index)
    raw = np.asarray(adata.X[idx], dtype=float).T  # features x samples
    raw[~np.isfinite(raw)] = np.nan
    counts = adata.var["n_peptides"].to_numpy(dtype=float) if "n_peptides" in adata.var else None
    choice = choose_defaults(p, raw, is_case, adata.uns, counts)
    Y, sub = raw.copy(), None  # the tested values; the normalised layer where there is one
    if choice.normalize != "none":
        from proteus.tools.qc import normalize_layer

        sub = normalize_layer(adata[adata.obs_names[idx]], method=choice.normalize)
        Y = np.asarray(sub.X, dtype=float).T
        Y[~np.isfinite(Y)] = np.nan
    method = choice.method
    if method == "censored" and choice.normalize != "none":  # the curves must be on the scale that is tested
        choice.curves = fit_dropout_curves(Y, is_case)
    choice.lfc, lfc_reason = resolve_lfc(p.lfc, method, Y, is_case, _label_free(adata, raw))
    lfc = choice.lfc
    obs = np.isfinite(Y)
    nc, nn = obs[:, is_case].sum(1), obs[:, ~is_case].sum(1)
    sd = _nansd(Y)
    reason = np.full(Y.shape[0], "", dtype=object)
    imputed = np.zeros_like(obs)
    if p.impute == "downshift":
        from proteus.tools.qc import impute_layer

        reason[(nc < p.min_valid) & (nn < p.min_valid)] = f"fewer than {p.min_valid} values in both groups"
        layer = impute_layer(adata[adata.obs_names[idx]] if sub is None else sub, method="downshift", seed=seed)
        Y = np.asarray(layer.X, dtype=float).T
        imputed = ~obs & np.isfinite(Y)
        sd = _nansd(Y)
    elif method == "censored":
        reason[(nc < p.min_valid) & (nn < p.min_valid)] = f"fewer than {p.min_valid} values in both groups"
    else:
        reason[(nc < p.min_valid) | (nn < p.min_valid)] = f"fewer than {p.min_valid} values in a group"
    reason[(reason == "") & ~(sd > 0)] = "constant"
    tested = reason == ""
    ids = np.asarray(adata.var_names.astype(str))
    skipped = pd.DataFrame({"feature": ids[~tested], "reason": reason[~tested].astype(str),
                            "n_case": nc[~tested], "n_control": nn[~tested]})
    if tested.sum() == 0:
        msg = f"no feature of {p.modality!r} has >= {p.min_valid} values in both groups and non-zero variance"
        raise ToolFailed(msg)
    Yt = Y[tested]

    s2_prior = df_prior = None
    extra_cols: dict[str, np.ndarray] = {}
    notes: list[str] = []
    if method in ("limma", "censored"):
        cov_block, notes = build_design(tab, covs)
        X = np.column_stack([np.ones(len(g)), is_case.astype(float), pooled_columns(g.to_numpy(), cases), cov_block.to_numpy()])
        if not _full_rank(X):
            msg = f"covariates {covs} are confounded with {p.group!r} (design not of full rank)"
            raise ToolFailed(msg)
        if X.shape[0] - X.shape[1] < 1:
            msg = f"no residual degrees of freedom: {X.shape[0]} samples for {X.shape[1]} coefficients"
            raise ToolFailed(msg)
        fit = lm_fit(Yt, X)
        eb = ebayes(fit.subset([1]))
        logfc, stat, pval = eb.coefficients[:, 0].copy(), eb.t[:, 0].copy(), eb.p_value[:, 0].copy()
        s2_post, df_total = eb.s2_post, eb.df_total
        s2_prior, df_prior = float(np.median(eb.s2_prior)), float(eb.df_prior)
        if choice.variance_prior == "peptide_count":
            count_fit = count_variance_prior(fit.sigma**2, fit.df_residual, counts[tested])
            if p.variance_prior == "auto" and not count_fit[2] > eb.df_prior:
                choice.variance_prior = "constant"
                choice.reasons[-1] = (f"constant prior: peptide counts do not explain the variances better (prior df "
                                      f"{count_fit[2]:.1f} with counts vs {eb.df_prior:.1f} without)")
        if choice.variance_prior == "peptide_count":
            s2_post, s2_vec, df_prior = count_fit
            if p.variance_prior == "auto":
                choice.reasons[-1] += f" (prior df {df_prior:.1f} with counts vs {eb.df_prior:.1f} without)"
            df_total = fit.df_residual + df_prior
            with np.errstate(invalid="ignore", divide="ignore"):
                stat = logfc / eb.stdev_unscaled[:, 0] / np.sqrt(s2_post)
            pval = 2 * t_sf(np.abs(stat), df_total)
            s2_prior = float(np.median(s2_vec))
            extra_cols["n_peptides"] = counts[tested]
        else:
            extra_cols["B"] = eb.lods[:, 0]
        if lfc > 0:  # TREAT: |logFC| > lfc (limma's treat; B has no meaning for it)
            stat, pval = treat(logfc, eb.stdev_unscaled[:, 0] * np.sqrt(s2_post), df_total, lfc)
            extra_cols.pop("B", None)
        if method == "censored":
            inc = ~np.isfinite(Yt).all(1)
            if inc.any():
                extra_cols.pop("B", None)
                ct, cp, cb = censored_test(Yt[inc], X, 1, s2_post[inc], df_total[inc], choice.curves, lfc=lfc)
                stat[inc], pval[inc], logfc[inc] = ct, cp, cb
            only_case, only_control = nn[tested] == 0, nc[tested] == 0
            limit = choice.curves.rho
            with np.errstate(invalid="ignore"):  # one group undetected: difference to its detection limit
                logfc[only_case] = np.nanmean(Yt[only_case][:, is_case], 1) - limit[~is_case].mean()
                logfc[only_control] = limit[is_case].mean() - np.nanmean(Yt[only_control][:, ~is_case], 1)
            extra_cols["detection"] = np.where(only_case, f"only in {p.case}",
                                               np.where(only_control, f"only in {p.control}", "both"))
    elif method == "welch":
        stat, pval = _welch(Yt[:, is_case], Yt[:, ~is_case], p.s0, np.random.default_rng(seed))
        logfc = np.nanmean(Yt[:, is_case], 1) - np.nanmean(Yt[:, ~is_case], 1)
    else:
        stat, pval = _mann_whitney(Yt[:, is_case], Yt[:, ~is_case])
        logfc = np.nanmean(Yt[:, is_case], 1) - np.nanmean(Yt[:, ~is_case], 1)

    if lfc_reason:
        choice.reasons.append(lfc_reason)
    if p.case_levels:
        extra_cols |= level_effects(Yt, g.to_numpy(), cases, logfc)
    table = pd.DataFrame({
        "feature": ids[tested], **gene_annotation(adata, ids[tested]),
        "logFC": logfc, "AveExpr": np.nanmean(Yt, 1), "t": stat, "p": pval, "q": bh(pval),
        "n_case": nc[tested], "n_control": nn[tested], **extra_cols,
    })
    if p.impute != "none":
        table["n_imputed_case"] = imputed[tested][:, is_case].sum(1)
        table["n_imputed_control"] = imputed[tested][:, ~is_case].sum(1)
    bad = ~np.isfinite(table["p"].to_numpy())
    if bad.any():  # never hand back NaN statistics silently
        skipped = pd.concat([skipped, pd.DataFrame({"feature": table.loc[bad, "feature"], "reason": "not estimable",
                                                    "n_case": table.loc[bad, "n_case"],
                                                    "n_control": table.loc[bad, "n_control"]})])
        table = table.loc[~bad].copy()
        table["q"] = bh(table["p"].to_numpy())
    table = table.sort_values("p", kind="stable").reset_index(drop=True)
    top = pd.Index(ids).get_indexer(table["feature"].head(HEATMAP_ROWS))
    details = {
        "kind": kind, "choice": choice, "n_case": n_case, "n_control": n_control, "n_cov_na": n_cov_na,
        "n_group_na": n_group_na, "covariates": covs, "dropped": dropped, "notes": notes, "s2_prior": s2_prior,
        "df_prior": df_prior, "n_imputed": int(imputed[tested].sum()),
    }
    return ContrastTable(table, skipped, method, details, values=pd.DataFrame(Y[top], index=ids[top]),
                         groups=g.reset_index(drop=True))


def pooled_columns(groups: np.ndarray, cases: list[str]) -> np.ndarray:
    r"""Design columns that let every pooled case level keep its own mean (none for one case level).

    With an intercept and the pooled indicator, sum-to-zero contrasts among the ``m`` case levels
    (:math:`1[L_j] - 1[L_m]`, :math:`j < m`) span the full one-way design ``~ group``, so the pooled
    indicator's coefficient is :math:`\theta = \frac{1}{m}\sum_j (\mu_j - \mu_0)`: the mean level effect
    against the control, with the residual variance of the full design (limma's ``contrasts.fit`` of
    that contrast, as one coefficient that the censored model and TREAT can test too).
    """
    last = groups == cases[-1]
    cols = [(groups == lv).astype(float) - last for lv in cases[:-1]]
    return np.column_stack(cols) if cols else np.empty((len(groups), 0))


def level_effects(Y: np.ndarray, groups: np.ndarray, cases: list[str], pooled: np.ndarray, min_valid: int = 2) -> dict[str, np.ndarray]:
    """Each pooled level's own log2 fold change against the control (means of observed values; NaN
    where the level or the control has fewer than ``min_valid`` values, a detection pattern rather than
    a measured change), and ``levels_agree``: every level measured and on the side of the pooled effect
    (a shared effect, not one level's difference averaged over the others)."""
    import warnings

    def mean(cols: np.ndarray) -> np.ndarray:
        sub = Y[:, cols]
        return np.where(np.isfinite(sub).sum(1) >= min_valid, np.nanmean(sub, 1), np.nan)

    control = ~np.isin(groups, cases)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        base = mean(control)
        eff = {lv: mean(groups == lv) - base for lv in cases}
    sign = np.sign(pooled)
    agree = np.all([np.isfinite(e) & (np.sign(e) == sign) for e in eff.values()], axis=0) & (sign != 0)
    return {f"logFC[{lv}]": e for lv, e in eff.items()} | {"levels_agree": agree}


# --- differential_anova -----------------------------------------------------------------------


def _trend(fit, n_levels: int) -> pd.DataFrame:
    r"""Moderated t of a linear trend over ordered levels from a fit of ``~ 1 + level dummies + covariates``.

    Coefficient ``j`` (1..k-1) is :math:`\mu_j - \mu_0`; with centred scores :math:`c_j = j - (k-1)/2`
    the trend :math:`\sum_j c_j \mu_j / \sum_j c_j^2` (the least-squares slope of the level means on
    the level rank) equals :math:`\sum_{j \ge 1} c_j \beta_j / \sum_j c_j^2` because :math:`\sum_j c_j = 0`.
    """
    c = np.arange(n_levels) - (n_levels - 1) / 2
    weights = np.zeros(fit.coefficients.shape[1])
    weights[1:n_levels] = c[1:] / np.sum(c**2)
    eb = ebayes(contrasts_fit(fit, weights[:, None], names=["trend"]))
    return pd.DataFrame({"trend_slope": eb.coefficients[:, 0], "trend_t": eb.t[:, 0], "trend_p": eb.p_value[:, 0]})


def most_distinct_level(Y: np.ndarray, groups: np.ndarray, levels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per row, of the highest and the lowest level, the one whose mean lies farther from the mean of
    the other levels' samples, and that difference (negative when it is the lowest): the contrast that
    drives an F-test, so a hit is described as "lowest in A" rather than "highest in B" when B only
    edges the others."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.column_stack([np.nanmean(Y[:, groups == lv], 1) for lv in levels])
        diffs = np.column_stack([means[:, k] - np.nanmean(Y[:, groups != lv], 1) for k, lv in enumerate(levels)])
    rows = np.arange(len(Y))
    hi, lo = np.nanargmax(means, axis=1), np.nanargmin(means, axis=1)
    i = np.where(np.abs(diffs[rows, lo]) > np.abs(diffs[rows, hi]), lo, hi)
    return np.asarray(levels)[i], diffs[rows, i]


@register("differential_anova", family="differential", params=AnovaParams, requires=("bulk", "clinical"))
def differential_anova(study: Study, params: AnovaParams, ctx: ToolContext) -> ToolResult:
    """Find features whose abundance differs across the levels of a multi-level group (e.g. molecular subtype) with a limma moderated F test, optionally adjusting for covariates; relations ``feature --differs_across--> clinical_variable:<factor>`` (described by the level farthest from the others, extra.level, its effect and direction; the highest level in extra.top_level) and, when ordered, ``correlates_with`` the factor for a linear trend.

    Features with fewer than ``min_valid`` values in any level are skipped (counted). With
    ``ordered``, a moderated t for a linear trend across the ordered levels is reported too: the
    contrast of level means with equally spaced centred scores (the linear orthogonal-polynomial
    contrast, limma ``contrasts.fit``), its estimate the mean change per level step; trend hits
    become ``correlates_with`` relations to the factor.
    """
    name = "differential_anova"
    p = params
    adata = study.modalities[p.modality]
    kind = adata.uns.get("modality", p.modality)
    col = study.sample_table(p.modality)[p.group]
    present = col.dropna().astype(str)
    all_levels = sorted(present.unique())
    if p.levels:
        unknown = [lv for lv in p.levels if lv not in all_levels]
        if unknown:
            msg = f"levels {unknown} not found in {p.group!r}; levels: {all_levels}"
            raise ToolInputError(msg)
        levels = list(p.levels)
    else:
        counts = present.value_counts()
        levels = sorted(counts.index[counts >= 2])
        if p.ordered:
            levels, is_ordered, _ = level_order(levels)
            if not is_ordered:
                msg = f"levels of {p.group!r} ({levels}) have no order readable from their names; pass them in order as `levels`"
                raise ToolInputError(msg)
    if len(levels) < 2:
        msg = f"{p.group!r} has {len(levels)} level(s) with >= 2 samples in {p.modality}: need at least 2"
        raise ToolFailed(msg)
    tab, g, n_group_na, n_cov_na, covs, dropped = _samples(study, p.modality, p.group, levels, p.covariates, len(levels))
    counts = g.value_counts()
    small = [lv for lv in levels if counts.get(lv, 0) < 2]
    if small:
        msg = f"levels {small} of {p.group!r} have fewer than 2 samples after dropping missing covariates"
        raise ToolFailed(msg)

    idx = adata.obs_names.get_indexer(tab.index)
    Y = np.asarray(adata.X[idx], dtype=float).T
    Y[~np.isfinite(Y)] = np.nan
    gv = g.to_numpy()
    n_per = np.column_stack([np.isfinite(Y[:, gv == lv]).sum(1) for lv in levels])
    sd = _nansd(Y)
    tested = (n_per.min(1) >= p.min_valid) & (sd > 0)
    ids = np.asarray(adata.var_names.astype(str))
    skipped = pd.DataFrame({"feature": ids[~tested], "reason": np.where(
        n_per[~tested].min(1) < p.min_valid, f"fewer than {p.min_valid} values in a level", "constant")})
    if not tested.any():
        msg = f"no feature of {p.modality!r} has >= {p.min_valid} values in every level of {p.group!r}"
        raise ToolFailed(msg)
    cov_block, notes = build_design(tab, covs)
    dummies = np.column_stack([(gv == lv).astype(float) for lv in levels[1:]])
    X = np.column_stack([np.ones(len(gv)), dummies, cov_block.to_numpy()])
    if not _full_rank(X) or X.shape[0] <= X.shape[1]:
        msg = f"design ~ {p.group} + {covs} is not estimable ({X.shape[0]} samples, {X.shape[1]} columns)"
        raise ToolFailed(msg)
    Yt = Y[tested]
    fit = lm_fit(Yt, X)
    eb = ebayes(fit.subset(list(range(1, len(levels)))))
    means = np.column_stack([np.nanmean(Yt[:, gv == lv], 1) for lv in levels])
    top_i = np.nanargmax(means, axis=1)
    top_level = np.asarray(levels)[top_i]
    rest = np.array([np.nanmean(Yt[i, gv != top_level[i]]) for i in range(Yt.shape[0])])
    effect = means[np.arange(len(top_i)), top_i] - rest
    distinct_level, distinct_effect = most_distinct_level(Yt, gv, levels)
    table = pd.DataFrame({
        "feature": ids[tested], **gene_annotation(adata, ids[tested]),
        "F": eb.F, "p": eb.F_p_value, "q": bh(eb.F_p_value), "AveExpr": eb.amean,
        "top_level": top_level, "top_vs_rest": effect, "distinct_level": distinct_level, "distinct_vs_rest": distinct_effect,
        **{f"mean_{lv}": means[:, k] for k, lv in enumerate(levels)},
        **{f"n_{lv}": n_per[tested][:, k] for k, lv in enumerate(levels)},
    })
    if p.ordered:
        table = pd.concat([table, _trend(fit, len(levels))], axis=1)
    table = table.loc[np.isfinite(table["p"])].sort_values("p", kind="stable").reset_index(drop=True)
    table["q"] = bh(table["p"].to_numpy())
    sig = table["q"] < p.fdr
    measured = table[[f"n_{lv}" for lv in levels]].min(axis=1) >= 2  # the rules of differential_abundance
    driver = table.assign(way=table["distinct_level"].astype(str) + np.sign(table["distinct_vs_rest"]).astype(str))
    claim = sig & measured & agrees_with_canonical(driver, "way", p.fdr)  # same level driving it, same way
    prov = ctx.provenance_for(name, p)
    n_total = int(len(gv))

    def observed(r) -> dict[str, tuple[int, int]]:
        return {lv: (int(r[f"n_{lv}"]), int(counts.get(lv, 0))) for lv in levels}

    factor = Entity(type="clinical_variable", label=p.group)
    relations = [  # the F-test says a feature differs across the factor; the level that drives it describes how
        Relation(
            subject=feature_entity(kind, r["label"]), predicate="differs_across", object=factor,
            stats=Stats(effect=float(r["distinct_vs_rest"]), effect_type="log2FC most distinct level vs the others", p=float(r["p"]),
                        q=float(r["q"]), n=n_total, direction="up" if r["distinct_vs_rest"] > 0 else "down",
                        observed=observed(r),
                        extra={"F": float(r["F"]), "feature_id": str(r["feature"]), "df1": int(eb.F_df1), "test": "moderated F",
                               "level": str(r["distinct_level"]), "top_level": str(r["top_level"]), "levels": list(levels)}),
            modality=p.modality, provenance=prov,
        )
        for _, r in table.loc[claim].head(MAX_RELATIONS).iterrows()
    ]
    trend_metrics: dict = {}
    if p.ordered:
        table["trend_q"] = bh(table["trend_p"].to_numpy())
        tsig = table["trend_q"] < p.fdr
        tclaim = tsig & measured & agrees_with_canonical(table.assign(q=table["trend_q"]), "trend_slope", p.fdr)
        trend_metrics = {"n_trend_significant": int(tsig.sum()), "n_trend_up": int((tsig & (table["trend_slope"] > 0)).sum()),
                         "n_trend_down": int((tsig & (table["trend_slope"] < 0)).sum())}
        relations += [
            Relation(
                subject=feature_entity(kind, r["label"]), predicate="correlates_with", object=factor,
                stats=Stats(effect=float(r["trend_slope"]), effect_type="log2 change per level", p=float(r["trend_p"]),
                            q=float(r["trend_q"]), n=n_total, direction="positive" if r["trend_slope"] > 0 else "negative",
                            observed=observed(r),
                            extra={"t": float(r["trend_t"]), "feature_id": str(r["feature"]), "test": "linear trend",
                                   "levels": list(levels)}),
                modality=p.modality, provenance=prov,
            )
            for _, r in table.loc[tclaim].sort_values("trend_p").head(MAX_RELATIONS).iterrows()
        ]
    top = table.head(40)
    rows = pd.Index(ids).get_indexer(top["feature"])
    slug = f"{p.modality}_{p.group}".replace(" ", "_").replace("/", "-")
    figures = [_heatmap(ctx, f"anova_heatmap_{slug}", Y[rows], list(top["label"]), g.reset_index(drop=True),
                        f"{p.modality}: top {len(top)} features by moderated F across {p.group}")] if ctx.figures else []
    by_level = table.loc[sig, "top_level"].value_counts().to_dict()
    metrics = {
        "n_tested": int(len(table)), "n_significant": int(sig.sum()), "n_skipped": int(len(skipped)),
        "levels": levels, "n_per_level": {lv: int(counts.get(lv, 0)) for lv in levels},
        "n_significant_by_top_level": {str(k): int(v) for k, v in by_level.items()},
        "s2_prior": float(np.median(eb.s2_prior)), "df_prior": float(eb.df_prior), "fdr": p.fdr,
        "n_samples_dropped_missing_covariate": n_cov_na, "covariates": notes, "covariates_dropped": dropped, "ordered": p.ordered, **trend_metrics,
    }
    trend_text = (f"; linear trend over {' < '.join(levels)}: {trend_metrics['n_trend_up']} increasing, "
                  f"{trend_metrics['n_trend_down']} decreasing (q < {p.fdr})") if p.ordered else ""
    summary = (
        f"Moderated F test of {p.modality} across {len(levels)} levels of {p.group} ({', '.join(levels)})"
        + (f" adjusting for {', '.join(covs)}" if covs else "")
        + f": {len(table)} features tested, {len(skipped)} skipped, {int(sig.sum())} with q < {p.fdr}; "
        f"highest level among them: {by_level}{trend_text}." + dropped_text(dropped)
    )
    return ToolResult(summary=summary, tables={"results": table, "skipped": skipped}, figures=figures,
                      relations=relations, metrics=metrics)
