"""Layouts from other labs, written by the tests from the real Ramus 2016 UPS1-in-yeast MaxQuant set.

Each test writes the same measurements the way another lab or tool would send them (DIA-NN with
Windows raw-file paths, a DIA-NN long report, TMT reporter columns over two plexes, a workbook
with a notes sheet first, messy level spellings, 0 for missing in log data, two MaxQuant runs in
one folder, a sample table in a subfolder) and checks that every sample is matched to its row
and that the profile sees the right groups.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from proteus.datasets import shared_dataset_dir
from proteus.io import load_study
from proteus.io.samples import match_samples
from proteus.policy.playbooks import bulk_plays
from proteus.profile import profile_study
from proteus.study import LayoutError, NoUsableDataError

RAMUS = shared_dataset_dir("ramus2016-ups1-maxquant") or Path("absent")
pytestmark = pytest.mark.skipif(not RAMUS.exists(), reason="shared dataset ramus2016-ups1-maxquant absent")

LFQ = "LFQ intensity "


@pytest.fixture(scope="module")
def ramus():
    """(proteinGroups table, sample table, LFQ matrix proteins x samples) of the primary comparison."""
    pg = pd.read_csv(RAMUS / "proteinGroups.txt", sep="\t", dtype={"Gene names": str})
    samples = pd.read_csv(RAMUS / "samples.tsv", sep="\t")
    lfq = pg[[LFQ + s for s in samples["sample"]]]
    lfq.columns = list(samples["sample"])
    return pg, samples, lfq


def _conditions(study) -> dict[str, int]:
    return profile_study(study).variable("condition").levels


def _expected(samples: pd.DataFrame) -> dict[str, int]:
    return samples["condition"].value_counts().to_dict()


def _diann_matrix(pg: pd.DataFrame, lfq: pd.DataFrame, run_names: list[str]) -> pd.DataFrame:
    out = pd.DataFrame({
        "Protein.Group": pg["Protein IDs"],
        "Protein.Ids": pg["Protein IDs"],
        "Protein.Names": pg["Fasta headers"].str.extract(r"^>\w+\|[^|]+\|(\S+)")[0],
        "Genes": pg["Gene names"],
        "First.Protein.Description": "",
    })
    vals = lfq.replace(0, np.nan)
    vals.columns = run_names
    return pd.concat([out, vals], axis=1)


def test_diann_windows_paths_with_a_sheet_keyed_on_them(ramus, tmp_path):
    pg, samples, lfq = ramus
    paths = [f"D:\\Data\\ramus\\{s}.raw" for s in samples["sample"]]
    _diann_matrix(pg, lfq, paths).to_csv(tmp_path / "report.pg_matrix.tsv", sep="\t", index=False)
    sheet = samples.drop(columns="sample").assign(**{"File.Name": paths})[["File.Name", "condition", "replicate"]]
    sheet.to_csv(tmp_path / "sample_sheet.tsv", sep="\t", index=False)

    study = load_study(tmp_path)
    a = study.modalities["proteomics"]
    assert sorted(a.obs_names) == sorted(samples["sample"])
    (rec,) = study.sample_matching
    assert (rec.n_matched, rec.n_samples, rec.left_out) == (6, 6, {})
    assert any("raw-file names" in n for n in study.sample_notes)
    assert _conditions(study) == _expected(samples)


@pytest.mark.slow
def test_run_on_windows_paths_prints_the_matching_and_compares_the_groups(ramus, tmp_path):
    pg, samples, lfq = ramus
    data = tmp_path / "data"
    data.mkdir()
    paths = [f"D:\\Data\\ramus\\{s}.raw" for s in samples["sample"]]
    _diann_matrix(pg, lfq, paths).to_csv(data / "report.pg_matrix.tsv", sep="\t", index=False)
    samples[["condition", "replicate"]].assign(run=paths).to_csv(data / "sample_sheet.tsv", sep="\t", index=False)
    r = subprocess.run([sys.executable, "-m", "proteus", "run", str(data), "--out", str(tmp_path / "run"), "--max-objectives", "2"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "6/6 samples matched to the 6-row sample table" in r.stderr
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert any("6/6 samples matched" in x for x in run["sample_matching"])
    assert "Samples matched to the sample table" in (tmp_path / "run" / "report.html").read_text()
    case, control = samples["condition"].unique()
    diff = [json.loads(x) for x in (tmp_path / "run" / "trace.jsonl").read_text().splitlines()]
    done = [d for d in diff if d.get("tool") == "differential_abundance" and not d.get("error")]
    assert done and done[0]["metrics"]["n_case"] == 3 and done[0]["metrics"]["n_control"] == 3


def test_sheet_with_raw_file_names_and_other_ids(ramus, tmp_path):
    """Sheet with its own ids and a column of raw-file names: the raw files name the samples (by stem)."""
    pg, samples, lfq = ramus
    paths = [f"/mnt/data/{s}.mzML" for s in samples["sample"]]
    _diann_matrix(pg, lfq, paths).to_csv(tmp_path / "report.pg_matrix.tsv", sep="\t", index=False)
    sheet = pd.DataFrame({"sample_id": [f"S{i:02d}" for i in range(6)], "raw_file": [f"{s}.RAW" for s in samples["sample"]],
                          "condition": samples["condition"]})
    sheet.loc[6] = ["S06", "blank_01.RAW", "blank"]  # a row without data
    sheet.to_csv(tmp_path / "samples.csv", index=False)

    study = load_study(tmp_path)
    (rec,) = study.sample_matching
    assert rec.n_matched == 6
    assert sorted(study.modalities["proteomics"].obs_names) == sorted(samples["sample"])
    assert study.clinical.loc[samples["sample"], "sample_id"].tolist() == [f"S{i:02d}" for i in range(6)]
    assert "6/6 samples matched" in rec.summary()


def test_unmatched_samples_are_listed_with_a_reason(ramus, tmp_path):
    pg, samples, lfq = ramus
    _diann_matrix(pg, lfq, list(samples["sample"])).to_csv(tmp_path / "report.pg_matrix.tsv", sep="\t", index=False)
    samples.iloc[:4].to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    (rec,) = load_study(tmp_path).sample_matching
    assert rec.n_matched == 4
    assert set(rec.left_out) == set(samples["sample"].iloc[4:])
    assert "left out" in rec.summary()


def _long_report(pg: pd.DataFrame, samples: pd.DataFrame, lfq: pd.DataFrame) -> pd.DataFrame:
    """The DIA-NN long report of these measurements: two precursors per protein group and run."""
    rng = np.random.default_rng(0)
    rows = []
    for i, r in pg.iterrows():
        for run in samples["sample"]:
            if lfq.loc[i, run] == 0:
                continue
            for p in range(2):
                rows.append({"File.Name": f"C:\\runs\\{run}.raw", "Run": run, "Protein.Group": r["Protein IDs"],
                             "Protein.Ids": r["Protein IDs"], "Protein.Names": "", "Genes": r["Gene names"],
                             "PG.MaxLFQ": lfq.loc[i, run], "Precursor.Id": f"PEP{i}_{p}2", "Precursor.Normalised": rng.lognormal(15),
                             "Q.Value": 0.001, "PG.Q.Value": 0.002})
    return pd.DataFrame(rows)


def test_diann_long_report_is_pivoted(ramus, tmp_path):
    pg, samples, lfq = ramus
    report = _long_report(pg, samples, lfq)
    # one group fails the precursor q-value in every run, another the protein-group q-value in one run
    failed = pg["Protein IDs"].iloc[0]
    report.loc[report["Protein.Group"] == failed, "Q.Value"] = 0.05
    half = pg["Protein IDs"].iloc[5]
    one_run = (report["Protein.Group"] == half) & (report["Run"] == samples["sample"].iloc[0])
    report.loc[one_run, "PG.Q.Value"] = 0.02
    report.to_csv(tmp_path / "report.tsv", sep="\t", index=False)
    samples.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)

    study = load_study(tmp_path)
    a = study.modalities["proteomics"]
    assert a.n_obs == 6 and set(a.obs_names) == set(samples["sample"])
    assert "PG.MaxLFQ" not in a.obs_names and "Q.Value" not in a.obs_names
    assert a.n_vars == len(pg) - 1
    gene = pg["Gene names"].iloc[2]
    col = list(a.var["gene"]).index(gene)
    np.testing.assert_allclose(a[samples["sample"].iloc[1]].X[0, col], np.log2(lfq.iloc[2, 1]))
    half_col = list(a.var["uniprot"]).index(half.split(";")[0])
    assert np.isnan(a[samples["sample"].iloc[0]].X[0, half_col])
    assert _conditions(study) == _expected(samples)


def test_maxquant_tmt_reporter_columns_over_two_plexes(ramus, tmp_path):
    pg, samples, lfq = ramus
    rng = np.random.default_rng(1)
    table = pg[["Protein IDs", "Majority protein IDs", "Gene names", "Fasta headers", "Reverse", "Potential contaminant"]].copy()
    sheet = []
    for plex in ("Plex1", "Plex2"):
        shift = rng.normal(0, 0.3, size=len(pg))  # plex effect
        for ch, s in enumerate(samples["sample"], start=1):
            table[f"Reporter intensity {ch} {plex}"] = lfq[s] * 1.1
            table[f"Reporter intensity corrected {ch} {plex}"] = lfq[s] * 2.0 ** shift
            table[f"Reporter intensity count {ch} {plex}"] = 3
            sheet.append({"sample": f"Reporter intensity corrected {ch} {plex}", "condition": samples["condition"].iloc[ch - 1]})
        table[f"Intensity {plex}"] = lfq.sum(axis=1)
    table.to_csv(tmp_path / "proteinGroups.txt", sep="\t", index=False)
    pd.DataFrame(sheet).to_csv(tmp_path / "experimental_design.tsv", sep="\t", index=False)

    study = load_study(tmp_path)
    a = study.modalities["proteomics"]
    assert a.n_obs == 12
    assert not {"Plex1", "Plex2"} & set(a.obs_names)  # per-plex sums are not samples
    (rec,) = study.sample_matching
    assert rec.n_matched == 12 and list(rec.rules) == ["file name"]  # "Reporter intensity corrected 1 Plex1" = "1 Plex1"
    assert study.clinical["plex"].value_counts().to_dict() == {"Plex1": 6, "Plex2": 6}
    assert {k: v // 2 for k, v in _conditions(study).items()} == _expected(samples)


def test_tmt_sample_sheet_naming_channel_and_plex(ramus, tmp_path):
    """A TMT design sheet with a Plex and a Channel column (no column names) and its own sample ids."""
    pg, samples, lfq = ramus
    table = pg[["Protein IDs", "Majority protein IDs", "Gene names"]].copy()
    sheet = []
    for plex in ("TMT_A", "TMT_B"):
        for ch, s in enumerate(samples["sample"], start=1):
            table[f"Reporter intensity corrected {ch} {plex}"] = lfq[s]
            sheet.append({"patient": f"P{len(sheet) + 1:02d}", "Plex": plex.lower(), "Channel": ch, "condition": samples["condition"].iloc[ch - 1]})
    table.to_csv(tmp_path / "proteinGroups.txt", sep="\t", index=False)
    pd.DataFrame(sheet).to_csv(tmp_path / "design.tsv", sep="\t", index=False)
    study = load_study(tmp_path)
    (rec,) = study.sample_matching
    assert rec.n_matched == 12 and list(rec.rules) == ["file name via column 'Channel + Plex'"]  # case ignored
    assert sorted(study.modalities["proteomics"].obs_names) == [f"P{i:02d}" for i in range(1, 13)]
    assert {k: v // 2 for k, v in _conditions(study).items()} == _expected(samples)


def test_workbook_with_a_notes_sheet_first(ramus, tmp_path):
    pg, samples, _ = ramus
    notes = pd.DataFrame({"item": [f"note {i}" for i in range(12)], "text": ["instrument settings, see methods"] * 12})
    settings = pd.DataFrame({"parameter": ["gradient (min)", "flow (nl/min)", "injection (ug)"], "value": [120, 300, 1]})
    with pd.ExcelWriter(tmp_path / "results.xlsx") as w:
        notes.to_excel(w, sheet_name="README", index=False)
        settings.to_excel(w, sheet_name="LC settings", index=False)
        pg.drop(columns=["Fasta headers"]).to_excel(w, sheet_name="proteins", index=False)
        samples.to_excel(w, sheet_name="design", index=False)
    study = load_study(tmp_path)
    (rec,) = study.sample_matching
    assert (rec.n_matched, rec.n_samples) == (6, 6)
    assert _conditions(study) == _expected(samples)
    readme = next(r for r in study.reports if r.path.endswith(":README"))
    assert readme.kind == "ignored"
    assert list(study.modalities) == ["proteomics"]
    lc = next(r for r in study.reports if r.path.endswith(":LC settings"))
    assert "not a data sheet" in lc.problem


def test_messy_level_spellings_are_merged(ramus, tmp_path):
    pg, samples, _ = ramus
    shutil.copy(RAMUS / "proteinGroups.txt", tmp_path)
    messy = samples.copy()
    top = messy["condition"].iloc[0]
    messy.loc[[1, 2], "condition"] = [top.upper(), f" {top.capitalize()} "]
    messy.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    study = load_study(tmp_path)
    assert _conditions(study) == _expected(samples)
    assert any("spellings merged" in n and "condition" in n for n in study.sample_notes)


def test_zero_in_log_scale_data_is_missing(ramus, tmp_path):
    pg, samples, lfq = ramus
    with np.errstate(divide="ignore"):
        logged = np.log2(lfq.where(lfq > 0)).fillna(0.0)
    logged.index = pg["Protein IDs"]
    logged.rename_axis("protein").to_csv(tmp_path / "protein_log2.tsv", sep="\t")
    samples.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    study = load_study(tmp_path)
    a = study.modalities["proteomics"]
    assert a.uns["transform"] == "none"
    assert np.nanmin(a.X) > 5
    assert int(np.isnan(a.X).sum()) == int((lfq == 0).to_numpy().sum())
    assert _conditions(study) == _expected(samples)


def test_two_maxquant_runs_with_distinct_samples_are_merged_with_run_as_batch(tmp_path):
    shutil.copytree(RAMUS / "50vs5", tmp_path / "run_b")
    (tmp_path / "run_a").mkdir()
    for f in ("proteinGroups.txt", "samples.tsv"):
        shutil.copy(RAMUS / f, tmp_path / "run_a")
    study = load_study(tmp_path)
    assert list(study.modalities) == ["proteomics"]
    a = study.modalities["proteomics"]
    assert a.n_obs == 12
    assert study.clinical["run"].value_counts().to_dict() == {"run_a": 6, "run_b": 6}
    levels = _conditions(study)
    assert len(levels) == 4 and set(levels.values()) == {3}
    assert study.sample_matching[0].n_matched == 12


def test_runs_sharing_sample_names_are_refused(tmp_path):
    shutil.copytree(RAMUS / "50vs5", tmp_path / "50vs5")
    shutil.copytree(RAMUS / "50vs0.5", tmp_path / "50vs0.5")
    with pytest.raises(LayoutError, match="share sample names"):
        load_study(tmp_path)


def test_sample_table_in_a_subfolder_is_a_sample_table(ramus, tmp_path):
    _, samples, _ = ramus
    shutil.copy(RAMUS / "proteinGroups.txt", tmp_path)
    (tmp_path / "annotation").mkdir()
    numeric = pd.DataFrame({"Raw file": [f"{s}.raw" for s in samples["sample"]], "fmol": samples["ups1_fmol_per_ug"],
                            "replicate": samples["replicate"], "injection": range(1, 7)})
    numeric.to_csv(tmp_path / "annotation" / "runs.txt", sep="\t", index=False)
    study = load_study(tmp_path)
    assert list(study.modalities) == ["proteomics"]
    assert study.modalities["proteomics"].n_obs == 6
    assert study.sample_matching[0].n_matched == 6
    assert study.clinical["fmol"].value_counts().to_dict() == samples["ups1_fmol_per_ug"].value_counts().to_dict()


def test_yeast_features_are_labelled_by_gene_names(ramus, tmp_path):
    pg, samples, lfq = ramus
    # MaxQuant without a Gene names column: genes come from the GN= tags of the Fasta headers
    pg.drop(columns=["Gene names"]).to_csv(tmp_path / "proteinGroups.txt", sep="\t", index=False)
    a = load_study(tmp_path).modalities["proteomics"]
    has_gene = pg["Gene names"].notna() & (pg["Potential contaminant"] != "+")
    expected = {g.split(";")[0] for g in pg.loc[has_gene, "Gene names"]}
    assert len(expected) > 700
    assert expected <= set(a.var["gene"])
    assert "ATG8" in a.var_names
    assert a.uns["organism"] == "Saccharomyces cerevisiae"

    d2 = tmp_path / "diann"
    d2.mkdir()
    _diann_matrix(pg, lfq, list(samples["sample"])).to_csv(d2 / "report.pg_matrix.tsv", sep="\t", index=False)
    b = load_study(d2).modalities["proteomics"]
    assert expected <= set(b.var["gene"])
    assert b.uns["organism"] == "Saccharomyces cerevisiae"


def test_entry_names_keep_each_features_organism_as_the_fasta_headers_do(ramus, tmp_path):
    """DIA-NN ``Protein.Names`` (UniProt entry names; the spike-in's carry the vendor's tag,
    ``XXXX_HUMAN_UPS``): each feature keeps its organism, and a spike-in protein whose symbol a
    background group has is its own gene, labelled as the MaxQuant reading (FASTA headers) labels it."""
    from proteus.stats.features import feature_labels

    pg, samples, lfq = ramus
    truth = json.loads((RAMUS / "truth.json").read_text())
    entry = pg["Fasta headers"].str.split(";").str[0].str.split("|").str[-1].str.split().str[0]
    (tmp_path / "diann").mkdir()
    _diann_matrix(pg, lfq, list(samples["sample"])).assign(**{"Protein.Names": entry}).to_csv(
        tmp_path / "diann" / "report.pg_matrix.tsv", sep="\t", index=False)
    b = load_study(tmp_path / "diann").modalities["proteomics"]
    (tmp_path / "mq").mkdir()
    for f in ("proteinGroups.txt", "samples.tsv"):
        shutil.copy(RAMUS / f, tmp_path / "mq")
    a = load_study(tmp_path / "mq").modalities["proteomics"]
    spike = {p.split(";")[0] for p in truth["true_positive_ids"]} - {p for p in b.var["uniprot"] if p.startswith("CON__")}
    org = b.var.set_index("uniprot")["organism"]
    assert org[org.index.isin(spike)].value_counts().to_dict() == {"Homo sapiens": len(spike)}  # a contaminant's header names none
    assert b.uns["organism"] == a.uns["organism"] != "Homo sapiens"
    la = pd.Series(feature_labels(a).to_numpy(), index=a.var["uniprot"])
    lb = pd.Series(feature_labels(b).to_numpy(), index=b.var["uniprot"])
    tagged = la[la.str.endswith(" (Homo sapiens)")]
    assert len(tagged) >= 2 and (lb[tagged.index] == tagged).all()


def test_yeast_layer_is_not_tested_against_human_gene_sets(tmp_path):
    from proteus.tools.registry import ToolContext, ToolFailed, get_tool

    for f in ("proteinGroups.txt", "samples.tsv"):
        shutil.copy(RAMUS / f, tmp_path)
    study = load_study(tmp_path)
    assert study.modalities["proteomics"].uns["organism"] == "Saccharomyces cerevisiae"
    profile = profile_study(study)
    assert "organism Saccharomyces cerevisiae" in profile.summary()
    planned = {s.tool for play in bulk_plays(profile) for s in play.steps}
    assert "differential_abundance" in planned and not planned & {"enrichment_ora", "enrichment_gsea", "ppi_network"}
    case, control = sorted(study.clinical["condition"].unique())
    params = {"modality": "proteomics", "group": "condition", "case": case, "control": control}
    for tool in ("enrichment_ora", "enrichment_gsea", "ppi_network"):
        with pytest.raises(ToolFailed, match="from Saccharomyces cerevisiae.*Homo sapiens only"):
            get_tool(tool)(study, params, ToolContext(out_dir=tmp_path / tool))


def test_human_layer_keeps_its_gene_sets():
    from proteus import genesets

    assert genesets.organism_problem("Homo sapiens") is None
    assert genesets.organism_problem(None) is None  # unknown organism: the identifier mapping decides
    assert "Mus musculus" in genesets.organism_problem("Mus musculus")


def test_spectronaut_pivot_report_with_raw_file_names(ramus, tmp_path):
    pg, samples, lfq = ramus
    report = pd.DataFrame({"PG.ProteinGroups": pg["Protein IDs"], "PG.Genes": pg["Gene names"], "PG.ProteinDescriptions": ""})
    vals = lfq.replace(0, np.nan)
    vals.columns = [f"[{i + 1}] {s}.raw.PG.Quantity" for i, s in enumerate(samples["sample"])]
    pd.concat([report, vals], axis=1).to_csv(tmp_path / "Report_protein.tsv", sep="\t", index=False)
    samples.assign(file=[f"{s}.raw" for s in samples["sample"]])[["file", "condition"]].to_csv(tmp_path / "conditions.tsv", sep="\t", index=False)
    study = load_study(tmp_path)
    a = study.modalities["proteomics"]
    assert sorted(a.obs_names) == sorted(samples["sample"])
    assert study.sample_matching[0].n_matched == 6
    assert "ATG8" in a.var_names  # gene names label the features, accessions kept
    assert a.var.loc["ATG8", "PG.ProteinGroups"] == "A6ZKM4;P38182"
    assert _conditions(study) == _expected(samples)


def test_recognised_unsupported_layouts_are_refused_by_name(ramus, tmp_path):
    pg, samples, lfq = ramus
    precursors = _diann_matrix(pg, lfq, list(samples["sample"]))
    precursors.insert(4, "Precursor.Id", [f"PEP{i}2" for i in range(len(pg))])
    only = tmp_path / "only"
    only.mkdir()
    precursors.to_csv(only / "report.pr_matrix.tsv", sep="\t", index=False)
    with pytest.raises(NoUsableDataError, match="DIA-NN precursor matrix"):
        load_study(only)

    both = tmp_path / "both"
    both.mkdir()
    precursors.to_csv(both / "report.pr_matrix.tsv", sep="\t", index=False)
    _diann_matrix(pg, lfq, list(samples["sample"])).to_csv(both / "report.pg_matrix.tsv", sep="\t", index=False)
    evidence = pd.DataFrame({"Sequence": ["PEPTIDEK"] * 3, "Raw file": samples["sample"].iloc[:3], "Intensity": [1e6, 2e6, 3e6]})
    evidence.to_csv(both / "evidence.txt", sep="\t", index=False)
    study = load_study(both)
    assert list(study.modalities) == ["proteomics"]
    assert study.modalities["proteomics"].uns["source"] == "report.pg_matrix.tsv"
    problems = {r.path: r.problem for r in study.reports if r.problem}
    assert "MaxQuant evidence" in problems["evidence.txt"] and "DIA-NN precursor matrix" in problems["report.pr_matrix.tsv"]


@pytest.mark.parametrize(("column", "row"), [
    ("D:\\Data\\run 7\\S1_A.raw", "S1_A"),
    ("/mnt/ms/S1_A.d", "s1_a.D"),
    ("S1_A.wiff", "S1_A.wiff.scan"),
    ("LFQ intensity S1_A", "S1_A.mzML"),
    ("S1_A MaxLFQ Intensity", "S1_A"),
    ("Reporter intensity corrected 3 S1_A", "3 S1_A"),
    ("[2] S1_A.raw.PG.Quantity", "C:/x/S1_A.raw"),
    ("S1_A.dia", "s1_a"),
])
def test_file_name_rule(column, row):
    mapping, rule = match_samples([column, "other"], pd.DataFrame({"x": [1, 2]}, index=[row, "unrelated"]))
    assert mapping == {column: row} and rule[column] in ("exact id", "file name")


def test_matching_rules_in_order_and_one_row_per_sample():
    table = pd.DataFrame({"raw": ["a.raw", "b.raw", "c.raw"]}, index=["A", "B", "C3L-00006"])
    mapping, rule = match_samples(["A", "b", "C3L-00006_T", "C3L-00006_N"], table)
    assert mapping == {"A": "A", "b": "B"}
    assert rule == {"A": "exact id", "b": "file name"}  # the two suffixed ids would collide: left out
    mapping, rule = match_samples(["C3L-00006_T"], table)
    assert rule == {"C3L-00006_T": "tumour/normal suffix"}


def test_small_panel_per_sample_stays_a_matrix(ramus, tmp_path):
    """Rows named like the samples, all values distinct: measurements (a cytokine panel), not a sample table."""
    pg, samples, _ = ramus
    shutil.copy(RAMUS / "proteinGroups.txt", tmp_path)
    samples.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    rng = np.random.default_rng(2)
    panel = pd.DataFrame(rng.lognormal(5, 1, size=(6, 8)), columns=[f"marker{i}" for i in range(8)])
    panel.insert(0, "sample", samples["sample"])
    panel.to_csv(tmp_path / "elisa_panel.tsv", sep="\t", index=False)
    study = load_study(tmp_path)
    assert len(study.modalities) == 2
    assert sorted(a.n_obs for a in study.modalities.values()) == [6, 6]


def test_parquet_report_needs_pyarrow_or_is_read(ramus, tmp_path):
    """DIA-NN 1.9+ writes report.parquet: read with pyarrow, else refused with the install hint."""
    pg, samples, _ = ramus
    shutil.copy(RAMUS / "proteinGroups.txt", tmp_path)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        (tmp_path / "report.parquet").write_bytes(b"PAR1\x00\x00fake")
        study = load_study(tmp_path)
        (rep,) = [r for r in study.reports if r.path == "report.parquet"]
        assert "pip install pyarrow" in rep.problem
        return
    report = pd.DataFrame({"Run": np.repeat(samples["sample"].to_numpy(), 2), "Protein.Group": ["P1", "P2"] * 6,
                           "Genes": ["G1", "G2"] * 6, "PG.MaxLFQ": np.arange(1, 13) * 1e6, "Q.Value": 0.001})
    report.to_parquet(tmp_path / "report.parquet")
    study = load_study(tmp_path)
    assert study.modalities["proteomics_2"].n_obs == 6


def test_spectronaut_long_report_is_pivoted(ramus, tmp_path):
    pg, samples, lfq = ramus
    names = {"Run": "R.FileName", "Protein.Group": "PG.ProteinGroups", "Genes": "PG.Genes", "PG.MaxLFQ": "PG.Quantity",
             "Q.Value": "EG.Qvalue", "PG.Q.Value": "PG.Qvalue", "Precursor.Id": "EG.PrecursorId"}
    report = _long_report(pg, samples, lfq)[list(names)].rename(columns=names)
    report.loc[report["PG.ProteinGroups"] == pg["Protein IDs"].iloc[0], "EG.Qvalue"] = 0.05
    report.to_csv(tmp_path / "Spectronaut_Report.tsv", sep="\t", index=False)
    samples.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    study = load_study(tmp_path)
    a = study.modalities["proteomics"]
    assert sorted(a.obs_names) == sorted(samples["sample"]) and a.n_vars == len(pg) - 1
    assert study.sample_matching[0].n_matched == 6
    gene = pg["Gene names"].iloc[2]
    np.testing.assert_allclose(a[samples["sample"].iloc[1], gene].X[0, 0], np.log2(lfq.iloc[2, 1]))
    assert _conditions(study) == _expected(samples)
