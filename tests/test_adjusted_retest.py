"""Validation re-tests the model the claim came from: the covariates the tool adjusted for are refitted
in every held-out split and in every permutation of the null (UCEC TMT proteomics, plex and channel)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from proteus.kg import KnowledgeGraph

sm = pytest.importorskip("statsmodels.api")


def _layer(study, kind: str) -> str:
    return next(k for k, a in study.bulk().items() if a.uns.get("modality") == kind)


@pytest.fixture(scope="module")
def adjusted_call(ucec_study, tmp_path_factory):
    """The profile's sample-type contrast on the protein layer, adjusted for the technical columns the profile
    chose (a TMT plex and channel), its relations in a knowledge graph and one single-edge hypothesis per relation."""
    from proteus.profile import profile_study
    from proteus.records import Provenance
    from proteus.tools.registry import ToolContext, get_tool

    prof = profile_study(ucec_study)
    c = next(c for c in prof.contrasts if c.group == prof.sample_type_column and c.covariates)
    mod = _layer(ucec_study, "proteomics")
    params = {"modality": mod, "group": c.group, "case": c.case, "control": c.control, "covariates": list(c.covariates)}
    res = get_tool("differential_abundance")(ucec_study, params, ToolContext(out_dir=tmp_path_factory.mktemp("adj"), seed=0, figures=False))
    assert res.metrics["covariates"], "the tool adjusted for the technical columns"
    kg = KnowledgeGraph()
    every = [r.model_copy(update={"provenance": Provenance(tool="differential_abundance", params=r.provenance.params)}) for r in res.relations]
    kg.add_relations(every)
    rels = every[:4]
    hyps = [{"id": f"H{i}", "statement": r.subject.label, "rationale": "", "evidence": [r.id], "entities": [], "test": ""}
            for i, r in enumerate(rels)]
    return kg, hyps, rels, res


def _ols(y: pd.Series, group: pd.Series, cov: pd.DataFrame):
    """statsmodels OLS of ``y ~ 1 + group + covariate dummies`` on the observed values."""
    X = pd.concat([group.astype(float).rename("group"), pd.get_dummies(cov.astype(str), drop_first=True, dtype=float)], axis=1)
    ok = y.notna()
    X = sm.add_constant(X[ok].loc[:, X[ok].std() > 0])
    return sm.OLS(y[ok].astype(float), X).fit()


def test_adjusted_t_matches_statsmodels_ols(ucec_study):
    """The vectorised least-squares t (masks per feature, many labellings at once) against statsmodels'
    OLS, feature by feature, on real TMT data with missing values and a 17-level plex."""
    from proteus.stats.adjusted import adjusted_t
    from proteus.stats.design import covariate_block

    mod = _layer(ucec_study, "phosphoproteomics")
    tab = ucec_study.sample_table(mod)
    plex = next(c for c in tab.columns if "plex" in c.lower())
    group = next(c for c in tab.columns if tab[c].nunique() == 2 and tab[c].notna().all())
    g = (tab[group].astype(str) == sorted(tab[group].astype(str).unique())[0])
    a = ucec_study.modalities[mod]
    Y = pd.DataFrame(np.asarray(a.X, dtype=float), index=tab.index, columns=a.var_names.astype(str))
    cols = [c for c in Y.columns if 0.05 < Y[c].isna().mean() < 0.4][:15]
    assert len(cols) == 15, "features with missing values: each has its own samples"
    got = adjusted_t(Y[cols].to_numpy(), g.to_numpy(float), covariate_block(tab, [plex]).to_numpy(float))
    for j, c in enumerate(cols):
        ref = _ols(Y[c], g, tab[[plex]])
        assert got.coef[j, 0] == pytest.approx(ref.params["group"], rel=1e-8)
        assert got.t[j, 0] == pytest.approx(ref.tvalues["group"], rel=1e-8)
        assert got.df[j, 0] == ref.df_resid


def test_validation_reports_the_adjusted_effect_the_claim_came_from(ucec_study, adjusted_call):
    """limma's coefficient is the least-squares coefficient: the effect validation reports for an adjusted edge
    is the tool's own log fold change (the unadjusted difference of means is not), and the held-out re-test of a
    split is statsmodels' OLS on that split with the covariates the split affords."""
    from proteus.edge_data import edge_design
    from proteus.stats.design import is_factor, usable_covariates
    from proteus.validation import _key_test, _split_masks, validate_hypotheses

    kg, hyps, rels, res = adjusted_call
    got = validate_hypotheses(ucec_study, kg, hyps)
    by_edge = {h["evidence"][0]: h["validation"]["edges"][h["evidence"][0]] for h in got}
    table = res.tables["results"].set_index("feature")
    for r in rels:
        out = by_edge[r.id]
        assert out["status"] == "tested" and out["effect_type"] == "adjusted_mean_difference", out
        assert "adjusted for" in out["test"] and any("adjusted for" in n for n in out["notes"])
        assert out["effect"] == pytest.approx(table.loc[r.stats.extra["feature_id"], "logFC"], rel=1e-6, abs=1e-9)
    d = edge_design(ucec_study, rels[0])
    x, lab = d.key_data()
    raw = np.nanmean(x[lab]) - np.nanmean(x[~lab])
    assert abs(by_edge[rels[0].id]["effect"] - raw) > 1e-3, "the adjusted effect is not the raw difference of means"
    # one held-out split, re-tested by hand
    ok = d.tested_samples()
    held = _split_masks(lab, len(lab), 20, 0.6, 0)[0] & ok
    cov = d.cov.loc[held]
    kept = usable_covariates(cov, list(cov.columns), d.n_fixed, [c for c in d.cov.columns if is_factor(d.cov[c])])[0]
    assert kept, "the split affords a covariate"
    ref = _ols(pd.Series(x[held]), pd.Series(lab[held]), cov[kept].reset_index(drop=True))
    effect, p = _key_test(d, held)
    assert effect == pytest.approx(ref.params["group"], rel=1e-8) and p == pytest.approx(ref.pvalues["group"], rel=1e-6)


