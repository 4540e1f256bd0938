"""proteus.stats.limma and proteus.stats.multitest against R limma, statsmodels and permutation nulls.

Data: CPTAC UCEC (Dou et al. 2020, Cell) as shipped in the ``cptac`` 0.4.1 package, read straight
from its files so these tests depend on nothing else in PROTEUS.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from proteus.stats.limma import contrasts_fit, ebayes, lm_fit, top_table, trigamma_inverse
from proteus.stats.multitest import bh


def _cptac_dir() -> Path:
    spec = importlib.util.find_spec("cptac")
    if spec is None or spec.origin is None:
        pytest.skip("cptac is not installed (pip install cptac==0.4.1)")
    d = Path(spec.origin).parent / "endometrial" / "data"
    if not (d / "proteomics.cct.gz").exists():
        pytest.skip(f"CPTAC UCEC files not found under {d}")
    return d


@pytest.fixture(scope="module")
def ucec():
    d = _cptac_dir()
    clin = pd.read_csv(d / "clinical.txt", sep="\t", index_col=0, encoding="cp1252")
    prot = pd.read_csv(d / "proteomics.cct.gz", sep="\t", index_col=0)
    return clin, prot


@pytest.fixture(scope="module")
def tumour_normal(ucec):
    clin, prot = ucec
    tn = clin["Proteomics_Tumor_Normal"]
    samples = [s for s in prot.columns if tn.get(s) in ("Tumor", "Adjacent_normal")]
    return clin.loc[samples], prot[samples]


def _has_r_limma() -> bool:
    if shutil.which("Rscript") is None:
        return False
    r = subprocess.run(["Rscript", "-e", "suppressMessages(library(limma))"], capture_output=True)
    return r.returncode == 0


needs_r = pytest.mark.skipif(not _has_r_limma(), reason="Rscript with the limma package is not installed")

R_SCRIPT = r"""
suppressMessages(library(limma))
args <- commandArgs(trailingOnly = TRUE)
y <- as.matrix(read.delim(args[1], row.names = 1, check.names = FALSE))
design <- as.matrix(read.delim(args[2], row.names = 1, check.names = FALSE))
mode <- args[3]; trend <- as.logical(args[5])
fit <- suppressWarnings(lmFit(y, design))
if (mode == "contrast") {
  C <- as.matrix(read.delim(args[4], row.names = 1, check.names = FALSE))
  fit <- contrasts.fit(fit, C)
} else {
  coefs <- as.integer(strsplit(args[4], ",")[[1]])
  fit <- fit[, coefs]
}
fit <- suppressWarnings(eBayes(fit, trend = trend))
tt <- topTable(fit, coef = 1, number = Inf, sort.by = "none")
out <- data.frame(row.names = rownames(fit), logFC = fit$coefficients[, 1], su = fit$stdev.unscaled[, 1],
  t = fit$t[, 1], p = fit$p.value[, 1], q = tt[rownames(fit), "adj.P.Val"], B = fit$lods[, 1],
  sigma = fit$sigma, df = fit$df.residual, s2post = fit$s2.post, F = fit$F, Fp = fit$F.p.value,
  s2prior = fit$s2.prior, dfprior = fit$df.prior)
