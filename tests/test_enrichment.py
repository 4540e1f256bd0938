"""Pathway enrichment (ORA, preranked GSEA) on CPTAC UCEC tumour vs adjacent normal proteomics.

Expected biology (Dou et al. 2020, Cell 180:729; CPTAC pan-cancer): tumours gain translation /
ribosome biogenesis and proliferation (DNA replication, APC/C mitotic) proteins, and lose
stromal / vascular / haemostasis proteins of the normal endometrium.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from proteus import genesets
from proteus.study import Study
from proteus.tools.enrichment import contrast_table, enrich_hits, gene_level, ora, prerank_gsea
from proteus.tools.registry import ToolContext, ToolInputError, get_tool

cptac = pytest.importorskip("cptac")
UCEC = Path(cptac.__file__).parent / "endometrial" / "data"
CONTRAST = {"group": "Proteomics_Tumor_Normal", "case": "Tumor", "control": "Adjacent_normal"}


def _layer(path: Path, kind: str) -> ad.AnnData:
    df = pd.read_csv(path, sep="\t", index_col=0)
    a = ad.AnnData(df.T.astype(float))
    a.var["gene"] = [str(i).split("-")[0] for i in df.index]
    a.uns.update(modality=kind, level="sample", source=str(path))
    return a


@pytest.fixture(scope="module")
def ucec() -> Study:
    clin = pd.read_csv(UCEC / "clinical.txt", sep="\t", encoding="cp1252", index_col=0)
    mods = {"proteomics": _layer(UCEC / "proteomics.cct.gz", "proteomics"),
            "acetylproteomics": _layer(UCEC / "acetylproteomics.cct.gz", "acetylproteomics")}
    return Study(root=UCEC, modalities=mods, clinical=clin)


@pytest.fixture(scope="module")
def ora_up(ucec, tmp_path_factory):
    ctx = ToolContext(out_dir=tmp_path_factory.mktemp("ora"))
    return get_tool("enrichment_ora")(ucec, {"modality": "proteomics", "library": "reactome", **CONTRAST}, ctx)


def test_ora_finds_translation_and_proliferation_up_and_stroma_down(ora_up):
    t = ora_up.tables["enrichment"]
    up = t[t["direction"] == "up"].reset_index(drop=True)
    down = t[t["direction"] == "down"].reset_index(drop=True)
    assert "Translation" in set(up["name"].head(5))
    cc = up.head(30)
    cc = cc[cc["name"].str.contains("cell cycle|mitotic|DNA Replication", case=False) & (cc["q"] < 0.05)]
    assert len(cc) >= 3, up.head(30)[["name", "q"]]
    dna = up.set_index("set_id").loc["R-HSA-69306"]
    assert dna["q"] < 1e-6 and dna["odds_ratio"] > 2
    assert down.set_index("set_id").loc["R-HSA-69306", "q"] > 0.05  # not also "down": the test can fail
    assert {"Hemostasis", "Extracellular matrix organization"} <= set(down[down["q"] < 1e-4]["name"])
    assert ora_up.figures[0].exists()


def test_ora_p_value_recomputed_independently(ucec, ora_up):
    """One set's p from scratch: hits = q<0.05 & logFC>0 genes, background = measured ∩ annotated."""
    tab, _ = contrast_table(ucec, modality="proteomics", **CONTRAST)
    tab["symbol"] = genesets.to_symbols(tab["gene"].tolist())  # current symbols, as the sets use
    sets = genesets.load("reactome")
    annotated = set().union(*map(set, sets.values()))
    bg = set(tab["symbol"]) & annotated
    hits = set(tab.loc[(tab["q"] < 0.05) & (tab["logFC"] > 0), "symbol"]) & bg
    s = set(sets["R-HSA-69306"]) & bg
    a = len(hits & s)
    table = [[a, len(s) - a], [len(hits) - a, len(bg) - len(s) - len(hits) + a]]
    p_fisher = stats.fisher_exact(table, alternative="greater")[1]
    row = ora_up.tables["enrichment"].query("direction == 'up' and set_id == 'R-HSA-69306'").iloc[0]
    assert row["overlap"] == a and row["set_size"] == len(s) and row["n_background"] == len(bg)
    assert row["p"] == pytest.approx(p_fisher, rel=1e-6)


