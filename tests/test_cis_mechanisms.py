"""Mechanisms the data already holds, stated right, on the real UCEC cohort: a mutation's effect on its
own protein is worded by its carriers' variants (read back from the MAF here) and is a positive control
when those variants predict its direction, a discovery when they do not."""

from __future__ import annotations

import re

import pandas as pd
from scipy import stats

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


def _residues_in_region(study, gene, carriers, region) -> tuple[int, int]:
    """(missense-only carriers with a residue in ``region``, those with a residue), read from the MAF here."""
    m = study.mutations
    rows = m[(m["gene"] == gene) & m["sample"].isin(carriers)]
    cls = rows["variant_class"].astype(str).str.lower()
    trunc = set(rows.loc[cls.isin(VARIANT_CLASSES["truncating"]), "sample"])
    mis = rows[cls.isin(VARIANT_CLASSES["missense"]) & ~rows["sample"].isin(trunc)]
    pos = mis["protein_change"].astype(str).str.extract(r"^p\.[A-Z*](\d+)")[0].astype(float)
    first = pos.groupby(mis["sample"].to_numpy()).first().dropna()
    return int(sum(region.start <= x <= region.end for x in first)), len(first)


def test_cis_effects_are_controls_when_the_variants_predict_them(ucec_study, cis):
    """Truncating carriers with lower protein are a control for any gene; missense carriers with higher
    protein only where the curated stabilising list holds the gene and their residues sit in its region
    (carriers recounted from the MAF); a missense hotspot outside it is an association."""
    from proteus.genesets import stabilising_variants

    kg, tab = cis
    regions = stabilising_variants()
    drafts = {d.evidence[0]: d for d in compose_hypotheses(kg, limit=200)}
    cis_rels = [r for r in kg.by_predicate("cis_effect_on") if r.object.type == "protein" and r.id in drafts]
    assert len(cis_rels) >= 3
    kinds = set()
    genotyped = set(ucec_study.mutations["sample"])
    for r in cis_rels:
        d, ex, gene = drafts[r.id], r.stats.extra, r.subject.label
        total = ex["n_truncating"] + ex["n_missense_only"]
        truncating = ex["n_truncating"] * 2 >= total
        carriers = set(_carriers(ucec_study, gene, genotyped)["sample"])
        curated = False
        if not truncating and gene in regions:
            n_in, n = _residues_in_region(ucec_study, gene, carriers, regions[gene])
            curated = n > 0 and n_in * 2 >= n
        predicted = (r.stats.effect < 0) if truncating else (curated and r.stats.effect > 0)
        kinds.add((truncating, curated, r.stats.effect < 0, predicted))
        assert (d.kind == "positive control") == predicted, d.statement
        assert d.statement.startswith("Expected cis effect (positive control)") == predicted
        # the wording names the carriers' own classes, with the counts the tool found
        if truncating:
            assert f"{ex['n_truncating']} of {total} carriers hold a truncating variant" in d.statement
        else:
            assert f"{ex['n_missense_only']} of {total} carriers hold only missense or in-frame variants" in d.statement
            if curated:
                assert regions[gene].name in d.statement and regions[gene].ref in d.statement
            elif r.stats.effect > 0:
                assert "an association" in d.statement and "no curated mechanism" in d.statement
        if not predicted and (truncating or curated):
            assert "although" in d.statement
    # UCEC holds truncated alleles with lower protein, curated degron / DNA-binding missense with higher
    # protein, and a missense hotspot gene outside the list whose higher protein is only an association
    assert {(True, False, True, True), (False, True, False, True), (False, False, False, False)} <= kinds, kinds


def test_a_cis_effect_against_its_variants_is_a_discovery(cis):
    """The same real relation with its direction reversed is no longer what its variants predict."""
    kg, _ = cis
    r = next(r for r in sorted(kg.by_predicate("cis_effect_on"), key=lambda r: r.stats.q)
             if r.object.type == "protein" and mutation_cis_claim(r.subject.label, r.stats.effect, r.stats.extra).expected)
    flipped = r.model_copy(update={"stats": r.stats.model_copy(update={"effect": -r.stats.effect})})
    claim = mutation_cis_claim(r.subject.label, flipped.stats.effect, flipped.stats.extra)
    assert not claim.expected and claim.mechanism.startswith("although")
    assert mutation_cis_claim("G", -1.0, {}).variants == "" and not mutation_cis_claim("G", -1.0, {}).expected


