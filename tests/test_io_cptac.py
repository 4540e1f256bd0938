"""load_study on the real CPTAC UCEC folder (cptac 0.4.1 wheel data)."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd


def _raw_shape(path, leave_out: set[str] = frozenset()) -> tuple[int, int]:
    """(features, samples) of a raw features x samples file, not counting the ``leave_out`` samples."""
    with gzip.open(path, "rt") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        n = sum(1 for _ in fh)
    return n, len(set(header[1:]) - leave_out)


def _flagged(ucec_dir) -> pd.DataFrame:
    """Rows of the raw sample table that its own 'Case_excluded' column flags."""
    raw = pd.read_csv(ucec_dir / "clinical.tsv", sep="\t", encoding="cp1252")
    return raw[raw["Case_excluded"] == "Yes"]


def test_ucec_layers_have_the_published_shapes(ucec_study, ucec_dir):
    s = ucec_study
    assert set(s.modalities) == {
        "proteomics", "phosphoproteomics", "acetylproteomics", "transcriptomics", "cna", "mirna",
    }
    n_flagged = len(_flagged(ucec_dir))  # flagged cases are left out of every layer
    assert n_flagged == 9
    assert s.modalities["proteomics"].shape == (153 - n_flagged, 10999)
    assert s.modalities["phosphoproteomics"].shape == (153 - n_flagged, 73212)
    # every layer keeps its raw features x samples shape, transposed (CNA drops its all-NaN genes)
    for name, fname in [("acetylproteomics", "acetylproteomics.tsv.gz"), ("transcriptomics", "transcriptomics.tsv.gz")]:
        n_feat, n_samp = _raw_shape(ucec_dir / fname, set(_flagged(ucec_dir).iloc[:, 0].astype(str)))
        assert s.modalities[name].shape == (n_samp, n_feat)


def test_ucec_case_excluded_flag_is_honoured_everywhere(ucec_study, ucec_dir):
    flagged = set(_flagged(ucec_dir).iloc[:, 0].astype(str))
    s = ucec_study
    assert flagged and not flagged & set(s.clinical.index)
    assert all(not flagged & set(a.obs_names) for a in s.modalities.values())
    assert not flagged & set(s.mutations["sample"])
    assert any("9 sample(s) flagged in 'Case_excluded'" in n for n in s.sample_notes)


def test_ucec_conventions(ucec_study):
    s = ucec_study
    for name, a in s.modalities.items():
        assert a.uns["level"] == "sample"
        assert a.uns["modality"] == name
        assert a.X.dtype == np.float64
        assert set(a.obs_names) <= set(s.clinical.index), name
        assert "gene" in a.var
    ph = s.modalities["phosphoproteomics"]
    assert ph.var.loc["AAAS-S495", "gene"] == "AAAS"
    assert s.modalities["proteomics"].uns["scale"] == "centred"
    assert s.modalities["proteomics"].uns["transform"] == "none"
    assert s.modalities["transcriptomics"].uns["scale"] == "log2"
    # values are the file's values (no transform of TMT log ratios)
    assert s.modalities["proteomics"][ "S001", "A1BG"].X[0, 0] == -1.18


def test_ucec_clinical_is_read_despite_cp1252_and_indexed_by_sample(ucec_study):
    c = ucec_study.clinical
    assert c.shape == (153 - 9, 178)
    assert c.loc["S001", "Proteomics_Participant_ID"] == "C3L-00006"
    assert "MSI_status" in c.columns


def test_ucec_mutations_are_mapped_to_clinical_tumour_samples(ucec_study, ucec_dir):
    m = ucec_study.mutations
    raw = pd.read_csv(ucec_dir / "somatic.maf.gz", sep="\t", usecols=["Tumor_Sample_Barcode"])
    # the flagged cases' mutations leave with them
    gone = raw["Tumor_Sample_Barcode"].str.split("_").str[0].isin(set(_flagged(ucec_dir)["Proteomics_Participant_ID"]))
    assert len(m) == int((~gone).sum())
    assert raw["Tumor_Sample_Barcode"].nunique() == 103
    assert m["sample"].nunique() == raw.loc[~gone, "Tumor_Sample_Barcode"].nunique()
    c = ucec_study.clinical
    assert set(m["sample"]) <= set(c.index)
    # mapped to tumour rows, never to the normal sample of the same participant
    assert (c.loc[m["sample"].unique(), "Proteomics_Tumor_Normal"] == "Tumor").all()
    first = m[m["sample_barcode"] == "C3L-00006_T"]["sample"].unique()
    assert list(first) == ["S001"]
    rep = next(r for r in ucec_study.reports if r.path == "somatic.maf.gz")
    assert any("103/103" in n for n in rep.notes)