def test_ora_matches_gseapy_enrichr_p_values():
    gseapy = pytest.importorskip("gseapy")
    sets = {k: v for k, v in list(genesets.load("wikipathways").items())[:60]}
    bg = sorted(set().union(*map(set, sets.values())))
    rng = np.random.default_rng(1)
    hits = sorted(set(rng.choice(bg, 150, replace=False)) | set(sets[next(iter(sets))][:15]))
    ours = ora(hits, bg, sets, min_size=1, max_size=10_000).set_index("set_id")
    enr = gseapy.enrichr(gene_list=hits, gene_sets=sets, background=bg, outdir=None, no_plot=True).results
    enr = enr.set_index("Term")
    common = enr.index.intersection(ours.index)
    assert len(common) > 20
    np.testing.assert_allclose(ours.loc[common, "p"], enr.loc[common, "P-value"], rtol=1e-9)
    np.testing.assert_allclose(ours.loc[common, "odds_ratio"], enr.loc[common, "Odds Ratio"], rtol=1e-9)


def test_ora_relations(ora_up):
    rels = ora_up.relations
    assert rels and all(r.predicate == "enriched_in" for r in rels)
    r = next(r for r in rels if r.subject.label == "Translation")
    assert r.subject.type == "pathway" and r.object.label == "Proteomics_Tumor_Normal: Tumor vs Adjacent_normal"
    assert r.stats.effect_type == "odds_ratio" and r.stats.direction == "up" and r.stats.q < 0.05
    assert r.stats.extra["set_id"] == "R-HSA-72766" and len(r.stats.extra["genes"]) == r.stats.n


def test_ora_site_level_counts_each_protein_once(ucec, tmp_path):
    res = get_tool("enrichment_ora")(ucec, {"modality": "acetylproteomics", "library": "go_bp", "direction": "up",
                                            **CONTRAST}, ToolContext(out_dir=tmp_path))
    n_genes = ucec.modalities["acetylproteomics"].var["gene"].nunique()
    assert ucec.modalities["acetylproteomics"].n_vars > 1.5 * n_genes  # many sites per protein
    t = res.tables["enrichment"]
    assert res.metrics["n_background"] <= n_genes
    assert (t["n_hits"] <= t["n_background"]).all()
    assert all(len(g) == len(set(g)) for g in t["genes"])


def test_enrich_hits_accepts_uniprot_ids():
    sets = genesets.load("reactome")
    mcm = ["P49736", "P25205", "P33991", "P33992", "Q14566", "P33993"]  # MCM2-7 UniProt
    bg = mcm + sorted(set().union(*map(set, list(sets.values())[:200])))[:3000]
    res = enrich_hits(mcm, bg, "reactome", min_size=5)
    top = res.iloc[0]
    assert top["overlap"] == 6 and top["q"] < 0.05
    assert "MCM" in " ".join(top["genes"])


def test_bad_level_is_a_correctable_input_error(ucec, tmp_path):
    with pytest.raises(ToolInputError, match="levels"):
        get_tool("enrichment_ora")(ucec, {"modality": "proteomics", "group": "Proteomics_Tumor_Normal",
                                          "case": "Tumour"}, ToolContext(out_dir=tmp_path))