@pytest.fixture(scope="module")
def groupings(ucec_study, tmp_path_factory):
    """The offline plan's mutation-frequency steps (one per within-tumour grouping), run on UCEC."""
    from proteus.policy.playbooks import bulk_plays
    from proteus.profile import profile_study

    out = []
    for step in (s for p in bulk_plays(profile_study(ucec_study)) for s in p.steps if s.tool == "mutation_group_enrichment"):
        res = get_tool("mutation_group_enrichment")(ucec_study, step.params, ToolContext(out_dir=tmp_path_factory.mktemp("mge"), seed=0, figures=False))
        kg = KnowledgeGraph()
        kg.add_relations(res.relations)
        out.append((step.params, res, kg))
    return out


def _own(study, params, gene):
    """The gene's own protein and mutation status over the grouping's two levels, read here from the raw layers."""
    clin = study.clinical
    lab = clin[params["group"]].astype(str)
    for col, level in (params.get("restrict") or {}).items():
        lab = lab[clin.loc[lab.index, col].astype(str) == level]
    prot = study.modalities[params["own_modality"]]
    col = list(prot.var.index[prot.var["gene"].astype(str) == gene])[0]
    v = prot[:, col].to_df()[col]
    genotyped = set(study.mutations["sample"])
    carriers = set(_carriers(study, gene, genotyped)["sample"])
    keep = [s for s in lab.index if s in genotyped and s in v.index and lab[s] in (params["case"], params["control"]) and v[s] == v[s]]
    return v[keep], lab[keep] == params["case"], pd.Series([s in carriers for s in keep], index=keep)


def test_a_protein_change_a_subtype_owes_to_its_mutation_carriers_is_stated_as_their_cis_effect(ucec_study, groupings):
    stated = 0
    for params, _, kg in groupings:
        for d in (d for d in compose_hypotheses(kg, limit=200) if "through its mutation carriers" in d.statement):
            stated += 1
            gene = d.entities[0].split(":", 1)[1]
            v, case, mut = _own(ucec_study, params, gene)
            # recomputed from the raw layers: the difference between the levels is there over all samples ...
            diff_all = v[case].mean() - v[~case].mean()
            assert f"from {diff_all:+.2f}" in d.statement
            assert stats.ttest_ind(v[case], v[~case], equal_var=False).pvalue < 0.05
            # ... carriers have less (more) of it, the mutation is more frequent in the case level ...
            assert (v[mut].mean() - v[~mut].mean()) * diff_all > 0 and mut[case].mean() > mut[~case].mean()
            # ... and among non-carriers the difference is under half of it and not significant
            wt = ~mut
            assert abs(v[case & wt].mean() - v[~case & wt].mean()) < abs(diff_all) / 2
            assert stats.ttest_ind(v[case & wt], v[~case & wt], equal_var=False).pvalue >= 0.05
    assert stated, "a within-tumour grouping holds a mutation whose carriers carry its own protein's difference"


def test_mutation_frequencies_are_not_restated_as_findings_alone(groupings):
    assert any(res.relations for _, res, _ in groupings), "mutations differ in frequency between some grouping's levels"
    for _, _, kg in groupings:
        assert not any("(mutation)" in d.statement for d in compose_hypotheses(kg, limit=200))


def _hypermutated(study, layer):
    """The tool's genotyped samples of ``layer`` (those in the mutation table) and their hypermutator calls."""
    from proteus.tools.mutation import hypermutated

    geno = [s for s in study.modalities[layer].obs_names.astype(str) if s in set(study.mutations["sample"].astype(str))]
    return hypermutated(study, geno)[0]


