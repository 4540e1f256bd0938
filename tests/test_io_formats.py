"""Readers per format: MaxQuant (real alphastats data), DIA-NN, FragPipe, plain matrices, h5ad, FCS."""

from __future__ import annotations

import gzip
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from proteus import datasets
from proteus.io import describe, load_study
from proteus.study import NoUsableDataError


@pytest.fixture(scope="module")
def nafld_dir(tmp_path_factory):
    pytest.importorskip("alphastats")
    return datasets.fetch("nafld-plasma", tmp_path_factory.mktemp("nafld"))


def test_maxquant_filters_and_metadata(nafld_dir):
    raw = pd.read_csv(nafld_dir / "proteinGroups.txt", sep="\t", low_memory=False)
    flagged = (raw["Reverse"] == "+") | (raw["Potential contaminant"] == "+") | (raw["Only identified by site"] == "+")
    kept = raw.loc[~flagged]
    lfq = [c for c in raw.columns if c.startswith("LFQ intensity ")]
    n_expected = int((kept[lfq].fillna(0) > 0).any(axis=1).sum())  # groups with at least one value

    s = load_study(nafld_dir)
    a = s.modalities["proteomics"]
    assert a.shape == (48, n_expected)
    assert a.uns["transform"] == "log2" and a.uns["scale"] == "log2"
    rep = next(r for r in s.reports if r.path == "proteinGroups.txt")
    assert rep.kind == "maxquant"
    assert f"{int((raw['Reverse'] == '+').sum())} 'Reverse' row(s) removed" in rep.notes
    assert not np.any(a.X == -np.inf) and np.nanmin(a.X) > 0
    # sample ids match the metadata's "sample" column; clinical indexed by it
    assert set(a.obs_names) == set(s.clinical.index)
    assert s.clinical.index.name == "sample"
    assert "disease" in s.clinical.columns
    # log2 of a known value, and gene / uniprot annotation
    row = kept[kept["Gene names"] == "SERPINE1"].iloc[0]
    sample = next(c for c in lfq if row[c] > 0)
    assert a[sample.removeprefix("LFQ intensity "), "SERPINE1"].X[0, 0] == pytest.approx(np.log2(row[sample]))
    assert a.var.loc["SERPINE1", "uniprot"] == "P05121"
    zero = next(c for c in lfq if row[c] == 0)
    assert np.isnan(a[zero.removeprefix("LFQ intensity "), "SERPINE1"].X[0, 0])  # zero -> NaN, not -inf


DIANN = (
    "Protein.Group\tProtein.Ids\tProtein.Names\tGenes\tFirst.Protein.Description\t"
    "D:\\runs\\2023\\S1.raw\tD:\\runs\\2023\\S2.raw\tD:\\runs\\2023\\S3.raw\n"
    "P02768\tP02768\tALBU_HUMAN\tALB\tAlbumin\t1.2e9\t1.1e9\t9.8e8\n"
    "P01024\tP01024\tCO3_HUMAN\tC3\tComplement C3\t3.4e7\t\t2.9e7\n"
    "P04114;P04114-2\tP04114;P04114-2\tAPOB_HUMAN\tAPOB;APOB2\tApolipoprotein B-100\t5.5e6\t6.1e6\t0\n"
    "Cont_P00761\tCont_P00761\tTRYP_PIG\t\tTrypsin\t2.0e8\t2.1e8\t1.9e8\n"
)

FRAGPIPE = (
    "Protein\tProtein ID\tEntry Name\tGene\tDescription\tCombined Total Peptides\t"
    "A_1 Spectral Count\tA_1 Intensity\tA_1 MaxLFQ Intensity\tB_1 Spectral Count\tB_1 Intensity\tB_1 MaxLFQ Intensity\n"
    "sp|P02768|ALBU_HUMAN\tP02768\tALBU_HUMAN\tALB\tAlbumin\t50\t300\t2.0e9\t1.9e9\t280\t1.8e9\t1.7e9\n"
    "sp|P01024|CO3_HUMAN\tP01024\tCO3_HUMAN\tC3\tComplement C3\t40\t120\t4.0e7\t3.9e7\t110\t3.5e7\t0\n"
    "contam_sp|P00761|TRYP_PIG\tP00761\tTRYP_PIG\t\tTrypsin\t5\t20\t1e8\t1e8\t22\t1e8\t1e8\n"
)


