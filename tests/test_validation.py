"""Held-out validation, the stratified split and the label-permutation null (proteus.validation).

One small real run: the offline pipeline on the discovery part of GSE7390 (198 breast tumours,
76 genes), three objectives (~30 s on a loaded machine).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from proteus.validation import ALPHA, permute_labels, stratified_split, validate_run, wilson_ci

pytest.importorskip("sksurv", reason="pip install scikit-survival (GSE7390 ships with it)")


@pytest.fixture(scope="module")
def gse(tmp_path_factory):
    from proteus import datasets
    from proteus.io import load_study

    folder = datasets.fetch("gse7390-breast", tmp_path_factory.mktemp("gse7390"))
    return folder, load_study(folder)


@pytest.fixture(scope="module")
def gse_run(gse, tmp_path_factory):
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.runner import run_research

    folder, study = gse
    split = stratified_split(study, seed=1)
    out = tmp_path_factory.mktemp("runs") / "discovery"
    run_research(folder, out, policy=HeuristicPolicy(), seed=1, study=study.subset_samples(split.discovery), max_objectives=3)
    return out, split


def test_split_is_stratified_and_seeded(gse):
    _, study = gse
    a, b = stratified_split(study, seed=1), stratified_split(study, seed=1)
    assert a.discovery == b.discovery and a.held_out == b.held_out
    c = stratified_split(study, seed=2)
    assert c.discovery != a.discovery
    assert not set(a.discovery) & set(a.held_out)
    assert sorted(a.discovery + a.held_out) == sorted(map(str, study.modalities["transcriptomics"].obs_names))
    assert a.stratify_by is not None
    clin = study.clinical[a.stratify_by].astype(str)
    clin.index = clin.index.astype(str)
    for level, (n_d, n_h) in a.strata.items():
        n = n_d + n_h
        assert abs(n_d - 0.6 * n) <= 1, level
        if level != "NA":
            assert (clin.reindex(a.discovery) == level).sum() == n_d
            assert (clin.reindex(a.held_out) == level).sum() == n_h


def test_permuted_null_breaks_associations(gse):
    from proteus.tools import ToolContext, get_tool

    _, study = gse
    null = permute_labels(study, seed=1)
    # marginals kept: same values, reassigned to other samples
    assert sorted(null.clinical["er"].astype(str)) == sorted(study.clinical["er"].astype(str))
    assert (null.clinical["er"].reindex(study.clinical.index).astype(str) != study.clinical["er"].astype(str)).any()
    tool = get_tool("differential_abundance")
    params = {"modality": "transcriptomics", "group": "er", "case": "positive", "control": "negative"}
    real = tool(study, params, ToolContext(out_dir=gse[0].parent / "scratch_real"))
    perm = tool(null, params, ToolContext(out_dir=gse[0].parent / "scratch_null"))
    assert real.metrics["n_significant"] >= 10
    assert perm.metrics["n_significant"] <= 2 < real.metrics["n_significant"]


def test_validation_matches_independent_recomputation(gse, gse_run):
    from proteus.kg import KnowledgeGraph
    from proteus.tools import ToolContext, get_tool

    _, study = gse
    run_dir, split = gse_run
    held = study.subset_samples(split.held_out)
    hyps = validate_run(run_dir, held, cross_study=study.subset_samples(split.discovery), seed=1)
    assert hyps, "the run proposed no hypotheses"
    kg = KnowledgeGraph.from_node_link(json.loads((run_dir / "kg.json").read_text()))
    checked = {"differential_abundance": 0, "clinical_correlation": 0}
    for h in hyps:
        v = h["validation"]
        tested = [v["held_out"][e] for e in h["evidence"] if v["held_out"][e]["status"] == "tested"]
        for eid in h["evidence"]:
            o, r = v["held_out"][eid], kg.relation(eid)
            if o["status"] != "tested":
                continue
            sign = 1 if r.stats.direction in ("up", "positive") else -1
            if r.provenance.tool == "clinical_correlation":
                # independent: scipy Spearman on the held-out values
                x = held.modalities[r.modality][:, r.subject.label].X.ravel().astype(float)
                y = held.clinical.reindex(held.modalities[r.modality].obs_names)[r.object.label].astype(float).to_numpy()
                ok = np.isfinite(x) & np.isfinite(y)
                rho, p = stats.spearmanr(x[ok], y[ok])
                assert o["p"] == pytest.approx(p, rel=1e-6)
                assert o["replicated"] == bool(np.sign(rho) == sign and p < ALPHA)
                checked["clinical_correlation"] += 1
            elif r.provenance.tool == "differential_abundance":
                # the tool re-run by hand, its full table read by feature id (not through relations)
                res = get_tool(r.provenance.tool)(held, r.provenance.params, ToolContext(out_dir=run_dir.parent / "scratch_val"))
                row = res.tables["results"].set_index("feature").loc[r.stats.extra["feature_id"]]
                assert o["p"] == pytest.approx(row["p"], rel=1e-9)
                assert o["replicated"] == bool(np.sign(row["logFC"]) == sign and row["p"] < ALPHA)
                # and a plain Welch t agrees on direction
                g = held.clinical.reindex(held.modalities[r.modality].obs_names)[r.provenance.params["group"]].astype(str)
                x = held.modalities[r.modality][:, r.stats.extra["feature_id"]].X.ravel().astype(float)
                t, _ = stats.ttest_ind(x[(g == r.provenance.params["case"]).to_numpy()], x[(g == r.provenance.params["control"]).to_numpy()], equal_var=False, nan_policy="omit")
                assert np.sign(t) == np.sign(row["logFC"])
                checked["differential_abundance"] += 1
        if tested:
            expected = tested[0]["replicated"] and sum(t["replicated"] for t in tested) >= len(tested) / 2
            assert v["replicated"] == expected
        else:
            assert v["replicated"] is None
    assert checked["differential_abundance"] > 0
    # written back atomically: every line parses and carries the validation
    lines = (run_dir / "hypotheses.jsonl").read_text().splitlines()
    assert len(lines) == len(hyps)
    for line in lines:
        v = json.loads(line)["validation"]
        assert set(v) >= {"replicated", "held_out", "cross_omics", "method"}


def test_wilson_ci_reference_values():
    # R: binom::binom.wilson(5, 10); prop.test(5, 10, correct = FALSE)$conf.int
    lo, hi = wilson_ci(5, 10)
    assert lo == pytest.approx(0.2365931, abs=1e-6) and hi == pytest.approx(0.7634069, abs=1e-6)
    lo, hi = wilson_ci(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775328, abs=1e-6)
    assert wilson_ci(0, 0) == (None, None)


def test_rejudge_with_a_second_policy(gse_run):
    """--judge-model: a second policy re-scores the run's hypotheses; summaries are per judge."""
    from proteus.evals.judge import rejudge, score_summary
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.records import METRICS

    run_dir, _ = gse_run
    hyps = [json.loads(x) for x in (run_dir / "hypotheses.jsonl").read_text().splitlines()]
    rows = rejudge(run_dir, HeuristicPolicy())
    assert [r["id"] for r in rows] == [h["id"] for h in hyps]
    for r, h in zip(rows, hyps):  # the same deterministic rules give the same scores
        assert {m: r["scores"][m]["score"] for m in METRICS} == {m: h["scores"][m]["score"] for m in METRICS}
    s = score_summary(hyps)["heuristic"]
    assert s["model"] is False and s["n"] == len(hyps)
    assert all(1 <= s["mean"][m] <= 5 for m in METRICS)


def test_export_of_a_discovery_run_holds_the_runs_samples_only(gse, gse_run, tmp_path):
    """``proteus export h5mu`` of a run made on the discovery split writes those samples, not the folder's."""
    mudata = pytest.importorskip("mudata")
    from proteus.h5mu import write_h5mu

    folder, study = gse
    out, split = gse_run
    assert set(json.loads((out / "run.json").read_text())["samples"]) == set(split.discovery)
    md = mudata.read_h5mu(write_h5mu(out, tmp_path / "study.h5mu"))
    a = md.mod["transcriptomics"]
    assert sorted(a.obs_names) == sorted(split.discovery) and len(split.held_out) > 0
    assert set(md.obs_names) == set(split.discovery)
    assert a.n_vars == study.modalities["transcriptomics"].n_vars
