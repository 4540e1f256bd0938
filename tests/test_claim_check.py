"""Every drafted hypothesis is checked against its cited evidence before it enters the graph
(:mod:`proteus.policy.claim_check`), whoever wrote it. The evidence is a real UCEC tumour-vs-normal
protein and phosphosite differential (``site_run``); the model is scripted (OpenAI wire format, no
network) and its answers contradict that evidence."""

from __future__ import annotations

import json

import pytest
from langgraph.runtime import Runtime
from llm_fixtures.hosted import scripted_openai

from proteus.graphs import nodes
from proteus.kg import KnowledgeGraph
from proteus.graphs.state import RunContext
from proteus.policy.base import ResearchView
from proteus.policy.claim_check import check_draft, wording_counts
from proteus.policy.claims import negligible
from proteus.policy.decisions import HypothesisDraft
from proteus.policy.llm import LLMPolicy
from proteus.policy.patterns import compose_hypotheses
from proteus.policy.result_tables import Change, ResultTables
from proteus.profile import profile_study
from proteus.report import render_report
from proteus.rundir import RunDir
from proteus.tools.registry import list_tools


@pytest.fixture(scope="module")
def evidence(site_run):
    """The knowledge graph, its full tables, and the strongest protein rise and fall and site rise."""
    kg, tables, kinds, c = site_run
    rt = ResultTables(kg, tables.get, kinds)

    def strongest(pred, typ):
        rels = [r for r in kg.relations.values() if r.predicate == pred and r.subject.type == typ]
        return max(rels, key=lambda r: abs(r.stats.effect))

    return kg, rt, c, strongest("higher_in", "protein"), strongest("lower_in", "protein"), strongest("higher_in", "phosphosite")


def _draft(statement, *rels, entities=()):
    return HypothesisDraft(statement=statement, rationale="from the cited edges", evidence=[r.id for r in rels],
                           entities=list(entities) or [r.subject.id for r in rels], test="targeted MS in an independent cohort")


def test_offline_pattern_wording_passes_the_checks_unchanged(site_run, evidence):
    kg, tables, kinds, _ = site_run
    rt = evidence[1]
    drafts = compose_hypotheses(kg, tables=rt, limit=200)
    assert len(drafts) >= 10
    for d in drafts:
        out = check_draft(d, kg, rt)
        assert out.rejected is None and not out.checks and out.draft == d, (d.statement, out.checks, out.rejected)


def test_a_direction_opposite_to_the_cited_edge_is_rejected(evidence):
    kg, rt, c, up, down, _ = evidence
    g, h = up.subject.label, down.subject.label
    agree = [f"{g} is higher in {c.case} than in {c.control}.", f"{g} is lower in {c.control} than in {c.case}.",
             f"In {c.case} samples, {g} protein is increased."]
    agree.append(f"{g} is not lower in {c.case} than in {c.control}.")  # a negated direction word states none
    for s in agree:
        assert check_draft(_draft(s, up), kg, rt).rejected is None, s
    assert check_draft(_draft(f"{h} is decreased in {c.case} relative to {c.control}.", down), kg, rt).rejected is None
    contradict = [f"{g} is lower in {c.case} than in {c.control}.", f"{g} is higher in {c.control} than in {c.case}.",
                  f"In {c.control} samples, {g} protein is increased.", f"{h} is up in {c.case} compared with {c.control}."]
    for s in contradict:
        out = check_draft(_draft(s, up, down), kg, rt)
        assert out.rejected and "goes the other way" in out.rejected, s
        assert [x.rule for x in out.checks if x.action == "rejected"] == ["direction"]
    # two claims in one sentence: each is read with its own direction word
    both = f"{g} is higher in {c.case} than in {c.control}, whereas {h} is lower"
    assert check_draft(_draft(both, up, down), kg, rt).rejected is None
    swapped = f"{h} is higher in {c.case} than in {c.control}, whereas {g} is lower"
    assert check_draft(_draft(swapped, up, down), kg, rt).rejected


def test_together_needs_the_cited_directions_to_agree(evidence):
    kg, rt, c, up, down, _ = evidence
    g, h = up.subject.label, down.subject.label
    out = check_draft(_draft(f"{g} and {h} change together between {c.case} and {c.control}.", up, down), kg, rt)
    assert out.rejected and "opposite directions" in out.rejected


