"""Consensus clustering on CPTAC UCEC tumour proteomes (cptac 0.4.1)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from proteus.study import Study
from proteus.tools import ToolContext, ToolFailed, ToolInputError, get_tool
from proteus.tools.subtypes import consensus_matrices

cptac = pytest.importorskip("cptac")
UCEC = Path(cptac.__file__).parent / "endometrial" / "data"
TUMOUR = {"Proteomics_Tumor_Normal": "Tumor"}
KNOWN = ["MSI_status", "Genomics_subtype", "Histologic_type"]


@pytest.fixture(scope="module")
def ucec(tmp_path_factory) -> Study:
    clin = pd.read_csv(UCEC / "clinical.txt", sep="\t", index_col=0, encoding="cp1252")
    clin.index = clin.index.astype(str)
    df = pd.read_csv(UCEC / "proteomics.cct.gz", sep="\t", index_col=0).T
    a = ad.AnnData(df.to_numpy(float), obs=pd.DataFrame(index=df.index.astype(str)),
                   var=pd.DataFrame({"gene": df.columns.astype(str)}, index=df.columns.astype(str)))
    a.uns.update(modality="proteomics", level="sample", source="proteomics.cct.gz")
    return Study(tmp_path_factory.mktemp("ucec"), modalities={"proteomics": a}, clinical=clin)


PARAMS = {"modality": "proteomics", "restrict": TUMOUR, "n_resamples": 25, "k_max": 4, "variables": KNOWN}


@pytest.fixture(scope="module")
def result(ucec, tmp_path_factory):
    return get_tool("consensus_clustering")(ucec, PARAMS, ToolContext(out_dir=tmp_path_factory.mktemp("cc"), seed=7))


def test_consensus_matrix_properties():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (15, 30)), rng.normal(4, 1, (15, 30))])
    cons = consensus_matrices(X, [2, 3], n_resamples=20, seed=1)
    c = cons[2]
    np.testing.assert_allclose(c, c.T)
    assert np.all((c >= 0) & (c <= 1)) and np.all(np.diag(c) == 1)
    # two well separated groups: perfect consensus at k=2
    assert c[:15, :15].min() == 1 and c[:15, 15:].max() == 0


def test_consensus_clustering_ucec(result, ucec):
    labels = result.tables["labels"]
    assert result.metrics["k"] >= 2 and labels["cluster"].nunique() == result.metrics["k"]
    assert set(labels["sample"]) <= set(ucec.clinical.index[ucec.clinical["Proteomics_Tumor_Normal"] == "Tumor"])
    assoc = result.tables["associations"]
    assert assoc["p"].min() < 0.05, assoc
    sel = result.tables["k_selection"]
    assert sel["chosen"].sum() == 1 and sel["pac"].between(0, 1).all()
    preds = {r.predicate for r in result.relations}
    assert "higher_in" in preds
    marker = next(r for r in result.relations if r.predicate == "higher_in")
    assert marker.object.label.startswith("proteomics subtype: C") and marker.object.label.endswith("vs rest")
    assert result.figures[0].exists()
    # the study is not modified
    assert "cluster" not in ucec.clinical.columns


def test_consensus_clustering_reproducible(result, ucec, tmp_path):
    again = get_tool("consensus_clustering")(ucec, PARAMS, ToolContext(out_dir=tmp_path, seed=7))
    pd.testing.assert_frame_equal(again.tables["labels"], result.tables["labels"])
    pd.testing.assert_frame_equal(again.tables["k_selection"], result.tables["k_selection"])


def test_consensus_bad_inputs(ucec, tmp_path):
    ctx = ToolContext(out_dir=tmp_path)
    with pytest.raises(ToolInputError):
        get_tool("consensus_clustering")(ucec, {"modality": "proteomics", "k_min": 5, "k_max": 3}, ctx)
    few = ucec.subset_samples(list(ucec.clinical.index[:8]))
    with pytest.raises(ToolFailed):
        get_tool("consensus_clustering")(few, {"modality": "proteomics"}, ctx)
