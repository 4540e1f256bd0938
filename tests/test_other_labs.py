"""Acceptance checks of issue #11 as a new user would bring data: each test is one failure found by
running ``proteus run`` on public data from other labs, fixed by a generic rule.

Fixtures come from shipped data: the ramus2016 UPS1-in-yeast MaxQuant set (``../shared/datasets``)
and the alphastats NAFLD plasma study (``nafld_dir``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from proteus.design import factor_design, is_reference_level
from proteus.io import load_study
from proteus.io.organism import NOT_HUMAN
from proteus.policy.playbooks import bulk_plays
from proteus.profile import profile_study
from proteus.tools.registry import ToolContext, ToolFailed, get_tool

UPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "ramus2016-ups1-maxquant"
if not UPS.exists():
    UPS = Path("/work/shared/datasets/ramus2016-ups1-maxquant")


@pytest.fixture()
def ups_folder(tmp_path):
    """One ramus comparison (25 vs 12.5 fmol UPS1, 3 injections each) as a lab sends it."""
    if not UPS.exists():
        pytest.skip("ramus2016 UPS1 set not found")
    d = tmp_path / "ups"
    d.mkdir()
    shutil.copy(UPS / "proteinGroups.txt", d)
    shutil.copy(UPS / "samples.tsv", d)
    return d


def _steps(plays):
    return [s for p in plays for s in p.steps]


def test_decimal_levels_are_numbers_not_a_zero_word():
    # '25.0' once split into '25' and '0', and '0' is a control word: 25 fmol became the reference
    assert not is_reference_level("25.0") and not is_reference_level("0.5 uM") and not is_reference_level("10.0 nM")
    assert is_reference_level("0") and is_reference_level("0.0") and is_reference_level("0.0 uM")
    d = factor_design({"12.5": 3, "25.0": 3})
    assert d["references"] == ["12.5"] and d["reference_reason"] == "lowest level of an ordered factor"


def test_amount_column_encoding_the_condition_is_one_contrast_not_two(ups_folder):
    # samples.tsv holds condition and ups1_fmol_per_ug, the same split in the opposite orientation
    prof = profile_study(load_study(ups_folder))
    assert [(c.group, c.case, c.control) for c in prof.contrasts] == [("condition", "ups_25fmol", "ups_12.5fmol")]
    titles = [p.objective.title for p in bulk_plays(prof)]
    assert not any("ups1_fmol_per_ug" in t for t in titles)
    # a split whose groups only contain the reversed groups of another (4 ⊃ 3, 2 ⊂ 3) is a different comparison, kept
    sheet = pd.read_csv(ups_folder / "samples.tsv", sep="\t")
    sheet.assign(kit=["new", "old", "old", "new", "new", "new"]).to_csv(ups_folder / "samples.tsv", sep="\t", index=False)
    prof = profile_study(load_study(ups_folder))
    assert {(c.group, c.n_case, c.n_control) for c in prof.contrasts} == {("condition", 3, 3), ("kit", 4, 2)}


def test_no_subtype_discovery_planned_on_a_few_samples(ups_folder, tmp_path):
    prof = profile_study(load_study(ups_folder))
    assert not any(s.tool == "consensus_clustering" for s in _steps(bulk_plays(prof)))
    # 15 injections of 5 amounts: clusters of 3, which the tool (5 samples a cluster at least) refuses
    lfq = pd.read_csv(UPS / "proteinGroups.txt", sep="\t").set_index("Protein IDs").filter(like="LFQ intensity ")
    for n, k_max in ((15, None), (25, 5)):  # copies of the six injections, as a larger study
        wide = pd.concat([lfq.add_suffix(f"_{i}") for i in range(5)], axis=1).iloc[:, :n]
        wide.columns = [c.replace("LFQ intensity ", "") for c in wide.columns]
        d = tmp_path / f"wide{n}"
        d.mkdir()
        wide.rename_axis("protein").to_csv(d / "proteins.tsv", sep="\t")
        pd.DataFrame({"sample": wide.columns, "condition": [c.split("_")[1] for c in wide.columns]}).to_csv(d / "samples.tsv", sep="\t", index=False)
        prof = profile_study(load_study(d))
        steps = [s for s in _steps(bulk_plays(prof)) if s.tool == "consensus_clustering"]
        assert prof.n_samples == n and [s.params.get("k_max") for s in steps] == ([k_max] if k_max else [])


def test_spiked_human_proteins_labelled_by_gene_from_the_uniprot_map(ups_folder, tmp_path):
    # UPS1 rows carry no gene name, only tagged accessions (P02768ups) and headers without GN=
    study = load_study(ups_folder)
    layer = next(iter(study.modalities.values()))
    ups = layer.var[layer.var_names.str.contains("ups")]
    assert len(ups) >= 40 and (ups["gene"] != ups.index).mean() > 0.9
    assert ups.loc["P00441ups", "gene"] == "SOD1" and ups.loc["P12081ups", "gene"] == "HARS1"
    yeast = layer.var[~layer.var_names.str.contains("ups")]
    assert (yeast["gene"] == yeast.index).mean() > 0.9  # yeast rows keep the gene names of the input
    res = get_tool("differential_abundance")(study, {"modality": layer.uns["modality"], "group": "condition", "case": "ups_25fmol",
                                                     "control": "ups_12.5fmol", "lfc": 0.0},  # the ordinary test, not TREAT
                                             ToolContext(out_dir=tmp_path / "out"))
    hits = res.tables["results"].query("q < 0.05")
    spiked = hits[hits["feature"].map(layer.var["protein_ids"]).str.contains("ups")]
    assert len(spiked) >= 40 and len(spiked) >= 0.9 * len(hits)
    # a biologist reads SOD1, not P00441ups; only a second protein of a gene another row measures (yeast
    # Sod1 beside human SOD1) keeps its own id, so that the two never merge into one gene-level claim
    by_id = hits[hits["label"].str.contains("ups")]
    assert len(by_id) < 0.1 * len(hits) and not by_id["canonical"].any()
    assert (by_id["gene"].isin(layer.var.loc[layer.var_names.difference(by_id["feature"]), "gene"])).all()


def test_columns_marked_ignore_are_never_studied(nafld_dir):
    study = load_study(nafld_dir)
    prof = profile_study(study)
    marked = [v for v in prof.variables if v.name.lower().startswith("_ignore")]
    assert len(marked) > 20 and all(v.role == "ignored" for v in marked)
    plays = bulk_plays(prof)
    named = [s.params.get(k) for s in _steps(plays) for k in ("group", "variable", "batch")]
    assert not any(str(n).lower().startswith("_ignore") for n in named if n)
    assert not any("_IGNORE" in p.objective.title for p in plays)
    clustering = next(s for s in _steps(plays) if s.tool == "consensus_clustering")
    assert not any(v.lower().startswith("_ignore") for v in clustering.params.get("variables", []))


def test_several_diagnoses_beside_healthy_are_a_comparison_not_a_sample_type(nafld_dir):
    # 'healthy' and four diagnoses, two of them named '... disease': no within-disease restriction
    prof = profile_study(load_study(nafld_dir))
    assert prof.sample_type_column is None
    disease = next(f for f in prof.factors if len(f.levels) == 5)
    assert disease.references == ["healthy"]
    steps = _steps(bulk_plays(prof))
    assert not any("restrict" in s.params for s in steps)
    clustering = next(s for s in steps if s.tool == "consensus_clustering")
    assert "k_max" not in clustering.params  # 48 samples: the tool's default range
    assert prof.modalities[0].organism is None and any(s.tool == "enrichment_ora" for s in steps)  # human plasma


def test_level_spellings_differing_in_case_merge_when_each_is_used_once(tmp_path):
    # six runs named by raw-file paths; condition spelled Tumor / tumor / TUMOR  and Normal / normal  / NORMAL
    pg = pd.read_csv(UPS / "50vs5" / "proteinGroups.txt", sep="\t")
    sheet = pd.read_csv(UPS / "50vs5" / "samples.tsv", sep="\t")
    paths = {s: f"D:\\Data\\ramus\\{s}.raw" for s in sheet["sample"]}
    pg = pg.rename(columns={f"LFQ intensity {s}": p for s, p in paths.items()})
    d = tmp_path / "messy"
    d.mkdir()
    pg[["Protein IDs", "Gene names", *paths.values()]].rename(columns={"Protein IDs": "Protein.Group", "Gene names": "Genes"}).to_csv(
        d / "report.pg_matrix.tsv", sep="\t", index=False)
    spelled = ["Tumor", "tumor", "TUMOR ", "Normal", "normal ", "NORMAL"]
    pd.DataFrame({"Run": [paths[s] for s in sheet["sample"]], "condition": spelled}).to_csv(d / "samples.tsv", sep="\t", index=False)
    study = load_study(d)
    assert study.sample_matching[0].n_matched == 6
    assert sorted(study.clinical["condition"]) == ["Normal"] * 3 + ["Tumor"] * 3
    assert any("spellings merged" in n for n in study.sample_notes)
    prof = profile_study(study)
    assert [(c.case, c.control, c.n_case, c.n_control) for c in prof.contrasts] == [("Tumor", "Normal", 3, 3)]
    assert next(v for v in prof.variables if v.name == "Run").role == "technical"
    # yeast gene names and no organism in the annotation: not tested against human gene sets
    assert prof.modalities[0].organism == NOT_HUMAN
    assert not any(s.tool.startswith(("enrichment", "ppi")) for s in _steps(bulk_plays(prof)))


def test_unannotated_yeast_accessions_are_not_tested_against_human_sets(ups_folder, tmp_path):
    pg = pd.read_csv(ups_folder / "proteinGroups.txt", sep="\t").set_index("Protein IDs").filter(like="LFQ intensity ")
    d = tmp_path / "plain"
    d.mkdir()
    pg.rename(columns=lambda c: c.replace("LFQ intensity ", "")).rename_axis("protein").to_csv(d / "proteins.tsv", sep="\t")
    shutil.copy(ups_folder / "samples.tsv", d)
    study = load_study(d)
    layer = study.modalities["proteomics"]
    assert layer.uns["organism"] == NOT_HUMAN
    assert any("treated as another organism" in n for r in study.reports for n in r.notes)
    res = get_tool("differential_abundance")(study, {"modality": "proteomics", "group": "condition", "case": "ups_25fmol",
                                                     "control": "ups_12.5fmol", "lfc": 0.0},  # the ordinary test, not TREAT
                                             ToolContext(out_dir=tmp_path / "out"))
    assert len(res.tables["results"].query("q < 0.05")) >= 40  # the spike-in is still found
    with pytest.raises(ToolFailed, match="Homo sapiens only"):
        get_tool("enrichment_ora")(study, {"modality": "proteomics", "group": "condition", "case": "ups_25fmol", "control": "ups_12.5fmol",
                                           "library": "reactome"}, ToolContext(out_dir=tmp_path / "out"))
    # the run plans no pathway step and its report says why
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.runner import run_research

    run_research(d, tmp_path / "run", policy=HeuristicPolicy(), seed=0, study=study)
    trace = (tmp_path / "run" / "trace.jsonl").read_text()
    assert '"differential_abundance"' in trace and '"enrichment_' not in trace and '"ppi_network"' not in trace
    report = (tmp_path / "run" / "report.html").read_text()
    assert f"{NOT_HUMAN}: no shipped gene sets, so no pathway or network analysis" in report


def test_a_run_with_no_sample_matching_the_sheet_stops_with_the_reason(ups_folder, tmp_path):
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.runner import run_research
    from proteus.study import NoUsableDataError

    sheet = pd.read_csv(ups_folder / "samples.tsv", sep="\t")
    sheet.assign(sample=[f"patient_{i}" for i in range(len(sheet))]).to_csv(ups_folder / "samples.tsv", sep="\t", index=False)
    with pytest.raises(NoUsableDataError, match="no sample of any layer matches a row of the sample table.*0/6 samples"):
        run_research(ups_folder, tmp_path / "run", policy=HeuristicPolicy(), seed=0)


def test_a_multi_level_factor_is_ranked_by_its_whole_design_not_its_best_pair(nafld_dir):
    # five diagnoses of ~10 each beside 15-vs-33 and 13-vs-35 yes/no columns: the F-test pools four contrasts
    from proteus.design import factor_power, power

    prof = profile_study(load_study(nafld_dir))
    multi = next(f for f in prof.factors if len(f.levels) == 5)
    binary = [f for f in prof.factors if len(f.levels) == 2]
    assert binary and prof.factors[0].name == multi.name
    for f in binary:  # two levels: the same effective n as the contrast
        a, b = f.n_per_level.values()
        assert f.power == pytest.approx(power(a, b), abs=1e-3) and f.power < multi.power
    assert multi.power == pytest.approx(factor_power(multi.n_per_level), abs=1e-3)
    best_pair = max(power(*pair) for pair in zip(list(multi.n_per_level.values()), list(multi.n_per_level.values())[1:]))
    assert multi.power > best_pair
    objectives = [p.objective.title for p in bulk_plays(prof)]
    assert objectives[0] == f"Differences across {multi.name}"


def test_a_capped_workflow_keeps_the_design_tests_before_pathways(nafld_dir):
    # the five-level factor plans an F-test, four contrasts vs healthy and pathways; any cap keeps the tests
    from proteus.kg import KnowledgeGraph
    from proteus.policy.base import ResearchView
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.records import Objective

    prof = profile_study(load_study(nafld_dir))
    multi = next(f for f in prof.factors if len(f.levels) == 5)
    play = next(p for p in bulk_plays(prof) if p.objective.title == f"Differences across {multi.name}")
    obj = Objective(id="O1", **play.objective.model_dump(include={"title", "question", "family", "rationale"}))
    for cap in (8, 3):
        view = ResearchView(profile=prof, kg=KnowledgeGraph(), tools=[], objectives=[obj], check_step=lambda s: None,
                            max_steps_per_workflow=cap)
        steps = HeuristicPolicy().plan_workflow(view, obj).steps
        assert 1 < len(steps) <= cap
        assert steps[0].tool == "differential_anova" and all(s.tool == "differential_abundance" for s in steps[1:min(cap, 5)])
        assert all(s.params.get("control") == "healthy" for s in steps[1:min(cap, 5)])
