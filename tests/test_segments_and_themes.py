"""One finding stated once (:mod:`proteus.policy.same_event`, :mod:`proteus.policy.segments`,
:mod:`proteus.policy.themes`) on the CPTAC UCEC cohort: copy-number cis effects of genes whose copy number
co-segregates across samples are one hypothesis about the segment, and single-protein findings of one contrast
and direction whose features share a curated unit are one hypothesis naming the unit; genes of other segments and
proteins outside the unit stay their own hypotheses. Everything is derived from the
data in the test: which genes share a segment, which contrast and unit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from proteus.kg import KnowledgeGraph
from proteus.policy.claim_check import check_draft
from proteus.policy.decisions import HypothesisDraft
from proteus.policy.promoters import bidirectional_partners
from proteus.policy.result_tables import ResultTables
from proteus.policy.same_event import fold_same_events
from proteus.policy.segments import CO_SEGREGATION
from proteus.profile import profile_study
from proteus.records import Provenance, Step
from proteus.stats.features import feature_genes
from proteus.stats.units import covering_units
from proteus.tools.registry import ToolContext, get_tool


def _draft(*rels, statement: str | None = None) -> HypothesisDraft:
    return HypothesisDraft(statement=statement or f"{', '.join(r.subject.label for r in rels)} {rels[0].predicate} {rels[0].object.label}.",
                           rationale="x", evidence=[r.id for r in rels], entities=[r.subject.id for r in rels], test="t")


@pytest.fixture(scope="module")
def cis_run(ucec_study, tmp_path_factory):
    """The copy-number cis step of an offline run: copy number against mRNA and protein in the tumours."""
    prof = profile_study(ucec_study)
    layer = {m.kind: m.name for m in prof.modalities}
    params = {"modality": layer["cna"], "modalities": [layer["transcriptomics"], layer["proteomics"]],
              "restrict": {prof.sample_type_column: next(c.case for c in prof.contrasts if c.group == prof.sample_type_column)}}
    out = tmp_path_factory.mktemp("cis")
    res = get_tool("cna_cis_effect")(ucec_study, params, ToolContext(out_dir=out, seed=0, provenance=Provenance(tool="cna_cis_effect", step="S1")))
    kg = KnowledgeGraph()
    kg.add_relations(res.relations)
    kg.add_step(Step(id="S1", tool="cna_cis_effect", params=params, status="done", tables=["tables/S1_cis_effects.tsv"]), "W1")
    tables = ResultTables(kg, {"tables/S1_cis_effects.tsv": res.tables["cis_effects"]}.get, {m.name: m.kind for m in prof.modalities})
    a = ucec_study.modalities[layer["cna"]]
    samples = [s for s in a.obs_names.astype(str) if ucec_study.clinical.loc[s, prof.sample_type_column] == params["restrict"][prof.sample_type_column]]
    cn = pd.DataFrame(np.asarray(a[samples].X, dtype=float), index=samples, columns=feature_genes(a).to_numpy())
    return kg, tables, cn.loc[:, ~cn.columns.duplicated()]


def _both_layers(kg) -> dict[str, list]:
    """Genes whose copy number reaches both the mRNA and the protein (two cis edges), strongest first."""
    by: dict[str, list] = {}
    for r in sorted(kg.by_predicate("cis_effect_on"), key=lambda r: r.stats.q_else_p()):
        by.setdefault(r.subject.label, []).append(r)
    return {g: rs for g, rs in by.items() if len({r.object.type for r in rs}) == 2}


def test_cis_effects_of_co_segregating_genes_are_one_segment(cis_run, ucec_study):
    kg, tables, cn = cis_run
    genes = _both_layers(kg)
    rho = cn[list(genes)].rank().corr()
    lead = next(g for g in genes if (rho[g].drop(g) >= CO_SEGREGATION).any())
    mate = next(g for g in genes if g != lead and rho.loc[lead, g] >= CO_SEGREGATION)
    other = next(g for g in genes if abs(rho.loc[lead, g]) < 0.3 and abs(rho.loc[mate, g]) < 0.3)
    drafts = [_draft(*genes[lead]), _draft(*genes[other]), _draft(*genes[mate])]
    out = fold_same_events(drafts, kg, ucec_study, tables)
    assert len(out) == 2  # the mate folds into the lead's segment; the gene of another segment stays its own
    seg, alone = out
    assert seg.statement.startswith(("One copy-number segment", "Co-segregating copy-number regions")) and lead in seg.statement
    assert set(drafts[0].evidence) | set(drafts[2].evidence) <= set(seg.evidence)
    assert not set(drafts[0].evidence) & set(alone.evidence) and set(drafts[1].evidence) <= set(alone.evidence)
    # the genes it counts are the cis genes whose copy number co-segregates with the lead's, derived here from the data
    cis = tables.table("cna_cis_effect", "cis_effects")
    sig = cis.loc[cis.filter(like="sig_").astype(str).eq("True").any(axis=1), "gene"].astype(str)
    sig = [g for g in sig if g in cn]
    n_seg = int((cn[sig].rank().corrwith(cn[lead].rank()) >= CO_SEGREGATION).sum())
    assert f"not {n_seg} separate genes" in seg.statement
    assert not check_draft(seg, kg, tables).rejected


def test_a_segment_claim_rests_on_its_mrna_and_its_protein(cis_run, ucec_study):
    """A segment's statement says the dosage reaches the mRNA and the protein: both are keys, the cis edges of the first
    gene it names with both, each re-tested on held-out samples. Without the protein layer the protein key cannot be
    re-tested and the claim is inconclusive, saying so. Old code: no keys, so the first testable edge (the mRNA one)
    validated the whole claim and the protein part was never re-tested."""
    from proteus.study import Study
    from proteus.validation import validate_hypotheses

    kg, tables, cn = cis_run
    genes = _both_layers(kg)
    rho = cn[list(genes)].rank().corr()
    lead = next(g for g in genes if (rho[g].drop(g) >= CO_SEGREGATION).any())
    mate = next(g for g in genes if g != lead and rho.loc[lead, g] >= CO_SEGREGATION)
    seg = fold_same_events([_draft(*genes[lead]), _draft(*genes[mate])], kg, ucec_study, tables)[0]
    keys = [kg.relation(k.edge) for k in seg.key_edges]
    assert [r.object.type for r in keys] == ["gene", "protein"], seg.key_edges  # mRNA (a gene's transcript), then protein
    named = seg.statement.split("follow it (")[1].split(";")[0].split(")")[0].split(", ")
    assert keys[0].subject.label == keys[1].subject.label == next(g for g in named if g in genes)
    assert all(k.edge in seg.evidence for k in seg.key_edges)
    h = {"id": "H", **seg.model_dump()}
    (out,) = validate_hypotheses(ucec_study, kg, [h])
    v = out["validation"]
    assert [k["status"] for k in v["key_edges"]] == ["tested", "tested"], v["reason"]
    assert "protein" in v["key_edges"][1]["role"] and v["key_edges"][1]["role"] in v["reason"]
    worst = min((k["verdict"] for k in v["key_edges"]), key=["failed", "inconclusive", "validated"].index)
    assert v["status"] == worst
    protein = keys[1].modality
    bare = Study(ucec_study.root, {k: a for k, a in ucec_study.modalities.items() if k != protein}, ucec_study.clinical, ucec_study.mutations)
    (out,) = validate_hypotheses(bare, kg, [h])
    v = out["validation"]
    assert v["status"] == "inconclusive" and v["grounds"] == "stated key not re-tested", v["reason"]
    assert f"{seg.key_edges[1].role} could not be re-tested" in v["reason"]


def test_a_segment_names_the_arms_its_genes_lie_on(cis_run, ucec_study):
    """A segment's statement says where it lies, as an expert would ("1q", "10p"): the arm(s) its co-segregating
    genes lie on (NCBI Gene map locations) with the span of bands they cover, and "co-segregating regions" when they
    lie on several arms. Old code: no place, always "one segment"."""
    from proteus.genesets import gene_loci
    from proteus.policy.segments import MIN_ARM_SHARE

    kg, tables, cn = cis_run
    genes = _both_layers(kg)
    rho = cn[list(genes)].rank().corr()
    loci = gene_loci()
    for lead in [g for g in genes if (rho[g].drop(g) >= CO_SEGREGATION).any()][:3]:
        mate = next(g for g in genes if g != lead and rho.loc[lead, g] >= CO_SEGREGATION)
        seg = fold_same_events([_draft(*genes[lead]), _draft(*genes[mate])], kg, ucec_study, tables)[0]
        cis = tables.table("cna_cis_effect", "cis_effects")
        sig = [g for g in cis.loc[cis.filter(like="sig_").astype(str).eq("True").any(axis=1), "gene"].astype(str) if g in cn]
        members = [g for g, r in cn[sig].rank().corrwith(cn[lead].rank()).items() if r >= CO_SEGREGATION]
        arms = pd.Series([loci[g].arm for g in members if g in loci and loci[g].arm]).value_counts()
        named = arms[arms >= MIN_ARM_SHARE * arms.sum()]
        assert loci[lead].arm in named.index
        assert all(f"{arm} ({arm[:-1]}" in seg.statement for arm in named.index), (named, seg.statement)  # "on 1q (1q21.1-1q44"
        one = seg.statement.startswith(f"One copy-number segment on {named.index[0]} (")
        assert one == (len(named) == 1), seg.statement


def test_a_segment_without_a_protein_edge_does_not_claim_the_protein(cis_run, ucec_study):
    """The dosage of a segment "reaches the protein level" only when a gene of it has a copy-number -> protein edge;
    with the mRNA edges alone the statement says the protein was not shown to follow. Old code claimed the protein
    level whatever the edges."""
    kg, tables, cn = cis_run
    genes = _both_layers(kg)
    rho = cn[list(genes)].rank().corr()
    lead = next(g for g in genes if (rho[g].drop(g) >= CO_SEGREGATION).any())
    mate = next(g for g in genes if g != lead and rho.loc[lead, g] >= CO_SEGREGATION)
    mrna = KnowledgeGraph()
    mrna.add_relations(r for r in kg.relations.values() if r.object.type != "protein")  # the full tables still say which genes
    drafts = [_draft(*[r for r in genes[g] if r.object.type != "protein"]) for g in (lead, mate)]
    seg = fold_same_events(drafts, mrna, ucec_study, tables)[0]
    assert seg.statement.startswith(("One copy-number segment", "Co-segregating")) and "not shown to follow" in seg.statement
    assert "reaches the protein level" not in seg.statement and [k.role.split()[-1] for k in seg.key_edges] == ["mRNA"]
    both = fold_same_events([_draft(*genes[lead]), _draft(*genes[mate])], kg, ucec_study, tables)[0]
    assert "reaches the protein level" in both.statement


@pytest.fixture(scope="module")
def contrast_with_unit(ucec_study, tmp_path_factory):
    """The first profiled two-group contrast (not tumour vs normal) whose strongest protein changes one way share a
    curated unit, its differential graph, tables, the unit and the direction."""
    from llm_fixtures.study import differential_graph

    prof = profile_study(ucec_study)
    layer = next(m.name for m in prof.modalities if m.kind == "proteomics")
    measured = frozenset(feature_genes(ucec_study.modalities[layer]).dropna().astype(str))
    for c in prof.contrasts:
        if c.group == prof.sample_type_column or c.case_levels:
            continue
        kg, tabs, kinds = differential_graph(ucec_study, c, ("proteomics",), tmp_path_factory.mktemp("theme"), figures=False)
        for pred in ("lower_in", "higher_in"):
            top = sorted((r for r in kg.relations.values() if r.predicate == pred), key=lambda r: r.stats.q_else_p())[:12]
            units = covering_units([r.subject.label for r in top], measured)
            if units:
                return kg, ResultTables(kg, tabs.get, kinds), units[0], top, measured
    pytest.fail("no contrast's strongest changes share a curated unit")


def test_single_protein_findings_sharing_a_unit_are_one_theme(contrast_with_unit, ucec_study):
    kg, tables, unit, top, measured = contrast_with_unit
    inside = [r for r in top if r.subject.label in unit.members][:2]
    partners = {p for r in inside for p in bidirectional_partners(r.subject.label)}  # one promoter event with them (test_same_event)
    outside = next(r for r in top if r.subject.label not in partners and all(
        r.subject.label not in u.members for u in covering_units([r.subject.label] + [x.subject.label for x in inside], measured)))
    drafts = [_draft(inside[0]), _draft(outside), _draft(inside[1])]
    out = fold_same_events(drafts, kg, ucec_study, tables)
    assert [d.statement for d in out][1:] == [drafts[1].statement]
    theme = out[0]
    named = covering_units([r.subject.label for r in (inside[0], outside, inside[1])], measured)[0]  # the unit the drafts' genes share
    assert set(named.members) == {r.subject.label for r in inside}
    assert f"'{named.name}'" in theme.statement and all(r.subject.label in theme.statement for r in inside)
    assert {inside[0].id, inside[1].id} <= set(theme.evidence) and outside.id not in theme.evidence
    assert f"pathway:{named.name}" in theme.entities
    assert not check_draft(theme, kg, tables).rejected
    # without the full tables the unit is named, and whether it moves as a whole is not claimed
    bare = fold_same_events(drafts, kg, ucec_study)[0]
    assert "not tested here" in bare.statement and not any(e.startswith("unit:") for e in bare.entities)


@pytest.fixture(scope="module")
def programmes(site_run, ucec_study, tmp_path_factory):
    """The tumour-vs-normal protein differential with its pathway over-representation (both directions), and
    the hypotheses composed from them."""
    from proteus.policy.patterns import compose_hypotheses

    kg, tabs, kinds, c = site_run
    kg = KnowledgeGraph.from_node_link(kg.to_node_link())  # this module's own copy of the shared graph
    layer = next(m for m, k in kinds.items() if k == "proteomics")
    params = {"modality": layer, "group": c.group, "case": c.case, "control": c.control}
    res = get_tool("enrichment_ora")(ucec_study, params, ToolContext(out_dir=tmp_path_factory.mktemp("ora"), seed=0, figures=False,
                                                                       provenance=Provenance(tool="enrichment_ora", step="S9")))
    kg.add_relations(res.relations)
    tables = ResultTables(kg, tabs.get, kinds)
    return kg, tables, compose_hypotheses(kg, tables=tables), c


def test_each_contrast_states_its_strongest_pathway_result(programmes):
    """The strongest over-represented pathway that may be said to move (member share) is stated, even when none of
    its members is among the graph's strongest single changes, and first among the contrast's pathway findings."""
    from proteus.policy.claims import pathway_moves

    kg, tables, drafts, c = programmes
    enriched = sorted((r for r in kg.by_predicate("enriched_in") if pathway_moves(r)), key=lambda r: (r.stats.q_else_p(), r.id))
    assert enriched
    top = enriched[0]
    stating = [d for d in drafts if top.id in d.evidence]
    assert stating and f"'{top.subject.label}'" in stating[0].statement and "programme" in stating[0].statement
    first = next(d for d in drafts if kg.relation(d.evidence[0]).predicate == "enriched_in")
    assert first is stating[0]
    # its members are named from the contrast's full table when the graph holds too few of them
    changed = set(top.stats.extra["genes"])
    named = stating[0].statement.split("carried by ")[1].split(";")[0].rstrip(".").split(", ")
    assert len(named) >= 2 and set(named) <= changed
    assert not check_draft(stating[0], kg, tables).rejected


def _covered_member(kg, prog):
    """A protein change the programme draft ``prog`` does not cite, of a gene among the changed members of the
    pathways it states, and one of a gene outside them (same contrast and direction); ``None`` when either is missing."""
    pathway = kg.relation(prog.evidence[0])
    stated = {g for e in prog.evidence if (r := kg.relation(e)).predicate == "enriched_in" for g in r.stats.extra["genes"]}
    pred = "higher_in" if pathway.stats.direction == "up" else "lower_in"
    cited = {kg.relation(e).subject.label for e in prog.evidence}
    changes = sorted((r for r in kg.by_predicate(pred) if r.subject.type == "protein" and r.object.label == pathway.object.label
                      and r.subject.label not in cited), key=lambda r: (r.stats.q_else_p(), r.id))
    member = next((r for r in changes if r.subject.label in stated), None)
    outsider = next((r for r in changes if r.subject.label not in stated), None)
    return (member, outsider) if member and outsider else None


def test_a_stated_programme_covers_single_findings_about_its_members(programmes, ucec_study):
    kg, tables, drafts, c = programmes
    prog, (member, outsider) = next((d, pair) for d in drafts if kg.relation(d.evidence[0]).predicate == "enriched_in"
                                    and "programme" in d.statement and (pair := _covered_member(kg, d)) is not None)
    drafts = [prog, _draft(member), _draft(outsider)]
    out = fold_same_events(drafts, kg, ucec_study, tables)
    assert [d.statement for d in out] == [prog.statement, drafts[2].statement]
    assert drafts[1].statement.rstrip(".") in out[0].rationale and member.id in out[0].rationale
