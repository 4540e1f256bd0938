"""No sample table: replicate groups are read from sample names, and the run still compares them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from proteus.io import load_study
from proteus.io.samples import groups_from_names


def test_groups_from_names():
    assert groups_from_names(["Ctrl_1", "Ctrl_2", "KO_rep1", "KO_rep2"]).tolist() == ["Ctrl", "Ctrl", "KO", "KO"]
    assert groups_from_names(["S001", "S002", "S003", "S004"]) is None  # ids, not groups
    assert groups_from_names(["Sample_1", "Sample_2", "Sample_3", "Sample_4"]) is None  # one group only


@pytest.mark.slow
def test_matrix_only_folder_compares_groups_from_names(ucec_study, tmp_path):
    """Real UCEC proteomics of 12 tumours and 12 adjacent normals, written with only sample names."""
    a = ucec_study.modalities["proteomics"]
    kind = ucec_study.clinical["Proteomics_Tumor_Normal"]
    tumours = [s for s in a.obs_names if kind.get(s) == "Tumor"][:12]
    normals = [s for s in a.obs_names if kind.get(s) == "Adjacent_normal"][:12]
    df = a[tumours + normals].to_df().T
    df.columns = [f"Tumour_{i + 1}" for i in range(12)] + [f"Normal_{i + 1}" for i in range(12)]
    data = tmp_path / "data"
    data.mkdir()
    df.rename_axis("gene").to_csv(data / "proteins.tsv", sep="\t")

    study = load_study(data)
    assert study.clinical["group"].value_counts().to_dict() == {"Tumour": 12, "Normal": 12}
    assert any("sample names" in n for r in study.reports for n in r.notes)

    r = subprocess.run([sys.executable, "-m", "proteus", "run", str(data), "--out", str(tmp_path / "run"), "--quiet", "--max-objectives", "3"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    kg = json.loads((tmp_path / "run" / "kg.json").read_text())
    changed = [e for e in kg["edges"] if e.get("predicate") in ("higher_in", "lower_in") and e["object"]["label"] == "group: Tumour vs Normal"]
    assert len(changed) > 50
    hyps = [json.loads(x) for x in (tmp_path / "run" / "hypotheses.jsonl").read_text().splitlines()]
    assert hyps
