"""Every clause of a pattern hypothesis is checked against the full result tables
(:mod:`proteus.policy.claims`, :mod:`proteus.policy.result_tables`): each wording rule is planted on
real UCEC results and must change what is written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from proteus.kg import KnowledgeGraph
from proteus.policy.claims import directions_agree, is_composition_score, mutation_phrase, overclaims
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


def test_mutation_wording_follows_variant_class_and_direction():
    mut = Entity(type="mutation", label="GENE1")

    def statement(effect, n_trunc, n_mis, note=""):
        kg = KnowledgeGraph()
        kg.add_relation(_rel(mut, "cis_effect_on", Entity(type="protein", label="GENE1"), effect, tool="mutation_cis_effect",
                             n_truncating=n_trunc, n_missense_only=n_mis, hypermutator_note=note))
        return compose_hypotheses(kg)[0].statement

    rise = statement(+0.9, 2, 20)
    assert "loss" not in rise and "higher GENE1 protein" in rise and "missense" in rise
    assert "loss of function" in statement(-0.9, 18, 3)
    assert "loss" not in statement(-0.9, 2, 18)  # a missense-carried decrease is not called loss
    confounded = statement(-0.5, 15, 2, "15 of 17 mutated samples are hypermutated; the effect cannot be separated from hypermutator status")
    assert "hypermutator" in confounded
    assert mutation_phrase("G", -1.0, None, None) == ("lower G protein", "")


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
