"""Every measured modification-site layer is analysed the way phosphosites are: the offline plan tests
each site layer of the study (phospho, acetyl) in the contrast it studies first, and the patterns set
every site layer's changes against its protein (UCEC holds a phosphosite and an acetylsite layer)."""

from __future__ import annotations

import pytest
from llm_fixtures.study import differential_graph

from proteus.kg import KnowledgeGraph
from proteus.policy.patterns import compose_hypotheses
from proteus.policy.playbooks import bulk_plays, followup_plays
from proteus.policy.result_tables import ResultTables
from proteus.profile import profile_study
from proteus.records import Entity, Provenance, Relation, Stats, contrast_entity
from proteus.stats.features import SITE_KINDS


@pytest.fixture(scope="module")
def profile(ucec_study):
    return profile_study(ucec_study)


def test_every_site_layer_is_planned_in_the_first_contrast_and_followed_up(profile):
    sites = {m.name for m in profile.modalities if m.kind in SITE_KINDS}
    assert len(sites) == 2, "UCEC holds phospho- and acetylsites"
    first = next(p for p in bulk_plays(profile) if p.objective.family == "differential")
    planned = {s.params["modality"] for s in first.steps if s.tool == "differential_abundance"}
    assert sites <= planned
    # a contrast with many protein changes and no site analysis yet: each site layer gets its follow-up
    c = next(c for c in profile.contrasts if c.group == profile.sample_type_column)
    kg = KnowledgeGraph()
    obj = contrast_entity(c.group, c.case, c.control)
    prov = Provenance(tool="differential_abundance", params={"modality": "proteomics", "group": c.group, "case": c.case, "control": c.control})
    for i in range(25):
        kg.add_relation(Relation(subject=Entity(type="protein", label=f"P{i}"), predicate="higher_in", object=obj,
                                 stats=Stats(effect=1.0, q=1e-6, p=1e-7, n=40), modality="proteomics", provenance=prov))
    follow = [p for p in followup_plays(profile, kg) if p.objective.family == "differential"]
    assert {p.steps[0].params["modality"] for p in follow} == sites
    # follow-ups of one contrast list its site layers together (a cap of two keeps both layers)
    assert {p.steps[0].params["modality"] for p in follow[:2]} == sites


def test_acetylsites_are_set_against_their_protein_like_phosphosites(ucec_study, profile, tmp_path):
    c = next(c for c in profile.contrasts if c.group == profile.sample_type_column)
    kg, tables, kinds = differential_graph(ucec_study, c, ("proteomics", "acetylproteomics"), tmp_path, figures=False)
    drafts = compose_hypotheses(kg, tables=ResultTables(kg, lambda p: tables.get(p), kinds), limit=200)
    specific = [d for d in drafts if d.statement.startswith("Acetylation of")]
    assert specific, "tumour vs normal has acetylsites that change beyond their protein"
    assert all("acetyltransferase or deacetylase" in d.statement and "kinase" not in d.statement for d in specific)
    prot = tables["tables/S1_results.tsv"]
    for d in specific:  # each claim holds against the full protein table
        gene = d.entities[1].split(":", 1)[1]
        assert gene in set(prot["gene"].astype(str)), d.statement
    mirrored = [d for d in drafts if "in step with" in d.statement]
    assert all(d.entities[0].startswith("acetylsite:") and "not in acetylation per molecule" in d.statement for d in mirrored)
    assert not any("phosphorylation" in d.statement.lower() for d in drafts)
