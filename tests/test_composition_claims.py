"""Claims on a composition-confounded contrast and "unchanged" wording, on real UCEC data.

UCEC compares tumour with adjacent normal tissue, and its composition scores (purity, stromal / immune content) are
recorded for the tumours only: the tissue contrast's model holds no composition score, so it cannot tell regulation
within a cell type from a change in which cells make up the sample (less stroma in the tumour).

- such a claim states what was observed and that it may reflect the groups' cell-type make-up, never a mechanism
  within cells (a change in transcription, after transcription, an enzyme's activity on a site):
  :func:`proteus.ranking.composition_confounded` is the one reading, :func:`proteus.policy.claims.stated_with_design`
  the wording;
- "mRNA unchanged" only where the mRNA interval lies inside the equivalence bound of
  :func:`proteus.policy.claims.negligible` (half the protein's change), with both layers' sample counts where they
  were tested on different samples (UCEC's mRNA holds fewer adjacent normals than its proteome).
"""

from __future__ import annotations

import pytest
from llm_fixtures.study import differential_graph

from proteus.confounding import hypothesis_checks
from proteus.policy.claims import stated_with_design
from proteus.policy.patterns import compose_hypotheses
from proteus.policy.result_tables import Z95, ResultTables
from proteus.profile import profile_study
from proteus.ranking import composition_confounded

MECHANISMS = ("transcription", "pointing to altered", "activity on this site")
"""Words of a mechanism within cells (the patterns' readings of two layers, of a protein without its mRNA, of a site)."""
ONLY = "while its mRNA is unchanged"


@pytest.fixture(scope="module")
def tissue(ucec_study, tmp_path_factory):
    """Protein and mRNA differentials of the profile's tumour-vs-normal contrast, and the profile."""
    prof = profile_study(ucec_study)
    c = next(c for c in prof.contrasts if c.group == prof.sample_type_column)
    kg, tables, kinds = differential_graph(ucec_study, c, ("proteomics", "transcriptomics"), tmp_path_factory.mktemp("tissue"), figures=False)
    drafts = compose_hypotheses(kg, tables=ResultTables(kg, lambda p: tables.get(p), kinds), sample_type=prof.sample_type_column, limit=200)
    return kg, tables, prof, c, drafts


def _row(tab, gene):
    rows = tab[tab["gene"].astype(str) == gene]
    if "canonical" in rows and rows["canonical"].astype(str).eq("True").any():
        rows = rows[rows["canonical"].astype(str).eq("True")]
    return rows.sort_values("p").iloc[0]


def _interval(row) -> tuple[float, float]:
    se = abs(row["logFC"] / row["t"])
    return row["logFC"] - Z95 * se, row["logFC"] + Z95 * se


def test_mrna_is_said_unchanged_only_inside_the_equivalence_bound_with_both_sample_counts(tissue):
    kg, tables, _, c, drafts = tissue
    prot, rna = tables["tables/S1_results.tsv"], tables["tables/S2_results.tsv"]
    said = {d.entities[0].split(":", 1)[1]: d for d in drafts if ONLY in d.statement}
    assert said, "tumour vs normal holds proteins that change while their mRNA does not"
    for gene, d in said.items():
        p, r = _row(prot, gene), _row(rna, gene)
        lo, hi = _interval(r)
        assert r["q"] >= 0.05 and -abs(p["logFC"]) / 2 < lo <= 0 <= hi < abs(p["logFC"]) / 2, d.statement
        # the layers were tested on different normals: both counts are said
        assert (r["n_case"], r["n_control"]) != (p["n_case"], p["n_control"])
        assert f"the mRNA tested on {r['n_case']} {c.case} and {r['n_control']} {c.control} samples" in d.statement, d.statement
        assert f"the protein on {p['n_case']} and {p['n_control']}" in d.statement, d.statement
    # a protein whose mRNA change is only not detected (its interval holds zero, excludes the protein's change, and
    # reaches beyond half of it) is no protein-only claim
    strongest = prot[prot["canonical"].astype(str).eq("True")].sort_values("q").head(40)
    not_detected = []
    for gene, fc in zip(strongest["gene"].astype(str), strongest["logFC"]):
        if not (rna["gene"].astype(str) == gene).any():
            continue
        r = _row(rna, gene)
        lo, hi = _interval(r)
        if r["q"] >= 0.05 and lo <= 0 <= hi and not lo <= fc <= hi and not -abs(fc) / 2 < lo <= hi < abs(fc) / 2:
            not_detected.append(gene)
    assert not_detected, "UCEC tumour vs normal has a protein whose mRNA change is not detected but not excluded either"
    assert not set(not_detected) & set(said), [said[g].statement for g in set(not_detected) & set(said)]


def test_a_tissue_contrast_without_a_composition_score_states_no_mechanism_within_cells(tissue, ucec_study):
    kg, _, prof, _, drafts = tissue
    st = prof.sample_type_column
    readings = [d for d in drafts if d.mechanism]
    assert {("both" in d.statement, ONLY in d.statement) for d in readings} >= {(True, False), (False, True)}, \
        "tumour vs normal has protein-and-mRNA changes and protein-only changes"
    columns, cache = prof.confounder_columns(), {}
    for d in readings:
        design, clause, _ = hypothesis_checks([kg.relation(e) for e in d.evidence], ucec_study.clinical, columns, cache, study=ucec_study)
        why = composition_confounded(design, st)
        assert why is not None and st in why, d.statement
        statement = stated_with_design(d.statement, d.mechanism, clause, confounded=True)
        assert not any(w in statement for w in MECHANISMS), statement
        assert "cell-type make-up" in statement and "unadjusted for tissue composition" in statement, statement
        # what was observed is still said
        assert statement.startswith(d.statement.split(d.mechanism)[0]), statement
        # counter-example: read without a sample-type column, the same contrast is no tissue comparison, and the
        # reading within cells is said
        assert composition_confounded(design, None) is None
        assert d.mechanism in stated_with_design(d.statement, d.mechanism, clause, confounded=False)
