"""Hypotheses about curated units, one finding per feature across groupings, and a judge that credits
prior knowledge and leaves untestable evidence to its statistics. Evidence: real differentials of the
NAFLD plasma cohort (alphastats example data) computed by the tool in the test."""

from __future__ import annotations

import json
import re

import pytest

from proteus.io import load_study
from proteus.kg import KnowledgeGraph
from proteus.policy.claim_check import check_draft
from proteus.policy.heuristic_judge import judge_heuristically
from proteus.policy.patterns import compose_hypotheses
from proteus.policy.result_tables import ResultTables
from proteus.stats.units import covering_units, gene_units, unit_genes_of
from proteus.profile import profile_study
from proteus.records import Hypothesis, Provenance, Relation, Step
from proteus.tools.registry import ToolContext, get_tool


@pytest.fixture(scope="module")
def nafld_run(nafld_dir, tmp_path_factory):
    """Every two-group differential of the cohort's biological factors against its reference level, as a run
    records them: relations in a knowledge graph, full tables in memory."""
    study = load_study(nafld_dir)
    prof = profile_study(study)
    out = tmp_path_factory.mktemp("units")
    kg, tables = KnowledgeGraph(), {}
    for i, c in enumerate(prof.contrasts):
        sid = f"S{i}"
        params = {"modality": "proteomics", "group": c.group, "case": c.case, "control": c.control} | ({"case_levels": c.case_levels} if c.case_levels else {})
        ctx = ToolContext(out_dir=out, seed=0, provenance=Provenance(tool="differential_abundance", step=sid))
        res = get_tool("differential_abundance")(study, params, ctx)
        kg.add_relations(res.relations)
        tables[f"tables/{sid}_results.tsv"] = res.tables["results"]
        kg.add_step(Step(id=sid, tool="differential_abundance", params=params, status="done", tables=[f"tables/{sid}_results.tsv"]), "W1")
    return kg, ResultTables(kg, tables.get, {"proteomics": "proteomics"}), tables


@pytest.fixture
def any_share(monkeypatch):
    """The cohort's co-moving units are carried by few of their members (below
    :data:`proteus.stats.units.MIN_UNIT_SHARE`, so a run states their proteins instead,
    :func:`test_a_unit_is_stated_only_with_a_meaningful_share_of_its_members`); the unit mechanics are
    exercised on them with the share rule off."""
    monkeypatch.setattr("proteus.stats.units.MIN_UNIT_SHARE", 0.0)


def _changes(kg):
    out = {}
    for r in kg.relations.values():
        if r.predicate in ("higher_in", "lower_in"):
            out.setdefault((r.object.label, r.predicate), []).append(r)
    return out


def test_co_moving_members_of_a_curated_unit_are_one_hypothesis(nafld_run, any_share):
    kg, rt, _ = nafld_run
    drafts = compose_hypotheses(kg, tables=rt, limit=200)
    unit_drafts = [d for d in drafts if d.statement.startswith("Proteins of the unit")]
    assert unit_drafts, [d.statement for d in drafts]
    for d in unit_drafts:
        rels = [kg.relation(e) for e in d.evidence]
        assert len(rels) >= 2 and len({(r.object.id, r.predicate) for r in rels}) == 1  # one contrast, one direction
        unit = next(e.split(":", 1)[1] for e in d.entities if e.startswith("pathway:"))
        members = {r.subject.label for r in rels}
        assert all(m in d.statement for m in members) and unit in d.statement
        # every member is a curated member of the named unit, and none is restated on its own
        assert any(members <= unit_genes_of(k) for m in members for k in gene_units(m) if unit in (k[1], _name(k)))
        singles = [x for x in drafts if x is not d and set(x.evidence) & set(d.evidence)]
        assert not singles, [x.statement for x in singles]
        # the claim checker lets the unit wording through unchanged
        out = check_draft(d, kg, rt)
        assert out.rejected is None and not out.checks, (out.rejected, out.checks)


