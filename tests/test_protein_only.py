"""Protein-only changes on real UCEC data: a protein that changes while its mRNA, tested in the same
contrast, does not is stated as a change after transcription, with the curated partners that change
with it, and each clause is checked here against the full protein and RNA tables."""

from __future__ import annotations

import pytest
from llm_fixtures.study import differential_graph

from proteus.policy.patterns import compose_hypotheses
from proteus.policy.result_tables import Z95, ResultTables
from proteus.profile import profile_study
from proteus.stats.units import partners

ONLY = "while its mRNA is unchanged"


@pytest.fixture(scope="module")
def layers(ucec_study, tmp_path_factory):
    """Protein and RNA differentials of the profile's first contrast that is not tumour vs normal."""
    prof = profile_study(ucec_study)
    c = next(c for c in prof.contrasts if c.group != prof.sample_type_column)
    return differential_graph(ucec_study, c, ("proteomics", "transcriptomics"), tmp_path_factory.mktemp("protein_only"), figures=False)


def _drafts(kg, tables, kinds):
    return [d for d in compose_hypotheses(kg, tables=ResultTables(kg, lambda p: tables.get(p), kinds), limit=200) if ONLY in d.statement]


def _row(tab, gene):
    rows = tab[tab["gene"].astype(str) == gene]
    if "canonical" in rows and rows["canonical"].astype(str).eq("True").any():
        rows = rows[rows["canonical"].astype(str).eq("True")]
    return rows.sort_values("p").iloc[0]


def test_protein_only_changes_hold_against_both_full_tables(layers):
    kg, tables, kinds = layers
    prot, rna = tables["tables/S1_results.tsv"], tables["tables/S2_results.tsv"]
    drafts = _drafts(kg, tables, kinds)
    assert drafts
    with_partner = 0
    for d in drafts:
        gene = d.entities[0].split(":", 1)[1]
        p, r = _row(prot, gene), _row(rna, gene)
        assert p["q"] < 0.05 and r["q"] >= 0.05, d.statement
        se = abs(r["logFC"] / r["t"])
        lo, hi = r["logFC"] - Z95 * se, r["logFC"] + Z95 * se
        assert lo <= 0 <= hi and not lo <= p["logFC"] <= hi, d.statement  # the mRNA interval excludes the protein's effect
        named = [e.split(":", 1)[1] for e in d.entities[3:]]
        for g in named:  # every partner named is a curated partner that moved the same way in the same samples
            assert g in partners(gene)
            assert _row(prot, g)["q"] < 0.05 and _row(prot, g)["logFC"] * p["logFC"] > 0
        with_partner += bool(named)
    assert with_partner, "a curated partner lost with the protein is named"


def test_no_protein_only_claim_without_the_rna_test_or_when_the_mrna_moves_too(layers):
    kg, tables, kinds = layers
    assert not _drafts(kg, {k: v for k, v in tables.items() if "S2" not in k}, kinds)
    first = _drafts(kg, tables, kinds)[0]
    gene = first.entities[0].split(":", 1)[1]
    rna = tables["tables/S2_results.tsv"].copy()
    at = rna.index[rna["gene"].astype(str) == gene]
    protein_fc = float(_row(tables["tables/S1_results.tsv"], gene)["logFC"])
    se = (rna.loc[at, "logFC"] / rna.loc[at, "t"]).abs()
    rna.loc[at, "logFC"], rna.loc[at, "t"] = protein_fc, protein_fc / se  # the mRNA moves as far as the protein, same standard error
    moved = {**tables, "tables/S2_results.tsv": rna}
    assert not any(d.entities[0] == first.entities[0] for d in _drafts(kg, moved, kinds))
