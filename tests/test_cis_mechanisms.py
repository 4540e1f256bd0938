"""Mechanisms the data already holds, stated right, on the real UCEC cohort: a mutation's effect on its
own protein is worded by its carriers' variants (read back from the MAF here) and is a positive control
when those variants predict its direction, a discovery when they do not."""

from __future__ import annotations

import re

import pytest

from proteus.kg import KnowledgeGraph
from proteus.policy.controls import mutation_cis_claim
from proteus.policy.patterns import compose_hypotheses
from proteus.tools.mutation import VARIANT_CLASSES
from proteus.tools.registry import ToolContext, get_tool


@pytest.fixture(scope="module")
def cis(ucec_study, tmp_path_factory):
    """Cis effects of the recurrent mutations on their own protein, within tumours, as a run records them."""
    res = get_tool("mutation_cis_effect")(ucec_study, {"modalities": ["proteomics"]},
                                          ToolContext(out_dir=tmp_path_factory.mktemp("cis"), seed=0, figures=False))
    kg = KnowledgeGraph()
    kg.add_relations(res.relations)
    return kg, res.tables["cis_effects"]


def _carriers(study, gene, genotyped):
    m = study.mutations
    cls = m["variant_class"].astype(str).str.lower()
    return m[(m["gene"] == gene) & cls.isin(VARIANT_CLASSES["nonsilent"]) & m["sample"].isin(genotyped)]


def test_carrier_variants_are_read_from_the_maf(ucec_study, cis):
    _, tab = cis
    assert {"n_recurrent_missense", "recurrent"} <= set(tab.columns)
    assert (tab["n_recurrent_missense"] <= tab["n_missense_only"]).all()
    genotyped = set(ucec_study.mutations["sample"])
    for row in tab[tab["recurrent"] != ""].head(10).itertuples():
        rows = _carriers(ucec_study, row.gene, genotyped)
        for codon, n in re.findall(r"([A-Z*]\d+) x(\d+)", row.recurrent):
            # each recurrent codon is hit in at least n carriers of the gene in the MAF itself (carriers with a value are a subset)
            hit = rows[rows["protein_change"].astype(str).str.match(rf"p\.{re.escape(codon)}(?!\d)")]
            assert hit["sample"].nunique() >= int(n) >= 2, (row.gene, codon)


def test_cis_effects_are_controls_when_the_variants_predict_them(cis):
    kg, tab = cis
    drafts = {d.evidence[0]: d for d in compose_hypotheses(kg, limit=200)}
    cis_rels = [r for r in kg.by_predicate("cis_effect_on") if r.object.type == "protein" and r.id in drafts]
    assert len(cis_rels) >= 3
    kinds = set()
    for r in cis_rels:
        d, ex = drafts[r.id], r.stats.extra
        total = ex["n_truncating"] + ex["n_missense_only"]
        truncating = ex["n_truncating"] * 2 >= total
        predicted = (r.stats.effect < 0) == truncating
        kinds.add((truncating, r.stats.effect < 0))
        assert (d.kind == "positive control") == predicted, d.statement
        assert d.statement.startswith("Expected cis effect (positive control)") == predicted
        # the wording names the carriers' own classes, with the counts the tool found
        if truncating:
            assert f"{ex['n_truncating']} of {total} carriers hold a truncating variant" in d.statement
        else:
            assert f"{ex['n_missense_only']} of {total} carriers hold only missense or in-frame variants" in d.statement
            assert ("hotspot" in d.statement) == (predicted and ex["n_recurrent_missense"] * 2 >= ex["n_missense_only"])
        if not predicted:
            assert "although" in d.statement
    # UCEC holds both known mechanisms: truncated alleles with lower protein, missense alleles with higher
    assert {(True, True), (False, False)} <= kinds


def test_a_cis_effect_against_its_variants_is_a_discovery(cis):
    """The same real relation with its direction reversed is no longer what its variants predict."""
    kg, _ = cis
    r = next(r for r in sorted(kg.by_predicate("cis_effect_on"), key=lambda r: r.stats.q)
             if r.object.type == "protein" and mutation_cis_claim(r.subject.label, r.stats.effect, r.stats.extra).expected)
    flipped = r.model_copy(update={"stats": r.stats.model_copy(update={"effect": -r.stats.effect})})
    claim = mutation_cis_claim(r.subject.label, flipped.stats.effect, flipped.stats.extra)
    assert not claim.expected and claim.mechanism.startswith("although")
    assert mutation_cis_claim("G", -1.0, {}).variants == "" and not mutation_cis_claim("G", -1.0, {}).expected