def test_a_unit_is_said_to_move_only_when_the_whole_unit_does(nafld_run, any_share):
    """Members picked by significance are not the unit: a unit claim holds only when no significant member
    moves the other way, the members' median moves with them and their ranks do (rank-sum gene-set test);
    the statement gives k of K members and the median. Counter-example: a unit of the cohort whose
    significant members split both ways is no unit claim."""
    from proteus.stats.units import unit_change

    kg, rt, tables = nafld_run
    drafts = compose_hypotheses(kg, tables=rt, limit=200)
    units = [d for d in drafts if d.statement.startswith("Proteins of the unit")]
    assert units
    for d in units:
        r = kg.relation(d.evidence[0])
        key = next(k for k in gene_units(r.subject.label) if f"'{_name(k)}'" in d.statement)
        tab = rt.table("differential_abundance", "results", **{k: r.provenance.params[k] for k in ("modality", "group", "case", "control")})
        sign = 1 if r.predicate == "higher_in" else -1
        rows = tab[tab["gene"].astype(str).isin(unit_genes_of(key))]
        sig = rows[rows["q"] < 0.05]
        assert (sig["logFC"] * sign > 0).all(), sig[["label", "logFC", "q"]]
        assert rows["logFC"].median() * sign > 0
        assert f"{len(sig)} of its {len(rows.dropna(subset=['logFC']))} measured features" in d.statement
        assert f"median log2FC {rows['logFC'].median():+.2f}" in d.statement
        assert all(lab in d.statement for lab in sig.sort_values("q")["label"].head(3))
    # a unit whose significant members move both ways in one contrast (one down among the strongest, one up)
    mixed = []
    for params, tab in rt.tables("differential_abundance", "results"):
        if "logFC" not in tab:
            continue
        sig = tab[tab["q"] < 0.05]
        for key in {k for g in sig["gene"].dropna().astype(str) for k in gene_units(g)}:
            s = sig[sig["gene"].astype(str).isin(unit_genes_of(key))]
            if (s["logFC"] > 0).any() and (s["logFC"] < 0).any():
                mixed.append((params, key))
    assert mixed
    for params, key in mixed:
        tab = rt.table("differential_abundance", "results", **params)
        assert not any(unit_change(tab, unit_genes_of(key), sign).moves(sign) for sign in (1, -1))
        contrast = f"{params['group']}: {params['case']} vs {params['control']}"
        assert not [d for d in units if f"'{_name(key)}'" in d.statement and contrast.split(": ")[1].split(" vs ")[0] in d.statement
                    and kg.relation(d.evidence[0]).object.label == contrast]


def test_a_unit_is_stated_only_with_a_meaningful_share_of_its_members(nafld_run, monkeypatch):
    """A competitive test passes when a few strong members shift the ranks of a large unit; "the unit moves"
    is then a claim about members that did not change. A unit is stated only when at least MIN_UNIT_SHARE of
    its measured members changed its way; otherwise its changed members are stated, each as itself.
    Evidence: the cohort's own units that pass every other test of a unit claim."""
    from proteus.stats import units

    kg, rt, _ = nafld_run
    monkeypatch.setattr(units, "MIN_UNIT_SHARE", 0.0)
    loose = [d for d in compose_hypotheses(kg, tables=rt, limit=200) if d.statement.startswith("Proteins of the unit")]
    assert loose, "the cohort has units that pass the competitive test"
    monkeypatch.undo()
    assert units.MIN_UNIT_SHARE == 0.2
    drafts = compose_hypotheses(kg, tables=rt, limit=200)
    stated = [d for d in drafts if d.statement.startswith("Proteins of the unit")]
    for d in stated:
        k, n = map(int, re.search(r"(\d+) of its (\d+) measured features", d.statement).groups())
        assert k >= units.MIN_UNIT_SHARE * n, d.statement
    for d in loose:
        k, n = map(int, re.search(r"(\d+) of its (\d+) measured features", d.statement).groups())
        if k < units.MIN_UNIT_SHARE * n:
            unit = next(e for e in d.entities if e.startswith("unit:"))
            assert not any(unit in x.entities for x in drafts), d.statement
            # its changed members are the finding, the unit their context
            about = [x for x in drafts if set(d.evidence) <= set(x.evidence)]
            assert len(about) == 1 and "the unit as a whole is not shown to move" in about[0].statement, [x.statement for x in about]
            assert f"{k} of its {n} measured features" in about[0].statement
            assert all(kg.relation(e).subject.label in about[0].statement for e in d.evidence)
    assert any(int(m.group(1)) < units.MIN_UNIT_SHARE * int(m.group(2))
               for d in loose if (m := re.search(r"(\d+) of its (\d+) measured features", d.statement))), "no unit below the share to test"


def _name(key):
    from proteus.stats.units import set_name

    return set_name(key)