write.table(out, args[6], sep = "\t", quote = FALSE)
"""


def _run_r(tmp_path: Path, Y: pd.DataFrame, design: pd.DataFrame, mode: str, arg: str | pd.DataFrame,
           trend: bool = False) -> pd.DataFrame:
    (tmp_path / "fit.R").write_text(R_SCRIPT)
    Y.to_csv(tmp_path / "y.tsv", sep="\t", na_rep="NA")
    design.to_csv(tmp_path / "design.tsv", sep="\t")
    if isinstance(arg, pd.DataFrame):
        arg.to_csv(tmp_path / "contrast.tsv", sep="\t")
        arg = str(tmp_path / "contrast.tsv")
    out = tmp_path / "out.tsv"
    cmd = ["Rscript", str(tmp_path / "fit.R"), str(tmp_path / "y.tsv"), str(tmp_path / "design.tsv"), mode, arg,
           str(trend).upper(), str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"R limma failed:\n{res.stderr}")
    return pd.read_csv(out, sep="\t", index_col=0, na_values=["NA"], keep_default_na=False)


def _close(a, b, rtol=1e-6, atol=0.0):
    a, b = np.asarray(a, float), np.asarray(b, float)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    f = np.isfinite(a)
    np.testing.assert_allclose(a[f], b[f], rtol=rtol, atol=atol)


def _compare(ours, r: pd.DataFrame, f_too: bool = False):
    """Every per-feature statistic within 1e-6 relative; hyper-parameters too."""
    tab = top_table(ours, 0)
    _close(tab["logFC"], r["logFC"], atol=1e-12)
    _close(ours.stdev_unscaled[:, 0], r["su"])
    _close(tab["t"], r["t"], atol=1e-12)
    _close(tab["P.Value"], r["p"])
    _close(tab["adj.P.Val"], r["q"])
    _close(tab["B"], r["B"], rtol=1e-5)
    _close(ours.sigma, r["sigma"])
    _close(ours.df_residual, r["df"])
    _close(ours.s2_post, r["s2post"])
    _close(np.broadcast_to(ours.s2_prior, r.shape[0]), r["s2prior"])
    assert np.isclose(ours.df_prior, r["dfprior"].iloc[0], rtol=1e-6)
    if f_too:
        _close(ours.F, r["F"])
        _close(ours.F_p_value, r["Fp"])


@needs_r
def test_tumour_vs_normal_matches_r_limma(tumour_normal, tmp_path):
    """Tumour vs adjacent normal, ``~ group``, with missing values (3,091 proteins have NaN).

    R::

        fit <- lmFit(y, model.matrix(~ group)); fit <- eBayes(fit[, 2])
        topTable(fit, coef = 1, number = Inf, sort.by = "none")
    """
    clin, Y = tumour_normal
    assert Y.isna().any(axis=1).sum() > 1000
    design = pd.DataFrame({"Intercept": 1.0, "Tumor": (clin["Proteomics_Tumor_Normal"] == "Tumor").astype(float)},
                          index=Y.columns)
    ours = ebayes(lm_fit(Y.to_numpy(), design.to_numpy()).subset([1]))
    r = _run_r(tmp_path, Y, design, "coef", "2")
    _compare(ours, r, f_too=True)
    assert (top_table(ours)["adj.P.Val"] < 0.05).sum() > 2000  # a strong, well-known contrast


@needs_r
def test_trend_matches_r_limma(tumour_normal, tmp_path):
    """limma-trend on features with any value. R: ``eBayes(lmFit(y, design)[, 2], trend = TRUE)``."""
    clin, Y = tumour_normal
    Y = Y[Y.notna().any(axis=1)]
    design = pd.DataFrame({"Intercept": 1.0, "Tumor": (clin["Proteomics_Tumor_Normal"] == "Tumor").astype(float)},
                          index=Y.columns)
    ours = ebayes(lm_fit(Y.to_numpy(), design.to_numpy()).subset([1]), trend=True)
    r = _run_r(tmp_path, Y, design, "coef", "2", trend=True)
    _compare(ours, r)


@needs_r
def test_batch_covariate_and_contrast_match_r_limma(tumour_normal, tmp_path):
    """``~ 0 + group + TMT batch`` (non-orthogonal) and the contrast Tumor - Normal.

    R::

        fit <- lmFit(y, design); fit <- contrasts.fit(fit, C); fit <- eBayes(fit)
    """
    clin, Y = tumour_normal
    g = clin["Proteomics_Tumor_Normal"]
    design = pd.DataFrame({"Normal": (g != "Tumor").astype(float), "Tumor": (g == "Tumor").astype(float)},
                          index=Y.columns)
    batch = clin["Proteomics_TMT_batch"].astype(int)
    for b in sorted(batch.unique())[1:]:
        design[f"batch{b}"] = (batch == b).astype(float)
    C = pd.DataFrame({"TvsN": np.r_[-1.0, 1.0, np.zeros(design.shape[1] - 2)]}, index=design.columns)
    fit = lm_fit(Y.to_numpy(), design.to_numpy(), list(design.columns))
    ours = ebayes(contrasts_fit(fit, C.to_numpy(), ["TvsN"]))
    r = _run_r(tmp_path, Y, design, "contrast", C)
    _compare(ours, r)


@needs_r
def test_moderated_f_multilevel_matches_r_limma(ucec, tmp_path):
    """Moderated F across the four genomic subtypes of tumours, ``~ subtype``, coefficients 2:4.

    R::

        fit <- lmFit(y, model.matrix(~ subtype)); fit <- eBayes(fit[, 2:4]); fit$F; fit$F.p.value
    """
    clin, prot = ucec
    sub = clin["Genomics_subtype"].reindex(prot.columns)
    keep = sub.notna() & (clin["Proteomics_Tumor_Normal"].reindex(prot.columns) == "Tumor")
    Y, sub = prot.loc[:, keep], sub[keep]
    levels = sorted(sub.unique())
    design = pd.DataFrame({"Intercept": 1.0}, index=Y.columns)
    for lv in levels[1:]:
        design[lv] = (sub == lv).astype(float)
    ours = ebayes(lm_fit(Y.to_numpy(), design.to_numpy()).subset([1, 2, 3]))
    r = _run_r(tmp_path, Y, design, "coef", "2,3,4")
    _compare(ours, r, f_too=True)
    assert ours.F_df1 == 3


@needs_r
def test_phosphosites_with_non_estimable_coefficients_match_r_limma(tumour_normal, tmp_path):
    """Sites seen in one group only have a non-estimable group coefficient (NaN in R and here)."""
    clin, Y = tumour_normal
    phos = pd.read_csv(_cptac_dir() / "phosphoproteomics_site.cct.gz", sep="\t", index_col=0, nrows=4000)[Y.columns]
    design = pd.DataFrame({"Intercept": 1.0, "Tumor": (clin["Proteomics_Tumor_Normal"] == "Tumor").astype(float)},
                          index=Y.columns)
    ours = ebayes(lm_fit(phos.to_numpy(), design.to_numpy()).subset([1]))
    assert np.isnan(ours.coefficients[:, 0]).sum() > 10  # the hard case is exercised
    r = _run_r(tmp_path, phos, design, "coef", "2")
    _compare(ours, r)


def test_no_missing_values_equals_ols(tumour_normal):
    """Complete features: coefficient = difference of means, sigma = pooled SD (textbook OLS)."""
    clin, Y = tumour_normal
    Yc = Y.dropna().iloc[:200]
    g = (clin["Proteomics_Tumor_Normal"] == "Tumor").to_numpy()
    X = np.column_stack([np.ones(len(g)), g.astype(float)])
    fit = lm_fit(Yc.to_numpy(), X)
    diff = Yc.loc[:, g].mean(axis=1) - Yc.loc[:, ~g].mean(axis=1)
    np.testing.assert_allclose(fit.coefficients[:, 1], diff, rtol=1e-10)
    res = stats.ttest_ind(Yc.loc[:, g], Yc.loc[:, ~g], axis=1)
    t_ols = fit.coefficients[:, 1] / (fit.stdev_unscaled[:, 1] * fit.sigma)
    np.testing.assert_allclose(t_ols, res.statistic, rtol=1e-10)


def test_features_never_seen_in_a_batch_level_drop_that_column_as_r_does(ucec):
    """Tumours, ``~ group + TMT plex``: a protein never quantified in one plex has an all-zero plex column on
    its observed samples. R's ``lm.fit`` aliases that column (NA) and fits the rest; the batch fit of the
    remaining columns must equal that fit, here checked feature by feature against least squares on the
    observed samples (numpy lstsq) with the empty columns dropped."""
    clin, prot = ucec
    tum = [s for s in prot.columns if clin["Proteomics_Tumor_Normal"].get(s) == "Tumor"]
    plex = clin.loc[tum, "Proteomics_TMT_plex"].astype(str)
    X = np.column_stack([np.ones(len(tum)), (clin.loc[tum, "MSI_status"] == "MSI-H").to_numpy(float),
                         *[(plex == lv).to_numpy(float) for lv in sorted(plex.unique())[1:]]])
    Y = prot[tum].to_numpy(float)
    obs = np.isfinite(Y)
    empty = (obs.astype(float) @ X**2) == 0
    full = np.array([o.sum() > 0 and np.linalg.matrix_rank(X[o][:, ~e]) == (~e).sum() for o, e in zip(obs, empty)])  # else R pivots further
    rows = np.flatnonzero(empty.any(axis=1) & full & (obs.sum(1) > X.shape[1] + 2))[:150]
    assert len(rows) >= 50  # the case is exercised
    fit = lm_fit(Y[rows], X)
    for i, g in enumerate(rows):
        keep = ~empty[g]
        ref, *_ = np.linalg.lstsq(X[obs[g]][:, keep], Y[g, obs[g]], rcond=None)
        assert np.isnan(fit.coefficients[i, ~keep]).all()
        np.testing.assert_allclose(fit.coefficients[i, keep], ref, rtol=1e-8, atol=1e-10)
        assert fit.df_residual[i] == obs[g].sum() - keep.sum()


def test_trigamma_inverse_inverts():
    x = np.array([1e-8, 0.01, 0.5, 3.0, 50.0, 1e8])
    np.testing.assert_allclose(stats.special.polygamma(1, trigamma_inverse(x))[1:5] if hasattr(stats, "special")
                               else __import__("scipy.special").special.polygamma(1, trigamma_inverse(x))[1:5],
                               x[1:5], rtol=1e-7)


def test_distributions_equal_scipy_stats_bit_for_bit(tumour_normal):
    """The scipy.special calls of proteus.stats.distributions give exactly scipy.stats' numbers, on the
    tumour-vs-normal moderated t and F statistics and at the edges (infinite, zero, invalid df, NaN)."""
    from proteus.stats import distributions as d

    clin, prot = tumour_normal
    case = (clin["Proteomics_Tumor_Normal"] == "Tumor").to_numpy(float)
    eb = ebayes(lm_fit(prot.to_numpy(float), np.column_stack([np.ones(case.size), case])))
    t, p, df_total = eb.t[:, 1], eb.p_value[:, 1], eb.df_total
    x = np.concatenate([t, -np.abs(t[:3]), [0.0, -np.inf, np.inf, np.nan, 1e-300, 40.0, -40.0]])
    df = np.concatenate([df_total, df_total[:3], [np.inf, 3, 3, 3, 0, -1, np.nan]])
    q = np.concatenate([p, p[:3], [0, 1, -0.1, 1.1, np.nan, 1e-300, 0.5]])
    F = np.concatenate([eb.F, [-1.0, 0.0, np.inf, np.nan]])
    dfn, dfd = np.full(F.size, 2.0), np.concatenate([df_total, [np.inf, 3, 0, np.nan]])
    pairs = [
        (d.t_sf(x, df), stats.t.sf(x, df)), (d.t_logsf(x, df), stats.t.logsf(x, df)),
        (d.t_isf(q, df), stats.t.isf(q, df)), (d.f_sf(F, dfn, dfd), stats.f.sf(F, dfn, dfd)),
        (d.chi2_sf(F, dfd), stats.chi2.sf(F, dfd)), (d.norm_sf(x), stats.norm.sf(x)), (d.norm_ppf(q), stats.norm.ppf(q)),
        (d.t_sf(1.5, 7.0), stats.t.sf(1.5, 7.0)),
    ]
    for ours, theirs in pairs:
        assert np.shape(ours) == np.shape(theirs)
        np.testing.assert_array_equal(ours, theirs)


def test_bh_matches_statsmodels_and_keeps_nan():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(size=500), rng.uniform(0, 1e-3, size=50)])
    p[rng.choice(p.size, 40, replace=False)] = np.nan
    q = bh(p)
    ok = ~np.isnan(p)
    np.testing.assert_array_equal(np.isnan(q), ~ok)
    np.testing.assert_allclose(q[ok], multipletests(p[ok], method="fdr_bh")[1], rtol=1e-12)
    assert np.isnan(bh(np.array([np.nan, np.nan]))).all()
    np.testing.assert_allclose(bh([0.01]), [0.01])


def _null_tests(Y: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """p-values of the three methods of ``differential_abundance`` (their own implementations)."""
    from proteus.tools.differential import _mann_whitney, _welch

    a, b = Y[:, labels], Y[:, ~labels]
    X = np.column_stack([np.ones(labels.size), labels.astype(float)])
    lim = ebayes(lm_fit(Y, X).subset([1])).p_value[:, 0]
    return {"limma": lim, "welch": _welch(a, b, 0.0, None)[1], "mann_whitney": _mann_whitney(a, b)[1]}


def test_welch_and_mann_whitney_match_scipy(tumour_normal):
    from proteus.tools.differential import _mann_whitney, _welch

    clin, Y = tumour_normal
    g = (clin["Proteomics_Tumor_Normal"] == "Tumor").to_numpy()
    Y = Y.to_numpy()[:300]
    Y = Y[(np.isfinite(Y[:, g]).sum(1) >= 3) & (np.isfinite(Y[:, ~g]).sum(1) >= 3)]
    a, b = Y[:, g], Y[:, ~g]
    ref = stats.ttest_ind(a, b, axis=1, equal_var=False, nan_policy="omit")
    np.testing.assert_allclose(_welch(a, b, 0.0, None)[1], np.asarray(ref.pvalue), rtol=1e-10)
    ref = stats.mannwhitneyu(a, b, axis=1, nan_policy="omit", method="asymptotic")
    np.testing.assert_allclose(_mann_whitney(a, b)[1], ref.pvalue, rtol=1e-10)


def test_one_welch_for_one_and_many_labellings_and_for_edges(tumour_normal):
    """proteus.stats.welch.welch_t (used by differential_abundance) equals scipy's Welch t-test, and
    student_t (the in-run edge re-tests) scipy's pooled t-test; a matrix of labellings gives each
    labelling's own result."""
    from proteus.edge_data import student
    from proteus.stats.welch import student_t, welch_t

    clin, Y = tumour_normal
    g = (clin["Proteomics_Tumor_Normal"] == "Tumor").to_numpy()
    Y = Y.to_numpy()[:600]
    ref = stats.ttest_ind(Y[:, g], Y[:, ~g], axis=1, equal_var=False, nan_policy="omit")
    w = welch_t(Y, g)
    ok = np.isfinite(w.t)
    assert ok.sum() > 500 and np.isnan(Y).any()
    np.testing.assert_allclose(w.t[ok], np.asarray(ref.statistic)[ok], rtol=1e-10)
    np.testing.assert_allclose(w.df[ok], np.asarray(ref.df)[ok], rtol=1e-10)
    np.testing.assert_allclose(w.diff[ok], (np.nanmean(Y[:, g], 1) - np.nanmean(Y[:, ~g], 1))[ok], rtol=1e-10)
    rng = np.random.default_rng(0)
    W = np.column_stack([rng.permutation(g) for _ in range(4)])
    many = welch_t(Y, W)
    for j in range(W.shape[1]):
        np.testing.assert_allclose(many.t[:, j], welch_t(Y, W[:, j]).t, rtol=1e-10, equal_nan=True)
    # the edge re-tests' Student t (pooled variance) equals scipy's equal-variance t-test
    ref = stats.ttest_ind(Y[:, g], Y[:, ~g], axis=1, equal_var=True, nan_policy="omit")
    t, diff, _, df = student(Y.T, g)  # samples in rows, as the edge re-tests hold them
    ok = np.isfinite(t)
    assert ok.sum() > 500
    np.testing.assert_allclose(t[ok], np.asarray(ref.statistic)[ok], rtol=1e-10)
    np.testing.assert_allclose(df[ok], np.asarray(ref.df)[ok], rtol=1e-10)
    many = student_t(Y, W)
    for j in range(W.shape[1]):
        np.testing.assert_allclose(many.t[:, j], student_t(Y, W[:, j]).t, rtol=1e-10, equal_nan=True)