def test_diann_pg_matrix(tmp_path):
    (tmp_path / "report.pg_matrix.tsv").write_text(DIANN)
    s = load_study(tmp_path)
    a = s.modalities["proteomics"]
    assert list(a.obs_names) == ["S1", "S2", "S3"]
    assert list(a.var_names) == ["ALB", "C3", "APOB"]  # contaminant removed
    assert a.var.loc["APOB", "uniprot"] == "P04114"
    assert np.isnan(a["S3", "APOB"].X[0, 0])  # zero -> NaN
    assert np.isnan(a["S2", "C3"].X[0, 0])
    assert a["S1", "ALB"].X[0, 0] == pytest.approx(np.log2(1.2e9))
    assert s.reports[0].kind == "diann"


def test_fragpipe_combined_protein_prefers_maxlfq(tmp_path):
    (tmp_path / "combined_protein.tsv").write_text(FRAGPIPE)
    a = load_study(tmp_path).modalities["proteomics"]
    assert list(a.obs_names) == ["A_1", "B_1"]
    assert list(a.var_names) == ["ALB", "C3"]
    assert a["A_1", "ALB"].X[0, 0] == pytest.approx(np.log2(1.9e9))
    assert a.var["n_peptides"].tolist() == [50, 40]  # Combined Total Peptides
    assert np.isnan(a["B_1", "C3"].X[0, 0])


def _matrix(n_feat=30, n_samp=6, seed=0, linear=True):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(20, 1, size=(n_feat, n_samp)) if linear else rng.normal(0, 1, size=(n_feat, n_samp))
    genes = [f"GENE{i}" for i in range(n_feat)]
    samples = [f"P{j:02d}" for j in range(n_samp)]
    return pd.DataFrame(x, index=pd.Index(genes, name="gene"), columns=samples)


def test_orientation_features_by_samples_and_gzip(tmp_path):
    m = _matrix()
    m.to_csv(tmp_path / "proteins.csv.gz", compression="gzip")
    a = load_study(tmp_path).modalities["proteomics"]
    assert a.shape == (6, 30)
    assert a.uns["transform"] == "log2"
    np.testing.assert_allclose(a["P00", "GENE0"].X[0, 0], np.log2(m.loc["GENE0", "P00"]))


def test_orientation_from_clinical_ids_overrides_long_axis(tmp_path):
    # 40 samples x 10 proteins: the long axis is samples here, the clinical table says so
    m = _matrix(n_feat=10, n_samp=40).T
    m.index.name = "sample"
    m.to_csv(tmp_path / "protein_matrix.tsv", sep="\t")
    pd.DataFrame({"sample": m.index, "group": ["a", "b"] * 20}).to_csv(tmp_path / "clinical.csv", index=False)
    s = load_study(tmp_path)
    a = s.modalities["proteomics"]
    assert a.shape == (40, 10)
    assert list(a.var_names[:2]) == ["GENE0", "GENE1"]
    assert any("row ids match known sample ids" in n for n in s.reports[1].notes)


def test_orientation_without_clinical_uses_long_axis(tmp_path):
    m = _matrix(n_feat=10, n_samp=40).T  # samples are the long axis, no clinical: features are assumed long
    m.to_csv(tmp_path / "data.tsv", sep="\t")
    a = load_study(tmp_path).modalities["proteomics"]
    assert a.shape == (10, 40)  # the documented fallback: the longer axis holds features


def test_xlsx_with_several_sheets(tmp_path):
    with pd.ExcelWriter(tmp_path / "book.xlsx") as w:
        _matrix(seed=1).to_excel(w, sheet_name="proteome")
        _matrix(seed=2, linear=False).rename(index=lambda g: f"{g}-S{len(g)}").to_excel(w, sheet_name="phospho")
        pd.DataFrame({"sample": [f"P{j:02d}" for j in range(6)], "group": list("aabbcc")}).to_excel(
            w, sheet_name="samples", index=False
        )
        pd.DataFrame().to_excel(w, sheet_name="empty")
    s = load_study(tmp_path)
    assert set(s.modalities) == {"proteomics", "phosphoproteomics"}
    assert s.modalities["phosphoproteomics"].var["gene"].iloc[0] == "GENE0"
    assert s.modalities["proteomics"].uns["source"] == "book.xlsx:proteome"
    assert list(s.clinical["group"]) == list("aabbcc")
    book = next(r for r in s.reports if r.path == "book.xlsx")
    assert any("'empty'" in n for n in book.notes)


def test_two_files_of_one_modality_get_suffixed_names(tmp_path):
    _matrix(seed=1).to_csv(tmp_path / "proteomics_a.tsv", sep="\t")
    _matrix(seed=2).to_csv(tmp_path / "proteomics_b.tsv", sep="\t")
    s = load_study(tmp_path)
    assert set(s.modalities) == {"proteomics", "proteomics_2"}
    assert s.modalities["proteomics_2"].uns["source"] == "proteomics_b.tsv"


