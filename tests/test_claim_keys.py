"""Validation re-tests the edge a hypothesis's claim rests on, with the claim's own model (proteus.records.KeyEdge).

Real data only: UCEC (cptac 0.4.1). The contrasts come from the data profile; the mediation drafts ("lower in
<case> through its mutation carriers") from the offline policy's patterns over the tools' own relations.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from proteus.validation import _SAID, ALPHA, MIN_REPLICATION, N_SPLITS, _split_masks, validate_hypotheses


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



def _own_values(study, r) -> pd.Series:
    """The gene's own feature that the enrichment edge compared, by sample."""
    a = study.modalities[r.stats.extra["own_modality"]]
    return pd.Series(np.asarray(a[:, r.stats.extra["own_feature"]].X, dtype=float).ravel(), index=a.obs_names.astype(str))


def _replicated_splits(x: np.ndarray, in_case: np.ndarray, sign: float) -> int:
    """The oracle for a key: held-out splits where Student's t (p < ALPHA) finds the stated sign."""
    k = 0
    for held in _split_masks(in_case, len(in_case), N_SPLITS, 0.6, 0):
        a_, b_ = x[held & in_case], x[held & ~in_case]
        a_, b_ = a_[np.isfinite(a_)], b_[np.isfinite(b_)]
        t = stats.ttest_ind(a_, b_, equal_var=True)
        k += bool(t.pvalue < ALPHA and np.sign(a_.mean() - b_.mean()) == sign)
    return k

def test_mediation_claim_is_keyed_and_retested_on_its_carrier_effect(ucec_study, mediation):
    """The key is the enrichment edge re-tested as carriers against non-carriers over the contrast's genotyped samples:
    the comparison the statement quotes (the tool's own_diff_carriers), and its held-out count is scipy's pooled t on the
    same splits."""
    from proteus.tools.mutation import mutation_matrix

    kg, hyps, validated = mediation
    for h in hyps:
        (spec,) = [k for k in h["key_edges"] if k["model"] == "carriers"]
        r = kg.relation(spec["edge"])
        assert r.provenance.tool == "mutation_group_enrichment" and spec["role"] == "carrier effect"
        v = validated[h["id"]]["validation"]
        (key,) = [k for k in v["key_edges"] if k["model"] == "carriers"]
        assert key["edge"] == r.id and key["status"] == "tested"
        assert key["effect"] == pytest.approx(r.stats.extra["own_diff_carriers"], rel=1e-9), "the claim's own carrier comparison"
        assert v["reason"].startswith("rests on ") and "carrier effect (" in v["reason"]
        p = r.provenance.params
        lab = ucec_study.clinical[p["group"]]
        samples = [str(s) for s in lab.index[lab.astype(str).isin([p["case"], p["control"]])]]
        mat, geno = mutation_matrix(ucec_study, samples, "nonsilent")
        x = _own_values(ucec_study, r)
        geno = [s for s in geno if s in x.index]
        x, carrier = x.reindex(geno).to_numpy(), mat[r.subject.label].reindex(geno).to_numpy(bool)
        k = _replicated_splits(x, carrier, np.sign(r.stats.extra["own_diff_carriers"]))
        assert key["replicated_splits"] == k and key["n"] == int(np.isfinite(x).sum())


def test_a_mediation_validates_only_where_its_headline_difference_replicates_too(mediation):
    """A mediation states the grouping's difference in the protein (its headline) and that the carriers carry it: both
    are keys, each judged on its own, and the hypothesis takes the worse verdict. On UCEC one mediation's carrier effect
    replicates while the grouping's difference it opens with does not (null p far above 0.05): it is not validated, and
    the reason says which key replicated and which did not."""
    kg, hyps, validated = mediation
    split = 0
    for h in hyps:
        v = validated[h["id"]]["validation"]
        keys = {k["model"]: k for k in v["key_edges"] if k["status"] == "tested"}
        headline = next((k for k in h["key_edges"] if k["model"] == "edge"), None)
        if headline is None:  # the graph holds no difference of the protein between the levels to re-test
            continue
        assert kg.relation(headline["edge"]).provenance.tool == "differential_abundance", h["statement"][:80]
        assert headline["role"] == f"{kg.relation(headline['edge']).object.label.split(': ')[0]} difference"
        ok = {m: k["replicated_splits"] / N_SPLITS >= MIN_REPLICATION and k["null_p"] < ALPHA for m, k in keys.items()}
        assert (v["status"] == "validated") == all(ok.values()), (h["statement"][:80], v["reason"])
        if ok["carriers"] and not ok["edge"]:
            split += 1
            assert v["status"] != "validated" and v["replicated"] is not True
            assert f"carrier effect ({kg.relation(keys['carriers']['edge']).subject.label} carriers" in v["reason"]
            assert "splits, null " + f"{keys['carriers']['null_k']}/199: replicated)" in v["reason"]
            assert f"{headline['role']} (the " in v["reason"] and f"{_SAID[keys['edge']['grounds']]})" in v["reason"]
            assert v["replication"]["k"] == keys["edge"]["replicated_splits"], "the count given is the key that decided"
    assert split, "a mediation whose carriers replicate while its grouping difference does not"