def test_null_permutes_labels_within_the_finest_covariate_block(ucec_study, adjusted_call):
    """Every permutation of an adjusted design keeps each plex's number of cases (exchangeability blocks), so a
    label's association with the batch survives into the null; the design's labellings are counted per block."""
    from proteus.edge_data import edge_design
    from proteus.stats.adjusted import block_permutations
    from proteus.validation import design_too_small

    kg, hyps, rels, _ = adjusted_call
    d = edge_design(ucec_study, rels[0])
    plex = next(c for c in d.cov.columns if "plex" in c.lower())
    assert d.blocks is not None and (d.blocks == d.cov[plex].astype(str).to_numpy()).all(), "blocks are the finest factor covariate"
    perms = block_permutations(d.blocks, len(d.labels), 50, 0)
    per_block = pd.Series(d.labels).groupby(d.blocks).sum()
    for perm in perms:
        assert (pd.Series(d.labels[perm]).groupby(d.blocks).sum() == per_block).all()
    assert len({tuple(p) for p in perms}) == 50
    # two blocks, each holding one case of two samples: 4 labellings within blocks, 6 without
    lab = np.array([True, False, True, False])
    every = [np.ones(4, bool)]
    assert design_too_small(lab, np.ones(4, bool), every, 0.05, np.array(["a", "a", "b", "b"])).startswith("2 vs 2 samples allow 4 labellings within")


def test_unadjusted_edges_keep_students_t(ucec_study, adjusted_call):
    """An edge whose tool adjusted for nothing is re-tested by Student's pooled t as before (no covariates appear)."""
    from proteus.edge_data import edge_design
    from proteus.records import Provenance

    _, _, rels, _ = adjusted_call
    p = {k: v for k, v in rels[0].provenance.params.items() if k != "covariates"}
    r = rels[0].model_copy(update={"provenance": Provenance(tool="differential_abundance", params=p)})
    d = edge_design(ucec_study, r)
    assert d.cov is None and d.blocks is None and d.method == "student" and not d.notes


