"""Differential abundance on the real UPS1-in-yeast spike-in (Ramus et al. 2016, MaxQuant LFQ).

The folder comes from the shared dataset store (``datasets.shared_dataset_dir``); tests skip
without it. Truth (UPS1 = changed, yeast = unchanged) is read from the folder's ``truth.json``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from proteus.datasets._loaders import shared_dataset_dir
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
