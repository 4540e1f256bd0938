"""Differential abundance on the real UPS1-in-yeast spike-in (Ramus et al. 2016, MaxQuant LFQ).

The folder comes from the shared dataset store (``datasets.shared_dataset_dir``); tests skip
without it. Truth (UPS1 = changed, yeast = unchanged) is read from the folder's ``truth.json``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from proteus.datasets import shared_dataset_dir
from proteus.io import load_study

UPS1 = "ramus2016-ups1-maxquant"


@pytest.fixture(scope="module")
def ups_dir():
    d = shared_dataset_dir(UPS1)
    if d is None:
        pytest.skip(f"shared dataset {UPS1} absent")
    return d


@pytest.fixture(scope="module")
def ups_study(ups_dir, tmp_path_factory):
    """The primary contrast's folder alone (the sub-folders are separate MaxQuant runs)."""
    dest = tmp_path_factory.mktemp("ups1")
    for f in ("proteinGroups.txt", "samples.tsv"):
        (dest / f).write_bytes((ups_dir / f).read_bytes())
    return load_study(dest)


def test_maxquant_peptide_counts_kept(ups_dir, ups_study):
    raw = pd.read_csv(ups_dir / "proteinGroups.txt", sep="\t")
    a = ups_study.modalities["proteomics"]
    want = raw.set_index("Protein IDs")["Razor + unique peptides"]
    got = a.var.set_index("protein_ids")["n_peptides"]
    assert np.array_equal(got.to_numpy(), want.loc[got.index].to_numpy())
    assert got.min() >= 1


def _copy(src, dest):
    for f in ("proteinGroups.txt", "samples.tsv"):
        (dest / f).write_bytes((src / f).read_bytes())
    return load_study(dest)


def test_one_group_detected_proteins_are_tested_and_reported(ups_dir, tmp_path):
    """50 vs 0.5 fmol: most UPS1 proteins are absent from every 0.5 fmol run. The default resolves to
    the censored model (label-free, abundance-dependent missingness) and tests them, reported as
    detected in one group only; limma on observed values must skip them."""
    from proteus.tools.registry import ToolContext, get_tool

    sub = ups_dir / "50vs0.5"
    truth = json.loads((sub / "truth.json").read_text())
    study = _copy(sub, tmp_path)
    a = study.modalities["proteomics"]
    base = {"modality": "proteomics", "group": "condition", "case": "ups_50fmol", "control": "ups_0.5fmol"}
    tool = get_tool("differential_abundance")
    res = tool(study, base, ToolContext(out_dir=tmp_path, seed=0))
    assert res.metrics["method"] == "censored" and res.metrics["normalize"] == "median"
    assert any("depend on abundance" in r for r in res.metrics["choices"])
    t = res.tables["results"].merge(a.var[["protein_ids"]], left_on="feature", right_index=True)
    # which proteins are absent from the control runs, computed from the raw table
    raw = pd.read_csv(sub / "proteinGroups.txt", sep="\t").set_index("Protein IDs")
    ctrl = [c for c in raw.columns if c.startswith("LFQ intensity ") and "0.5fmol" in c]
    absent = set(raw.index[(raw[ctrl].fillna(0) == 0).all(axis=1)])
    only = t[t["detection"] == "only in ups_50fmol"]
    assert set(only["protein_ids"]) == absent & set(t["protein_ids"])
    case_cols = [c for c in raw.columns if c.startswith("LFQ intensity ") and "50fmol" in c]
    absent_case = set(raw.index[(raw[case_cols].fillna(0) == 0).all(axis=1)]) & set(t["protein_ids"])
    assert res.metrics["n_detected_only_case"] == len(only)
    assert res.metrics["n_detected_only_control"] == len(absent_case) == (t["detection"] == "only in ups_0.5fmol").sum()
    ups_only = only[only["protein_ids"].isin(truth["true_positive_ids"])]
    assert len(ups_only) >= 25  # the README counts 31 UPS1 proteins absent at 0.5 fmol
    assert (ups_only["q"] < 0.05).mean() > 0.9 and (ups_only["logFC"] > 0).all()
    assert f"{len(only)} in ups_50fmol" in res.summary
    # limma on observed values cannot test them: fewer than 2 values in the control group
    lim = tool(study, base | {"method": "limma"}, ToolContext(out_dir=tmp_path, seed=0))
    assert not set(only["feature"]) & set(lim.tables["results"]["feature"])
    assert set(only["feature"]) <= set(lim.tables["skipped"]["feature"])
    assert "detection" not in lim.tables["results"]
