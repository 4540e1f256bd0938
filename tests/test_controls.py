"""Positive and negative controls on the real UPS1-in-yeast spike-in (Ramus et al. 2016, MaxQuant LFQ):
the spiked standard is one set-level QC statement, never a discovery, with the yeast background as the
negative control and the sample table's dose as the expected ratio. Truth comes from the folder's
``truth.json`` where a test needs it; the code under test sees only the data and the design."""

from __future__ import annotations

import json
import math

import pytest

from proteus.datasets import shared_dataset_dir
from proteus.io import load_study
from proteus.kg import KnowledgeGraph
from proteus.policy.heuristic_judge import judge_heuristically
from proteus.policy.patterns import compose_hypotheses
from proteus.policy.result_tables import ResultTables
from proteus.records import Hypothesis, Provenance, Step
from proteus.tools.registry import ToolContext, get_tool
from proteus.validation import order_by_validation

UPS1 = "ramus2016-ups1-maxquant"


@pytest.fixture(scope="module")
def ups(tmp_path_factory):
    d = shared_dataset_dir(UPS1)
    if d is None:
        pytest.skip(f"shared dataset {UPS1} absent")
    dest = tmp_path_factory.mktemp("ups1")
    for f in ("proteinGroups.txt", "samples.tsv"):
        (dest / f).write_bytes((d / f).read_bytes())
    study = load_study(dest)
    truth = json.loads((d / "truth.json").read_text())
    return study, truth, tmp_path_factory.mktemp("ups_out")


def _run(study, out, sid="S1"):
    """The study's one contrast as a run records it: relations in a graph, full tables by path."""
    clin = study.clinical
    group = next(c for c in clin.columns if clin[c].nunique() == 2 and not str(clin[c].iloc[0]).replace(".", "").isdigit())
    case, control = sorted(map(str, clin[group].unique()))
    params = {"modality": "proteomics", "group": group, "case": case, "control": control}
    res = get_tool("differential_abundance")(study, params, ToolContext(out_dir=out, seed=0, provenance=Provenance(tool="differential_abundance", step=sid)))
    kg, tables = KnowledgeGraph(), {}
    kg.add_relations(res.relations)
    for name, tab in res.tables.items():
        tables[f"tables/{sid}_{name}.tsv"] = tab
    kg.add_step(Step(id=sid, tool="differential_abundance", params=params, status="done", tables=list(tables)), "W1")
    return kg, tables, res


def test_each_feature_keeps_the_organism_its_fasta_header_names(ups, nafld_dir):
    study, truth, _ = ups
    var = study.modalities["proteomics"].var
    human = var.index[var["organism"] == "Homo sapiens"]
    assert len(human) == 45 and (var["organism"] == "Saccharomyces cerevisiae").sum() > 800
    # every feature the header calls human is a spiked UPS1 protein in the benchmark's truth
    spiked = set(truth["true_positive_ids"])
    assert set(var.loc[human, "protein_ids"]) <= spiked
    assert set(var.loc[var["organism"] != "Homo sapiens", "protein_ids"]).isdisjoint(spiked)
    # a single-organism layer gets no per-feature column
    assert "organism" not in load_study(nafld_dir).modalities["proteomics"].var