def test_every_mediation_retests_its_headline_difference(ucec_study, mediation):
    """A mediation opens with the grouping's difference in the protein; where that difference is no edge of the graph
    (significant only over the enriched genes, as ARID1A in MSI-H on UCEC) the headline is still a key: the enrichment
    edge's own comparison of the levels (the tool's own_diff_all), re-tested as case against control over the contrast's
    genotyped samples, its held-out count scipy's pooled t on the same splits. The old code keyed such a claim on its
    carrier effect alone, and validated half of it."""
    from proteus.tools.mutation import mutation_matrix

    kg, hyps, validated = mediation
    levels = 0
    for h in hyps:
        headline = [k for k in h["key_edges"] if k["model"] in ("edge", "levels")]
        carrier = next(k for k in h["key_edges"] if k["model"] == "carriers")
        r = kg.relation(carrier["edge"])
        assert len(headline) == 1 and headline[0]["role"] == f"{r.object.label.split(': ')[0]} difference", h["key_edges"]
        if headline[0]["model"] != "levels":
            continue
        levels += 1
        v = validated[h["id"]]["validation"]
        (key,) = [k for k in v["key_edges"] if k["model"] == "levels"]
        assert key["edge"] == r.id and key["status"] == "tested"
        assert key["effect"] == pytest.approx(r.stats.extra["own_diff_all"], rel=1e-9), "the statement's own difference"
        p = r.provenance.params
        lab = ucec_study.clinical[p["group"]].astype(str)
        mat, geno = mutation_matrix(ucec_study, [str(s) for s in lab.index[lab.isin([p["case"], p["control"]])]], "nonsilent")
        x = _own_values(ucec_study, r)
        geno = [s for s in geno if s in x.index]
        x, case = x.reindex(geno).to_numpy(), (lab.reindex(geno) == p["case"]).to_numpy()
        k = _replicated_splits(x, case, np.sign(r.stats.extra["own_diff_all"]))
        assert key["replicated_splits"] == k and key["n"] == int(np.isfinite(x).sum())
        assert f"{headline[0]['role']} ({r.subject.label} in {p['case']} against {p['control']}" in v["reason"]
        ok = all(kk["replicated_splits"] / N_SPLITS >= MIN_REPLICATION and kk["null_p"] < ALPHA
                 for kk in v["key_edges"] if kk["model"] in ("levels", "carriers"))
        assert (v["status"] == "validated") == ok, v["reason"]
    assert levels, "a mediation whose grouping difference is no edge of the graph"


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


def _refit_claims(ucec_study, kg, n: int = 10):
    """(relation, records, clause, keys) of the strongest protein differences whose statement says they hold adjusted
    for columns their groups differ in (proteus.confounding.hypothesis_checks)."""
    from proteus.confounding import adjusted_keys, hypothesis_checks
    from proteus.profile import profile_study

    columns = profile_study(ucec_study).confounder_columns()
    diffs = sorted((r for r in kg.relations.values() if r.provenance.tool == "differential_abundance"), key=lambda r: r.stats.p)
    for r in diffs[:n]:
        records, clause, _ = hypothesis_checks([r], ucec_study.clinical, columns, {}, study=ucec_study)
        if keys := adjusted_keys(records):
            yield r, records, clause, keys


def _refit_v(study, r, column: str) -> tuple[float, int]:
    """Cramér's V of the edge's grouping with ``column`` (scipy) on the contrast's samples with the feature and the
    column recorded, and their number."""
    from scipy.stats.contingency import association

    from proteus.design import is_unknown_level

    p = r.provenance.params
    tab = study.sample_table(r.modality)
    tab = tab[tab[p["group"]].astype(str).isin([p["case"], p["control"]])]
    x = pd.Series(np.asarray(study.modalities[r.modality][:, r.stats.extra["feature_id"]].X, dtype=float).ravel(),
                  index=study.modalities[r.modality].obs_names.astype(str)).reindex(tab.index)
    col = tab[column]
    ok = x.notna() & col.notna() & ~col.astype(str).map(is_unknown_level) & tab[list(p.get("covariates") or [])].notna().all(axis=1)
    return float(association(pd.crosstab(tab.loc[ok, p["group"]].astype(str), col[ok].astype(str)).to_numpy(), method="cramer")), int(ok.sum())


