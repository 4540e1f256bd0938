"""proteus.datasets: manifest entries and offline writers."""

from __future__ import annotations

import importlib.util

import pytest

from proteus import datasets
from proteus.io import load_study

NAMES = ["cptac-ucec", "nafld-plasma", "gse7390-breast", "pbmc68k", "facs-diva", "bodenmiller-bcrxl"]


def test_manifest_lists_every_dataset_with_provenance():
    infos = datasets.list_datasets()
    assert [d.name for d in infos] == NAMES
    for d in infos:
        for field in ("title", "source", "citation", "licence", "obtained"):
            assert getattr(d, field).strip(), (d.name, field)
        assert d.files and d.size_mb > 0


@pytest.mark.parametrize("name", NAMES[1:])  # cptac-ucec is fetched once in conftest (ucec_dir)
def test_fetch_writes_the_manifest_files(name, tmp_path):
    info = next(d for d in datasets.list_datasets() if d.name == name)
    try:
        out = datasets.fetch(name, tmp_path / name)
    except datasets.MissingSourceError as e:
        pytest.skip(str(e))
    written = {p.name for p in out.iterdir()}
    assert set(info.files) <= written
    total = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    assert total == pytest.approx(info.size_mb, rel=0.5)


def test_ucec_fetch_matches_manifest(ucec_dir):
    info = next(d for d in datasets.list_datasets() if d.name == "cptac-ucec")
    assert {p.name for p in ucec_dir.iterdir()} == set(info.files)
    assert (ucec_dir / "clinical.tsv").read_text(encoding="utf-8").startswith("idx\tProteomics_Participant_ID")


def test_gse7390_loads_with_survival_columns(tmp_path):
    datasets.fetch("gse7390-breast", tmp_path)
    s = load_study(tmp_path)
    assert s.modalities["transcriptomics"].shape == (198, 76)
    c = s.clinical
    assert c.shape == (198, 6)
    assert set(c["event"].unique()) == {0, 1}
    assert c.loc["S001", "time"] == 723.0 and c.loc["S001", "er"] == "negative"


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(KeyError, match="cptac-ucec"):
        datasets.fetch("nope", "unused")


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cptac" else real(name, *a))
    with pytest.raises(datasets.MissingSourceError, match=r"pip install cptac==0\.4\.1"):
        datasets.fetch("cptac-ucec", tmp_path)
