"""Registered differential tools on a Study built by hand from the CPTAC UCEC files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from proteus.records import Relation
from proteus.stats.limma import ebayes, lm_fit
from proteus.study import Study
from proteus.tools.registry import ToolContext, ToolFailed, ToolInputError, get_tool


def _cptac_dir() -> Path:
    spec = importlib.util.find_spec("cptac")
    if spec is None or spec.origin is None:
        pytest.skip("cptac is not installed (pip install cptac==0.4.1)")
    return Path(spec.origin).parent / "endometrial" / "data"


def _layer(path: Path, kind: str, nrows: int | None = None) -> ad.AnnData:
    df = pd.read_csv(path, sep="\t", index_col=0, nrows=nrows)
    df = df[~df.index.duplicated()]
    a = ad.AnnData(df.T.astype(float))
    a.var["gene"] = [str(i).split("-")[0] for i in df.index]
    a.uns.update(modality=kind, level="sample", source=str(path))
    return a


@pytest.fixture(scope="module")
def study() -> Study:
    d = _cptac_dir()
    clin = pd.read_csv(d / "clinical.txt", sep="\t", index_col=0, encoding="cp1252")
    mods = {"proteomics": _layer(d / "proteomics.cct.gz", "proteomics"),
            "phosphoproteomics": _layer(d / "phosphoproteomics_site.cct.gz", "phosphoproteomics", nrows=3000)}
    return Study(root=d, modalities=mods, clinical=clin)


@pytest.fixture
def ctx(tmp_path) -> ToolContext:
    return ToolContext(out_dir=tmp_path, seed=7)


TN = {"modality": "proteomics", "group": "Proteomics_Tumor_Normal", "case": "Tumor", "control": "Adjacent_normal"}


def test_limma_tool_table_relations_figures(study, ctx):
    res = get_tool("differential_abundance")(study, dict(TN), ctx)
    t = res.tables["results"]
    for col in ("feature", "gene", "logFC", "AveExpr", "t", "p", "q", "n_case", "n_control", "B"):
        assert col in t.columns
    assert np.isfinite(t[["logFC", "t", "p", "q"]].to_numpy()).all()
    assert t["p"].is_monotonic_increasing
    m = res.metrics
    assert m["n_tested"] + m["n_skipped"] == study.modalities["proteomics"].n_vars
    assert m["n_case"] == 104 and m["n_control"] == 25
    assert m["n_significant"] == m["n_up"] + m["n_down"] > 1000
    assert m["df_prior"] > 0 and m["s2_prior"] > 0
    assert m["lfc"] == 0  # TMT log ratios: no fold-change threshold chosen (it is for label-free technical replicates)
    # same numbers as calling the library directly on the tested features
    a = study.modalities["proteomics"]
    g = study.clinical.reindex(a.obs_names)["Proteomics_Tumor_Normal"]
    keep = g.isin(["Tumor", "Adjacent_normal"]).to_numpy()
    Y = pd.DataFrame(np.asarray(a.X[keep]).T, index=a.var_names)
    X = np.column_stack([np.ones(keep.sum()), (g[keep] == "Tumor").to_numpy(float)])
    eb = ebayes(lm_fit(Y.loc[t["feature"]].to_numpy(), X).subset([1]))
    np.testing.assert_allclose(t["t"].to_numpy(), eb.t[:, 0], rtol=1e-10)
    # relations: at most 150, typed, direction consistent with the sign
    assert 0 < len(res.relations) <= 150
    r0 = res.relations[0]
    assert isinstance(r0, Relation) and r0.subject.type == "protein"
    assert r0.object.label == "Proteomics_Tumor_Normal: Tumor vs Adjacent_normal"
    for r in res.relations:
        assert (r.predicate == "higher_in") == (r.stats.effect > 0) == (r.stats.direction == "up")
        assert r.stats.q < 0.05 and r.stats.effect_type == "log2FC" and r.modality == "proteomics"
        assert r.provenance.tool == "differential_abundance" and r.provenance.params["case"] == "Tumor"
    assert len(res.figures) == 2 and all(Path(f).stat().st_size > 1000 for f in res.figures)


def test_welch_mann_whitney_and_s0(study, ctx):
    for method, extra in (("welch", {}), ("mann_whitney", {}), ("welch", {"s0": 0.1})):
        res = get_tool("differential_abundance")(study, {**TN, "method": method, "min_valid": 3, **extra}, ctx)
        t = res.tables["results"]
        assert np.isfinite(t["p"]).all() and (t["p"] > 0).all() and (t["p"] <= 1).all()
        assert res.metrics["n_significant"] > 500, (method, extra)
        assert (res.tables["skipped"]["reason"].str.contains("fewer than 3")).any()


def test_welch_s0_permutation_is_reproducible(study, tmp_path):
    p = {**TN, "method": "welch", "s0": 0.1, "modality": "phosphoproteomics"}
    tool = get_tool("differential_abundance")
    fresh = Study(study.root, dict(study.modalities), study.clinical)  # its own contrast-table cache
    a = tool(study, p, ToolContext(out_dir=tmp_path, seed=3)).tables["results"]
    b = tool(fresh, p, ToolContext(out_dir=tmp_path, seed=3)).tables["results"]
    pd.testing.assert_frame_equal(a, b)
    c = tool(fresh, p, ToolContext(out_dir=tmp_path, seed=4)).tables["results"].set_index("feature")
    assert not np.allclose(a.set_index("feature")["p"], c.loc[a["feature"], "p"])  # the seed draws the permutations


def test_sites_use_feature_id_and_skip_sparse(study, ctx):
    res = get_tool("differential_abundance")(study, {**TN, "modality": "phosphoproteomics"}, ctx)
    assert res.metrics["n_skipped"] > 0
    assert all(r.subject.type == "phosphosite" and "-" in r.subject.label for r in res.relations)
    assert all(r.subject.label == r.stats.extra["feature_id"] for r in res.relations)


def test_covariates_drop_missing_samples(study, ctx):
    res = get_tool("differential_abundance")(
        study, {"modality": "proteomics", "group": "MSI_status", "case": "MSI-H", "control": "MSS",
                "covariates": ["Age", "Proteomics_TMT_batch"]}, ctx)
    m = res.metrics
    c = study.clinical
    in_groups = c["MSI_status"].isin(["MSI-H", "MSS"])
    assert m["n_samples_dropped_missing_covariate"] == int((in_groups & c["Age"].isna()).sum()) > 0
    assert m["n_case"] + m["n_control"] == int((in_groups & c["Age"].notna()).sum())
    assert any("factor" in n for n in m["covariates"]) and any("numeric" in n for n in m["covariates"])


def test_nothing_significant_still_draws(study, ctx):
    """Two random halves of the MSS tumours: a null contrast; the volcano must still be drawn."""
    s = study.subset_samples(list(study.clinical.index))
    mss = s.clinical.index[s.clinical["MSI_status"] == "MSS"]
    s.clinical = s.clinical.copy()
    s.clinical["half"] = pd.Series(np.nan, index=s.clinical.index, dtype=object)
    s.clinical.loc[mss, "half"] = np.where(np.arange(len(mss)) % 2 == 0, "A", "B")
    res = get_tool("differential_abundance")(s, {"modality": "proteomics", "group": "half", "case": "A",
                                                 "control": "B"}, ctx)
    assert res.metrics["n_significant"] <= 5
    assert len(res.figures) == 2 and all(Path(f).exists() for f in res.figures)


def test_bad_inputs(study, ctx):
    tool = get_tool("differential_abundance")
    with pytest.raises(ToolInputError, match="not a level"):
        tool(study, {**TN, "case": "Tumour"}, ctx)
    with pytest.raises(ToolInputError, match="not loaded"):
        tool(study, {**TN, "modality": "rna"}, ctx)
    with pytest.raises(ToolInputError, match="not a clinical column"):
        tool(study, {**TN, "covariates": ["age"]}, ctx)
    with pytest.raises(ToolInputError, match="different levels"):
        tool(study, {**TN, "control": "Tumor"}, ctx)
    with pytest.raises(ToolInputError, match="method='limma'"):
        tool(study, {**TN, "method": "welch", "covariates": ["Age"]}, ctx)
    with pytest.raises(ToolFailed, match="too few samples"):  # Myometrium normals are not paired with Age
        tool(study, {**TN, "control": "Myometrium_normal", "covariates": ["Age"]}, ctx)
    with pytest.raises(ToolFailed, match="confounded"):  # Enriched normals only in batches 4/5
        tool(study, {**TN, "case": "Enriched_normal", "control": "Myometrium_normal",
                     "covariates": ["Proteomics_TMT_batch"]}, ctx)


def test_all_missing_and_constant_features_are_skipped(study, ctx):
    s = study.subset_samples(list(study.clinical.index))
    a = s.modalities["proteomics"]
    X = np.asarray(a.X, dtype=float).copy()
    X[:, 0] = np.nan
    X[:, 1] = 1.0
    a.X = X
    res = get_tool("differential_abundance")(s, dict(TN), ctx)
    sk = res.tables["skipped"].set_index("feature")
    assert sk.loc[a.var_names[1], "reason"] == "constant"
    assert "fewer than" in sk.loc[a.var_names[0], "reason"]
    assert a.var_names[0] not in set(res.tables["results"]["feature"])


def test_anova_subtypes(study, ctx):
    res = get_tool("differential_anova")(study, {"modality": "proteomics", "group": "Genomics_subtype"}, ctx)
    t = res.tables["results"]
    assert set(res.metrics["levels"]) == {"CNV_high", "CNV_low", "MSI-H", "POLE"}
    assert res.metrics["n_significant"] > 100 and np.isfinite(t[["F", "p", "q"]].to_numpy()).all()
    r = res.relations[0]  # the F-test's finding: differs across the factor, highest in one level (no "vs rest" group)
    assert all(x.predicate == "differs_across" and x.object.id == "clinical_variable:Genomics_subtype" for x in res.relations)
    row = t.set_index("feature").loc[r.stats.extra["feature_id"]]
    assert r.stats.extra["top_level"] == row["top_level"] and r.stats.p == row["p"]
    assert row[f"mean_{row['top_level']}"] == max(row[f"mean_{lv}"] for lv in res.metrics["levels"])
    from proteus.kg import KnowledgeGraph
    from proteus.policy.patterns import _factor_differences, _rank

    kg = KnowledgeGraph()
    kg.add_relations(res.relations)
    (draft,) = _factor_differences(kg)
    best = min(res.relations, key=_rank)
    assert draft.statement.startswith(f"{best.subject.label}, ") and "differ across Genomics_subtype" in draft.statement
    # each hit by the level that drives it, on its side: MSI-H lowest rather than another level "highest" by a hair
    side = "highest" if best.stats.effect > 0 else "lowest"
    assert "vs rest" not in draft.statement and f"{best.subject.label} {side} in {best.stats.extra['level']}" in draft.statement
    brow = t.set_index("feature").loc[best.stats.extra["feature_id"]]
    means = [brow[f"mean_{lv}"] for lv in res.metrics["levels"]]
    assert brow[f"mean_{best.stats.extra['level']}"] == (max(means) if side == "highest" else min(means))
    assert any(x.stats.direction == "down" for x in res.relations[:20])
    with pytest.raises(ToolInputError, match="levels"):
        get_tool("differential_anova")(study, {"modality": "proteomics", "group": "Genomics_subtype",
                                               "levels": ["POLE", "nope"]}, ctx)
    with pytest.raises(ToolFailed, match="level"):
        get_tool("differential_anova")(study, {"modality": "proteomics", "group": "Gender"}, ctx)


@pytest.mark.parametrize("name, params", [("differential_abundance", TN),
                                           ("differential_anova", {"modality": "proteomics", "group": "Genomics_subtype"})])
def test_figures_off_draws_nothing_and_changes_no_result(study, tmp_path, name, params):
    """``ToolContext(figures=False)`` (``tools run --no-figures``): no figure written or returned; tables,
    relations and metrics equal those of the call that draws."""
    on, off = (get_tool(name)(Study(study.root, dict(study.modalities), study.clinical), dict(params),
                              ToolContext(out_dir=tmp_path / str(f), seed=7, figures=f)) for f in (True, False))
    assert len(on.figures) >= 1 and all(Path(f).is_file() for f in on.figures)
    assert off.figures == [] and not (tmp_path / "False").exists()
    assert on.tables.keys() == off.tables.keys()
    for k in on.tables:
        pd.testing.assert_frame_equal(on.tables[k], off.tables[k])
    assert on.relations == off.relations and on.metrics == off.metrics and on.summary == off.summary


def test_every_parameter_that_changes_the_table_keys_the_contrast_table():
    """The differential tool's parameters are the contrast-table key (proteus.stats.contrasts) plus the
    relations' FDR cut, and every tool that builds on a contrast takes the whole key: a parameter added
    to the differential test but not to the key would hand one step's table to another."""
    from proteus.stats.contrasts import TEST_FIELDS, test_key

    da = get_tool("differential_abundance").params
    assert set(da.model_fields) - {"fdr"} == TEST_FIELDS
    for name in ("enrichment_ora", "enrichment_gsea", "ppi_network"):
        assert TEST_FIELDS <= set(get_tool(name).params.model_fields), name
    base = da(modality="proteomics", group="g", case="a", control="b")
    assert test_key(base) == test_key(da(modality="proteomics", group="g", case="a", control="b", fdr=0.2))
    assert all(test_key(base) != test_key(base.model_copy(update={k: v})) for k, v in
               {"impute": "downshift", "min_valid": 3, "method": "welch", "normalize": "median", "variance_prior": "constant",
                "s0": 0.1, "covariates": ["x"], "control": "c", "lfc": 0.0}.items())