def test_a_cis_effect_of_hypermutated_carriers_is_compared_within_their_status(ucec_study, cis):
    """Carriers that are all hypermutated were 'not separable from hypermutator status' because none was left
    without it; adjusted for the status (a linear model with both, refitted here with statsmodels) the comparison
    is carriers against hypermutated non-carriers, and an effect that holds there is separated from the status."""
    import statsmodels.api as sm

    kg, tab = cis
    hyper = _hypermutated(ucec_study, "proteomics")
    prot = ucec_study.modalities["proteomics"]
    genotyped = set(hyper.index)
    rows = tab[(tab["q"] < 0.05) & (tab["n_mutated_hypermutated"] == tab["n_mutated"])]
    assert len(rows) >= 2
    separated = 0
    for row in rows.itertuples():
        v = prot[:, row.feature].to_df()[row.feature].reindex(hyper.index).dropna()
        carriers = set(_carriers(ucec_study, row.gene, genotyped)["sample"])
        mut = pd.Series([s in carriers for s in v.index], index=v.index)
        assert hyper[mut[mut].index].all()  # every carrier hypermutated, as the row says
        within = v[mut].mean() - v[~mut & hyper.reindex(v.index)].mean()
        fit = sm.OLS(v.to_numpy(), sm.add_constant(pd.DataFrame({"m": mut.astype(float), "h": hyper.reindex(v.index).astype(float)}))).fit()
        assert row.diff_adjusted_hypermutator == pytest.approx(within) == pytest.approx(fit.params["m"])
        assert row.p_adjusted_hypermutator == pytest.approx(fit.pvalues["m"], rel=1e-6)
        note = next(r for r in kg.by_predicate("cis_effect_on") if r.subject.label == row.gene and r.object.label == row.feature).stats.extra["hypermutator_note"]
        held = fit.pvalues["m"] < 0.05 and fit.params["m"] * row.mean_diff > 0
        assert ("cannot be separated" in note) == (not held), note
        separated += held
    assert separated, "some effect of all-hypermutated carriers holds within the hypermutated tumours"


def test_the_drivers_cis_effects_are_drafted_first_each_event_once(ucec_study, cis, groupings):
    """The cis effects drafted are those of the genes mutated most beyond passenger load (carriers not hypermutated, or
    carriers at the gene's most frequent codon, recounted here from the MAF), the hypermutator caveat said in the
    sentence; a gene whose cis effect a grouping's draft already states ('through its mutation carriers') is not
    stated again on its own."""
    kg_cis, tab = cis
    kg = KnowledgeGraph()
    kg.add_relations(list(kg_cis.relations.values()))
    for _, res, _ in groupings:
        kg.add_relations(res.relations)
    drafts = compose_hypotheses(kg, limit=200)
    through = {d.entities[0].split(":", 1)[1] for d in drafts if "through its mutation carriers" in d.statement}
    alone = {r.subject.label: d for d in drafts if (r := kg.relation(d.evidence[0])) is not None and r.predicate == "cis_effect_on"}
    assert through and not through & set(alone)
    hyper = _hypermutated(ucec_study, "proteomics")
    prot = ucec_study.modalities["proteomics"]

    def beyond(gene, feature):
        v = prot[:, feature].to_df()[feature].reindex(hyper.index).dropna()
        rows = _carriers(ucec_study, gene, set(v.index))
        codons = rows["protein_change"].astype(str).str.extract(r"^p\.([A-Z*]\d+)")[0].dropna()
        top = rows.loc[codons.index].groupby(codons)["sample"].nunique().max() if len(codons) else 0
        return max(int((~hyper[sorted(set(rows["sample"]))]).sum()), int(top if top >= 2 else 0))

    sig = tab[tab["q"] < 0.05]
    counts = {r.gene: beyond(r.gene, r.feature) for r in sig.itertuples() if r.gene not in through}
    assert all(counts[g] == n for g, n in zip(sig["gene"], sig["n_beyond_passengers"]) if g in counts)
    first = sorted(counts, key=lambda g: (-counts[g], float(sig.loc[sig["gene"] == g, "q"].iloc[0])))[:5]
    assert set(alone) == set(first), (sorted(alone), first)
    # a driver whose effect is not separable from hypermutator status is still drafted, with the caveat in its sentence
    confounded = [g for g in first if "cannot be separated" in kg.relation(alone[g].evidence[0]).stats.extra["hypermutator_note"]]
    assert confounded and all("not separable from hypermutator status" in alone[g].statement for g in confounded)