def test_adjusted_claim_is_retested_as_the_refit_it_states(ucec_study, mediation):
    """A statement that 'holds adjusted for' a column gets that refit as a key edge; validation re-tests the edge's
    feature with the column in its model on the samples with it recorded, the effect the statement quotes."""
    from proteus.confounding import COLLINEAR_V

    kg, _, _ = mediation
    r, records, clause, keys = next(x for x in _refit_claims(ucec_study, kg) if any(_refit_v(ucec_study, x[0], k.adjusted_for[0])[0] < COLLINEAR_V
                                                                                   for k in x[3]))
    keys = [k for k in keys if _refit_v(ucec_study, r, k.adjusted_for[0])[0] < COLLINEAR_V]
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


def _held_refits(ucec_study, kg, n: int = 30):
    """(relation, records, clause, [(column, V, samples)]) of the strongest protein differences with refits that held,
    each column's Cramér's V with the grouping on the refit's samples (scipy, :func:`_refit_v`)."""
    from proteus.confounding import hypothesis_checks
    from proteus.profile import profile_study

    columns = profile_study(ucec_study).confounder_columns()
    diffs = sorted((r for r in kg.relations.values() if r.provenance.tool == "differential_abundance"), key=lambda r: r.stats.p)
    for r in diffs[:n]:
        records, clause, _ = hypothesis_checks([r], ucec_study.clinical, columns, {}, study=ucec_study)
        held = [c["column"] for rec in records for c in rec.get("refitted", [])
                if c["reason"].endswith("held adjusted for it") and c.get("effect_name") == "Cramér's V"]  # factors (not composition scores)
        if held:
            yield r, records, clause, [(col, *_refit_v(ucec_study, r, col)) for col in held]


def test_a_statement_says_a_collinear_column_cannot_be_separated_not_that_it_holds_adjusted(ucec_study, mediation):
    """A refit for a column tied to the grouping as strongly as Cramér's V >= 0.7 on the refit's samples (on UCEC the MSI
    grouping and a mismatch-repair gene's status) separates nothing: the statement says the difference "cannot be
    separated from" the column with that V, never that it "holds adjusted for" it, and no key claims the refit; a column
    below the threshold is still said to hold and keyed. The old code said every refit that held "holds adjusted for"."""
    from proteus.confounding import COLLINEAR_V, adjusted_keys

    kg, _, _ = mediation
    seen = {"collinear": 0, "separable": 0}
    for r, records, clause, held in _held_refits(ucec_study, kg):
        keyed = {k.adjusted_for[0] for k in adjusted_keys(records)}
        for col, cv, n in held:
            if cv >= COLLINEAR_V:
                seen["collinear"] += 1
                assert f"adjusted for {col}" not in clause and col not in keyed, clause
                assert "the difference cannot be separated from " in clause and re.search(rf"{re.escape(col)} \(Cramér's V {cv:.2f} on the {n} samples with [^()]+ measured and {re.escape(col)} recorded\)", clause), clause
            else:
                seen["separable"] += 1
                assert col in clause and "it holds adjusted for" in clause and col in keyed, clause
    assert seen["collinear"] and seen["separable"], seen


def test_a_refit_for_a_column_collinear_with_the_grouping_is_not_tested(ucec_study, mediation):
    """Validation follows the same rule where a claim does key such a refit (a drafted key, not the statement's wording):
    the refit is not re-tested, the reason gives the V and why, and the verdict is the worst of the other keys' own
    verdicts."""
    from proteus.confounding import COLLINEAR_V
    from proteus.records import KeyEdge

    kg, _, _ = mediation
    r, _, clause, held = next(x for x in _held_refits(ucec_study, kg) if any(cv >= COLLINEAR_V for _, cv, _ in x[3]))
    keys = [KeyEdge(edge=r.id, role=f"adjusted for {col}", model="adjusted", adjusted_for=[col]) for col, _, _ in held]
    h = {"id": "H", "statement": clause, "evidence": [r.id], "key_edges": [k.model_dump() for k in keys]}
    (out,) = validate_hypotheses(ucec_study, kg, [h])
    v = out["validation"]
    by_role = {k["role"]: k for k in v["key_edges"]}
    collinear = 0
    for k, (_, cv, n) in zip(keys, held):
        got = by_role[k.role]
        if cv >= COLLINEAR_V:
            collinear += 1
            assert got["status"] == "untestable" and "verdict" not in got
            said = f"{k.adjusted_for[0]} is collinear with the grouping (Cramér's V {cv:.2f} >= {COLLINEAR_V} on the {n} samples of the refit)"
            assert said in got["reason"] and f"{k.role} (V {cv:.2f} on {n} samples)" in v["reason"]
        else:
            assert got["status"] == "tested"
    assert collinear and "not re-tested, as adjustment cannot separate a column this collinear with the grouping" in v["reason"]
    tested = [k for k in v["key_edges"] if k["status"] == "tested"]
    worst = min((k["verdict"] for k in tested), key=["failed", "inconclusive", "validated"].index)
    assert v["status"] == worst and len(tested) == len(keys) - collinear + 1