def test_false_positives_on_permuted_tumour_labels(ucec):
    """Null data: random half/half labels *within tumours*, 200 permutations, 1,500 proteins.

    Each method must (i) give p-values whose pooled distribution is uniform (KS p > 0.001 on a
    thinned sample, mean p near 0.5), (ii) reject at p < 0.05 in 5 % +- 1 % of tests, and
    (iii) make a BH discovery (q < 0.05) in at most 10 % of permutations (FWER-like control;
    a method with inflated type-I error, e.g. an anti-conservative variance, fails this).
    """
    clin, prot = ucec
    tum = [s for s in prot.columns if clin["Proteomics_Tumor_Normal"].get(s) == "Tumor"]
    rng = np.random.default_rng(20240601)
    Y = prot[tum].to_numpy()
    Y = Y[rng.choice(Y.shape[0], 1500, replace=False)]
    Y = Y[np.sum(np.isfinite(Y), axis=1) >= 20]
    n = len(tum)
    pooled: dict[str, list[np.ndarray]] = {"limma": [], "welch": [], "mann_whitney": []}
    any_disc = dict.fromkeys(pooled, 0)
    for k in range(200):
        lab = np.zeros(n, dtype=bool)
        lab[np.random.default_rng(k).choice(n, n // 2, replace=False)] = True
        for m, p in _null_tests(Y, lab).items():
            pooled[m].append(p)
            any_disc[m] += int(np.nanmin(bh(p)) < 0.05)
    for m, ps in pooled.items():
        p = np.concatenate(ps)
        p = p[np.isfinite(p)]
        rate = np.mean(p < 0.05)
        assert 0.04 <= rate <= 0.06, (m, rate)
        assert abs(p.mean() - 0.5) < 0.02, (m, p.mean())
        assert stats.kstest(p[::97], "uniform").pvalue > 1e-3, m
        assert any_disc[m] / 200 <= 0.10, (m, any_disc[m])


def test_sites_missing_from_whole_plexes_keep_the_columns_r_keeps_in_one_batch(tumour_normal):
    """Phosphosites with TMT plex covariates: a site never seen in a plex has that plex's column empty, one seen in
    few samples has fewer observations than coefficients. :func:`_kept_columns` (the pivoting rule on X'X for all
    of them at once) keeps the columns :func:`_estimable` keeps on each site's observed design, and each such site's
    coefficients equal a least-squares fit of its observed samples on those columns (R's ``lm.fit``)."""
    from proteus.stats.limma import _estimable, _kept_columns

    clin, Y = tumour_normal
    phos = pd.read_csv(_cptac_dir() / "phosphoproteomics_site.cct.gz", sep="\t", index_col=0, nrows=3000)[Y.columns].to_numpy()
    plex = pd.get_dummies(clin["Proteomics_TMT_plex"].astype(str), drop_first=True).to_numpy(float)
    X = np.column_stack([np.ones(len(clin)), (clin["Proteomics_Tumor_Normal"] == "Tumor").to_numpy(float), plex])
    obs = np.isfinite(phos)
    aliased = [g for g in range(len(phos)) if 0 < obs[g].sum() and not _estimable(X[obs[g]]).all()]
    assert len(aliased) > 100  # the hard case is common on this layer
    XtX = np.einsum("gs,si,sj->gij", obs[aliased].astype(float), X, X)
    keep, unsure = _kept_columns(XtX)
    assert not unsure.any()
    np.testing.assert_array_equal(keep, [_estimable(X[obs[g]]) for g in aliased])
    fit = lm_fit(phos, X)
    for g, k in zip(aliased[::10], keep[::10]):
        beta, *_ = np.linalg.lstsq(X[obs[g]][:, k], phos[g, obs[g]], rcond=None)
        np.testing.assert_allclose(fit.coefficients[g, k], beta, rtol=1e-8, atol=1e-10)
        assert np.isnan(fit.coefficients[g, ~k]).all() and fit.df_residual[g] == obs[g].sum() - k.sum()