def test_units_need_co_annotation_beyond_chance(nafld_run):
    kg, _, tables = nafld_run
    measured = set(next(iter(tables.values()))["gene"].dropna().astype(str))
    (contrast, pred), rels = max(_changes(kg).items(), key=lambda kv: len(kv[1]))
    genes = [str(r.stats.extra.get("gene") or r.subject.label) for r in rels]
    found = covering_units(genes, measured)
    assert found and all(len(u.members) >= 2 and u.p < 0.05 for u in found)
    # counter-example: measured genes that share no curated unit give none
    lonely = []
    for g in sorted(measured):
        if gene_units(g) and not any(gene_units(g) & gene_units(x) for x in lonely):
            lonely.append(g)
        if len(lonely) == 6:
            break
    assert covering_units(lonely, measured) == []
    # and a unit's genes diluted in the whole measured background are not "more than chance"
    assert covering_units(sorted(measured), measured) == []
    # two genes stand for a small unit (a complex, one specific process), never alone for a large one
    from proteus.stats.units import MAX_PAIR_UNIT

    def pair(small: bool):
        for a in sorted(measured):
            for b in sorted(measured):
                shared = [len(unit_genes_of(k)) for k in gene_units(a) & gene_units(b)] if a < b else []
                if shared and (min(shared) <= MAX_PAIR_UNIT) == small:
                    return [a, b]
        raise AssertionError("no such pair among the measured genes")

    assert [u.members for u in covering_units(pair(True), measured)] != []
    assert covering_units(pair(False), measured) == []


def test_one_feature_in_two_groupings_is_one_hypothesis(nafld_run):
    """A real change copied into a second, overlapping grouping (as a treatment column nested in a diagnosis
    would give it), weaker there: one hypothesis, stated for the stronger edge, the other cited."""
    from proteus.records import contrast_entity

    kg, rt, _ = nafld_run
    drafts = compose_hypotheses(kg, tables=rt, limit=200)
    single = next(d for d in drafts if len(d.evidence) == 1 and d.statement.endswith(").") and " is " in d.statement)
    r = kg.relation(single.evidence[0])

    def with_copy(predicate):
        copy = Relation.model_validate({**r.model_dump(exclude={"id"}), "object": contrast_entity("therapy", "yes", "no").model_dump(),
                                        "predicate": predicate, "stats": {**r.stats.model_dump(), "q": min(0.049, r.stats.q_else_p() * 10)}})
        kg2 = KnowledgeGraph()
        kg2.add_relations([*kg.relations.values(), copy])
        return copy, [d for d in compose_hypotheses(kg2, tables=rt, limit=200) if {r.id, copy.id} & set(d.evidence)]

    copy, about = with_copy(r.predicate)
    assert len(about) == 1 and about[0].evidence == [r.id, copy.id], [d.statement for d in about]
    assert about[0].statement == single.statement and copy.object.label in about[0].rationale
    # counter-example: opposite directions in the two groupings are two findings
    copy, about = with_copy("higher_in" if r.predicate == "lower_in" else "lower_in")
    assert len(about) == 2


# --------------------------------------------------------------------------------------------
# the judge
# --------------------------------------------------------------------------------------------


def _hyp(rels, statement, *, status="untestable", reason="3 vs 3 samples leave 1 per group in a held-out split", kind="discovery"):
    return Hypothesis(id="H", statement=statement, rationale="", evidence=[r.id for r in rels], entities=[r.subject.id for r in rels],
                      test="measure the level in an independent cohort; predict a lower abundance", kind=kind,
                      validation={"status": status, "reason": f"no evidence edge can be re-tested on held-out samples: {reason}", "edges": {}})


def test_untestable_strong_statistics_keep_their_reliability_and_weak_ones_do_not(nafld_run):
    kg, *_ = nafld_run
    rels = sorted((r for r in kg.relations.values() if r.predicate in ("higher_in", "lower_in")), key=lambda r: r.stats.q_else_p())
    strong = next(r for r in rels if abs(r.stats.effect) >= 1 and not r.stats.extra.get("detection"))
    j = judge_heuristically(kg, _hyp([strong], f"{strong.subject.label} differs"))
    assert j.reliability.score >= 3 and "scored from the statistics" in j.reliability.reason, j.reliability.reason
    # counter-examples: a weak q, and an effect extrapolated for a feature seen in one group only
    weak = strong.model_copy(update={"stats": strong.stats.model_copy(update={"q": 0.2, "p": 0.05})})
    one_group = strong.model_copy(update={"stats": strong.stats.model_copy(update={"extra": {**strong.stats.extra, "detection": "only in case"}})})
    for r in (weak, one_group):
        kg2 = KnowledgeGraph()
        kg2.add_relations([r])
        assert judge_heuristically(kg2, _hyp([r], f"{r.subject.label} differs")).reliability.score < j.reliability.score


