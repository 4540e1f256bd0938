"""Correlation tools on real data: CPTAC UCEC (cptac 0.4.1 files), checked against scipy."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from proteus.study import Study
from proteus.tools import ToolContext, ToolFailed, ToolInputError, get_tool
from proteus.tools.correlation import paired_correlation, partial_correlation

cptac = pytest.importorskip("cptac")
UCEC = Path(cptac.__file__).parent / "endometrial" / "data"


def _layer(fname: str, kind: str) -> ad.AnnData:
    df = pd.read_csv(UCEC / fname, sep="\t", index_col=0).T
    a = ad.AnnData(df.to_numpy(float), obs=pd.DataFrame(index=df.index.astype(str)),
                   var=pd.DataFrame({"gene": df.columns.astype(str)}, index=df.columns.astype(str)))
    a.uns.update(modality=kind, level="sample", source=fname)
    return a


@pytest.fixture(scope="module")
def ucec(tmp_path_factory) -> Study:
    clin = pd.read_csv(UCEC / "clinical.txt", sep="\t", index_col=0, encoding="cp1252")
    clin.index = clin.index.astype(str)
    mods = {
        "proteomics": _layer("proteomics.cct.gz", "proteomics"),
        "transcriptomics": _layer("transcriptomics_linear.cct.gz", "transcriptomics"),
        "cna": _layer("CNA.cct.gz", "cna"),
    }
    return Study(tmp_path_factory.mktemp("ucec"), modalities=mods, clinical=clin)


@pytest.fixture
def ctx(tmp_path) -> ToolContext:
    return ToolContext(out_dir=tmp_path, seed=0)


TUMOUR = {"Proteomics_Tumor_Normal": "Tumor"}


def test_paired_correlation_matches_scipy_with_missing_values():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 6))
    Y = X + rng.normal(size=(40, 6))
    X[rng.random(X.shape) < 0.15] = np.nan
    X[:5, 2] = 3.0  # ties
    r, p, n = paired_correlation(X, Y, "spearman")
    for j in range(6):
        m = np.isfinite(X[:, j])
        ref = stats.spearmanr(X[m, j], Y[m, j])
        assert r[j] == pytest.approx(ref.statistic, rel=1e-10)
        assert p[j] == pytest.approx(ref.pvalue, rel=1e-8)
        assert n[j] == m.sum()
    r, p, _ = paired_correlation(X, Y, "pearson")
    m = np.isfinite(X[:, 0])
    ref = stats.pearsonr(X[m, 0], Y[m, 0])
    assert r[0] == pytest.approx(ref.statistic, rel=1e-10) and p[0] == pytest.approx(ref.pvalue, rel=1e-8)
    # without covariates, the partial-correlation path reduces to the plain coefficient
    rp, pp, _ = partial_correlation(X, Y[:, 0], np.empty((40, 0)), "spearman")
    r0, p0, _ = paired_correlation(X, Y[:, 0], "spearman")
    np.testing.assert_allclose(rp, r0, rtol=1e-10)
    np.testing.assert_allclose(pp, p0, rtol=1e-8)


def test_partial_correlation_matches_residual_formula():
    """Pearson partial r = corr of OLS residuals on [1, Z]; df = n - 2 - k (ppcor::pcor.test)."""
    rng = np.random.default_rng(2)
    z = rng.normal(size=(50, 2))
    y = z[:, 0] + rng.normal(size=50)
    X = np.column_stack([y + z[:, 1] + rng.normal(size=50), rng.normal(size=50)])
    r, p, n = partial_correlation(X, y, z, "pearson")
    D = np.column_stack([np.ones(50), z])
    res = lambda v: v - D @ np.linalg.lstsq(D, v, rcond=None)[0]  # noqa: E731
    ref = np.corrcoef(res(X[:, 0]), res(y))[0, 1]
    assert r[0] == pytest.approx(ref, rel=1e-10)
    t = ref * np.sqrt((50 - 4) / (1 - ref**2))
    assert p[0] == pytest.approx(2 * stats.t.sf(abs(t), 46), rel=1e-8)


def test_clinical_correlation_agrees_with_scipy(ucec, ctx):
    res = get_tool("clinical_correlation")(ucec, {"modality": "proteomics", "variable": "ESTIMATE_ImmuneScore",
                                                  "restrict": TUMOUR}, ctx)
    tab = res.tables["correlations"].set_index("feature")
    prot = ucec.modalities["proteomics"].to_df()
    y = pd.to_numeric(ucec.clinical["ESTIMATE_ImmuneScore"], errors="coerce")
    tum = ucec.clinical.index[ucec.clinical["Proteomics_Tumor_Normal"] == "Tumor"]
    for f in ["VAV1", "CD74", "PTEN", "A1BG"]:
        d = pd.concat([prot.loc[tum, f], y[tum]], axis=1).dropna()
        ref = stats.spearmanr(d.iloc[:, 0], d.iloc[:, 1])
        assert tab.loc[f, "r"] == pytest.approx(ref.statistic, rel=1e-9)
        assert tab.loc[f, "p"] == pytest.approx(ref.pvalue, rel=1e-6)
    # the immune score must pull out leukocyte signalling proteins (VAV1, DOCK2: rho ~0.89)
    assert tab.loc["VAV1", "q"] < 1e-10 and tab.loc["VAV1", "r"] > 0.7
    assert res.metrics["n_significant"] > 100
    assert res.relations and all(r.predicate == "correlates_with" for r in res.relations)
    assert res.relations[0].object.id == "clinical_variable:ESTIMATE_ImmuneScore"
    assert res.figures[0].exists()
    # adjusting for purity-related covariates runs and keeps the column set
    adj = get_tool("clinical_correlation")(ucec, {"modality": "proteomics", "variable": "ESTIMATE_ImmuneScore",
                                                  "covariates": ["Age", "Histologic_type"], "restrict": TUMOUR}, ctx)
    assert adj.metrics["n_tested"] > 9000 and "Age" in adj.summary


def test_partial_correlation_needs_residual_degrees_of_freedom(ucec, ctx):
    """Adjusting for TMT plex and channel (one-hot, ~25 columns) leaves a feature observed in few samples
    no residual df: its residuals line up exactly (rho = 1.00, p = 0 on 11 samples in a real run). Each
    covariate column costs one sample: a feature is tested only when n - 1 - rank([1, Z]) >= min_samples - 2."""
    covs = ["Proteomics_TMT_plex", "Proteomics_TMT_channel"]
    res = get_tool("clinical_correlation")(ucec, {"modality": "proteomics", "variable": "ESTIMATE_ImmuneScore",
                                                  "covariates": covs, "restrict": TUMOUR}, ctx)
    tab = res.tables["correlations"]
    assert len(tab) > 9000 and (tab["r"].abs() < 0.9999).all() and (tab["p"] > 0).all()
    prot = ucec.modalities["proteomics"].to_df()
    y = pd.to_numeric(ucec.clinical["ESTIMATE_ImmuneScore"], errors="coerce")
    tum = [s for s in prot.index if ucec.clinical["Proteomics_Tumor_Normal"].get(s) == "Tumor" and np.isfinite(y.get(s, np.nan))]
    Z = pd.get_dummies(ucec.clinical.loc[tum, covs].astype(str), drop_first=True).astype(float)
    rank = lambda rows: np.linalg.matrix_rank(np.column_stack([np.ones(len(rows)), Z.loc[rows].to_numpy()]))  # noqa: E731
    assert rank(tum) > 15, "a design of many covariate columns"
    for f in tab.sort_values("n")["feature"].head(20):
        rows = [s for s in tum if np.isfinite(prot.loc[s, f])]
        assert len(rows) - 1 - rank(rows) >= 10 - 2, (f, len(rows), rank(rows))


def test_clinical_correlation_bad_inputs(ucec, ctx):
    tool = get_tool("clinical_correlation")
    with pytest.raises(ToolInputError):
        tool(ucec, {"modality": "proteomics", "variable": "Histologic_type"}, ctx)
    with pytest.raises(ToolInputError):
        tool(ucec, {"modality": "proteomics", "variable": "nope"}, ctx)
    with pytest.raises(ToolInputError):
        tool(ucec, {"modality": "proteomics", "variable": "Age", "restrict": {"Proteomics_Tumor_Normal": "Nope"}}, ctx)
    # Age is recorded only for tumours: none of the normals has it
    with pytest.raises(ToolFailed):
        tool(ucec, {"modality": "proteomics", "variable": "Age",
                    "restrict": {"Proteomics_Tumor_Normal": "Adjacent_normal"}}, ctx)


def test_mrna_protein_concordance_ucec(ucec, ctx):
    res = get_tool("mrna_protein_concordance")(ucec, {"modality": "proteomics", "other_modality": "transcriptomics",
                                                      "restrict": TUMOUR}, ctx)
    med = res.metrics["median_rho"]
    assert 0.3 < med < 0.6, med
    assert res.metrics["n_tested"] > 8000
    rel = res.relations[0]
    assert rel.predicate == "concordant_with" and rel.subject.type == "protein" and rel.object.type == "gene"
    assert rel.subject.label == rel.object.label


def test_cna_buffering_ucec(ucec, ctx):
    res = get_tool("cna_cis_effect")(ucec, {"modality": "cna", "modalities": ["transcriptomics", "proteomics"],
                                            "restrict": TUMOUR}, ctx)
    m = res.metrics
    assert m["fraction_significant_transcriptomics"] > m["fraction_significant_proteomics"] > 0.01
    assert m["median_rho_transcriptomics"] > m["median_rho_proteomics"]
    assert m["n_buffered"] > 500
    assert {r.modality for r in res.relations} == {"transcriptomics", "proteomics"}
    assert {r.object.type for r in res.relations} == {"gene", "protein"}


def test_coabundance_modules_ucec(ucec, ctx):
    res = get_tool("coabundance_modules")(ucec, {"modality": "proteomics", "n_features": 500, "restrict": TUMOUR,
                                                 "variables": ["ESTIMATE_ImmuneScore", "Histologic_type", "Age"]}, ctx)
    assert res.metrics["n_modules"] >= 2
    memb = res.tables["membership"]
    assert memb["kME"].between(-1, 1).all()
    # an immune module exists: some module eigengene correlates with the immune score
    assoc = res.tables["associations"]
    imm = assoc[assoc["variable"] == "ESTIMATE_ImmuneScore"]
    assert imm["q"].min() < 1e-3
    preds = {r.predicate for r in res.relations}
    assert preds == {"member_of", "correlates_with"}


def test_partial_correlation_drops_covariates_that_would_saturate_the_model(ucec, ctx, tmp_path):
    """11 tumours adjusted for TMT plex and channel: a saturated fit gave rho = 1, p = 0; such covariates are dropped."""
    from proteus.stats.design import usable_covariates

    clin = ucec.clinical
    tum = clin.index[(clin["Proteomics_Tumor_Normal"] == "Tumor") & clin["ESTIMATE_ImmuneScore"].notna()]
    tum = [s for s in tum if s in set(ucec.modalities["proteomics"].obs_names)][:11]
    small = Study(tmp_path / "small", modalities={"proteomics": ucec.modalities["proteomics"][tum].copy()},
                  clinical=clin.loc[tum])
    covs = ["Proteomics_TMT_plex", "Proteomics_TMT_channel"]
    res = get_tool("clinical_correlation")(small, {"modality": "proteomics", "variable": "ESTIMATE_ImmuneScore",
                                                   "covariates": covs}, ctx)
    dropped = res.metrics["covariates_dropped"]
    assert set(dropped) == set(covs) - set(res.metrics["covariates"]) and "Proteomics_TMT_channel" in dropped
    assert "Not adjusted for Proteomics_TMT_channel" in res.summary
    tab = res.tables["correlations"]
    assert tab["r"].abs().max() < 0.999 and tab["p"].min() > 0
    # on all tumours the same covariates leave ample residual df and are both kept
    kept, gone = usable_covariates(clin.loc[clin["Proteomics_Tumor_Normal"] == "Tumor"], covs, 2)
    assert kept == covs and not gone
