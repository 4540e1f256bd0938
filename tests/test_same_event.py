"""One event, one hypothesis (:mod:`proteus.policy.same_event`) on real cohorts: the same proteins tested in the
same samples under a second grouping (a column that names the groups differently, as a subtype column refines a
status column; a gene's mutation status from the mutation table) are folded into one hypothesis, and so is a level
inside a pooled contrast, stated by the richer draft; the same proteins in other samples or other proteins in the
same samples stay separate, whichever draft comes first. On the UCEC offline run, folding is the last step before
the limit: the hypotheses stated hold no two that fold."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from proteus.io import load_study
from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import MAX_HYPOTHESES, HypothesisDraft
from proteus.policy.result_tables import ResultTables
from proteus.policy.same_event import fold_same_events
from proteus.profile import profile_study
from proteus.records import Provenance
from proteus.rundir import read_trace
from proteus.study import Study
from proteus.tools.registry import ToolContext, get_tool


def _hits(study, kg, out, name, tool, params):
    ctx = ToolContext(out_dir=out, seed=0, provenance=Provenance(tool=tool, step=name))
    res = get_tool(tool)(study, params, ctx)
    kg.add_relations(res.relations)
    return {(r.subject.label, r.predicate): r for r in res.relations if r.predicate in ("higher_in", "lower_in")}


@pytest.fixture(scope="module")
def relabelled(nafld_dir, tmp_path_factory):
    study = load_study(nafld_dir)
    prof = profile_study(study)
    pooled = next(c for c in prof.contrasts if c.case_levels)
    one, other = [c for c in prof.contrasts if not c.case_levels and c.group == pooled.group and c.control == pooled.control
                  and c.case in pooled.case_levels][:2]
    clin = study.clinical
    clin["relabelled"] = clin[one.group].map(lambda v: None if v is None else f"group {sorted(clin[one.group].dropna().unique()).index(v)}")
    relabel = dict(zip(clin[one.group], clin["relabelled"]))
    out = tmp_path_factory.mktemp("same_event")
    kg = KnowledgeGraph()
    runs = {name: _hits(study, kg, out, name, "differential_abundance", {"modality": "proteomics", **params}) for name, params in {
        "original": {"group": one.group, "case": one.case, "control": one.control},
        "relabelled": {"group": "relabelled", "case": relabel[one.case], "control": relabel[one.control]},
        "pooled": {"group": pooled.group, "case": pooled.case, "control": pooled.control, "case_levels": pooled.case_levels},
        # another level against the same control: every feature's edge, so the original's proteins are there too
        "other level": {"group": other.group, "case": other.case, "control": other.control, "fdr": 0.99},
    }.items()}
    return kg, study, runs


def _draft(*rels):
    return HypothesisDraft(statement=f"{', '.join(r.subject.label for r in rels)} {rels[0].predicate} {rels[0].object.label}.", rationale="x",
                           evidence=[r.id for r in rels], entities=[r.subject.id for r in rels], test="t")


def test_the_same_proteins_in_the_same_samples_are_one_hypothesis(relabelled):
    kg, study, runs = relabelled
    shared = sorted(set(runs["original"]) & set(runs["relabelled"]))
    assert len(shared) >= 2
    first, second = shared[:2]
    drafts = [_draft(runs["original"][first]), _draft(runs["original"][second]), _draft(runs["relabelled"][first])]
    out = fold_same_events(drafts, kg, study)
    assert [d.statement for d in out] == [drafts[0].statement, drafts[1].statement]  # other protein, same samples: kept
    assert drafts[2].statement.rstrip(".") in out[0].rationale and runs["relabelled"][first].id in out[0].rationale
    assert "same event" not in out[1].rationale


def test_a_level_inside_a_pooled_contrast_is_one_event_stated_by_the_richer_draft(relabelled):
    """A pooled change of a protein and a draft on one pooled level that holds the same protein among others
    (as a unit does): one hypothesis, the richer draft at the pooled one's rank, citing the pooled contrast."""
    kg, study, runs = relabelled
    key = next(k for k in sorted(runs["pooled"]) if k in runs["original"])
    others = [runs["original"][k] for k in sorted(runs["original"]) if k != key and k[1] == key[1]][:2]
    assert others
    pooled, unit = _draft(runs["pooled"][key]), _draft(*others, runs["original"][key])  # the shared protein is not the unit's lead
    unrelated = _draft(runs["relabelled"][next(k for k in sorted(runs["relabelled"]) if k[1] != key[1])])
    out = fold_same_events([pooled, unrelated, unit], kg, study)
    assert [d.statement for d in out] == [unit.statement, unrelated.statement]
    assert pooled.statement.rstrip(".") in out[0].rationale and runs["pooled"][key].id in out[0].rationale


def test_the_same_protein_in_other_samples_stays_its_own_hypothesis(relabelled):
    kg, study, runs = relabelled
    key = next(k for k in sorted(runs["original"]) if k in runs["other level"])  # another level's samples, the same control
    drafts = [_draft(runs["original"][key]), _draft(runs["other level"][key])]
    assert fold_same_events(drafts, kg, study) == drafts


