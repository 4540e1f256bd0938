"""Sample quality before biology: outlier runs (proteus.stats.sample_outliers) and the leave-outlier-out
check of the claims whose contrast holds one, plasma contamination panels (proteus.stats.contamination) and the
caveat of claims about their proteins (proteus.quality), on the shipped UPS1 spike-in and NAFLD plasma data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from proteus.datasets import shared_dataset_dir
from proteus.genesets import plasma_quality_panels
from proteus.io import load_study
from proteus.profile import profile_study
from proteus.quality import contrast_retests, outliers_of, quality_checks, study_quality
from proteus.report import render_report
from proteus.stats.contamination import blood_matrix, contamination_index, feature_symbols
from proteus.stats.sample_outliers import robust_z, sample_outliers
from proteus.tools.registry import ToolContext, get_tool



@pytest.fixture(scope="module")
def ups():
    """The UPS1 50 vs 5 fmol block (shared/datasets): three injections of each amount."""
    d = shared_dataset_dir("ramus2016-ups1-maxquant")
    if d is None or not (d / "50vs5").is_dir():
        pytest.skip("shared dataset ramus2016-ups1-maxquant/50vs5 absent")
    return load_study(d / "50vs5")


@pytest.fixture(scope="module")
def nafld(nafld_dir):
    return load_study(nafld_dir)


def test_robust_z_is_the_modified_z_score():
    from scipy.stats import norm

    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    # median 3, MAD 1 -> scale 1/Phi^-1(3/4) = 1.4826 (Iglewicz & Hoaglin 1993)
    np.testing.assert_allclose(robust_z(x), (x - 3) * norm.ppf(0.75))
    np.testing.assert_allclose(robust_z(x, floor=10.0), (x - 3) / 10.0)
    # per column of a matrix (PCA scores), missing values left out and kept missing, a constant column z 0
    M = np.column_stack([x, x * 2, np.full(5, 7.0)])
    M[1, 1] = np.nan
    z = robust_z(M, axis=0)
    np.testing.assert_allclose(z[:, 0], robust_z(x))
    np.testing.assert_allclose(z[[0, 2, 3, 4], 1], robust_z(M[[0, 2, 3, 4], 1]))
    assert np.isnan(z[1, 1]) and (z[:, 2] == 0).all()


def test_the_injection_that_lost_identifications_is_an_outlier(ups):
    a = ups.modalities["proteomics"]
    t = sample_outliers(a, ups.sample_table("proteomics")["condition"])
    miss = np.isnan(np.asarray(a.X, dtype=float)).mean(1)
    worst = str(a.obs_names[int(np.argmax(miss))])
    assert miss.max() > 5 * np.median(miss)  # one run lost most identifications (15.6% missing vs ~1.5%)
    assert t.index[t["outlier"]].tolist() == [worst]
    assert "missing values" in t.loc[worst, "reason"]


def test_a_clean_plasma_cohort_has_no_outlier_and_planted_failures_are_found(nafld):
    a = nafld.modalities["proteomics"]
    groups = nafld.sample_table("proteomics")["disease"]
    assert not sample_outliers(a, groups)["outlier"].any()
    X = np.asarray(a.X, dtype=float).copy()
    rng = np.random.default_rng(0)
    seen = np.flatnonzero(np.isfinite(X[3]))
    X[3, rng.choice(seen, size=len(seen) // 2, replace=False)] = np.nan  # a short injection: half the identifications lost
    X[7] = X[7] + rng.normal(0, 2.0, X.shape[1])  # a run unlike its replicates
    b = a.copy()
    b.X = X
    t = sample_outliers(b, groups)
    assert set(t.index[t["outlier"]]) == {a.obs_names[3], a.obs_names[7]}
    assert "missing values" in t.loc[a.obs_names[3], "reason"]
    assert "correlation to its group" in t.loc[a.obs_names[7], "reason"]


def test_claims_on_a_contrast_with_an_outlier_are_retested_without_it(ups, tmp_path):
    quality = study_quality(ups, profile_study(ups))
    bad = outliers_of(quality, "proteomics")
    assert len(bad) == 1
    res = get_tool("differential_abundance")(ups, {"modality": "proteomics", "group": "condition", "case": "ups_50fmol",
                                                   "control": "ups_5fmol"}, ToolContext(out_dir=tmp_path, seed=0, figures=False))
    rels = sorted(res.relations, key=lambda r: r.stats.p)[:6]
    records, clause, why = quality_checks(rels, quality, ups)
    assert len(records) == 1 and records[0]["outliers"] == bad and records[0]["n_features"] == 6
    without = ups.subset_samples([s for s in ups.clinical.index if s not in bad])
    assert without.modalities["proteomics"].n_obs == 5
    for f in records[0]["features"]:
        assert f["q_without"] > 0 and np.sign(f["effect_without"]) == np.sign(f["effect"])
        assert f["holds"] == (f["q_without"] < 0.05)
    # the spiked standard is 10-fold: it holds with 3 vs 2 runs, and the statement needs no caveat
    assert records[0]["n_hold"] == 6 and records[0]["decision"] == "holds" and clause == ""
    assert "Leave-outlier-out check" in why and bad[0] in why
    # a claim on a background feature (the yeast proteome does not change) does not hold without the outlier
    table = res.tables[next(iter(res.tables))]
    null = next(f for f in ups.modalities["proteomics"].var_names if not str(f).endswith("ups") and f not in set(table.loc[table["q"] < 0.05, "feature"]))
    fake = rels[0].model_copy(update={"stats": rels[0].stats.model_copy(update={"extra": {**rels[0].stats.extra, "feature_id": str(null)}})})
    records, clause, _ = quality_checks([fake], quality, ups)
    assert records[0]["decision"] == "does not hold" and f"does not hold without the outlier run {bad[0]}" in clause
    # a relation about no sample grouping is not re-tested
    assert quality_checks([], quality, ups) == ([], "", "")


def test_every_call_of_a_contrast_with_an_outlier_is_retested_not_only_the_cited_ones(ups, tmp_path):
    """The UPS1 spike-in with its failed 5 fmol injection: the leave-outlier-out check covers all the features the
    contrast calls (45 spiked standards and the background's false positive), in qc.json's record, the hypothesis's
    rationale and the report, not only the 6 a hypothesis cites."""
    from proteus.stats.contrasts import ContrastTest
    from proteus.tools.differential import differential_table

    quality = study_quality(ups, profile_study(ups))
    bad = outliers_of(quality, "proteomics")
    params = {"modality": "proteomics", "group": "condition", "case": "ups_50fmol", "control": "ups_5fmol"}
    res = get_tool("differential_abundance")(ups, params, ToolContext(out_dir=tmp_path, seed=0, figures=False))
    rels = sorted(res.relations, key=lambda r: r.stats.p)
    (rec,) = contrast_retests(rels, quality, ups)
    # derived here: the contrast's calls on all six runs, and the same test on the five left
    test = ContrastTest.model_validate(params)
    full = differential_table(ups, test).table.set_index("feature")
    without = differential_table(ups.subset_samples([s for s in ups.clinical.index if s not in bad]), test).table.set_index("feature")
    calls = full.index[full["q"] < 0.05]
    kept = [f for f in calls if without.loc[f, "q"] < 0.05 and np.sign(without.loc[f, "logFC"]) == np.sign(full.loc[f, "logFC"])]
    assert len(calls) > 40 and len(calls) > len(rels[:6])
    assert rec["outliers"] == bad and rec["n_significant"] == len(calls) and rec["n_hold"] == len(kept)
    assert rec["decision"] == ("holds" if len(kept) == len(calls) else "partly holds")
    assert set(rec["lost"]) == set(full.loc[[f for f in calls if f not in kept], "label"].astype(str))
    # a hypothesis citing six of them says how many of the comparison's calls hold
    records, _, why = quality_checks(rels[:6], quality, ups)
    assert records[0]["n_features"] == 6 and (records[0]["n_significant"], records[0]["n_significant_hold"]) == (len(calls), len(kept))
    assert f"{len(kept)} of the {len(calls)} features the comparison calls" in why
    # qc.json and the report carry the re-test of every contrast
    (tmp_path / "qc.json").write_text(json.dumps(quality | {"leave_outlier_out": [rec]}))
    html = render_report(tmp_path)
    assert "Leave-outlier-out re-test of every differential contrast" in html and f"{len(kept)} of {len(calls)}" in html


def test_an_f_test_across_groups_is_retested_without_the_outlier_run(nafld, tmp_path):
    s = nafld.subset_samples(list(nafld.clinical.index))
    a = s.modalities["proteomics"]
    X = np.asarray(a.X, dtype=float).copy()
    seen = np.flatnonzero(np.isfinite(X[0]))
    X[0, np.random.default_rng(1).choice(seen, size=len(seen) // 2, replace=False)] = np.nan  # a short injection
    a.X = X
    quality = study_quality(s, profile_study(s))
    assert outliers_of(quality, "proteomics") == [str(a.obs_names[0])]
    res = get_tool("differential_anova")(s, {"modality": "proteomics", "group": "disease"}, ToolContext(out_dir=tmp_path, figures=False))
    rels = [r for r in res.relations if r.predicate == "differs_across"][:5]
    assert rels
    records, clause, why = quality_checks(rels, quality, s)
    rec = records[0]
    assert rec["kind"] == "outlier runs" and rec["contrast"].startswith("disease: F-test across") and rec["outliers"] == [str(a.obs_names[0])]
    assert rec["n_features"] == len(rels) and "Leave-outlier-out check of disease: F-test" in why
    for f in rec["features"]:
        assert f["holds"] == (f["q_without"] < 0.05 and np.sign(f["effect_without"]) == np.sign(f["effect"]))
    assert rec["n_hold"] >= 1  # losing values at random in one run leaves the strongest differences standing
    # every F-test call, not only the cited ones: the same test on the samples left, derived here
    full = res.tables["results"].set_index("feature")
    left = s.subset_samples([x for x in s.clinical.index if x != str(a.obs_names[0])])
    without = get_tool("differential_anova")(left, {"modality": "proteomics", "group": "disease"},
                                             ToolContext(out_dir=tmp_path, figures=False)).tables["results"].set_index("feature")
    calls = full.index[full["q"] < 0.05]
    kept = [f for f in calls if f in without.index and without.loc[f, "q"] < 0.05
            and np.sign(without.loc[f, "distinct_vs_rest"]) == np.sign(full.loc[f, "distinct_vs_rest"])]
    assert (rec["n_significant"], rec["n_significant_hold"]) == (len(calls), len(kept))
    one = quality_checks(rels[:1], quality, s)[0][0]
    assert one["n_features"] == 1 and (one["n_significant"], one["n_significant_hold"]) == (len(calls), len(kept)) and len(calls) > 1
    # the statement says so when fewer than half of the comparison's calls hold without the outlier run
    assert (f"only {len(kept)} of the {len(calls)} features its comparison calls" in clause) == (2 * len(kept) < len(calls))


def test_report_shows_the_outlier_runs(ups, tmp_path):
    quality = study_quality(ups, profile_study(ups))
    (tmp_path / "qc.json").write_text(json.dumps(quality))
    html = render_report(tmp_path)
    bad = outliers_of(quality, "proteomics")[0]
    assert "href='#qc'" in html and "Sample quality" in html and bad in html and "robust z" in html


def test_plasma_is_read_from_the_sample_table(nafld, ups):
    assert blood_matrix(nafld.clinical) == "plasma"
    assert blood_matrix(ups.clinical) is None
    cells = pd.DataFrame({"population": ["plasma cells", "B cells", "plasma cell", "T cells"]}, index=list("abcd"))
    assert blood_matrix(cells) is None
    assert blood_matrix(cells.assign(specimen="Serum")) == "serum"


def test_contamination_index_is_the_mean_z_of_the_measured_panel_members(nafld):
    a = nafld.modalities["proteomics"]
    index, members = contamination_index(a, plasma_quality_panels())
    assert set(members) == {"erythrocyte", "platelet", "coagulation"}
    sym = feature_symbols(a)
    cols = [f for f in a.var_names if sym[f] in members["erythrocyte"]]
    Y = pd.DataFrame(np.asarray(a[:, cols].X, dtype=float), index=a.obs_names, columns=cols)
    z = (Y - Y.mean()) / Y.std()
    np.testing.assert_allclose(index["erythrocyte"].to_numpy(), z.mean(axis=1).to_numpy(), rtol=1e-9)


def test_a_panel_protein_claimed_where_the_groups_differ_in_that_panel_is_caveated(nafld, tmp_path):
    clin = nafld.sample_table("proteomics")
    case, control = "liver cirrhosis", "healthy"
    assert {case, control} <= set(clin["disease"])
    quality = study_quality(nafld, profile_study(nafld))
    assert quality["contamination"]["matrix"] == "plasma"
    assert all(t["p"] > 0.05 for t in quality["contamination"]["tests"] if t["grouping"] == "disease")  # as measured: no panel differs
    # plant haemolysis in the cirrhosis samples: every erythrocyte marker up 1.5 log2
    s = nafld.subset_samples(list(nafld.clinical.index))
    a = s.modalities["proteomics"]
    ery = set(plasma_quality_panels()["erythrocyte"])
    sym = feature_symbols(a)
    X = np.asarray(a.X, dtype=float).copy()
    X[np.ix_((clin["disease"] == case).to_numpy(), sym.isin(ery).to_numpy())] += 1.5
    a.X = X
    planted = study_quality(s, profile_study(s))
    test = next(t for t in planted["contamination"]["tests"] if t["panel"] == "erythrocyte" and t["grouping"] == "disease")
    assert test["p"] < 1e-3 and max(test["means"], key=test["means"].get) == case
    res = get_tool("differential_abundance")(s, {"modality": "proteomics", "group": "disease", "case": case, "control": control},
                                             ToolContext(out_dir=tmp_path, seed=0, figures=False))
    hits = [r for r in res.relations if r.subject.label in ery]
    others = [r for r in res.relations if r.subject.label not in ery]
    assert hits and others
    records, clause, why = quality_checks([hits[0], *others[:2]], planted, s)
    rec = next(r for r in records if r["kind"] == "sample contamination")
    assert rec["panel"] == "erythrocyte" and rec["decision"] == "differs" and rec["features"] == [hits[0].subject.label]
    assert f"{hits[0].subject.label} is an erythrocyte-contamination marker" in clause and "sample handling" in clause
    # led by a protein of no panel, the claim carries the check in its rationale only
    records, clause, why = quality_checks([*others[:2], hits[0]], planted, s)
    assert clause == "" and "Contamination check" in why
    # the same claim on the data as measured: the index does not differ, no caveat
    records, clause, _ = quality_checks([hits[0]], quality, nafld)
    assert clause == "" and all(r["decision"] == "does not differ" for r in records if r["kind"] == "sample contamination")