def test_overclaiming_words_are_reworded_and_recorded(evidence):
    kg, rt, c, up, _, _ = evidence
    g = up.subject.label
    d = _draft(f"{g} drives the {c.case} state independent of tumour purity.", up).model_copy(update={"rationale": f"{g} rises, which causes it."})
    out = check_draft(d, kg, rt)
    assert out.rejected is None
    assert out.draft.statement == f"{g} is associated with the {c.case} state without adjustment for tumour purity."
    assert out.draft.rationale == f"{g} rises, which is associated with it."
    assert [x.rule for x in out.checks] == ["overclaim"] * 3
    assert "drives" in out.checks[0].detail and "independent of" in out.checks[1].detail and out.checks[2].detail.startswith("rationale:")
    # "independent of" stands when the cited model was adjusted for that variable
    adjusted = up.model_copy(update={"provenance": up.provenance.model_copy(update={"params": {**up.provenance.params, "covariates": ["tumour_purity"]}})})
    kg2 = KnowledgeGraph()
    kg2.add_relation(adjusted)
    kept = check_draft(_draft(f"{g} is higher in {c.case} independent of tumour purity.", adjusted), kg2)
    assert kept.rejected is None and not kept.checks and "independent of tumour purity" in kept.draft.statement


def test_evidence_about_nothing_the_statement_names_is_dropped(evidence):
    kg, rt, c, up, down, _ = evidence
    g = up.subject.label
    out = check_draft(_draft(f"{g} is higher in {c.case} than in {c.control}.", up, down), kg, rt)
    assert out.rejected is None and out.draft.evidence == [up.id]
    assert any(x.rule == "evidence" and x.action == "dropped" and down.id in x.detail for x in out.checks)
    alone = check_draft(_draft(f"{g} is higher in {c.case} than in {c.control}.", down), kg, rt)
    assert alone.rejected and not alone.draft.evidence


def test_no_change_needs_a_negligible_interval_in_the_full_table(site_run, evidence):
    kg, rt, c, up, _, site = evidence
    prot = site_run[1]["tables/S1_results.tsv"]
    changes = [(gene, ch) for gene, (_, row) in zip(prot["gene"], prot.iterrows()) if (ch := Change.from_row(row)) is not None]
    flat = next(g for g, ch in changes if negligible(ch, site.stats.effect))
    unsure = next(g for g, ch in changes if ch.q >= 0.05 and not negligible(ch, site.stats.effect))

    def claim(gene):
        s = f"Phosphorylation of {site.subject.label} is higher in {c.case} than in {c.control}, while {gene} protein does not change."
        return check_draft(_draft(s, site, entities=[site.subject.id, f"protein:{gene}"]), kg, rt)

    kept = claim(flat)
    assert kept.rejected is None and not kept.checks
    weak = claim(unsure)
    assert weak.rejected is None and weak.draft.statement.endswith(f"while {unsure} protein is not shown to change.")
    assert [x.rule for x in weak.checks] == ["no_change"]
    # a cited significant change of the feature itself contradicts "does not change"
    out = check_draft(_draft(f"{up.subject.label} protein does not change between {c.case} and {c.control}.", up), kg, rt)
    assert out.rejected and "does not change" in out.rejected


def _view(ucec_study, kg, tables, events):
    return ResearchView(profile=profile_study(ucec_study), kg=kg, tools=[t for t in list_tools() if t.applicable(ucec_study)], objectives=[],
                        check_step=lambda spec: None, trace=events.append, read_table=tables.get)


def _answer(*drafts):
    return json.dumps({"hypotheses": [d.model_dump() for d in drafts]})


