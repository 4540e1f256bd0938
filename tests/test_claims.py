"""Every clause of a pattern hypothesis is checked against the full result tables
(:mod:`proteus.policy.claims`, :mod:`proteus.policy.result_tables`): each wording rule is planted on
real UCEC results and must change what is written."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from proteus.kg import KnowledgeGraph
from proteus.policy.claims import directions_agree, is_composition_score, overclaims
from proteus.policy.patterns import compose_hypotheses
from proteus.policy.result_tables import ResultTables
from proteus.records import Entity, Provenance, Relation, Stats
from proteus.tools.registry import ToolContext, get_tool


def _compose(kg, tables, kinds):
    return compose_hypotheses(kg, tables=ResultTables(kg, lambda p: tables.get(p), kinds), limit=200)


def _site_drafts(drafts, site=None):
    return [d for d in drafts if d.statement.startswith("Phosphorylation of") and (site is None or f"of {site} " in d.statement)]


def test_site_claims_are_checked_against_the_full_protein_table(site_run):
    kg, tables, kinds, c = site_run
    prot = tables["tables/S1_results.tsv"].set_index("gene")
    drafts = _site_drafts(_compose(kg, tables, kinds))
    assert drafts, "tumour vs normal has sites that change beyond their protein"
    for d in drafts:
        gene = d.entities[1].split(":", 1)[1]
        site_fc = float(re.search(r"log2FC ([+-][\d.]+)", d.rationale).group(1))
        if gene not in prot.index:
            pytest.fail(f"site claim without its protein tested: {d.statement}")
        row = prot.loc[[gene]].sort_values("p").iloc[0]
        if "without a change" in d.statement:
            assert row["q"] >= 0.05 and abs(row["logFC"]) < abs(site_fc) / 2
        else:
            assert "beyond the change" in d.statement and abs(site_fc) > abs(row["logFC"])


def test_a_site_that_moves_with_its_protein_is_not_called_site_specific(site_run):
    kg, tables, kinds, c = site_run
    d = _site_drafts(_compose(kg, tables, kinds))[0]
    site, gene = d.entities[0].split(":", 1)[1], d.entities[1].split(":", 1)[1]
    srow = tables["tables/S2_results.tsv"].query("label == @site").iloc[0]
    planted = dict(tables)
    prot = tables["tables/S1_results.tsv"].copy()
    hit = prot["gene"] == gene
    # protein significantly changed by the same amount, with the same precision, as its site
    prot.loc[hit, ["logFC", "t", "p", "q"]] = [srow["logFC"], srow["t"], srow["p"], srow["q"]]
    planted["tables/S1_results.tsv"] = prot
    after = _compose(kg, planted, kinds)
    assert not _site_drafts(after, site)
    assert not any(site in x.statement and "without a" in x.statement for x in after)
    # a protein measured flat (interval near zero) makes "without a change in protein" true
    prot.loc[hit, ["logFC", "t", "p", "q"]] = [0.01, 0.2, 0.84, 0.95]
    flat = _site_drafts(_compose(kg, planted, kinds), site)
    assert flat and "without a change in" in flat[0].statement and "95% CI" in flat[0].rationale


def test_without_the_protein_tested_no_site_specific_claim(site_run):
    kg, tables, kinds, c = site_run
    only_sites = {k: v for k, v in tables.items() if "S2" in k}
    assert not _site_drafts(_compose(kg, only_sites, kinds))


def _rel(subj, pred, obj, effect, q=1e-6, tool="x", **extra):
    return Relation(subject=subj, predicate=pred, object=obj, stats=Stats(effect=effect, q=q, p=q / 10, n=40, extra=extra),
                    modality="proteomics", provenance=Provenance(tool=tool))


def test_a_module_with_a_member_moving_the_other_way_is_not_said_to_change_together():
    contrast = "g: a vs b"
    fcs = {"HUB": -0.8, "P1": -0.5, "P2": -0.6, "P3": 0.7}

    def module(fc):
        kg = KnowledgeGraph()
        for p in ("P1", "P2", "P3"):
            kg.add_relation(_rel(Entity(type="protein", label="HUB"), "interacts_with", Entity(type="protein", label=p), 0.9,
                                 tool="ppi_network", contrast=contrast, logFC_a=fc["HUB"], logFC_b=fc[p]))
        return [d for d in compose_hypotheses(kg) if "HUB" in d.statement]

    mixed = module(fcs)
    assert mixed and "together" not in mixed[0].statement and "opposite directions" in mixed[0].statement
    same = module({**fcs, "P3": -0.7})
    assert same and "together" in same[0].statement and "all lower" in same[0].statement
    assert not overclaims(mixed[0].statement + same[0].statement)


def test_a_grouping_named_after_a_gene_leads_with_that_genes_own_products():
    kg = KnowledgeGraph()
    contrast = Entity(type="sample_group", label="GENE7_methylation: yes vs no")
    for label, typ, fc, q in (("OTHER1", "protein", 2.0, 1e-12), ("OTHER2", "protein", -1.5, 1e-10), ("GENE7", "protein", -1.2, 1e-4),
                              ("GENE7", "gene", -2.0, 1e-6)):
        kg.add_relation(_rel(Entity(type=typ, label=label), "higher_in" if fc > 0 else "lower_in", contrast, fc, q=q, tool="differential_abundance"))
    drafts = compose_hypotheses(kg)
    assert "GENE7's own products" in drafts[0].statement and "protein lower" in drafts[0].statement and "mRNA lower" in drafts[0].statement
    assert not any(d.statement.startswith("GENE7 (") for d in drafts)  # not restated as a single change


def test_clinical_variables_tracked_by_the_same_features_are_one_finding():
    kg = KnowledgeGraph()
    for var, sign in (("score_a", 1), ("score_b", -1), ("age_at_diagnosis", 1)):
        feats = ("F1", "F2", "F3") if var != "age_at_diagnosis" else ("F7", "F8", "F9")
        for i, f in enumerate(feats):
            kg.add_relation(_rel(Entity(type="protein", label=f), "correlates_with", Entity(type="clinical_variable", label=var),
                                 sign * (0.8 - i / 10), q=10.0 ** -(8 - i), tool="clinical_correlation"))
    drafts = [d for d in compose_hypotheses(kg) if "F1" in d.statement or "F7" in d.statement]
    assert len(drafts) == 2
    merged = next(d for d in drafts if "F1" in d.statement)
    assert "score_a" in merged.statement and "score_b" in merged.statement


def test_cis_effects_report_variant_classes_and_hypermutators(ucec_study, tmp_path):
    from proteus.tools.mutation import hypermutated

    samples = list(ucec_study.mutations["sample"].astype(str).unique())
    hyper, cut = hypermutated(ucec_study, samples)
    assert cut is not None and 0 < hyper.mean() <= 0.5
    res = get_tool("mutation_cis_effect")(ucec_study, {"modalities": ["proteomics"]}, ToolContext(out_dir=tmp_path, seed=0))
    tab = res.tables["cis_effects"]
    assert (tab["n_truncating"] + tab["n_missense_only"] <= tab["n_mutated"]).all()
    assert (tab["n_mutated_hypermutated"] <= tab["n_mutated"]).all()
    mostly_hyper = tab[tab["n_mutated_hypermutated"] >= tab["n_mutated"] - 2]
    assert not mostly_hyper.empty and mostly_hyper["mean_diff_not_hypermutated"].isna().all()


def test_composition_scores_are_recognised_by_what_they_measure():
    assert all(map(is_composition_score, ["Tumor_purity", "ESTIMATE_StromalScore", "immune_infiltration", "CIBERSORT_B cells"]))
    assert not any(map(is_composition_score, ["Age", "BMI", "MSI_status", "grade"]))
    assert directions_agree([0.2, 0.5]) and not directions_agree([0.2, -0.1]) and not directions_agree([])


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_real_run_states_each_finding_once_and_no_stronger_than_its_evidence(ucec_run: Path):
    hyps = _jsonl(ucec_run / "hypotheses.jsonl")
    assert len(hyps) >= 10
    assert len({h["statement"] for h in hyps}) == len(hyps)
    assert len({frozenset(h["evidence"]) for h in hyps}) == len(hyps)
    assert len({frozenset(h["entities"]) for h in hyps}) == len(hyps)
    for h in hyps:
        assert not overclaims(h["statement"]), h["statement"]
        assert "its loss" not in h["rationale"].lower()
    kg = KnowledgeGraph.from_node_link(json.loads((ucec_run / "kg.json").read_text()))
    for h in hyps:  # "loss" only for a mutation that lowers its own protein
        cis = [kg.relation(e) for e in h["evidence"] if kg.relation(e) and kg.relation(e).predicate == "cis_effect_on"]
        if "loss of function" in h["statement"]:
            assert cis and cis[0].stats.effect < 0
    # every site claim holds against the run's own full protein table
    steps = [json.loads(line) for line in (ucec_run / "trace.jsonl").read_text().splitlines() if '"tool_call"' in line]
    for h in hyps:
        m = re.match(r"Phosphorylation of (\S+) is (increased|decreased) in (.+?) relative to (.+?) \((.+?)\) (beyond|without)", h["statement"])
        if not m:
            continue
        site, _, case, control, group, kind = m.groups()
        prot = next(s for s in steps if s["tool"] == "differential_abundance" and s["params"].get("modality") == "proteomics"
                    and (s["params"].get("group"), s["params"].get("case"), s["params"].get("control")) == (group, case, control))
        tab = pd.read_csv(ucec_run / next(x for x in prot["tables"] if x.endswith(("_results.tsv", "_results.tsv.gz"))), sep="\t")
        row = tab[tab["gene"] == site.split("-")[0]].sort_values("p").iloc[0]
        if kind == "without":
            assert row["q"] >= 0.05, h["statement"]
        else:
            site_fc = float(re.search(r"log2FC ([+-][\d.]+)", h["rationale"]).group(1))
            assert abs(site_fc - row["logFC"]) > 0.25 and abs(site_fc) > abs(row["logFC"]), h["statement"]
    # a clustering associated with a composition score says so
    for h in hyps:
        rels = [kg.relation(e) for e in h["evidence"]]
        if any(r and r.predicate == "associated_with" and r.subject.type == "sample_group" and is_composition_score(r.object.label) for r in rels):
            assert "composition" in h["statement"]


def test_the_correlation_objective_studies_a_composition_score_as_claims_defines_it(ucec_study):
    """The offline plan's continuous variable comes from the one definition of a composition score
    (claims.is_composition_score): immune content first, then summary scores before single cell-type
    fractions, then other scores or indexes. Checked on seeded random subsets of UCEC's continuous
    columns (the playbook's own word list knew no cell-type fractions and picked another score)."""
    import numpy as np

    from proteus.policy.playbooks import _pick_continuous
    from proteus.profile import profile_study

    prof = profile_study(ucec_study)
    rng = np.random.default_rng(0)
    for _ in range(60):
        subset = list(rng.choice(prof.continuous, size=6, replace=False))
        pick = _pick_continuous(prof.model_copy(update={"continuous": subset}))
        composition = [v for v in subset if is_composition_score(v)]
        immune = [v for v in composition if "immune" in v.lower()]
        summary = [v for v in composition if "score" in v.lower()]
        assert pick in (immune or summary or composition or [pick]), (subset, pick)
        if not composition:
            assert pick in ([v for v in subset if re.search("score|index|stemness", v, re.I)] or [pick])


def test_a_pathway_is_said_to_move_only_with_a_meaningful_share_of_its_members(site_run, ucec_study, tmp_path):
    """Over-representation of a pathway among a contrast's hits says its changed members share it, not that it
    moves: a programme statement needs at least MIN_UNIT_SHARE of the pathway's measured members changed its way;
    otherwise the statement names the changed proteins, with the pathway as their context and its share stated.
    Evidence: ORA of the tumour-vs-normal protein hits, all of them (pathways that move) and the strongest 30
    (pathways enriched among few of their members)."""
    from proteus.stats.units import MIN_UNIT_SHARE

    kg0, tables, kinds, c = site_run
    params = next(d for _, d in kg0.g.nodes(data=True) if d.get("type") == "step" and d.get("id", "S1") == "S1")["params"]
    out = {}
    for label, extra in (("all", {}), ("top", {"max_hits": 30})):
        kg = KnowledgeGraph()
        kg.add_relations(list(kg0.relations.values()))
        ctx = ToolContext(out_dir=tmp_path, seed=0, provenance=Provenance(tool="enrichment_ora", step=f"E_{label}"))
        res = get_tool("enrichment_ora")(ucec_study, dict(params) | {"library": "reactome", "direction": "both"} | extra, ctx)
        kg.add_relations(res.relations)
        share = {r.subject.label: r.stats.n / r.stats.extra["set_size"] for r in res.relations}
        drafts = _compose(kg, tables, kinds)
        out[label] = (share, [d for d in drafts if any(e.startswith("pathway:") for e in d.entities)
                              and any(kg.relation(x) is not None and kg.relation(x).predicate == "enriched_in" for x in d.evidence)])
    for share, drafts in out.values():
        for d in drafts:
            named = re.findall(r"'([^']+)'", d.statement.split(" programme")[0] if " programme" in d.statement else d.statement.split("; ")[0])
            if " programme" in d.statement:
                assert all(share[n] >= MIN_UNIT_SHARE for n in named), (d.statement, {n: share[n] for n in named})
            else:
                assert "as a whole" in d.statement and "not shown to move" in d.statement, d.statement
                assert all(share[n] < MIN_UNIT_SHARE for n in named), d.statement
                assert re.search(r"\d+ of its \d+ measured members", d.statement)
    assert any(" programme" in d.statement for d in out["all"][1]), [d.statement for d in out["all"][1]]
    assert any("not shown to move" in d.statement for d in out["top"][1]), [d.statement for d in out["top"][1]]


def test_unstable_or_technical_clusters_are_qc_notes_not_hypotheses(nafld_dir, tmp_path):
    """A subtype hypothesis whose caveats remove its content is no hypothesis: sample clusters that are unstable
    (PAC above UNSTABLE_PAC) or follow a technical column go to the report's QC notes. Evidence: consensus
    clustering of the NAFLD plasma cohort; the same clusters made stable, then planted on a plate column."""
    from proteus.confounding import UNSTABLE_PAC
    from proteus.io import load_study
    from proteus.policy.claims import clustering_qc
    from proteus.profile import profile_study
    from proteus.report import render_report

    study = load_study(nafld_dir)
    prof = profile_study(study)
    variables = [v.name for v in prof.variables if v.role == "biological" and v.kind in ("binary", "categorical")]
    res = get_tool("consensus_clustering")(study, {"modality": "proteomics", "n_resamples": 20, "variables": variables},
                                           ToolContext(out_dir=tmp_path, seed=0, figures=False, provenance=Provenance(tool="consensus_clustering", step="S1")))
    pac, k = res.metrics["pac"], res.metrics["k"]
    assert pac > UNSTABLE_PAC and any(r.predicate == "associated_with" for r in res.relations), "the cohort's clusters are unstable"

    def with_extra(**extra):
        kg = KnowledgeGraph()
        kg.add_relations([r.model_copy(update={"stats": r.stats.model_copy(update={"extra": {**r.stats.extra, **extra}})}) for r in res.relations])
        return kg, [d for d in compose_hypotheses(kg, limit=200) if d.statement.startswith("Clusters of")]

    kg, drafts = with_extra()
    assert clustering_qc(pac, k, res.relations[0].stats.extra.get("technical")) is not None and not drafts
    run = tmp_path / "run"
    run.mkdir()
    (run / "kg.json").write_text(json.dumps(kg.to_node_link(), default=str))
    text = render_report(run)
    assert "id='qc-notes'>QC notes" in text and f"PAC {pac:.2f} at k={k}" in text and "not a subtype" in text
    # counter-examples: the same clusters, stable and on no technical column, are a hypothesis (and no QC note);
    # stable but following a plate, they are a QC note again
    stable, drafts = with_extra(pac=UNSTABLE_PAC / 4, technical={})
    assert len(drafts) == 1
    (run / "kg.json").write_text(json.dumps(stable.to_node_link(), default=str))
    assert "id='qc-notes'" not in render_report(run)
    plate = {"plate": {"test": "chi_square", "effect_type": "cramers_v", "effect": 0.9, "p": 1e-8}}
    kg, drafts = with_extra(pac=UNSTABLE_PAC / 4, technical=plate)
    assert not drafts
    (run / "kg.json").write_text(json.dumps(kg.to_node_link(), default=str))
    assert "technical column plate" in render_report(run)


def test_a_site_is_said_to_follow_its_protein_only_within_an_equivalence_bound(site_run):
    """"In step with its protein ... not in phosphorylation" infers an absence: it needs the site-minus-protein
    difference's 95% interval inside +/- half the site's change (an equivalence bound). A difference that is
    merely not significant, with a wider interval, is said as not detected, interval given. Evidence: every
    significant site of the tumour-vs-normal contrast set against its protein."""
    from proteus.policy.claims import site_against_protein
    from proteus.policy.result_tables import Change

    kg, tables, kinds, c = site_run
    rt = ResultTables(kg, lambda p: tables.get(p), kinds)
    sites = tables["tables/S2_results.tsv"]
    kinds_seen: dict[str, int] = {}
    for row in sites[sites["q"] < 0.05].itertuples():
        site = Change.from_row(pd.Series(row._asdict()))
        protein = rt.protein_change(c.group, c.case, c.control, str(row.gene))
        if site is None or protein is None:
            continue
        v = site_against_protein(site, protein, str(row.gene))
        kinds_seen[v.kind] = kinds_seen.get(v.kind, 0) + 1
        if v.kind in ("mirrors_protein", "not_beyond_protein"):
            diff, se = site.effect - protein.effect, math.hypot(site.se, protein.se)
            lo, hi = diff - 1.959964 * se, diff + 1.959964 * se
            assert f"95% CI {lo:+.2f} to {hi:+.2f}" in v.clause
            inside = -abs(site.effect) / 2 < lo and hi < abs(site.effect) / 2
            assert (v.kind == "mirrors_protein") == inside, v.clause
            assert ("not in phosphorylation" in v.clause) == inside and ("not detected" in v.clause) == (not inside)
    assert kinds_seen.get("mirrors_protein") and kinds_seen.get("not_beyond_protein"), kinds_seen
    for d in _compose(kg, tables, kinds):
        assert "rather than in its phosphorylation" not in d.statement
        if "in step with" in d.statement:
            assert "inside +/-" in d.statement, d.statement


def test_a_drafted_site_said_to_follow_its_protein_needs_the_equivalence_bound(site_run):
    """Rule (e) of the claim checker, for whoever drafts (a model too): "rather than in its phosphorylation"
    stays only for a site whose site-minus-protein interval lies inside the equivalence bound; for a site
    whose interval is wider, and without the run's tables, it is reworded. Evidence: the tumour-vs-normal
    sites of the knowledge graph set against their proteins."""
    from proteus.policy.claim_check import check_draft
    from proteus.policy.claims import site_verdict
    from proteus.policy.decisions import HypothesisDraft

    kg, tables, kinds, c = site_run
    rt = ResultTables(kg, lambda p: tables.get(p), kinds)
    by_kind = {}
    for r in sorted((r for r in kg.relations.values() if r.subject.type == "phosphosite"), key=lambda r: r.stats.q_else_p()):
        v = site_verdict(r, rt)
        if v is not None:
            by_kind.setdefault(v.kind, r)
    assert {"mirrors_protein", "not_beyond_protein"} <= set(by_kind), set(by_kind)

    def draft(r):
        gene = str(r.stats.extra.get("gene") or r.subject.label.split("-")[0])
        word = "higher" if r.predicate == "higher_in" else "lower"
        return HypothesisDraft(statement=f"{r.subject.label} is {word} in {c.case} than in {c.control} in step with {gene} protein: "
                                         f"a change in {gene} amount rather than in its phosphorylation.",
                               rationale=f"{r.subject.label} log2FC {r.stats.effect:+.2f}.", evidence=[r.id],
                               entities=[r.subject.id, r.object.id], test="Immunoblot normalised to total protein.")

    kept = check_draft(draft(by_kind["mirrors_protein"]), kg, rt)
    assert kept.rejected is None and not kept.checks and kept.draft.statement == draft(by_kind["mirrors_protein"]).statement
    for r, tabs in ((by_kind["not_beyond_protein"], rt), (by_kind["mirrors_protein"], None)):
        out = check_draft(draft(r), kg, tabs)
        assert out.rejected is None and "rather than in its phosphorylation" not in out.draft.statement
        assert "a change in phosphorylation per molecule is not excluded" in out.draft.statement
        assert [c.rule for c in out.checks] == ["no_change"]
