"""BioPlex PPI network of contrast hits (CPTAC UCEC tumour vs adjacent normal proteomics)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pandas as pd
import pytest

from proteus.study import Study
from proteus.tools.network import hit_network
from proteus.tools.registry import ToolContext, get_tool

cptac = pytest.importorskip("cptac")
UCEC = Path(cptac.__file__).parent / "endometrial" / "data"


@pytest.fixture(scope="module")
def ucec() -> Study:
    clin = pd.read_csv(UCEC / "clinical.txt", sep="\t", encoding="cp1252", index_col=0)
    df = pd.read_csv(UCEC / "proteomics.cct.gz", sep="\t", index_col=0)
    a = ad.AnnData(df.T.astype(float))
    a.var["gene"] = list(df.index)
    a.uns.update(modality="proteomics", level="sample", source="proteomics.cct.gz")
    return Study(root=UCEC, modalities={"proteomics": a}, clinical=clin)


def test_ppi_network_of_tumour_up_hits(ucec, tmp_path):
    params = {"modality": "proteomics", "group": "Proteomics_Tumor_Normal", "case": "Tumor",
              "control": "Adjacent_normal", "direction": "up", "min_abs_logfc": 1.0}
    res = get_tool("ppi_network")(ucec, params, ToolContext(out_dir=tmp_path, seed=3))
    edges = res.tables["edges"]
    assert res.metrics["n_edges"] == len(edges) > 20
    pairs = set(zip(edges["a"], edges["b"]))
    # proliferation complexes among the strongly tumour-up proteins: CMG helicase (MCM-GINS), cyclin B1-CDK1
    assert any({a, b} & {"MCM6", "MCM7"} and {a, b} & {"GINS3", "ASF1B"} for a, b in pairs)
    assert ("CCNB1", "CDK1") in pairs
    assert (edges[["logFC_a", "logFC_b"]] > 0).all().all()
    mods = res.tables["modules"]
    assert (mods["size"] >= 3).all() and len(mods) >= 3
    preds = {r.predicate for r in res.relations}
    assert preds == {"interacts_with", "member_of"}
    ia = next(r for r in res.relations if r.predicate == "interacts_with")
    assert ia.subject.type == ia.object.type == "protein" and "BioPlex" in ia.stats.extra["source"]
    mem = [r for r in res.relations if r.predicate == "member_of"]
    assert all(r.object.type == "module" for r in mem) and len(mem) == mods["size"].sum()
    assert res.figures[0].exists()


def test_hit_network_permutation_test_detects_a_complex():
    """MCM2-7 + ORC + GINS are far more interconnected than random proteins; the null is seeded."""
    complex_ = ["MCM2", "MCM3", "MCM4", "MCM5", "MCM6", "MCM7", "GINS1", "GINS2", "GINS3", "GINS4", "ORC2", "ORC3"]
    from proteus import genesets

    e = genesets.ppi_edges()
    background = sorted(set(e["a"].head(20000)) | set(complex_))
    g, st = hit_network(complex_, background, min_pint=0.5, permutations=200, seed=1)
    assert st["edges"] >= 10 and st["expected"] < 2 and st["p"] < 0.01
    _, st2 = hit_network(complex_, background, min_pint=0.5, permutations=200, seed=1)
    assert st2 == st
