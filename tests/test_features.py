"""One feature-to-gene rule (proteus.stats.features) and the relations built on it, on real MaxQuant
plasma data (nafld-plasma: protein groups without a gene name, several protein groups of one gene)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from proteus import genesets
from proteus.io import load_study
from proteus.stats.features import agrees_with_canonical, canonical_features, feature_genes, feature_labels
from proteus.tools import ToolContext, get_tool
from proteus.tools.enrichment import gene_level


@pytest.fixture(scope="module")
def nafld(nafld_dir):
    return load_study(nafld_dir)


def _raw_groups(nafld_dir) -> pd.DataFrame:
    path = next(p for p in nafld_dir.rglob("proteinGroups.txt"))
    return pd.read_csv(path, sep="\t", low_memory=False, usecols=["Gene names"])


def test_features_without_a_gene_name_have_no_gene(nafld, nafld_dir):
    a = nafld.modalities["proteomics"]
    genes = feature_genes(a)
    raw = _raw_groups(nafld_dir)
    named = {str(g).split(";")[0] for g in raw["Gene names"].dropna()}
    nameless = genes.index[genes.isna()]
    assert len(nameless) > 0
    # a feature without a gene is a protein group whose input names no gene and whose id the map does not know
    assert not set(nameless) & named
    assert all(s is None for s in genesets.to_symbols(list(a.var.loc[nameless, "uniprot"])))
    # every feature the input names a gene for keeps that gene
    has = genes.notna()
    assert set(genes[has]) <= named | set(genesets.to_symbols(list(a.var.loc[has, "uniprot"])))
    # display shows the id; enrichment's gene-level table never holds them
    labels = feature_labels(a)
    assert (labels[nameless] == nameless).all()


def test_canonical_feature_is_the_most_observed_group_of_its_gene(nafld):
    a = nafld.modalities["proteomics"]
    genes, canon, labels = feature_genes(a), canonical_features(a), feature_labels(a)
    n_obs = pd.Series(np.isfinite(np.asarray(a.X, dtype=float)).sum(0), index=genes.index)
    shared = genes[genes.notna() & genes.duplicated(keep=False)]
    assert shared.nunique() >= 5  # real duplicates: several protein groups of one gene
    for gene, feats in shared.groupby(shared).groups.items():
        chosen = [f for f in feats if canon[f]]
        assert len(chosen) == 1
        assert n_obs[chosen[0]] == n_obs[list(feats)].max()
        assert labels[chosen[0]] == gene  # the canonical group speaks for the gene
        assert all(labels[f] == f for f in feats if f != chosen[0])  # the others under their own id


@pytest.fixture(scope="module")
def drug_table(nafld, tmp_path_factory):
    tool = get_tool("differential_abundance")
    params = {"modality": "proteomics", "group": "Drug therapy (procedure) (416608005)", "case": "yes", "control": "no"}
    res = tool(nafld, params, ToolContext(out_dir=tmp_path_factory.mktemp("dt"), seed=0, figures=False))
    return tool, params, res


def test_relations_count_samples_tested_and_observed(drug_table):
    _, params, res = drug_table
    t = res.tables["results"].set_index("feature")
    m = res.metrics
    single = t[(t["q"] < 0.05) & (np.minimum(t["n_case"], t["n_control"]) <= 1)]
    assert len(single) > 0  # a significant feature seen at most once in one group
    assert m["n_significant_detection_only"] == len(single)
    ids = {r.stats.extra["feature_id"] for r in res.relations}
    assert not ids & set(single.index)  # a detection pattern is not written as a measured fold change
    assert "detection pattern" in res.summary
    # tested as a detection pattern: Fisher's exact test on the detected counts (scipy.stats as the oracle)
    from scipy.stats import fisher_exact

    for f, r in single.iterrows():
        table = [[r["n_case"], m["n_case"] - r["n_case"]], [r["n_control"], m["n_control"] - r["n_control"]]]
        assert r["detection_p"] == pytest.approx(fisher_exact(table)[1], rel=1e-9)
        assert f"{r['label']} observed in {r['n_case']}/{m['n_case']} yes vs {r['n_control']}/{m['n_control']} no" in res.summary


def test_minor_protein_group_never_speaks_for_its_gene(drug_table, nafld, tmp_path):
    tool, params, res = drug_table
    t = res.tables["results"]
    measured = np.minimum(t["n_case"], t["n_control"]) >= 2
    canon_q = t[t["canonical"] & t["gene"].notna()].set_index("gene")["q"]
    minor = t[~t["canonical"] & t["gene"].notna() & measured].copy()
    minor["canon_q"] = minor["gene"].map(canon_q)
    minor = minor[minor["canon_q"] > minor["q"]].sort_values("q")
    assert len(minor) > 0  # a minor group ranks above its gene's canonical group
    row = minor.iloc[0]
    fdr = float(np.sqrt(row["q"] * row["canon_q"]) if row["q"] > 0 else row["canon_q"] / 2)  # minor q < fdr < canonical q
    out = tool(nafld, params | {"fdr": fdr}, ToolContext(out_dir=tmp_path, seed=0, figures=False))
    by_feature = {r.stats.extra["feature_id"]: r for r in out.relations}
    assert row["feature"] not in by_feature and out.metrics["n_significant_minor_group"] >= 1
    assert not any(r.subject.label == row["gene"] for r in out.relations)
    # every relation says how many samples were tested and how many had a value, per group
    assert out.relations
    for r in out.relations:
        f = t.set_index("feature").loc[r.stats.extra["feature_id"]]
        assert r.stats.observed == {"yes": (int(f["n_case"]), out.metrics["n_case"]),
                                    "no": (int(f["n_control"]), out.metrics["n_control"])}
        assert r.stats.n == out.metrics["n_case"] + out.metrics["n_control"]
        assert r.stats.count_text() == f"n={r.stats.n} (observed in {int(f['n_case'])}/{out.metrics['n_case']} yes, {int(f['n_control'])}/{out.metrics['n_control']} no)"


def test_gene_level_tables_use_the_canonical_group(drug_table, nafld):
    _, _, res = drug_table
    t = res.tables["results"]
    gl = gene_level(t)
    assert gl["canonical"].all()
    assert gl["gene"].notna().all()
    a = nafld.modalities["proteomics"]
    canon = canonical_features(a)
    shared = t[t["gene"].notna() & t["gene"].duplicated(keep=False)]
    for gene, rows in shared.groupby("gene"):
        kept = gl.loc[gl["gene"] == gene, "feature"]
        if len(kept):
            assert canon[kept.iloc[0]]


def test_agrees_with_canonical_on_a_real_table(drug_table):
    _, _, res = drug_table
    t = res.tables["results"]
    ok = agrees_with_canonical(t, "logFC", 0.05)
    assert ok[t["canonical"]].all()
    minor = t[~t["canonical"] & t["gene"].notna()]
    canon = t[t["canonical"] & t["gene"].notna()].set_index("gene")
    for i, r in minor.iterrows():
        c = canon.loc[r["gene"]] if r["gene"] in canon.index else None
        expect = c is not None and c["q"] < 0.05 and np.sign(c["logFC"]) == np.sign(r["logFC"])
        assert bool(ok[i]) == bool(expect)


def test_every_tool_labels_relations_by_the_one_rule(nafld, tmp_path):
    """Co-abundance modules and clinical correlations name a feature as the differential test does:
    its gene for the canonical group, else its own id."""
    a = nafld.modalities["proteomics"]
    labels = feature_labels(a)
    numeric = nafld.clinical.apply(lambda s: pd.to_numeric(s, errors="coerce")).notna().sum()
    variable = str(numeric.idxmax())
    ctx = ToolContext(out_dir=tmp_path, seed=0, figures=False)
    rels = get_tool("coabundance_modules")(nafld, {"modality": "proteomics"}, ctx).relations
    rels += get_tool("clinical_correlation")(nafld, {"modality": "proteomics", "variable": variable, "fdr": 0.25}, ctx).relations
    featured = [r for r in rels if "feature_id" in r.stats.extra]
    assert {r.provenance.tool for r in featured} == {"coabundance_modules", "clinical_correlation"}
    for r in featured:
        assert r.subject.label == labels[r.stats.extra["feature_id"]]
    assert any(r.subject.label != r.stats.extra["feature_id"] for r in featured)  # a group named by its gene, not its id


def test_anova_relations_count_every_level_and_follow_the_gene_rule(nafld, tmp_path):
    res = get_tool("differential_anova")(nafld, {"modality": "proteomics", "group": "disease", "fdr": 0.1},
                                         ToolContext(out_dir=tmp_path, seed=0, figures=False))
    t = res.tables["results"].set_index("feature")
    per_level = res.metrics["n_per_level"]
    labels = feature_labels(nafld.modalities["proteomics"])
    assert res.relations
    for r in res.relations:
        f = r.stats.extra["feature_id"]
        assert r.stats.observed == {lv: (int(t.at[f, f"n_{lv}"]), n) for lv, n in per_level.items()}
        assert r.stats.n == sum(per_level.values()) and r.subject.label == labels[f]
        assert min(k for k, _ in r.stats.observed.values()) >= 2