def test_a_mutation_and_a_column_marking_the_same_samples_are_one_event(ucec_study, tmp_path):
    """The grouping need not be a sample-table column: a gene's mutation status (from the mutation table) and a
    column that marks the same samples compare the same samples."""
    from proteus.tools.correlation import restricted_samples
    from proteus.tools.mutation import mutation_matrix

    prof = profile_study(ucec_study)
    c = next(c for c in prof.contrasts if c.group == prof.sample_type_column)
    layer = next(m.name for m in prof.modalities if m.kind == "proteomics")
    restrict = {c.group: c.case}
    mat, _ = mutation_matrix(ucec_study, restricted_samples(ucec_study, list(ucec_study.modalities[layer].obs_names.astype(str)), restrict), "nonsilent")
    gene = mat.sum().idxmax()  # the most often mutated gene
    clin = ucec_study.clinical.copy()
    clin["marker"] = mat[gene].map({True: "carrier", False: "non-carrier"}).reindex(clin.index)
    study = Study(ucec_study.root, ucec_study.modalities, clin, ucec_study.mutations)
    kg = KnowledgeGraph()
    by_mutation = _hits(study, kg, tmp_path, "mutation", "mutation_association", {"modality": layer, "gene": gene, "restrict": restrict})
    by_column = _hits(study, kg, tmp_path, "column", "differential_abundance",
                      {"modality": layer, "group": "marker", "case": "carrier", "control": "non-carrier"})
    shared = sorted(set(by_mutation) & set(by_column))
    assert len(shared) >= 2
    drafts = [_draft(by_column[shared[0]]), _draft(by_mutation[shared[1]]), _draft(by_mutation[shared[0]])]
    out = fold_same_events(drafts, kg, study)
    assert [d.statement for d in out] == [drafts[0].statement, drafts[1].statement]
    assert by_mutation[shared[0]].id in out[0].rationale


def test_one_event_whichever_draft_comes_first(relabelled):
    """A draft led by one protein that cites a second, and a draft led by the second in the same samples, are one
    event in either order (each draft's lead is looked up in the other), stated by the richer draft."""
    kg, study, runs = relabelled
    first, second = sorted(set(runs["original"]) & set(runs["relabelled"]))[:2]
    rich, alone = _draft(runs["original"][first], runs["original"][second]), _draft(runs["relabelled"][second])
    for drafts in ([rich, alone], [alone, rich]):
        out = fold_same_events(drafts, kg, study)
        assert [d.statement for d in out] == [rich.statement] and runs["relabelled"][second].id in out[0].rationale


def test_the_limit_applies_after_folding_and_no_two_hypotheses_fold(ucec_run, ucec_study):
    """Folding is the last step before the limit: the UCEC run drafts more than :data:`MAX_HYPOTHESES`, folds
    some of them into one event and states :data:`MAX_HYPOTHESES` after folding and rejecting, and no two of
    them fold, in the order they are ranked (their kinds and the run's result tables as the run had them)."""
    hyps = [json.loads(line) for line in (ucec_run / "hypotheses.jsonl").read_text().splitlines()]
    trace = read_trace(ucec_run)
    drafted = next(e for e in trace if e["kind"] == "decision" and e["decision"] == "propose_hypotheses")["output"]["hypotheses"]
    assert any("The same event" in h["rationale"] for h in hyps)
    assert len(hyps) == MAX_HYPOTHESES < len(drafted)
    kg = KnowledgeGraph.from_node_link(json.loads((ucec_run / "kg.json").read_text()))
    kinds = {m["name"]: m["kind"] for m in json.loads((ucec_run / "profile.json").read_text())["modalities"]}
    tables = ResultTables(kg, lambda path: pd.read_csv(ucec_run / path, sep="\t") if (ucec_run / path).is_file() else None, kinds)
    drafts = [HypothesisDraft(statement=h["statement"][:500], rationale="", evidence=h["evidence"], entities=h["entities"], test="t", kind=h["kind"])
              for h in hyps]
    assert len(fold_same_events(drafts, kg, ucec_study, tables)) == len(drafts)


@pytest.fixture(scope="module")
def msi_graph(ucec_study, tmp_path_factory):
    """Protein and mRNA differentials of the UCEC tumours by microsatellite status, with their full tables."""
    from llm_fixtures.study import differential_graph

    c = next(c for c in profile_study(ucec_study).contrasts if c.group.startswith("MSI") and not c.case_levels)
    kg, tables, kinds = differential_graph(ucec_study, c, ("proteomics", "transcriptomics"), tmp_path_factory.mktemp("msi"), figures=False)
    return kg, ResultTables(kg, tables.get, kinds)