def test_gsea_is_reproducible_and_its_es_equals_gseapy(ucec, tmp_path):
    params = {"modality": "proteomics", "library": "wikipathways", "permutations": 100, **CONTRAST}
    r1 = get_tool("enrichment_gsea")(ucec, params, ToolContext(out_dir=tmp_path, seed=7))
    r2 = get_tool("enrichment_gsea")(ucec, params, ToolContext(out_dir=tmp_path, seed=7))
    pd.testing.assert_frame_equal(r1.tables["gsea"], r2.tables["gsea"])
    g = r1.tables["gsea"].set_index("name")
    assert g.loc["DNA Replication", "NES"] > 1.5 and g.loc["DNA Replication", "q"] < 0.05
    assert r1.relations and {r.stats.effect_type for r in r1.relations} == {"NES"}

    gseapy = pytest.importorskip("gseapy")
    tab, _ = contrast_table(ucec, modality="proteomics", **CONTRAST)
    genes = gene_level(tab)
    rnk = pd.Series(genes["t"].to_numpy(), index=genes["symbol"]).sort_values(ascending=False)
    wp = genesets.load("wikipathways")
    sub = {k: wp[k] for k in sorted(wp)[:12]}
    ours = prerank_gsea(rnk, sub, permutations=50, seed=1).set_index("set_id")
    ref = gseapy.prerank(rnk=rnk, gene_sets=sub, outdir=None, permutation_num=50, seed=1, threads=1,
                         min_size=15, max_size=500, no_plot=True).res2d.set_index("Term")
    common = ours.index.intersection(ref.index)
    assert len(common) >= 5
    np.testing.assert_allclose(ours.loc[common, "ES"], ref.loc[common, "ES"].astype(float), atol=1e-12)
    assert (np.sign(ours.loc[common, "NES"]) == np.sign(ref.loc[common, "NES"].astype(float))).all()


def test_gsea_significance_matches_gseapy_reference_code():
    algorithm = pytest.importorskip("gseapy.algorithm")
    from proteus.tools.enrichment import _gsea_significance

    rng = np.random.default_rng(0)
    null, es = rng.normal(0, 0.3, (40, 100)), rng.normal(0, 0.5, 40)
    ref = np.array(list(algorithm.gsea_significance(es, null)))
    nes, p, q = _gsea_significance(es, null)
    np.testing.assert_allclose(nes, ref[:, 1], rtol=1e-12)
    np.testing.assert_allclose(p, ref[:, 2], rtol=1e-12)
    np.testing.assert_allclose(q, np.minimum(ref[:, 3], 1), rtol=1e-12)


def test_case_vs_rest_table_uses_the_shared_covariate_encoding(ucec, tmp_path):
    """Tumour vs every other sample adjusted for TMT plex (kept: 17 plexes over ~150 samples) and the
    per-aliquot id (dropped, one level per sample); the adjusted t matches a direct limma fit."""
    from proteus.stats.design import covariate_block
    from proteus.stats.limma import moderated_test

    clin = ucec.clinical
    tab, method = contrast_table(ucec, modality="proteomics", group="Proteomics_Tumor_Normal", case="Tumor", control=None,
                                 covariates=["Proteomics_TMT_plex", "Proteomics_Aliquot_ID"])
    assert "Not adjusted for Proteomics_Aliquot_ID" in method and "Proteomics_TMT_plex" not in method
    a = ucec.modalities["proteomics"]
    samples = [s for s in a.obs_names if pd.notna(clin.loc[s, "Proteomics_Tumor_Normal"]) and pd.notna(clin.loc[s, "Proteomics_TMT_plex"])]
    Y = a[samples].to_df().T
    tum = (clin.loc[samples, "Proteomics_Tumor_Normal"] == "Tumor").to_numpy()
    Y = Y[(Y.loc[:, tum].notna().sum(axis=1) >= 2) & (Y.loc[:, ~tum].notna().sum(axis=1) >= 2)]  # the tool's filter
    feat = tab.sort_values("p").iloc[0]["feature"]
    X = np.column_stack([np.ones(len(samples)), (clin.loc[samples, "Proteomics_Tumor_Normal"] == "Tumor").to_numpy(float),
                         covariate_block(clin.loc[samples], ["Proteomics_TMT_plex"]).to_numpy()])
    assert X.shape[1] == 2 + 16
    ref = moderated_test(Y, X, coef=1).loc[feat]
    assert tab.set_index("feature").loc[feat, "t"] == pytest.approx(ref["t"], rel=1e-8)