def test_plausibility_credits_a_co_annotated_unit_moving_one_way(nafld_run, any_share):
    kg, rt, _ = nafld_run
    d = next(d for d in compose_hypotheses(kg, tables=rt, limit=200) if d.statement.startswith("Proteins of the unit"))
    rels = [kg.relation(e) for e in d.evidence]
    h = Hypothesis(id="H", statement=d.statement, rationale=d.rationale, evidence=d.evidence, entities=d.entities, test=d.test)
    unit = judge_heuristically(kg, h).biological_plausibility
    assert unit.score >= 3 and "co-annotated" in unit.reason, unit.reason
    # counter-example: the same genes moving in different directions are not credited as a unit
    flipped = rels[0].model_copy(update={"predicate": "higher_in" if rels[0].predicate == "lower_in" else "lower_in"})
    kg2 = KnowledgeGraph()
    kg2.add_relations([flipped, *rels[1:]])
    h2 = h.model_copy(update={"evidence": [flipped.id] + d.evidence[1:]})
    mixed = judge_heuristically(kg2, h2).biological_plausibility
    assert mixed.score < unit.score and "different directions" in mixed.reason
    # and genes with no shared curated unit get no prior-knowledge credit
    lonely = [r for r in kg.relations.values() if r.predicate in ("higher_in", "lower_in") and not gene_units(r.subject.label)][:1]
    if lonely:
        assert judge_heuristically(kg, _hyp(lonely, f"{lonely[0].subject.label} differs")).biological_plausibility.score == 1


def test_a_positive_control_is_plausible_and_not_novel(nafld_run):
    kg, *_ = nafld_run
    r = next(r for r in kg.relations.values() if r.predicate in ("higher_in", "lower_in"))
    control = judge_heuristically(kg, _hyp([r], f"{r.subject.label} differs", kind="positive control"))
    finding = judge_heuristically(kg, _hyp([r], f"{r.subject.label} differs"))
    assert control.novelty.score == 1 < finding.novelty.score
    assert control.biological_plausibility.score == 5 and "positive control" in control.biological_plausibility.reason


def test_a_grouping_named_after_a_gene_is_a_positive_control(nafld_run):
    """The cohort's strongest change, re-filed under a grouping named after its own gene (as a lab would
    name a knockout or an overexpression arm): the gene's change restates the design."""
    from proteus.records import contrast_entity

    kg, *_ = nafld_run
    r = min((r for r in kg.relations.values() if r.predicate in ("higher_in", "lower_in")), key=lambda r: r.stats.q_else_p())
    group, _, rest = r.object.label.partition(": ")
    case, _, control = rest.partition(" vs ")

    def drafts(grouping: str):
        kg2 = KnowledgeGraph()
        kg2.add_relations([x.model_copy(update={"object": contrast_entity(grouping, case, control)}) for x in kg.relations.values()
                           if x.object.id == r.object.id])
        return kg2, compose_hypotheses(kg2, limit=200)

    kg2, named = drafts(f"{r.subject.label} status")
    controls = [d for d in named if d.kind == "positive control"]
    assert len(controls) == 1 and r.subject.label in controls[0].statement
    h = Hypothesis(id="H", statement=controls[0].statement, rationale=controls[0].rationale, evidence=controls[0].evidence,
                   entities=controls[0].entities, test=controls[0].test, kind=controls[0].kind)
    assert judge_heuristically(kg2, h).novelty.score == 1
    # counter-example: the same changes under a grouping that names no gene are discoveries
    assert all(d.kind == "discovery" for d in drafts(group)[1])


def test_a_pooled_change_says_which_levels_carry_it_on_their_own(nafld_run):
    """A pooled contrast (every non-reference level against the reference) can be carried by one level:
    "each level on its own too" only when every level's own two-group test passes q < 0.05; otherwise the
    statement names the levels significant alone. Evidence: the cohort's own pooled and per-level tests."""
    kg, rt, _ = nafld_run
    drafts = [d for d in compose_hypotheses(kg, tables=rt, limit=200) if "levels of" in d.statement and "than in" in d.statement]
    shared = [d for d in drafts if kg.relation(d.evidence[0]).stats.extra.get("level_effects")]
    assert shared
    checked = 0
    for d in shared:
        for eid in d.evidence:
            r = kg.relation(eid)
            prm = r.provenance.params
            for level in r.stats.extra["level_effects"]:
                tab = rt.table("differential_abundance", "results", modality=r.modality, group=prm["group"], case=level, control=prm["control"])
                q = float(tab.loc[tab["label"].astype(str) == r.subject.label, "q"].iloc[0])
                checked += 1
                if q >= 0.05:
                    assert "on its own too" not in d.statement, d.statement
                    assert f"(q={q:.2g})" in d.rationale
        if "on its own too" not in d.statement:
            assert "agree in direction only" in d.statement and "significant in" in d.statement
    assert checked


