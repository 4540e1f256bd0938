"""Survival tools on GSE7390 (Desmedt 2007; scikit-survival's load_breast_cancer), pinned to lifelines.

The reference is lifelines' CoxPHFitter (Efron ties, Wald test), fitted per feature with tight
convergence; the R equivalent is ``coxph(Surv(t.tdm, e.tdm) ~ x + age + size, ties = "efron")``.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from proteus.study import Study
from proteus.tools import ToolContext, ToolFailed, ToolInputError, get_tool
from proteus.tools.survival import cox_efron

lifelines = pytest.importorskip("lifelines")
sksurv_datasets = pytest.importorskip("sksurv.datasets")

TIGHT = {"precision": 1e-14, "r_precision": 1e-14, "max_steps": 200}


@pytest.fixture(scope="module")
def gse7390(tmp_path_factory) -> Study:
    X, y = sksurv_datasets.load_breast_cancer()
    ids = [f"P{i:03d}" for i in range(len(X))]
    genes = [c for c in X.columns if c.startswith("X")]
    a = ad.AnnData(X[genes].to_numpy(float), obs=pd.DataFrame(index=ids),
                   var=pd.DataFrame({"gene": genes}, index=genes))
    a.uns.update(modality="transcriptomics", level="sample", source="GSE7390")
    clin = X[["age", "er", "grade", "size"]].copy()
    clin.index = ids
    clin["t_tdm"] = y["t.tdm"]
    clin["e_tdm"] = y["e.tdm"].astype(int)
    clin["status"] = np.where(y["e.tdm"], "dead", "alive")
    clin["er"] = clin["er"].astype(str)
    clin["grade"] = clin["grade"].astype(str).replace("unkown", np.nan)
    return Study(tmp_path_factory.mktemp("gse"), modalities={"transcriptomics": a}, clinical=clin)


@pytest.fixture
def ctx(tmp_path) -> ToolContext:
    return ToolContext(out_dir=tmp_path, seed=0)


def _lifelines_fit(df: pd.DataFrame) -> lifelines.CoxPHFitter:
    return lifelines.CoxPHFitter().fit(df, "T", "E", fit_options=TIGHT)


def test_cox_efron_matches_lifelines(gse7390):
    clin = gse7390.clinical
    X = gse7390.modalities["transcriptomics"].to_df()
    Z = clin[["age", "size"]].to_numpy(float)
    x = X.iloc[:, :8].to_numpy().T.copy()
    x[0, :10] = np.nan  # a feature with missing values uses only its observed samples
    fit = cox_efron(x, Z, clin["t_tdm"].to_numpy(), clin["e_tdm"].to_numpy())
    worst = 0.0
    for j in range(8):
        ok = np.isfinite(x[j])
        df = pd.DataFrame({"T": clin["t_tdm"], "E": clin["e_tdm"], "x": x[j], "age": clin["age"],
                           "size": clin["size"]})[ok]
        ref = _lifelines_fit(df)
        for mine, theirs in [(fit.coef[j], ref.params_["x"]), (fit.se[j], ref.standard_errors_["x"]),
                             (fit.p[j], ref.summary.loc["x", "p"]), (fit.loglik[j], ref.log_likelihood_)]:
            worst = max(worst, abs(mine - theirs) / abs(theirs))
        assert fit.n[j] == ok.sum()
    assert worst < 1e-6, worst


def test_cox_per_feature_tool(gse7390, ctx):
    res = get_tool("cox_per_feature")(gse7390, {"modality": "transcriptomics", "time": "t_tdm", "event": "status",
                                                "covariates": ["age", "er"], "scale": "none"}, ctx)
    tab = res.tables["cox"].set_index("feature")
    assert res.metrics["n_tested"] == 76
    clin = gse7390.clinical
    g = tab.index[0]
    df = pd.DataFrame({"T": clin["t_tdm"], "E": clin["e_tdm"],
                       "x": gse7390.modalities["transcriptomics"].to_df()[g], "age": clin["age"],
                       "er": (clin["er"] == "positive").astype(float)})
    ref = _lifelines_fit(df)
    assert tab.loc[g, "hazard_ratio"] == pytest.approx(ref.hazard_ratios_["x"], rel=1e-6)
    assert tab.loc[g, "p"] == pytest.approx(ref.summary.loc["x", "p"], rel=1e-6)
    assert tab.loc[g, "ci_lower"] == pytest.approx(np.exp(ref.confidence_intervals_.loc["x"].iloc[0]), rel=1e-6)
    for r in res.relations:
        assert r.predicate == "associated_with_survival" and r.object.id == "clinical_variable:t_tdm"
        assert r.stats.q < 0.05
    assert res.figures[0].exists()


def test_kaplan_meier_matches_logrank(gse7390, ctx):
    from lifelines.statistics import logrank_test

    res = get_tool("kaplan_meier")(gse7390, {"time": "t_tdm", "event": "e_tdm", "modality": "transcriptomics",
                                             "feature": "X204014_at"}, ctx)
    clin = gse7390.clinical
    v = gse7390.modalities["transcriptomics"].to_df()["X204014_at"]
    hi = (v > v.median()).to_numpy()
    ref = logrank_test(clin["t_tdm"][hi], clin["t_tdm"][~hi], clin["e_tdm"][hi], clin["e_tdm"][~hi])
    assert res.metrics["logrank_p"] == pytest.approx(ref.p_value, rel=1e-10)
    assert res.tables["strata"]["n"].sum() == len(clin)
    grade = get_tool("kaplan_meier")(gse7390, {"time": "t_tdm", "event": "e_tdm", "group": "grade"}, ctx)
    assert grade.tables["strata"]["stratum"].tolist() == ["intermediate", "poorly differentiated", "well differentiated"]
    assert grade.figures[0].exists()


def test_cluster_clinical_association(gse7390, ctx):
    from scipy import stats

    res = get_tool("cluster_clinical_association")(gse7390, {"group": "grade", "variables": ["er", "age", "size"]}, ctx)
    tab = res.tables["associations"].set_index("variable")
    clin = gse7390.clinical
    ref = stats.chi2_contingency(pd.crosstab(clin["grade"], clin["er"]).to_numpy(), correction=False)
    assert tab.loc["er", "p"] == pytest.approx(ref.pvalue, rel=1e-10)
    kw = stats.kruskal(*[clin.loc[clin["grade"] == g, "size"] for g in clin["grade"].dropna().unique()])
    assert tab.loc["size", "p"] == pytest.approx(kw.pvalue, rel=1e-10)
    assert tab.loc["er", "q"] < 0.05  # ER-negative tumours are high grade
    assert any(r.object.label == "er" and r.predicate == "associated_with" for r in res.relations)


def test_survival_bad_inputs(gse7390, ctx):
    with pytest.raises(ToolInputError):
        get_tool("cox_per_feature")(gse7390, {"modality": "transcriptomics", "time": "t_tdm", "event": "age"}, ctx)
    with pytest.raises(ToolInputError):
        get_tool("kaplan_meier")(gse7390, {"time": "t_tdm", "event": "e_tdm"}, ctx)
    small = gse7390.subset_samples(list(gse7390.clinical.index[:8]))
    with pytest.raises(ToolFailed):
        get_tool("cox_per_feature")(small, {"modality": "transcriptomics", "time": "t_tdm", "event": "e_tdm"}, ctx)
    with pytest.raises(ToolFailed):
        get_tool("cluster_clinical_association")(gse7390, {"group": "grade", "restrict": {"grade": "intermediate"}}, ctx)


def test_cox_covariates_are_judged_on_the_events(gse7390, ctx):
    """Among the first 40 patients (few events), a per-patient code is dropped and so is a factor the
    events cannot afford; the kept model still matches lifelines."""
    from proteus.stats.design import usable_covariates

    first = list(gse7390.clinical.index[:40])
    clin = gse7390.clinical.loc[first].assign(sample_code=[f"s{i % 30}" for i in range(40)],
                                              grade_age=lambda d: d["grade"].fillna("?") + "_" + (d["age"] // 5).astype(int).astype(str))
    small = Study(ctx.out_dir / "small", modalities={"transcriptomics": gse7390.modalities["transcriptomics"][first].copy()},
                  clinical=clin)
    n_events = int(clin["e_tdm"].sum())
    res = get_tool("cox_per_feature")(small, {"modality": "transcriptomics", "time": "t_tdm", "event": "status",
                                              "covariates": ["age", "sample_code", "grade_age"], "scale": "none",
                                              "min_events": 5}, ctx)
    kept, dropped = usable_covariates(clin[clin["e_tdm"] == 1], ["age", "sample_code", "grade_age"], 1)
    assert res.metrics["covariates"] == kept == ["age"] and set(res.metrics["covariates_dropped"]) == {"sample_code", "grade_age"}
    assert "Not adjusted for sample_code" in res.summary and n_events - 1 - 1 >= 2
    g = res.tables["cox"].iloc[0]["feature"]
    df = pd.DataFrame({"T": clin["t_tdm"], "E": clin["e_tdm"], "x": small.modalities["transcriptomics"].to_df()[g], "age": clin["age"]})
    assert res.tables["cox"].iloc[0]["p"] == pytest.approx(_lifelines_fit(df).summary.loc["x", "p"], rel=1e-6)


def test_outcome_objective_adjusts_cox_for_the_technical_columns(gse7390):
    from proteus.policy.playbooks import bulk_plays
    from proteus.profile import profile_study

    prof = profile_study(gse7390)
    assert prof.survival, "GSE7390 has time-to-event columns"
    cox = [s for p in bulk_plays(prof.model_copy(update={"adjust_for": ["er"]})) for s in p.steps if s.tool == "cox_per_feature"]
    assert cox and all(s.params.get("covariates") == ["er"] for s in cox)
    plain = [s for p in bulk_plays(prof.model_copy(update={"adjust_for": []})) for s in p.steps if s.tool == "cox_per_feature"]
    assert plain and all("covariates" not in s.params for s in plain)
