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
from proteus.ranking import rank_hypotheses
from proteus.records import Hypothesis, Provenance, Step
from proteus.tools.registry import ToolContext, get_tool

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
    ranked = rank_hypotheses([{"id": "pc", "kind": "positive control", "evidence": c.evidence, "validation": {"status": "validated"}},
                              {"id": "d", "kind": "discovery", "validation": {"status": "failed"}}], kg)
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


@pytest.fixture(scope="module", params=["", "50vs5"])
def ups_block(request, tmp_path_factory):
    """The shipped UPS1 blocks (25 vs 12.5 fmol at the top, 50 vs 5 fmol below), each with its truth."""
    d = shared_dataset_dir(UPS1)
    if d is None or not (d / request.param / "truth.json").exists():
        pytest.skip(f"shared dataset {UPS1}/{request.param} absent")
    d = d / request.param
    dest = tmp_path_factory.mktemp("ups1_block")
    for f in ("proteinGroups.txt", "samples.tsv"):
        (dest / f).write_bytes((d / f).read_bytes())
    return load_study(dest), json.loads((d / "truth.json").read_text()), tmp_path_factory.mktemp("ups_block_out")


def _n(x):
    return len(x) if isinstance(x, list) else int(x)


def _ids(study, tab):
    """Each result row's protein group ids (the truth's id space)."""
    return tab["feature"].astype(str).map(study.modalities["proteomics"].var["protein_ids"].astype(str))


def test_spiked_proteins_removed_at_load_keep_their_organism_and_are_named(ups_block):
    """The reader drops protein groups that also match the contaminant list; a spiked protein among
    them still counts as spiked: k of K quantified, the removed ones named."""
    study, truth, out = ups_block
    layer = study.modalities["proteomics"]
    ex = layer.uns["excluded_features"]
    human_removed = [f for f, o in zip(ex["feature"], ex["organism"]) if o == "Homo sapiens"]
    spiked = set(truth["true_positive_ids"])
    kept = set(layer.var.loc[layer.var["organism"] == "Homo sapiens", "protein_ids"])
    # every spiked group of the file is either kept with its organism or removed and recorded with it
    assert len(kept) + len(human_removed) == len(spiked) and len(human_removed) == _n(truth["ups_groups_flagged_contaminant"])
    assert set(ex["reason"]) == {"Potential contaminant"}
    kg, tables, res = _run(study, out, sid="S3")
    assert sorted(res.tables["excluded"]["feature"]) == sorted(ex["feature"])
    rt = ResultTables(kg, tables.get, {"proteomics": "proteomics"})
    (c,) = [d for d in compose_hypotheses(kg, tables=rt, limit=200) if d.kind == "positive control"]
    assert f"{len(kept)} of {len(spiked)} Homo sapiens features in the file quantified" in c.statement
    assert all(name in c.statement for name in human_removed)
    # counter-example: without the reader's record, the same contrast counts only what it quantified
    tables_without = {k: v for k, v in tables.items() if not k.endswith("_excluded.tsv")}
    rt = ResultTables(kg, tables_without.get, {"proteomics": "proteomics"})
    (c,) = [d for d in compose_hypotheses(kg, tables=rt, limit=200) if d.kind == "positive control"]
    assert f"{len(kept)} of {len(kept)} Homo sapiens" in c.statement and "removed at load" not in c.statement


def test_benchmark_readout_matches_the_truth_of_the_spike_in(ups_block):
    """True / false positives at q < 0.01 and 0.05 (yeast as the negative set), the fold-change error
    against the dose ratio and the low-abundance compression agree with the benchmark's truth."""
    import numpy as np

    from proteus.policy.controls import spike_in_readouts

    study, truth, out = ups_block
    _, _, res = _run(study, out, sid="S4")
    tab = res.tables["results"]
    (r,) = spike_in_readouts(tab, 0.05, res.tables["doses"], res.tables["excluded"], res.tables["skipped"])
    ids = _ids(study, tab)
    pos, neg = ids.isin(truth["true_positive_ids"]), ids.isin(truth["true_negative_ids"])
    for q, tp, fp in r.calls:
        assert tp == int(((tab["q"] < q) & pos).sum())
        # the background's calls are the truth's false positives (the one yeast group the truth leaves out is not called)
        assert fp == int(((tab["q"] < q) & neg).sum())
    assert [q for q, _, _ in r.calls] == [0.01, 0.05]
    prm = res.relations[0].provenance.params
    amounts = truth["conditions"]  # spike amount per condition: the truth's ratio in this contrast's orientation
    true_lfc = math.log2(amounts[prm["case"]] / amounts[prm["control"]])
    err = tab.loc[pos, "logFC"] - true_lfc
    assert r.expected[0] == pytest.approx(true_lfc, abs=1e-3)
    assert r.error == pytest.approx((err.median(), err.quantile(0.25), err.quantile(0.75)), abs=1e-3)
    a = tab.loc[pos]
    low = a["AveExpr"] < a["AveExpr"].median()
    assert r.low_high == pytest.approx((a.loc[low, "logFC"].median(), a.loc[~low, "logFC"].median()))
    # compression (Ramus et al. 2016) is said only where the low half is nearer 1 than both the high half and the dose ratio
    squeezed = abs(r.low_high[0]) < abs(r.low_high[1]) and abs(r.low_high[0]) < abs(true_lfc)
    text = r.calls_text()
    fdp = r.calls[-1][2] / (r.calls[-1][1] + r.calls[-1][2])
    assert f"false-discovery proportion {fdp:.1%}" in text
    assert ("ratio compression at low abundance" in r.compression_text()) == squeezed
    assert ("both halves beyond the expected ratio" in r.compression_text()) == (min(map(abs, r.low_high)) > abs(true_lfc))
    assert np.isfinite(r.median_background_fc) and abs(r.median_background_fc) < 0.5


def test_report_shows_the_benchmark_readout_of_the_run(ups_block):
    """The report's spike-in section reads the step's own tables: detection with the removed spiked
    proteins named, true / false positives per threshold and the fold-change error."""
    from proteus.policy.controls import spike_in_readouts
    from proteus.report import render_report

    study, _, out = ups_block
    _, tables, res = _run(study, out, sid="S5")
    run = out / "run_s5"
    (run / "tables").mkdir(parents=True)
    for rel, tab in tables.items():
        tab.to_csv(run / rel, sep="\t", index=False)
    params = dict(res.relations[0].provenance.params)
    step = {"id": "S5", "tool": "differential_abundance", "params": params, "status": "done", "tables": list(tables)}
    (run / "state.json").write_text(json.dumps({"workflows": [{"id": "W1", "steps": [step]}]}))
    html = render_report(run)
    (r,) = spike_in_readouts(res.tables["results"], 0.05, res.tables["doses"], res.tables["excluded"], res.tables["skipped"])
    assert "Spike-in benchmark" in html
    for part in (r.detection_text(), r.calls_text(), r.error_text()):
        assert part.replace("<", "&lt;") in html
    assert all(name in html for name in res.tables["excluded"]["feature"])
    # a single-organism run has no such section (counter-example)
    for rel in tables:
        if rel.endswith("_results.tsv"):
            tables[rel].drop(columns="organism").to_csv(run / rel, sep="\t", index=False)
    assert "Spike-in benchmark" not in render_report(run)
