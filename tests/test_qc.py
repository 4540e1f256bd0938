"""QC / preprocessing tools on a Study built by hand from the CPTAC UCEC files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from proteus.study import Study
from proteus.tools.qc import MIN_DEPENDENCE_RHO, filter_valid, impute_layer, missingness_type, normalize_layer
from proteus.tools.registry import ToolContext, ToolFailed, ToolInputError, get_tool


@pytest.fixture(scope="module")
def study() -> Study:
    spec = importlib.util.find_spec("cptac")
    if spec is None or spec.origin is None:
        pytest.skip("cptac is not installed (pip install cptac==0.4.1)")
    d = Path(spec.origin).parent / "endometrial" / "data"
    clin = pd.read_csv(d / "clinical.txt", sep="\t", index_col=0, encoding="cp1252")
    df = pd.read_csv(d / "proteomics.cct.gz", sep="\t", index_col=0)
    a = ad.AnnData(df.T.astype(float))
    a.var["gene"] = list(df.index)
    a.uns.update(modality="proteomics", level="sample", source="proteomics.cct.gz")
    return Study(root=d, modalities={"proteomics": a}, clinical=clin)


@pytest.fixture
def ctx(tmp_path) -> ToolContext:
    return ToolContext(out_dir=tmp_path, seed=11)


def test_missingness_report(study, ctx):
    res = get_tool("missingness_report")(study, {"modality": "proteomics", "group": "Proteomics_Tumor_Normal"}, ctx)
    m = res.metrics
    X = np.asarray(study.modalities["proteomics"].X)
    assert m["missing_fraction"] == pytest.approx(np.isnan(X).mean())
    assert m["n_complete_features"] == int((~np.isnan(X)).all(0).sum())
    assert len(res.tables["per_sample"]) == 153 and len(res.tables["per_feature"]) == X.shape[1]
    assert set(res.tables["per_group"]["group"]) == {"Tumor", "Adjacent_normal", "Enriched_normal",
                                                     "Myometrium_normal"}
    assert m["missingness_type_hint"] == missingness_type(m["spearman_mean_vs_missing"], m["spearman_p"])
    assert Path(res.figures[0]).exists()


def test_missingness_that_depends_on_intensity_is_not_called_mar(ctx):
    """UPS1 spike-in (Ramus 2016, 50 vs 5 fmol): low-intensity features are missing more often (the spiked
    standards drop out at 5 fmol), a weak but significant correlation (rho -0.25, p=0.001): MNAR-like, never "MAR-like"."""
    from scipy import stats

    from proteus.datasets import shared_dataset_dir
    from proteus.io import load_study

    d = shared_dataset_dir("ramus2016-ups1-maxquant")
    if d is None or not (d / "50vs5").is_dir():
        pytest.skip("shared dataset ramus2016-ups1-maxquant/50vs5 absent")
    ups = load_study(d / "50vs5")
    m = get_tool("missingness_report")(ups, {"modality": "proteomics"}, ctx).metrics
    X = np.asarray(ups.modalities["proteomics"].X, dtype=float)
    frac = np.isnan(X).mean(0)
    ok = (frac > 0) & (frac < 1)
    rho, p = stats.spearmanr(np.nanmean(X[:, ok], 0), frac[ok])
    assert m["spearman_mean_vs_missing"] == pytest.approx(rho) and m["spearman_p"] == pytest.approx(p)
    assert -0.3 < rho <= -MIN_DEPENDENCE_RHO and p < 0.01
    assert m["missingness_type_hint"] == "MNAR-like (intensity-dependent)"
    # the rule: significant and at least a small correlation (Cohen 1988); otherwise no dependence is claimed
    assert missingness_type(-0.05, 1e-9) == missingness_type(-0.4, 0.2) == "MAR-like (no intensity dependence)"
    assert missingness_type(0.2, 1e-4).startswith("intensity-dependent") and missingness_type(float("nan"), 1.0) == "undetermined"


def test_filter_modes(study, ctx):
    a = study.modalities["proteomics"]
    g = study.clinical.reindex(a.obs_names)["Proteomics_Tumor_Normal"]
    tot, _ = filter_valid(a, min_count=3, mode="total")
    each, tab = filter_valid(a, min_count=3, mode="each_group", groups=g)
    anyg, _ = filter_valid(a, min_count=3, mode="any_group", groups=g)
    assert each.n_vars <= anyg.n_vars <= tot.n_vars <= a.n_vars
    assert (tab.loc[tab["kept"], [c for c in tab if c.startswith("n_valid_")]] >= 3).all().all()
    res = get_tool("filter_valid_values")(study, {"modality": "proteomics", "mode": "each_group",
                                                  "group": "Proteomics_Tumor_Normal"}, ctx)
    assert res.metrics["n_after"] == each.n_vars and res.metrics["new_modality"] is None
    assert "proteomics" in study.modalities and study.modalities["proteomics"].n_vars == a.n_vars
    with pytest.raises(ToolInputError, match="needs `group`"):
        get_tool("filter_valid_values")(study, {"modality": "proteomics", "mode": "each_group"}, ctx)


def test_write_as_adds_new_layer_only(study, ctx):
    s = study.subset_samples(list(study.clinical.index))
    res = get_tool("filter_valid_values")(s, {"modality": "proteomics", "min_count": 100, "write_as": "prot_f"}, ctx)
    assert s.modalities["prot_f"].n_vars == res.metrics["n_after"] < s.modalities["proteomics"].n_vars
    with pytest.raises(ToolInputError, match="already"):
        get_tool("filter_valid_values")(s, {"modality": "proteomics", "write_as": "proteomics"}, ctx)


def test_normalize(study, ctx):
    a = study.modalities["proteomics"]
    med = normalize_layer(a, method="median")
    m = np.nanmedian(np.asarray(med.X), 1)
    assert np.ptp(m) < 1e-12
    complete = np.isfinite(np.asarray(a.X)).all(0)
    srt = np.sort(np.asarray(normalize_layer(a[:, complete], method="quantile").X), axis=1)
    # identical distributions (up to tied values, which share the mean of their reference quantiles)
    qs = np.quantile(srt, [0.1, 0.25, 0.5, 0.75, 0.9], axis=1)
    assert np.ptp(qs, axis=1).max() < 0.01
    Q = np.asarray(normalize_layer(a, method="quantile").X)
    assert np.ptp(np.nanmedian(Q, 1)) < 0.05  # with missing values: interpolated reference, same centre
    res = get_tool("normalize")(study, {"modality": "proteomics"}, ctx)
    assert res.metrics["median_sd_after"] < 1e-10 < res.metrics["median_sd_before"]


def test_impute_downshift_is_seeded_and_masked(study, ctx):
    a = study.modalities["proteomics"][:, :3000]
    i1, i2 = impute_layer(a, seed=1), impute_layer(a, seed=1)
    np.testing.assert_array_equal(np.asarray(i1.X), np.asarray(i2.X))
    X, Xi, mask = np.asarray(a.X), np.asarray(i1.X), np.asarray(i1.layers["imputed"])
    np.testing.assert_array_equal(mask, np.isnan(X))
    np.testing.assert_array_equal(Xi[~mask], X[~mask])
    # Perseus: imputed values sit 1.8 SD below each sample's mean, with 0.3 SD spread
    s = 0
    v = X[s][~np.isnan(X[s])]
    d = Xi[s][mask[s]]
    assert abs(d.mean() - (v.mean() - 1.8 * v.std())) < 0.15 * v.std()
    knn = impute_layer(a, method="knn")
    assert np.isfinite(np.asarray(knn.X)[:, np.isfinite(X).any(0)]).all()
    res = get_tool("impute")(study, {"modality": "proteomics"}, ctx)
    assert res.metrics["n_imputed"] == int(np.isnan(np.asarray(study.modalities["proteomics"].X)).sum()) - \
        res.metrics["n_left_missing"]


def test_batch_check_finds_tmt_batch(study, ctx):
    res = get_tool("batch_check")(study, {"modality": "proteomics", "batch": "Proteomics_TMT_batch"}, ctx)
    t = res.tables["components"]
    assert list(t["component"]) == [f"PC{k}" for k in range(1, 6)]
    # TMT plex drives several components in CPTAC UCEC (PC2, PC3, PC5 at q < 0.05)
    assert res.metrics["n_components_associated"] == len(res.relations) >= 2
    assert t["variance_ratio"].is_monotonic_decreasing
    for r in res.relations:
        assert r.predicate == "associated_with" and r.object.label == "Proteomics_TMT_batch"
    with pytest.raises(ToolInputError, match="not a clinical column"):
        get_tool("batch_check")(study, {"modality": "proteomics", "batch": "plex"}, ctx)
    with pytest.raises(ToolFailed, match="fewer than 2 levels"):
        get_tool("batch_check")(study, {"modality": "proteomics", "batch": "Gender"}, ctx)
    with pytest.raises(ToolFailed, match="holds one sample"):  # an identifier: no replicates within a level
        get_tool("batch_check")(study, {"modality": "proteomics", "batch": "Proteomics_Aliquot_ID"}, ctx)


def test_pca_qc_flags_a_planted_outlier(study, ctx):
    s = study.subset_samples(list(study.clinical.index))
    a = s.modalities["proteomics"]
    X = np.asarray(a.X, dtype=float).copy()
    rng = np.random.default_rng(0)
    X[5] = X[5] + rng.normal(0, 3, X.shape[1])
    a.X = X
    res = get_tool("pca_qc")(s, {"modality": "proteomics", "group": "Proteomics_Tumor_Normal"}, ctx)
    assert a.obs_names[5] in res.metrics["outliers"]
    assert res.metrics["n_outliers"] < 15
    assert Path(res.figures[0]).exists()