def test_site_layer_model_keeps_the_protein_models_technical_covariates(ucec_study, adjusted_call, tmp_path):
    """Every layer's model includes the study's technical columns where they are that layer's: the phosphosite
    model of a contrast keeps the TMT plex / channel the protein model adjusts for (the sites are measured in
    the same plexes), in the planned objectives and in the follow-up on protein findings; the RNA model does
    not (another platform); the tool then fits the site model with them."""
    from proteus.policy.playbooks import bulk_plays, followup_plays
    from proteus.profile import profile_study
    from proteus.tools.registry import ToolContext, get_tool

    prof = profile_study(ucec_study)
    phospho, rna = _layer(ucec_study, "phosphoproteomics"), _layer(ucec_study, "transcriptomics")
    steps = [s for p in bulk_plays(prof) for s in p.steps if s.tool == "differential_abundance"]
    by_layer = {}
    for s in steps:
        by_layer.setdefault((s.params["group"], s.params["case"], s.params["control"]), {})[s.params["modality"]] = s.params.get("covariates", [])
    both = [v for v in by_layer.values() if phospho in v and v.get(_layer(ucec_study, "proteomics"))]
    assert both, "a contrast tested in proteins (adjusted) and sites"
    for v in both:
        assert v[phospho] == v[_layer(ucec_study, "proteomics")]
        assert not v.get(rna)
    kg, _, _, _ = adjusted_call  # protein findings of the sample-type contrast, adjusted: the follow-up tests its sites
    follow = [s for p in followup_plays(prof, kg) for s in p.steps if s.tool == "differential_abundance" and s.params["modality"] == phospho]
    protein_covs = next(iter(kg.relations.values())).provenance.params["covariates"]
    assert follow and all(s.params["covariates"] == protein_covs for s in follow)
    res = get_tool("differential_abundance")(ucec_study, follow[0].params, ToolContext(out_dir=tmp_path, seed=0, figures=False))
    assert [n.split(":")[0] for n in res.metrics["covariates"]] == protein_covs


def test_held_out_power_of_an_adjusted_edge_with_missing_values(ucec_study, adjusted_call):
    """An adjusted edge whose feature is missing in some samples: the power of its held-out re-test counts the
    covariate df on the samples with a value (the old code stacked all samples' intercept against the observed
    samples' covariates and raised)."""
    from proteus.edge_data import edge_design
    from proteus.validation import _split_masks, held_out_power

    kg, *_ = adjusted_call
    for r in sorted(kg.relations.values(), key=lambda r: r.stats.q_else_p()):
        d = edge_design(ucec_study, r)
        ok = d.tested_samples()
        if not ok.all() and d.cov is not None:
            break
    else:
        pytest.fail("no adjusted edge with a missing value")
    power = held_out_power(d, ok, _split_masks(d.labels, len(ok), 20, 0.6, 0), 0.05)
    assert power is not None and 0 < power <= 1


def test_a_splits_covariates_index_the_designs_encoding_by_the_tools_rule(ucec_study, adjusted_call):
    """Each held-out split's covariate columns index one encoding per design (a 17-level plex encoded once, not per
    split), and are the columns the tool's own rule and encoding give on that split's samples
    (:func:`proteus.stats.design.usable_covariates`, :func:`proteus.stats.design.covariate_block`): for the tool's
    covariates and for a claim's refit with a sample-table column added, on every split and all samples."""
    from proteus.edge_data import edge_design, with_covariates
    from proteus.stats.design import covariate_block, is_factor, usable_covariates
    from proteus.validation import _split_masks

    kg, _, rels, _ = adjusted_call
    d = edge_design(ucec_study, rels[0])
    other = next(c for c in ucec_study.clinical.columns if c not in d.cov.columns and is_factor(ucec_study.clinical[c])
                 and 2 <= ucec_study.clinical[c].nunique() <= 4 and ucec_study.clinical[c].notna().mean() > 0.5)
    refit = with_covariates(d, ucec_study, [other])
    assert not isinstance(refit, str), refit
    seen = set()
    for design in (d, refit):
        factors = [c for c in design.cov.columns if is_factor(design.cov[c])]
        for m in [None, *_split_masks(design.labels, len(design.labels), 20, 0.6, 0)]:
            tab = design.cov if m is None else design.cov.loc[m]
            kept = usable_covariates(tab, list(tab.columns), design.n_fixed, factors)[0]
            got = design.covariates(m)
            seen.add(len(kept))
            if not kept:
                assert got is None
                continue
            np.testing.assert_array_equal(got, covariate_block(tab, kept, factors).to_numpy(float))
    assert len(seen) > 1, "some split affords fewer covariates than all samples"
