"""Validation re-tests the edge a hypothesis's claim rests on, with the claim's own model (proteus.records.KeyEdge).

Real data only: UCEC (cptac 0.4.1). The contrasts come from the data profile; the mediation drafts ("lower in
<case> through its mutation carriers") from the offline policy's patterns over the tools' own relations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from proteus.validation import ALPHA, MIN_REPLICATION, N_SPLITS, _split_masks, validate_hypotheses


@pytest.fixture(scope="module")
def mediation(ucec_study, tmp_path_factory):
    """The first profiled contrast whose samples are genotyped: its protein differential (with the profile's covariates)
    and mutation enrichment as a knowledge graph, the mediation drafts composed from it, and their validation."""
    from proteus.kg import KnowledgeGraph
    from proteus.policy.patterns import compose_hypotheses
    from proteus.profile import profile_study
    from proteus.tools.registry import ToolContext, ToolFailed, get_tool

    prof = profile_study(ucec_study)
    mod = next(m.name for m in prof.modalities if m.kind == "proteomics")
    ctx = ToolContext(out_dir=tmp_path_factory.mktemp("claim_keys"), seed=0, figures=False)
    for c in prof.contrasts:
        try:
            enriched = get_tool("mutation_group_enrichment")(ucec_study, {"group": c.group, "case": c.case, "control": c.control}, ctx)
        except ToolFailed:  # a contrast with one level not genotyped (normal tissue)
            continue
        diff = get_tool("differential_abundance")(ucec_study, {"modality": mod, "group": c.group, "case": c.case, "control": c.control,
                                                               "covariates": c.covariates}, ctx)
        kg = KnowledgeGraph()
        kg.add_relations(diff.relations + enriched.relations)
        drafts = [d for d in compose_hypotheses(kg) if any(k.model == "carriers" for k in d.key_edges)]
        if drafts:
            hyps = [{"id": f"H{i}", **d.model_dump()} for i, d in enumerate(drafts)]
            return kg, hyps, {h["id"]: h for h in validate_hypotheses(ucec_study, kg, hyps)}
    pytest.fail("no profiled contrast gives a mutation enriched in one level whose carriers carry its protein's difference")


def test_mediation_claim_is_keyed_and_retested_on_its_carrier_effect(ucec_study, mediation):
    """The key is the enrichment edge re-tested as carriers against non-carriers over the contrast's genotyped samples:
    the comparison the statement quotes (the tool's own_diff_carriers), and its held-out count is scipy's pooled t on the
    same splits."""
    from proteus.tools.mutation import mutation_matrix

    kg, hyps, validated = mediation
    for h in hyps:
        (spec,) = h["key_edges"]
        r = kg.relation(spec["edge"])
        assert r.provenance.tool == "mutation_group_enrichment" and spec["model"] == "carriers" and spec["role"] == "carrier effect"
        v = validated[h["id"]]["validation"]
        (key,) = v["key_edges"]
        assert key["edge"] == r.id and key["status"] == "tested"
        assert key["effect"] == pytest.approx(r.stats.extra["own_diff_carriers"], rel=1e-9), "the claim's own carrier comparison"
        assert v["reason"].startswith("rests on carrier effect")
        p = r.provenance.params
        lab = ucec_study.clinical[p["group"]]
        samples = [str(s) for s in lab.index[lab.astype(str).isin([p["case"], p["control"]])]]
        mat, geno = mutation_matrix(ucec_study, samples, "nonsilent")
        a = ucec_study.modalities[r.stats.extra["own_modality"]]
        x = pd.Series(np.asarray(a[:, r.stats.extra["own_feature"]].X, dtype=float).ravel(), index=a.obs_names.astype(str))
        geno = [s for s in geno if s in x.index]
        x, carrier = x.reindex(geno).to_numpy(), mat[r.subject.label].reindex(geno).to_numpy(bool)
        sign, k = np.sign(r.stats.extra["own_diff_carriers"]), 0
        for held in _split_masks(carrier, len(carrier), N_SPLITS, 0.6, 0):
            a_, b_ = x[held & carrier], x[held & ~carrier]
            a_, b_ = a_[np.isfinite(a_)], b_[np.isfinite(b_)]
            t = stats.ttest_ind(a_, b_, equal_var=True)
            k += bool(t.pvalue < ALPHA and np.sign(a_.mean() - b_.mean()) == sign)
        assert key["replicated_splits"] == k and key["n"] == int(np.isfinite(x).sum())


def test_weak_supporting_edge_does_not_fail_a_replicated_key(mediation):
    """The verdict follows the carrier key alone; a group difference that does not replicate is said, not counted
    against it (on UCEC one mediation's own group difference is weak while its carriers' effect replicates)."""
    kg, hyps, validated = mediation
    weak_support = 0
    for h in hyps:
        v = validated[h["id"]]["validation"]
        (key,) = v["key_edges"]
        key_ok = key["replicated_splits"] / N_SPLITS >= MIN_REPLICATION and key["null_p"] < ALPHA
        assert (v["status"] == "validated") == key_ok, (h["statement"][:80], v["reason"])
        failing = [e for e, o in v["edges"].items() if o["status"] == "tested" and e != key["edge"]
                   and (o["replicated_splits"] / N_SPLITS < MIN_REPLICATION or o["null_p"] >= ALPHA)]
        for e in failing:
            assert "itself did not replicate" in v["reason"] and f"{kg.relation(e).stats.q:.2g} at discovery" in v["reason"]
        weak_support += bool(failing and v["status"] == "validated")
    assert weak_support, "a mediation whose key replicates while its group difference does not is validated"


def test_carriers_sitting_in_one_level_are_said(ucec_study, mediation):
    """Where >= 80% of a claim's carriers sit in one level of a grouping (or are hypermutated) that holds at most half of
    the non-carriers, the statement says so with the counts; every such level, recomputed here from the sample table, is
    found (on UCEC: mutations enriched in MSI-H sit in hypermutated tumours)."""
    import re

    from proteus.confounding import CARRIER_SHARE, carrier_overlap, hypothesis_checks
    from proteus.design import is_unknown_level
    from proteus.profile import profile_study
    from proteus.tools.mutation import hypermutated, mutation_matrix

    kg, hyps, _ = mediation
    columns = profile_study(ucec_study).confounder_columns()
    said = 0
    for r in (x for x in kg.relations.values() if x.provenance.tool == "mutation_group_enrichment"):
        p = r.provenance.params
        lab = ucec_study.clinical[p["group"]]
        mat, geno = mutation_matrix(ucec_study, [str(s) for s in lab.index[lab.astype(str).isin([p["case"], p["control"]])]], "nonsilent")
        carrier = mat[r.subject.label]
        status, _ = hypermutated(ucec_study, geno)
        groupings = {c: ucec_study.clinical.reindex(geno)[c] for c, role, cont in columns if role == "biological" and not cont}
        groupings["hypermutator status"] = status.map({True: "hypermutated", False: "no"})
        expected = set()
        for col, v in groupings.items():
            v = v.where(v.notna() & ~v.astype(str).map(is_unknown_level))
            c, w = v[carrier].dropna().astype(str), v[~carrier].dropna().astype(str)
            if len(c) < 3 or r.subject.label in re.split(r"[^A-Za-z0-9]+", col):
                continue
            level = c.value_counts().index[0]
            k, inside = int((c == level).sum()), int((w == level).sum())
            if k >= CARRIER_SHARE * len(c) and inside <= len(w) / 2 and stats.fisher_exact([[k, len(c) - k], [inside, len(w) - inside]]).pvalue < ALPHA:
                expected.add((col, level, k, len(c)))
        found = carrier_overlap(ucec_study, r, columns)
        got = {(f["column"], f["level"], f["k"], f["n"]) for f in (found or {}).get("levels", [])}
        assert got <= expected and bool(got) == bool(expected), (r.subject.label, got, expected)
        said += bool(got)
    assert said, "some enriched mutation's carriers sit in one level"
    for h in hyps:
        records, clause, _ = hypothesis_checks([kg.relation(e) for e in h["evidence"]], ucec_study.clinical, columns, {}, study=ucec_study)
        overlap = [x for x in records if x.get("kind") == "carrier overlap"]
        for x in overlap:
            assert x["clause"] in clause and f"{x['levels'][0]['k']} of {x['levels'][0]['n']} {x['gene']} carriers are" in clause


def test_adjusted_claim_is_retested_as_the_refit_it_states(ucec_study, mediation):
    """A statement that 'holds adjusted for' a column gets that refit as a key edge; validation re-tests the edge's
    feature with the column in its model on the samples with it recorded, the effect the statement quotes."""
    from proteus.confounding import adjusted_keys, hypothesis_checks
    from proteus.profile import profile_study

    kg, _, _ = mediation
    columns = profile_study(ucec_study).confounder_columns()
    diffs = sorted((r for r in kg.relations.values() if r.provenance.tool == "differential_abundance"), key=lambda r: r.stats.p)
    for r in diffs[:10]:
        records, clause, _ = hypothesis_checks([r], ucec_study.clinical, columns, {}, study=ucec_study)
        keys = adjusted_keys(records)
        if keys:
            break
    else:
        pytest.fail("none of the strongest differences holds adjusted for a column its groups differ in")
    h = {"id": "H", "statement": clause, "evidence": [r.id], "key_edges": [k.model_dump() for k in keys]}
    (out,) = validate_hypotheses(ucec_study, kg, [h])
    first, *adjusted = out["validation"]["key_edges"]
    assert first["role"] == "first testable edge" and len(adjusted) == len(keys)
    for key, adj in zip(keys, adjusted):
        assert key.edge == r.id and key.adjusted_for[0] in clause
        refit = next(c for rec in records for c in rec.get("refitted", []) if c["column"] == key.adjusted_for[0])
        _, _, quoted, _, n_quoted = refit["refit"]
        assert adj["model"] == "adjusted" and adj["adjusted_for"] == key.adjusted_for
        assert adj["n"] == n_quoted and adj["effect"] == pytest.approx(quoted, abs=1e-3), (key.adjusted_for, refit["adjusted"])
        assert "adjusted for covariates" in adj["test"] and f"{key.role} (" in out["validation"]["reason"]
        assert adj["n"] <= ucec_study.clinical[key.adjusted_for[0]].notna().sum()