def test_model_contradictions_are_sent_back_once_then_dropped_by_the_graph(ucec_study, site_run, evidence, tmp_path):
    kg, tables, kinds, _ = site_run
    _, rt, c, up, down, _ = evidence
    g = up.subject.label
    wrong = _draft(f"{g} is lower in {c.case} than in {c.control}.", up)
    right = _draft(f"{g} is higher in {c.case} than in {c.control}.", up)
    causal = _draft(f"{down.subject.label} loss drives the {c.case} phenotype.", down, up)

    # the model corrects itself after the contradiction is sent back
    events: list = []
    backend, seen = scripted_openai([_answer(wrong, causal), _answer(right, causal)])
    out = LLMPolicy(backend).propose_hypotheses(_view(ucec_study, kg, tables, events))
    decisions = [e for e in events if e.get("kind") == "llm_decision"]
    assert [e["outcome"] for e in decisions] == ["rejected", "repaired"] and out.decided_by == "repaired"
    assert "hypothesis 1 does not match its cited evidence" in decisions[0]["reason"] and up.id in decisions[0]["reason"]
    assert "does not match its cited evidence" in seen[1]["body"]["messages"][-1]["content"]

    # an answer none of whose hypotheses passes is sent back each time, then the offline policy's are used
    events = []
    backend, seen = scripted_openai([_answer(wrong)] * 3)
    out = LLMPolicy(backend).propose_hypotheses(_view(ucec_study, kg, tables, events))
    assert len(seen) == 3 and out.decided_by == "fallback" and out.hypotheses
    assert all(check_draft(d, kg, rt).rejected is None for d in out.hypotheses)

    # the model repeats it: sent back only once, then the graph keeps it out; the causal one is reworded
    rundir = RunDir(tmp_path / "run")
    rundir.write_jsonl("relations/S.jsonl", [r.model_dump(mode="json") for r in kg.relations.values()])
    for path, tab in tables.items():
        tab.to_csv(rundir.path / path, sep="\t", index=False)
    steps = [d for _, d in kg.g.nodes(data=True) if d.get("type") == "step"]
    state = {"relations": ["relations/S.jsonl"], "objectives": [],
             "workflows": [{"id": "W1", "objective": "O1", "title": "differential", "steps": [
                 {"id": s["id"], "tool": s["label"], "params": s["params"], "status": "done", "tables": s["tables"]} for s in steps]}]}
    backend, seen = scripted_openai([_answer(wrong, causal), _answer(wrong, causal)])
    ctx = RunContext(study=ucec_study, profile=profile_study(ucec_study), policy=LLMPolicy(backend), rundir=rundir)
    upd = nodes.propose_hypotheses(state, Runtime(context=ctx))
    assert len(seen) == 2
    (kept,) = upd["hypotheses"]
    # the reworded claim, then the design checks' clause (a tissue contrast with no composition score in both groups)
    assert kept["statement"].startswith(f"{down.subject.label} loss is associated with the {c.case} phenotype")
    assert kept["statement"].endswith("; unadjusted for tissue composition (no composition score is recorded for both groups).")
    assert kept["evidence"] == [down.id] and kept["decided_by"] == {"drafted": "repaired"}
    assert {(x["rule"], x["action"]) for x in kept["wording_checks"]} == {("overclaim", "reworded"), ("evidence", "dropped")}
    (rej,) = upd["hypotheses_rejected"]
    assert rej["rule"] == "direction" and up.id in rej["reason"]
    trace = [json.loads(x) for x in (rundir.path / "trace.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "hypothesis_rejected" and e["rule"] == "direction" for e in trace)
    counts = wording_counts(upd["hypotheses"], upd["hypotheses_rejected"])
    assert counts == {"checked": 2, "changed": 1, "rejected": 1,
                      "by_rule": {"direction_rejected": 1, "evidence_dropped": 1, "overclaim_reworded": 1}}
    # the report says what was changed and how many were rejected
    rundir.write_json("run.json", {"status": "finished", "wording": counts})
    rundir.write_jsonl("hypotheses.jsonl", upd["hypotheses"])
    html = render_report(rundir.path)
    assert "claim checks: 2 drafted hypotheses, 1 reworded or with evidence dropped, 1 rejected" in html
    assert "Claim checks." in html and "overclaim reworded" in html


def test_mutation_and_correlation_edges_are_read_with_their_own_groups():
    """A mutation's cis effect compares mutated with wild-type samples; a correlation has no groups."""
    from proteus.records import Entity, Provenance, Relation, Stats

    kg = KnowledgeGraph()
    cis = Relation(subject=Entity(type="mutation", label="GENE1"), predicate="cis_effect_on", object=Entity(type="protein", label="GENE1"),
                   stats=Stats(effect=-0.8, effect_type="mean_difference_mutated_minus_wildtype", q=1e-6, direction="down"),
                   modality="proteomics", provenance=Provenance(tool="mutation_cis_effect"))
    rho = Relation(subject=Entity(type="protein", label="GENE2"), predicate="correlates_with", object=Entity(type="clinical_variable", label="score_a"),
                   stats=Stats(effect=-0.6, effect_type="spearman_rho", q=1e-4, direction="negative"),
                   modality="proteomics", provenance=Provenance(tool="clinical_correlation"))
    kg.add_relations([cis, rho])
    ok = ["Samples with somatic GENE1 mutations have lower GENE1 protein.", "Wild-type samples have higher GENE1 protein than mutated ones."]
    bad = ["Samples with somatic GENE1 mutations have higher GENE1 protein.", "GENE1 protein is lower in wild-type than in mutated samples."]
    for s in ok:
        assert check_draft(_draft(s, cis), kg).rejected is None, s
    for s in bad:
        assert "goes the other way" in check_draft(_draft(s, cis), kg).rejected, s
    assert check_draft(_draft("GENE2 falls as score_a rises.", rho), kg).rejected is None
    assert check_draft(_draft("GENE2 rises as score_a falls.", rho), kg).rejected is None
    assert "goes the other way" in check_draft(_draft("GENE2 rises with score_a.", rho), kg).rejected
    assert check_draft(_draft("GENE2 is negatively correlated with score_a.", rho), kg).rejected is None
    assert "goes the other way" in check_draft(_draft("GENE2 is positively correlated with score_a.", rho), kg).rejected