def test_head_to_head_genes_changing_together_are_one_promoter_event(msi_graph, ucec_study):
    """Two genes sharing a bidirectional promoter (opposite strands, start sites <= 1 kb apart; Trinklein et al. 2004)
    that change the same way in the same samples are one event: the hypothesis about one names the other and the
    shared promoter, citing the partner's change, and a draft about the partner folds into it. In the MSI-H vs MSS
    tumours of UCEC, MLH1 and EPM2AIP1 (one promoter, silenced by its methylation in MSI tumours) are such a pair.
    Old code: two separate findings, the promoter never named."""
    from proteus.policy.promoters import bidirectional_partners

    kg, tables = msi_graph
    by: dict[tuple[str, str], list] = {}
    for r in sorted(kg.relations.values(), key=lambda r: r.stats.q_else_p()):
        if r.predicate in ("higher_in", "lower_in"):
            by.setdefault((r.subject.label, r.predicate), []).append(r)
    pairs = sorted((g, p, pred) for g, pred in by for p in bidirectional_partners(g) if (p, pred) in by and g < p)
    assert ("EPM2AIP1", "MLH1", "lower_in") in pairs, pairs
    gene, partner = "MLH1", "EPM2AIP1"
    alone = next(rs[0] for (g, pred), rs in by.items() if g not in (gene, partner) and not any(p in {x for x, _ in by} for p in bidirectional_partners(g)))
    drafts = [_draft(*by[(gene, "lower_in")]), _draft(alone), _draft(*by[(partner, "lower_in")])]
    out = fold_same_events(drafts, kg, ucec_study, tables)
    assert [d.statement for d in out][1:] == [drafts[1].statement]  # counted once; the unrelated gene stays its own
    stated = out[0]
    assert stated.statement.startswith(drafts[0].statement.rstrip("."))
    assert f"{gene} shares a bidirectional promoter with {partner}" in stated.statement and "lower too: one promoter event" in stated.statement
    assert by[(partner, "lower_in")][0].id in stated.evidence and drafts[2].statement.rstrip(".") in stated.rationale
    assert fold_same_events(out, kg, ucec_study, tables) == out  # stated once: folding again changes nothing
    # the partner's change in the graph is enough to name the shared promoter, whichever gene the draft is about
    (single,) = fold_same_events([drafts[2]], kg, ucec_study, tables)
    assert f"{partner} shares a bidirectional promoter with {gene}" in single.statement
    # a gene none of whose head-to-head partners changes has no such clause
    assert "bidirectional" not in fold_same_events([_draft(alone)], kg, ucec_study, tables)[0].statement


def test_a_shared_promoter_is_one_finding_on_the_run(ucec_run):
    """On the UCEC offline run, EPM2AIP1, lower in MSI-H as MLH1 is (one bidirectional promoter, silenced by its
    methylation in MSI tumours), is not a finding of its own: the hypotheses citing it name the shared promoter, and
    none is led by it. Old code: "EPM2AIP1 is lower in MSI-H than in MSS ..." stated alone, the promoter never named."""
    hyps = [json.loads(line) for line in (ucec_run / "hypotheses.jsonl").read_text().splitlines()]
    kg = KnowledgeGraph.from_node_link(json.loads((ucec_run / "kg.json").read_text()))

    def genes(h):
        return [r.subject.label for e in h["evidence"] if (r := kg.relation(e)) is not None]

    citing = [h for h in hyps if "EPM2AIP1" in genes(h)]
    assert citing and all("MLH1 shares a bidirectional promoter with EPM2AIP1" in h["statement"]
                          or "EPM2AIP1 shares a bidirectional promoter with MLH1" in h["statement"] for h in citing)
    assert not any(genes(h)[:1] == ["EPM2AIP1"] for h in hyps)


def test_a_discovery_about_what_a_control_restates_is_that_control(msi_graph, ucec_study):
    """MSI-H tumours have less MLH1 and PMS2 protein: the mismatch-repair loss that defines the grouping, drafted as a
    cited positive control. A richer discovery led by MLH1 in the same samples (MLH1 with three more features lower in
    MSI-H) is the same event, and the control states it: the discovery restates what the control checks. Old code: the
    draft with more features stated the event, so a restatement of the grouping's definition read as a finding."""
    from proteus.policy.patterns import compose_hypotheses

    kg, tables = msi_graph
    (control,) = [d for d in compose_hypotheses(kg, tables=tables, limit=200) if d.kind == "positive control"]
    lead = kg.relation(control.evidence[0])
    others = sorted((r for r in kg.relations.values() if r.predicate == lead.predicate and r.object.id == lead.object.id
                     and r.id not in control.evidence), key=lambda r: r.stats.q_else_p())[:3]
    richer = _draft(lead, *others)
    for drafts in ([richer, control], [control, richer]):
        (stated,) = fold_same_events(drafts, kg, ucec_study, tables)
        assert stated.kind == "positive control" and stated.statement.startswith(control.statement.rstrip("."))
        assert richer.statement.rstrip(".")[:100] in stated.rationale
    # without the control, the discovery states itself
    assert fold_same_events([richer], kg, ucec_study, tables)[0].kind == "discovery"