def test_a_unit_claim_is_validated_as_a_unit_not_only_by_its_members(nafld_run, any_share, nafld_dir):
    """Validation re-tests what a unit statement claims: in each held-out split the unit as a whole must move
    (every measured member, median and rank-sum against the other features), not only the member edges.
    Counter-example: the same member edges claimed for another unit of the contrast whose significant members
    split both ways do not validate as that unit."""
    from proteus.validation import validate_hypotheses

    kg, rt, _ = nafld_run
    study = load_study(nafld_dir)
    unit = next(d for d in compose_hypotheses(kg, tables=rt, limit=200) if d.statement.startswith("Proteins of the unit"))
    r = kg.relation(unit.evidence[0])
    tab = rt.table("differential_abundance", "results", **{k: r.provenance.params[k] for k in ("modality", "group", "case", "control")})
    sig = tab[tab["q"] < 0.05]
    mixed = next(k for k in sorted({k for g in sig["gene"].dropna().astype(str) for k in gene_units(g)})
                 if len(s := sig[sig["gene"].astype(str).isin(unit_genes_of(k))]) and (s["logFC"] > 0).any() and (s["logFC"] < 0).any())
    h = {"id": "H", "statement": unit.statement, "evidence": unit.evidence, "entities": unit.entities}
    as_mixed = {**h, "id": "M", "entities": [e for e in unit.entities if not e.startswith("unit:")] + [f"unit:{mixed[0]}:{mixed[1]}"]}
    members_only = {**h, "id": "E", "entities": [e for e in unit.entities if not e.startswith("unit:")]}
    got = {x["id"]: x["validation"] for x in validate_hypotheses(study, kg, [h, as_mixed, members_only], n_splits=10, n_perm=10)}
    assert "the unit as a whole" in got["H"]["reason"] and "the unit as a whole" not in got["E"]["reason"]
    assert got["H"]["replication"]["k"] <= got["E"]["replication"]["k"]
    assert got["M"]["replication"]["k"] < got["E"]["replication"]["k"] and got["M"]["status"] != "validated"


def test_a_grouping_its_genes_define_is_a_positive_control(ucec_run):
    """UCEC's microsatellite-instability grouping is defined by the loss of mismatch-repair proteins: their
    lower products in the unstable tumours restate the definition (a cited positive control), while the same
    changes under a grouping that names no phenotype stay discoveries."""
    from proteus.genesets import phenotype_determinants
    from proteus.records import contrast_entity

    kg = KnowledgeGraph.from_node_link(json.loads((ucec_run / "kg.json").read_text()))
    mmr = next(ph for ph in phenotype_determinants() if "MLH1" in ph.genes)
    contrasts = {r.object.label for r in kg.relations.values() if r.predicate in ("higher_in", "lower_in") and r.object.type == "sample_group"}
    msi = next(c for c in sorted(contrasts) if mmr.matches(c.partition(": ")[0], c.partition(": ")[2].split(" vs ")))

    group, _, rest = msi.partition(": ")
    case, _, control = rest.partition(" vs ")

    def drafts(grouping: str, a: str, b: str):
        """The contrast's relations re-filed under ``grouping``, its levels renamed ``a`` and ``b``."""
        kg2, names = KnowledgeGraph(), {case: a, control: b}
        kg2.add_relations([x.model_copy(update={
            "object": contrast_entity(grouping, a, b),
            "stats": x.stats.model_copy(update={"observed": {names.get(k, k): v for k, v in (x.stats.observed or {}).items()}})})
            for x in kg.relations.values() if x.object.label == msi])
        return compose_hypotheses(kg2, limit=200)

    controls = [d for d in drafts(group, case, control) if d.kind == "positive control"]
    assert len(controls) == 1 and mmr.ref in controls[0].statement
    said = [g for g in mmr.genes if re.search(rf"\b{g} (protein|mRNA) lower", controls[0].statement)]
    assert said and all(kg.relation(e).predicate == "lower_in" for e in controls[0].evidence)
    # the same changes under a grouping named after no phenotype and no gene are discoveries
    assert all(d.kind == "discovery" for d in drafts("Cohort", "A", "B"))