def test_the_spike_in_is_one_positive_control_with_its_negative_control_and_dose(ups):
    study, _, out = ups
    kg, tables, res = _run(study, out)
    doses = res.tables["doses"]
    prm = res.relations[0].provenance.params
    clin = study.clinical
    numeric = [c for c in clin.columns if clin[c].astype(str).str.replace(".", "", regex=False).str.isdigit().all() and c != prm["group"]]
    stated = [(c, float(clin.loc[clin[prm["group"]] == prm["case"], c].iloc[0]), float(clin.loc[clin[prm["group"]] == prm["control"], c].iloc[0]))
              for c in numeric if clin.groupby(prm["group"])[c].nunique().max() == 1]
    assert list(doses.itertuples(index=False, name=None)) == stated
    rt = ResultTables(kg, tables.get, {"proteomics": "proteomics"})
    drafts = compose_hypotheses(kg, tables=rt, limit=200)
    controls = [d for d in drafts if d.kind == "positive control"]
    assert len(controls) == 1, [d.statement for d in drafts]
    c = controls[0]
    tab = res.tables["results"]
    human = tab[tab["organism"] == "Homo sapiens"]
    yeast = tab[tab["organism"] == "Saccharomyces cerevisiae"]
    sign = 1 if human["logFC"].median() > 0 else -1
    k = int(((human["q"] < 0.05) & (human["logFC"] * sign > 0)).sum())
    assert k * 2 >= len(human) and sign == (1 if stated[0][1] > stated[0][2] else -1)  # the standard moves with its dose
    expected = math.log2(stated[0][1] / stated[0][2])
    assert f"{k}/{len(human)} changed" in c.statement and f"median log2FC {human['logFC'].median():+.2f}" in c.statement
    assert f"expected {expected:+.2f}" in c.statement
    assert f"{int((yeast['q'] < 0.05).sum())} of {len(yeast)} called" in c.statement
    # no other hypothesis restates a spiked protein or a background call as a discovery
    spiked = set(human["label"]) | set(yeast.loc[yeast["q"] < 0.05, "label"])
    for d in drafts:
        if d is not c:
            assert not {kg.relation(e).subject.label for e in d.evidence} & spiked, d.statement
    # the judge: plausible, not novel; and the ranking puts it below every discovery
    h = Hypothesis(id="H1", statement=c.statement, rationale=c.rationale, evidence=c.evidence, entities=c.entities, test=c.test, kind=c.kind)
    j = judge_heuristically(kg, h)
    assert j.novelty.score == 1 and j.biological_plausibility.score == 5 and j.logical_coherence.score == 5, j
    ranked = order_by_validation([{"id": "pc", "kind": "positive control", "validation": {"status": "validated"}},
                                  {"id": "d", "kind": "discovery", "validation": {"status": "failed"}}])
    assert [h["id"] for h in ranked] == ["d", "pc"]


def test_a_second_organism_that_does_not_move_is_no_positive_control(ups):
    study, _, out = ups
    kg, tables, res = _run(study, out, sid="S2")
    tab = tables["tables/S2_results.tsv"].copy()
    # counter-example: the organism labels put on 45 unchanged background features instead
    flat = tab.loc[tab["q"] > 0.5].index[:45]
    tab["organism"] = "Saccharomyces cerevisiae"
    tab.loc[flat, "organism"] = "Homo sapiens"
    tables["tables/S2_results.tsv"] = tab
    rt = ResultTables(kg, tables.get, {"proteomics": "proteomics"})
    assert not [d for d in compose_hypotheses(kg, tables=rt, limit=200) if d.kind == "positive control"]


def test_a_column_that_encodes_the_grouping_is_no_confounder_and_no_vacuous_all_clear(ups):
    """The spike-in's dose column splits the samples exactly as the grouping does: it is the design, reported
    as the same grouping (never tested as a confounder, categorical or continuous), and the check never says
    "no other column differs" when no other column was tested."""
    from proteus.confounding import contrast_checks, hypothesis_checks

    study, _, out = ups
    kg, _, res = _run(study, out / "design")
    clin, p = study.clinical, res.relations[0].provenance.params
    dose = next(c for c in clin.columns if c != p["group"] and clin[c].astype(str).str.replace(".", "").str.isdigit().all()
                and clin.groupby(p["group"])[c].nunique().max() == 1 and clin[c].nunique() == 2)
    for continuous in (False, True):
        (c,) = contrast_checks(clin, p["group"], [p["case"]], [p["control"]], [(dose, "biological", continuous)])
        assert c.decision == "same grouping", c
    assert continuous and c.p is None  # a continuous encoding is not tested at all
    # a column that varies within the groups is tested as usual (counter-example)
    varied = clin.assign(noise=range(len(clin)))
    (c,) = contrast_checks(varied, p["group"], [p["case"]], [p["control"]], [("noise", "covariate", True)])
    assert c.decision in ("independent", "associated", "cannot be separated", "measures the grouping") and c.p is not None
    _, _, why = hypothesis_checks(res.relations[:3], clin, [(dose, "biological", False)])
    assert "no other column differs" not in why and "could be tested" in why and dose in why and "the design itself" in why