def test_modality_from_content(tmp_path):
    rng = np.random.default_rng(0)
    sites = pd.DataFrame(rng.normal(size=(20, 5)), index=[f"G{i}-S{i + 10}" for i in range(20)])
    sites.to_csv(tmp_path / "table1.tsv", sep="\t")
    cn = pd.DataFrame(np.where(rng.random((50, 5)) < 0.4, 0.0, rng.normal(0, 0.3, (50, 5))), index=[f"G{i}" for i in range(50)])
    cn.to_csv(tmp_path / "table2.tsv", sep="\t")
    mir = pd.DataFrame(rng.uniform(1, 12, (20, 5)), index=[f"hsa-miR-{i}-5p" for i in range(20)])
    mir.to_csv(tmp_path / "table3.tsv", sep="\t")
    s = load_study(tmp_path)
    kinds = {a.uns["source"]: name for name, a in s.modalities.items()}
    assert kinds == {"table1.tsv": "phosphoproteomics", "table2.tsv": "cna", "table3.tsv": "mirna"}


def test_h5ad_single_cell(tmp_path):
    pytest.importorskip("scanpy")
    datasets.fetch("pbmc68k", tmp_path)
    s = load_study(tmp_path)
    a = s.modalities["single_cell"]
    assert a.shape == (700, 765)
    assert a.uns["level"] == "cell" and set(a.obs["sample_id"]) == {"all"}
    assert s.cell_level() and not s.bulk()
    assert "single_cell: 700 cells" in describe(s)


def test_fcs_folder_calls_the_cytometry_reader(tmp_path):
    pytest.importorskip("proteus.io.cytometry")
    try:
        datasets.fetch("bodenmiller-bcrxl", tmp_path)
    except datasets.MissingSourceError as e:
        pytest.skip(str(e))
    s = load_study(tmp_path)
    a = s.modalities["cytometry"]
    assert a.uns["level"] == "cell" and a.n_vars == 24
    assert sorted(a.obs["sample_id"].unique()) == sorted(s.clinical.index)
    assert len(s.clinical) == 8 and "condition" in s.clinical
    kinds = {r.path: r.kind for r in s.reports}
    assert kinds["metadata.tsv"] == "sample_sheet" and kinds["panel.tsv"] == "panel"
    assert kinds["README.md"] == "ignored"


def test_fcs_without_cytometry_module_is_reported_not_fatal(tmp_path, monkeypatch):
    src = datasets._loaders.shared_dataset_dir("bodenmiller-bcrxl")
    if src is None:
        pytest.skip("shared bodenmiller folder absent")
    shutil.copy(src / "PBMC_patient1_Ref.fcs", tmp_path)
    monkeypatch.setitem(sys.modules, "proteus.io.cytometry", None)  # import now raises ImportError
    with pytest.raises(NoUsableDataError):
        load_study(tmp_path)
    _matrix().to_csv(tmp_path / "proteomics.tsv", sep="\t")
    s = load_study(tmp_path)
    rep = next(r for r in s.reports if r.path == "PBMC_patient1_Ref.fcs")
    assert "cytometry reader" in rep.problem and "PBMC_patient1_Ref.fcs" in rep.problem


def test_maf_sample_ids_mapped_through_clinical_column(tmp_path):
    maf = pd.DataFrame(
        {
            "Hugo_Symbol": ["TP53", "PTEN", "KRAS", "TTN"],
            "Variant_Classification": ["Missense_Mutation", "Nonsense_Mutation", "Missense_Mutation", "Silent"],
            "Tumor_Sample_Barcode": ["PT-01-T", "PT-02-T", "PT-99-T", "PT-01-T"],
            "HGVSp_Short": ["p.R175H", "p.R130*", "p.G12D", "p.A1A"],
        }
    )
    with gzip.open(tmp_path / "mutations.maf.gz", "wt") as fh:
        fh.write("#version 2.4\n")
        maf.to_csv(fh, sep="\t", index=False)
    pd.DataFrame({"id": ["S1", "S2"], "patient": ["PT-01", "PT-02"]}).to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    s = load_study(tmp_path)
    m = s.mutations
    assert list(m["sample"]) == ["S1", "S2", "PT-99-T", "S1"]
    assert list(m["silent"]) == [False, False, False, True]
    assert m.loc[0, "protein_change"] == "p.R175H"
    rep = next(r for r in s.reports if r.path == "mutations.maf.gz")
    assert any("2/3" in n and "'patient'" in n for n in rep.notes)
