"""Mutation tools on CPTAC UCEC (cptac 0.4.1): known cis effects within tumours.

Dou et al. 2020 (Cell 180:729) report lower PTEN and ARID1A protein in tumours mutated in those
genes; CTNNB1 hotspot mutations raise beta-catenin protein.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pandas as pd
import pytest

from proteus.study import Study
from proteus.tools import ToolContext, ToolFailed, ToolInputError, get_tool
from proteus.tools.mutation import mutation_matrix

cptac = pytest.importorskip("cptac")
UCEC = Path(cptac.__file__).parent / "endometrial" / "data"
TUMOUR = {"Proteomics_Tumor_Normal": "Tumor"}


def _layer(fname: str, kind: str) -> ad.AnnData:
    df = pd.read_csv(UCEC / fname, sep="\t", index_col=0).T
    a = ad.AnnData(df.to_numpy(float), obs=pd.DataFrame(index=df.index.astype(str)),
                   var=pd.DataFrame({"gene": df.columns.astype(str)}, index=df.columns.astype(str)))
    a.uns.update(modality=kind, level="sample", source=fname)
    return a


@pytest.fixture(scope="module")
def ucec(tmp_path_factory) -> Study:
    clin = pd.read_csv(UCEC / "clinical.txt", sep="\t", index_col=0, encoding="cp1252")
    clin.index = clin.index.astype(str)
    maf = pd.read_csv(UCEC / "somatic.maf.gz", sep="\t",
                      usecols=["Hugo_Symbol", "Variant_Classification", "Tumor_Sample_Barcode"])
    # MAF barcodes (C3L-00006_T) name participants; their tumour aliquot is the sample id (S001)
    tum = clin[clin["Proteomics_Tumor_Normal"] == "Tumor"]
    to_sample = dict(zip(tum["Proteomics_Participant_ID"], tum.index))
    maf["sample"] = maf["Tumor_Sample_Barcode"].str.replace(r"_T$", "", regex=True).map(to_sample)
    muts = maf.dropna(subset=["sample"]).rename(columns={"Hugo_Symbol": "gene", "Variant_Classification": "variant_class"})
    mods = {"proteomics": _layer("proteomics.cct.gz", "proteomics"),
            "transcriptomics": _layer("transcriptomics_linear.cct.gz", "transcriptomics")}
    return Study(tmp_path_factory.mktemp("ucec"), modalities=mods, clinical=clin,
                 mutations=muts[["sample", "gene", "variant_class"]].reset_index(drop=True))


@pytest.fixture
def ctx(tmp_path) -> ToolContext:
    return ToolContext(out_dir=tmp_path, seed=0)


def test_mutation_matrix_genotyped_samples_only(ucec):
    samples = list(ucec.modalities["proteomics"].obs_names)
    mat, geno = mutation_matrix(ucec, samples, "truncating")
    assert set(geno) <= set(ucec.mutations["sample"])
    assert not any(ucec.clinical.loc[s, "Proteomics_Tumor_Normal"] != "Tumor" for s in geno)
    assert mat.loc[:, "PTEN"].sum() > 30 and mat.dtypes.eq(bool).all()


def test_mutation_cis_effect_pten_arid1a(ucec, ctx):
    res = get_tool("mutation_cis_effect")(ucec, {"genes": ["PTEN", "ARID1A", "CTNNB1"], "restrict": TUMOUR}, ctx)
    tab = res.tables["cis_effects"].set_index(["modality", "gene"])
    for g in ["PTEN", "ARID1A"]:
        row = tab.loc[("proteomics", g)]
        assert row["mean_diff"] < 0 and row["q"] < 0.05, (g, row.to_dict())
    assert tab.loc[("proteomics", "CTNNB1"), "mean_diff"] > 0
    rel = {(r.subject.id, r.object.id, r.modality): r for r in res.relations}
    r = rel[("mutation:ARID1A", "protein:ARID1A", "proteomics")]
    assert r.predicate == "cis_effect_on" and r.stats.direction == "down"


def test_mutation_association_moderated_t(ucec, ctx):
    res = get_tool("mutation_association")(ucec, {"modality": "proteomics", "gene": "ARID1A", "restrict": TUMOUR}, ctx)
    tab = res.tables["mutation_association"].set_index("feature")
    assert tab.loc["ARID1A", "logFC"] < 0 and tab.loc["ARID1A", "q"] < 1e-3
    # logFC is the difference of group means on the observed values
    X = ucec.modalities["proteomics"].to_df()
    mat, geno = mutation_matrix(ucec, [s for s in X.index if ucec.clinical.loc[s, "Proteomics_Tumor_Normal"] == "Tumor"])
    v = X.loc[geno, "ARID1A"]
    m = mat["ARID1A"]
    assert tab.loc["ARID1A", "logFC"] == pytest.approx(v[m].mean() - v[~m].mean(), rel=1e-8)
    r = next(r for r in res.relations if r.subject.label == "ARID1A")
    assert r.predicate == "lower_in" and r.object.label == "ARID1A mutation: mutated vs wild-type"
    assert r.stats.extra["mutation"] == "mutation:ARID1A"
    top = get_tool("mutation_association")(ucec, {"modality": "proteomics", "top_n": 2, "restrict": TUMOUR}, ctx)
    assert len(top.metrics["genes"]) == 2 and top.metrics["genes"][0] == "PTEN"


def test_mutation_bad_inputs(ucec, ctx):
    with pytest.raises(ToolFailed):  # too rare to test
        get_tool("mutation_association")(ucec, {"modality": "proteomics", "gene": "NOT_A_GENE"}, ctx)
    with pytest.raises(ToolFailed):  # normals are not genotyped
        get_tool("mutation_association")(ucec, {"modality": "proteomics", "restrict": {"Proteomics_Tumor_Normal": "Adjacent_normal"}}, ctx)
    no_muts = Study(ucec.root, modalities=ucec.modalities, clinical=ucec.clinical)
    with pytest.raises(ToolInputError):
        get_tool("mutation_cis_effect")(no_muts, {}, ctx)
