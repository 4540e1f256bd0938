"""Confounder checks before a claim (proteus.confounding), on the alphastats NAFLD plasma study
(``nafld_dir``): a diagnosis column with a control-like level beside yes/no therapy columns. Every
expected answer is derived here from the sample table, none is written into the code."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from proteus.confounding import COLLINEAR_R2, MIN_ADJUSTED_N, SEPARATION_AUC, contrast_checks
from proteus.io import load_study
from proteus.profile import profile_study


@pytest.fixture(scope="module")
def nafld(nafld_dir):
    study = load_study(nafld_dir)
    prof = profile_study(study)
    columns = prof.confounder_columns()
    factor = next(f for f in prof.factors if len(f.levels) > 2 and f.references)
    binary = [f.name for f in prof.factors if len(f.levels) == 2]
    return study, prof, columns, factor, binary


def _most_nested(clin, factor, binary):
    """(other column, its 'case' level, the factor level holding the largest share of it, and whether the
    reference never has it): a yes/no column concentrated in one diagnosis."""
    best = None
    for col in binary:
        tab = pd.crosstab(clin[factor.name].astype(str), clin[col].astype(str))
        for value in tab.columns:
            ref = factor.references[0]
            if tab.loc[ref, value] > 0:
                continue
            share = tab[value] / tab.sum(1)
            lv = share.drop(ref).idxmax()
            if best is None or share[lv] > best[3]:
                best = (col, value, lv, share[lv])
    return best


def test_a_level_concentrated_in_another_column_cannot_be_separated_from_it(nafld):
    study, _, columns, factor, binary = nafld
    clin = study.clinical
    col, value, level, share = _most_nested(clin, factor, binary)
    assert share > 0.5  # the derived fixture: most of one diagnosis has it, the reference none
    checks = {c.column: c for c in contrast_checks(clin, factor.name, [level], [factor.references[0]], columns)}
    c = checks[col]
    rows = clin[factor.name].astype(str).isin([level, factor.references[0]])
    table = pd.crosstab(clin.loc[rows, factor.name].astype(str), clin.loc[rows, col].astype(str))
    assert c.test == "Fisher exact" and c.p == pytest.approx(stats.fisher_exact(table.to_numpy()).pvalue)
    assert c.r2 == pytest.approx(c.effect**2, abs=1e-3)  # a 0/1 indicator on a 0/1 column: R^2 is phi^2
    n1, n0 = table.sum(1).to_numpy()
    assert c.decision == "cannot be separated" and (c.r2 >= COLLINEAR_R2 or n1 * n0 / (n1 + n0) * (1 - c.r2) < MIN_ADJUSTED_N)
    assert col in c.text() and "cannot be separated" in c.text()


def test_the_other_direction_is_associated_separable_and_a_refinement_is_the_same_grouping(nafld):
    study, _, columns, factor, binary = nafld
    clin = study.clinical.copy()
    col, value, _, _ = _most_nested(clin, factor, binary)
    other = next(lv for lv in clin[col].dropna().astype(str).unique() if lv != value)
    checks = {c.column: c for c in contrast_checks(clin, col, [value], [other], columns)}
    c = checks[factor.name]
    assert c.test == "chi-square (Monte Carlo)"  # several diagnoses, small expected counts
    assert c.decision == "associated" and c.q < 0.05 and c.r2 < COLLINEAR_R2 and c.effect > 0.5
    # a column that only coarsens the factor (reference vs the rest) splits the same samples: not a confounder
    clin["coarse"] = np.where(clin[factor.name].astype(str) == factor.references[0], "group A", "group B")
    clin["shuffled"] = clin[col].sample(frac=1.0, random_state=3).to_numpy()  # a column unrelated by construction
    cols = columns + [("coarse", "biological", False), ("shuffled", "biological", False)]
    got = {c.column: c for c in contrast_checks(clin, factor.name, [lv for lv in factor.levels if lv not in factor.references],
                                                factor.references, cols)}
    assert got["coarse"].decision == "same grouping"
    assert got["shuffled"].decision in ("independent", "associated") and got["shuffled"].p > 0.01
    assert factor.name not in got  # never checked against itself


def test_continuous_covariates_are_compared_by_welch_and_unrecorded_arms_are_not_testable(nafld):
    study, _, columns, factor, _ = nafld
    clin = study.clinical.copy()
    rng = np.random.default_rng(0)
    ref = clin[factor.name].astype(str) == factor.references[0]
    clin["shifted"] = rng.normal(size=len(clin)) + 3.0 * ref  # differs by construction
    clin["case_only"] = np.where(ref, np.nan, rng.normal(size=len(clin)))
    lv = next(x for x in factor.levels if x not in factor.references)
    got = {c.column: c for c in contrast_checks(clin, factor.name, [lv], factor.references,
                                                [("shifted", "covariate", True), ("case_only", "covariate", True)])}
    rows = clin[factor.name].astype(str).isin([lv, factor.references[0]])
    a, b = clin.loc[rows & ~ref, "shifted"], clin.loc[rows & ref, "shifted"]
    assert got["shifted"].test == "Welch t" and got["shifted"].p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    # a threshold of it separates the groups (Mann-Whitney AUC >= 0.95) or not: a measure of the grouping, else a confounder
    auc = stats.mannwhitneyu(a, b).statistic / (len(a) * len(b))
    assert got["shifted"].auc == pytest.approx(max(auc, 1 - auc), abs=1e-3)
    expected = ("measures the grouping",) if max(auc, 1 - auc) >= SEPARATION_AUC else ("associated", "cannot be separated")
    assert got["shifted"].decision in expected
    assert got["case_only"].decision == "not testable" and "only" in got["case_only"].reason


def test_a_run_records_the_checks_on_every_contrast_hypothesis_and_words_inseparable_ones(nafld_dir, nafld, tmp_path):
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.runner import run_research

    _, _, columns, _, _ = nafld
    out = tmp_path / "run"
    run_research(nafld_dir, out, policy=HeuristicPolicy(), seed=0)
    hyps = [json.loads(x) for x in (out / "hypotheses.jsonl").read_text().splitlines()]
    kg = json.loads((out / "kg.json").read_text())
    edges = {e.get("id"): e for e in kg.get("links", kg.get("edges", []))}
    contrast_hyps = [h for h in hyps if any((edges.get(e) or {}).get("predicate") in ("higher_in", "lower_in", "differs_across")
                                            and ((edges.get(e) or {}).get("provenance") or {}).get("tool", "").startswith("differential")
                                            for e in h["evidence"])]
    assert contrast_hyps
    for h in contrast_hyps:
        assert h["design_checks"], h["statement"]
        # sample-quality records (proteus.quality: outlier runs, contamination) carry a kind; the rest are confounder checks
        for rec in [r for r in h["design_checks"] if r["contrast"] != "clinical variables of the association" and "kind" not in r]:
            group = rec["contrast"].split(": ")[0]
            assert rec["n_columns"] == sum(c != group for c, _, _ in columns)
            assert rec["n_columns"] == len(rec["checks"]) + len(rec["independent"]) + len(rec["not_testable"])
        inseparable = [c["column"] for rec in h["design_checks"] for c in rec.get("checks", []) if c["decision"] == "cannot be separated"]
        assert ("cannot be separated from" in h["statement"]) == bool(inseparable)
        assert "Confounder check of" in h["rationale"]
    assert any("cannot be separated from" in h["statement"] for h in hyps)  # the diagnosis a therapy is given in
    # an association of one thing with several clinical variables checks them against each other. The run's
    # sample clusters track the diagnosis and the therapy given for it; they are unstable (PAC), so they are a
    # report note, not a hypothesis: their relations from the graph are checked as a hypothesis citing them would be
    from proteus.confounding import hypothesis_checks
    from proteus.kg import KnowledgeGraph

    graph = KnowledgeGraph.from_node_link(kg)
    clusters = [r for r in graph.relations.values() if r.predicate == "associated_with" and r.object.type == "clinical_variable"
                and "subtype" in r.subject.label]
    assert not [h for h in hyps if set(h["evidence"]) & {r.id for r in clusters}]
    both = load_study(nafld_dir).clinical
    records, clause, _ = hypothesis_checks(clusters, both, columns)
    linked = [c for rec in records if rec["contrast"] == "clinical variables of the association" for c in rec["checks"]]
    assert linked
    for c in linked:
        assert f"{c['column']} is itself associated with {c['reason']}" in clause and c["p"] < 0.05
        tab = pd.crosstab(both[c["reason"]].astype(str), both[c["column"]].astype(str))
        assert stats.chi2_contingency(tab.to_numpy(), correction=False)[0] > 0 and c["effect"] > 0.3
    assert "the clusters are unstable" in clause
    report = (out / "report.html").read_text()
    assert "Confounder check</b>" in report
    assert "the classification its case samples are nested in" in report and "(pooled: the mean of " in report  # the design section


def test_a_contrast_nested_in_a_finer_classification_is_adjusted_for_it(nafld):
    """A yes/no column whose 'yes' samples all sit in some diagnoses that also hold 'no' samples, while other
    diagnoses hold no 'yes' (a therapy given for them), is compared within diagnosis; one spread over every
    diagnosis is not adjusted. The expectation is derived from the cross-table here."""
    from proteus.policy.playbooks import bulk_plays

    study, prof, _, factor, binary = nafld
    clin = study.clinical
    for c in (c for c in prof.contrasts if c.group in binary):
        g, f = clin[c.group].astype(str), clin[factor.name].astype(str)
        in_case, in_control = set(f[g == c.case]), set(f[g == c.control])
        nested = in_case <= in_control and bool(in_control - in_case)
        assert (c.confounders == [factor.name]) == nested, (c.group, in_case, in_control)
        if nested:
            assert factor.name in c.covariates
            steps = [s for p in bulk_plays(prof) for s in p.steps if s.params.get("group") == c.group and s.tool == "differential_abundance"]
            assert steps and all(factor.name in s.params.get("covariates", []) for s in steps)
            assert f"adjusting for {factor.name}" in steps[0].rationale
    assert any(c.confounders for c in prof.contrasts)
    # a factor is never adjusted for a column it is itself nested in the other way round (its levels span the column)
    assert not any(c.confounders for c in prof.contrasts if c.group == factor.name)


def test_a_hypothesis_on_an_adjusted_contrast_says_so_and_one_on_an_inseparable_contrast_says_that(nafld):
    from proteus.confounding import hypothesis_checks
    from proteus.records import Entity, Provenance, Relation, Stats, contrast_entity

    study, prof, columns, factor, _ = nafld
    adjusted = next(c for c in prof.contrasts if c.confounders)

    def rel(c, covariates):
        return Relation(subject=Entity(type="protein", label="X"), predicate="higher_in", object=contrast_entity(c.group, c.case, c.control),
                        stats=Stats(effect=1.0, p=1e-4, q=1e-3, direction="up"),
                        provenance=Provenance(tool="differential_abundance", params={"group": c.group, "case": c.case, "control": c.control,
                                                                                      "covariates": covariates}))

    records, clause, why = hypothesis_checks([rel(adjusted, adjusted.covariates)], study.clinical, columns)
    assert clause.startswith(f"; adjusted for {factor.name}") and "Confounder check of" in why
    (rec,) = records
    assert [c["decision"] for c in rec["checks"] if c["column"] == factor.name] == ["adjusted"]
    # the same contrast unadjusted: the factor is named as what the comparison does not separate out
    _, clause, _ = hypothesis_checks([rel(adjusted, [])], study.clinical, columns)
    assert factor.name in clause and "adjusted" not in clause


def _protein_contrast_relations(study, group: str, case: str, control: str, tmp_path):
    """The differential tool's relations for one contrast of the protein layer (the profile's covariates)."""
    from proteus.tools.registry import ToolContext, get_tool

    prof = profile_study(study)
    c = next(c for c in prof.contrasts if (c.group, c.case, c.control) == (group, case, control))
    mod = next(k for k, a in study.bulk().items() if a.uns.get("modality") == "proteomics")
    params = {"modality": mod, "group": group, "case": case, "control": control, "covariates": list(c.covariates)}
    return prof, get_tool("differential_abundance")(study, params, ToolContext(out_dir=tmp_path, seed=0, figures=False)).relations


def test_tissue_composition_is_refitted_where_measured_in_both_groups_and_named_as_missing_where_not(ucec_study, tmp_path):
    """A contrast whose groups differ in a composition score measured in both is refitted with it (the adjusted
    effect equals statsmodels' OLS with the score and the tool's covariates); a tissue-type contrast whose
    composition scores exist for one group only says it is unadjusted for composition."""
    sm = pytest.importorskip("statsmodels.api")
    from proteus.confounding import hypothesis_checks
    from proteus.policy.claims import is_composition_score
    from proteus.stats.design import covariate_block, usable_covariates

    prof = profile_study(ucec_study)
    columns = [(v.name, v.role, v.kind == "continuous") for v in prof.variables
               if v.role in ("biological", "covariate") and v.kind in ("binary", "categorical", "continuous")]
    scores = [n for n, _, cont in columns if cont and is_composition_score(n)]
    clin = ucec_study.clinical
    recorded = {c.group: [(c.case, c.control)] for c in prof.contrasts}
    # tissue type: the scores are recorded for one group only
    st = prof.sample_type_column
    case, control = recorded[st][0]
    assert not any(clin.loc[clin[st] == control, s].notna().any() for s in scores), "scores of one tissue only"
    _, rels = _protein_contrast_relations(ucec_study, st, case, control, tmp_path / "t")
    records, clause, why = hypothesis_checks(rels[:1], clin, columns, {}, study=ucec_study)
    assert "unadjusted for tissue composition" in clause and "not adjusted for tissue composition" in why
    assert set(records[0]["unadjusted_for_composition"]) == set(scores)
    # a contrast within one tissue, scores measured in both groups: refitted where the groups differ in one
    refit = None
    for c in prof.contrasts:
        if c.group == st or not all(clin.loc[clin[c.group] == lv, scores].notna().any().any() for lv in (c.case, c.control)):
            continue
        _, rels = _protein_contrast_relations(ucec_study, c.group, c.case, c.control, tmp_path / c.group)
        records, clause, why = hypothesis_checks(rels[:1], clin, columns, {}, study=ucec_study)
        if records[0].get("refitted"):
            refit, rel = records[0]["refitted"][0], rels[0]
            break
    assert refit is not None, "some within-tissue contrast differs in a composition score"
    assert "unadjusted for tissue composition" not in clause and refit["column"] in scores and "Refitted with the tissue-composition" in why
    p = rel.provenance.params
    a = ucec_study.modalities[rel.modality]
    tab = ucec_study.sample_table(rel.modality)
    tab = tab[tab[p["group"]].astype(str).isin([p["case"], p["control"]])]
    y = pd.Series(np.asarray(a[:, [rel.stats.extra["feature_id"]]].X, dtype=float).ravel(), index=a.obs_names.astype(str)).reindex(tab.index)
    covs = usable_covariates(tab.loc[y.notna()], p["covariates"], 2)[0] + [refit["column"]]
    Z = covariate_block(tab, covs)
    ok = y.notna() & Z.notna().all(axis=1)
    X = sm.add_constant(pd.concat([(tab.loc[ok, p["group"]] == p["case"]).astype(float).rename("g"), Z.loc[ok]], axis=1))
    ref = sm.OLS(y[ok], X).fit()
    assert refit["adjusted"].split("-> ")[1].startswith(f"{ref.params['g']:+.2f} (p={ref.pvalues['g']:.1g})"), (refit["adjusted"], ref.params["g"])


def test_an_f_test_hit_is_refitted_with_the_composition_score_its_level_differs_in(ucec_study, tmp_path):
    """A multi-level factor's F-test hit (its most distinct level against the others) whose samples differ in a
    composition score measured in every level is refitted with it (the adjusted effect equals statsmodels' OLS of
    the level indicator with the score and the tool's covariates), so the claim is never silently unadjusted."""
    sm = pytest.importorskip("statsmodels.api")
    from proteus.confounding import hypothesis_checks
    from proteus.design import is_composition_score
    from proteus.policy.playbooks import bulk_plays
    from proteus.stats.design import covariate_block, usable_covariates
    from proteus.tools.registry import ToolContext, get_tool

    prof = profile_study(ucec_study)
    columns = prof.confounder_columns()
    scores = {n for n, _, cont in columns if cont and is_composition_score(n)}
    clin = ucec_study.clinical
    anovas = [s.params for p in bulk_plays(prof) for s in p.steps if s.tool == "differential_anova" and s.params["group"] != prof.sample_type_column
              and all(clin.loc[clin[s.params["group"]].astype(str) == lv, sorted(scores)].notna().any().any() for lv in s.params["levels"])]
    assert anovas, "a multi-level factor within one tissue, composition scores measured in all its levels"
    mod = next(k for k, a in ucec_study.bulk().items() if a.uns.get("modality") == "proteomics")
    checked = 0
    for params in anovas:
        res = get_tool("differential_anova")(ucec_study, params | {"modality": mod}, ToolContext(out_dir=tmp_path / params["group"], seed=0, figures=False))
        for level in params["levels"]:
            rel = next((r for r in res.relations if r.stats.extra.get("level") == level), None)
            if rel is None:
                continue
            records, clause, _ = hypothesis_checks([rel], clin, columns, {}, study=ucec_study)
            differ = [c["column"] for c in records[0]["checks"] if c["column"] in scores and c["decision"] == "associated"]
            if not differ:
                continue
            refits = [c for c in records[0].get("refitted", []) if c["column"] in scores]
            assert refits or "unadjusted for tissue composition" in clause, (level, differ, clause)
            for refit in refits:
                tab = ucec_study.sample_table(rel.modality)
                tab = tab[tab[params["group"]].astype(str).isin(params["levels"])]
                a = ucec_study.modalities[rel.modality]
                y = pd.Series(np.asarray(a[:, [rel.stats.extra["feature_id"]]].X, dtype=float).ravel(), index=a.obs_names.astype(str)).reindex(tab.index)
                covs = usable_covariates(tab.loc[y.notna()], params["covariates"], 2)[0] + [refit["column"]]
                Z = covariate_block(tab, covs)
                ok = y.notna() & Z.notna().all(axis=1)
                X = sm.add_constant(pd.concat([(tab.loc[ok, params["group"]].astype(str) == level).astype(float).rename("g"), Z.loc[ok]], axis=1))
                ref = sm.OLS(y[ok], X).fit()
                assert refit["adjusted"].split("-> ")[1].startswith(f"{ref.params['g']:+.2f} (p={ref.pvalues['g']:.1g})"), (refit["adjusted"], ref.params["g"])
                checked += 1
    assert checked, "some level differs in a composition score and its hit is refitted with it"