def test_gsea_ranks_the_differential_steps_own_table_and_no_other(ucec, tmp_path, monkeypatch):
    """A pathway step naming the differential step's full test parameters ranks exactly that step's
    table (the contrast-table service computes it once); naming one different parameter (impute,
    min_valid) gives another ranking. Before the service, enrichment refused these parameters and
    re-ran the test with defaults."""
    from proteus.tools import enrichment

    rankings: list[pd.Series] = []

    def spy(ranking, *args, **kwargs):
        rankings.append(ranking.copy())
        return prerank_gsea(ranking, *args, **kwargs)

    monkeypatch.setattr(enrichment, "prerank_gsea", spy)
    test = {"modality": "proteomics", **CONTRAST, "impute": "downshift", "min_valid": 3}
    study = Study(ucec.root, dict(ucec.modalities), ucec.clinical)
    ctx = ToolContext(out_dir=tmp_path, seed=7)
    de = get_tool("differential_abundance")(study, test, ctx).tables["results"]
    assert de["n_imputed_case"].sum() + de["n_imputed_control"].sum() > 0  # the parameters change the table
    gsea = get_tool("enrichment_gsea")
    gsea(study, {**test, "permutations": 50}, ctx)
    assert sum(k[0] == "contrast_table" for k in study.cache) == 1  # computed once, for both steps
    expected = gene_level(de[["feature", "gene", "canonical", "logFC", "t", "p", "q"]])
    pd.testing.assert_series_equal(rankings[0], pd.Series(expected["t"].to_numpy(float), index=expected["symbol"]))

    fresh = Study(ucec.root, dict(ucec.modalities), ucec.clinical)  # no cache: the same table computed again
    gsea(fresh, {**test, "permutations": 50}, ToolContext(out_dir=tmp_path, seed=7))
    pd.testing.assert_series_equal(rankings[1], rankings[0])
    for other in ({"impute": "none"}, {"min_valid": 2}):
        gsea(fresh, {**test, **other, "permutations": 50}, ToolContext(out_dir=tmp_path, seed=7))
        r = rankings[-1]
        assert len(r) != len(rankings[0]) or not np.allclose(r.reindex(rankings[0].index), rankings[0], equal_nan=True)


def test_rank_enrichment_after_an_empty_hit_list_keeps_the_differential_test(ucec):
    """When a differential step finds nothing, the offline policy swaps its hit-list steps for GSEA of the
    same contrast with that step's full test parameters (so GSEA ranks that step's table)."""
    from llm_fixtures.study import make_view

    from proteus.policy.decisions import StepSpec
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.records import Objective, Step
    from proteus.stats.contrasts import TEST_FIELDS

    da = {"modality": "proteomics", **CONTRAST, "impute": "downshift", "min_valid": 3, "fdr": 0.01}
    done = [Step(id="s_1", tool="differential_abundance", params=da, status="done", metrics={"n_significant": 0, "n_tested": 10})]
    ora = StepSpec(tool="enrichment_ora", params={"modality": "proteomics", **CONTRAST, "direction": "up"})
    objective = Objective(id="obj_1", title="tumour", question="What differs in tumours?", family="differential")
    update = HeuristicPolicy().update_workflow(make_view(ucec), objective, done, [ora])
    assert [s.tool for s in update.steps] == ["enrichment_gsea"]
    assert {k: v for k, v in update.steps[0].params.items() if k in TEST_FIELDS} == {k: v for k, v in da.items() if k != "fdr"}


def test_case_vs_rest_refuses_test_options_it_would_ignore(ucec, tmp_path):
    ctx = ToolContext(out_dir=tmp_path)
    with pytest.raises(ToolInputError, match="impute"):
        get_tool("enrichment_gsea")(ucec, {"modality": "proteomics", "group": "Proteomics_Tumor_Normal", "case": "Tumor",
                                           "impute": "downshift"}, ctx)

