"""The pooled contrast (every non-reference level vs the reference, on the full design) and F-test hits
described by the level that drives them, on the alphastats NAFLD plasma study (``nafld_dir``: a
five-level diagnosis column with a control-like level, and two yes/no therapy columns)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from proteus.io import load_study
from proteus.profile import profile_study
from proteus.tools.registry import ToolContext, get_tool


@pytest.fixture(scope="module")
def nafld(nafld_dir):
    study = load_study(nafld_dir)
    return study, profile_study(study)


def _pooled(prof):
    return next(c for c in prof.contrasts if c.kind == "pooled_vs_reference")


def _complete(study):
    """The study restricted to protein groups measured in every sample."""
    from proteus.study import Study

    a = study.modalities["proteomics"]
    a = a[:, np.isfinite(np.asarray(a.X, dtype=float)).all(axis=0)].copy()
    return Study(root=study.root, modalities={"proteomics": a}, clinical=study.clinical)


def test_a_factor_with_a_reference_gets_a_pooled_contrast_ranked_by_power(nafld):
    from proteus.design import pooled_power, power

    _, prof = nafld
    c = _pooled(prof)
    factor = next(f for f in prof.factors if f.name == c.group)
    assert c.control == factor.references[0]
    assert sorted(c.case_levels) == sorted(lv for lv in factor.levels if lv not in factor.references)
    assert c.n_case == sum(factor.n_per_level[lv] for lv in c.case_levels)
    assert c.power == pytest.approx(pooled_power([factor.n_per_level[lv] for lv in c.case_levels], factor.n_per_level[c.control]), abs=1e-3)
    singles = [x for x in prof.contrasts if x.group == c.group and x.kind == "vs_reference"]
    assert len(singles) == len(c.case_levels)
    assert all(c.power > x.power for x in singles)  # more samples behind one question
    assert c.power < power(c.n_case, c.n_control) + 1e-9  # never more than the two pools as if they were one group each
    mine = [x for x in prof.contrasts if x.group == c.group]
    assert mine[0] == c  # most powerful first within its factor
    # the pool holds every other column's groups, yet other columns' contrasts are not dropped as its duplicates
    assert {x.group for x in prof.contrasts} == {f.name for f in prof.factors}
    assert any("pooled" in t for t in factor.tests)


def test_the_pooled_contrast_is_r_limma_contrasts_fit_on_the_full_design(nafld, tmp_path):
    """R: ``fit <- lmFit(y, model.matrix(~ 0 + g)); eBayes(contrasts.fit(fit, c(-1, 1/m, ..., 1/m)))``, the
    reference's column first: the mean level effect against the reference, residual variance of all levels."""
    study, prof = nafld
    c = _pooled(prof)
    study = _complete(study)
    res = get_tool("differential_abundance")(study, {"modality": "proteomics", "group": c.group, "case": c.case, "control": c.control,
                                                     "case_levels": c.case_levels, "method": "limma", "normalize": "none", "lfc": 0.0},
                                             ToolContext(out_dir=tmp_path, seed=0, figures=False))
    tab = res.tables["results"].set_index("feature")
    if shutil.which("Rscript") is None or subprocess.run(["Rscript", "-e", "suppressMessages(library(limma))"], capture_output=True).returncode != 0:
        pytest.skip("Rscript with limma not installed")
    a = study.modalities["proteomics"]
    g = study.sample_table("proteomics")[c.group].astype(str)
    codes = pd.Series(pd.Categorical(g, categories=[c.control, *c.case_levels]).codes, index=g.index)
    pd.DataFrame(np.asarray(a.X, dtype=float).T, index=a.var_names, columns=a.obs_names).to_csv(tmp_path / "y.tsv", sep="\t")
    codes.to_frame("g").to_csv(tmp_path / "g.tsv", sep="\t")
    m = len(c.case_levels)
    (tmp_path / "run.R").write_text(
        f'setwd("{tmp_path}")\nsuppressMessages(library(limma))\n'
        "y <- as.matrix(read.delim('y.tsv', row.names = 1, check.names = FALSE))\n"
        "g <- factor(read.delim('g.tsv', row.names = 1)[colnames(y), 1])\n"
        f"fit <- eBayes(contrasts.fit(lmFit(y, model.matrix(~ 0 + g)), c(-1, rep(1 / {m}, {m}))))\n"
        "write.table(data.frame(logFC = fit$coefficients[, 1], t = fit$t[, 1], p = fit$p.value[, 1]), 'out.tsv', sep = '\\t', quote = FALSE)\n")
    run = subprocess.run(["Rscript", str(tmp_path / "run.R")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    r = pd.read_csv(tmp_path / "out.tsv", sep="\t", index_col=0).loc[tab.index]
    assert len(tab) > 100
    np.testing.assert_allclose(tab["logFC"], r["logFC"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(tab["t"], r["t"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tab["p"], r["p"], rtol=1e-4, atol=1e-12)


def test_pooled_relations_need_every_level_on_the_side_of_the_pooled_effect(nafld, tmp_path):
    study, prof = nafld
    c = _pooled(prof)
    res = get_tool("differential_abundance")(study, {"modality": "proteomics", "group": c.group, "case": c.case, "control": c.control,
                                                     "case_levels": c.case_levels}, ToolContext(out_dir=tmp_path, seed=0, figures=False))
    tab = res.tables["results"]
    cols = [f"logFC[{lv}]" for lv in c.case_levels]
    assert set(cols) <= set(tab.columns)
    # the level effects are each level's own mean difference from the reference
    g = study.sample_table("proteomics")[c.group].astype(str)
    row = tab[tab["levels_agree"]].iloc[0]
    a = study.modalities["proteomics"]
    from proteus.tools.qc import normalize_layer

    x = pd.Series(np.asarray(normalize_layer(a, method="vsn")[:, [row["feature"]]].X, dtype=float).ravel(), index=a.obs_names)
    lv = c.case_levels[0]
    assert row[f"logFC[{lv}]"] == pytest.approx(x[g == lv].mean() - x[g == c.control].mean(), abs=0.05)
    sig = tab[tab["q"] < 0.05]
    split = sig[~sig["levels_agree"]]
    assert len(res.relations) == int(sig["levels_agree"].sum()) and res.metrics["n_significant_not_shared"] == len(split)
    for r in res.relations:
        effects = r.stats.extra["level_effects"]
        assert set(effects) == set(c.case_levels)
        assert all(np.sign(e) == np.sign(r.stats.effect) for e in effects.values())
    # a feature whose pooled effect hides a level going the other way is in the table, never in the graph
    disagree = tab[~tab["levels_agree"] & tab[cols].notna().all(axis=1)]
    assert len(disagree) and not {r.stats.extra["feature_id"] for r in res.relations} & set(disagree["feature"])
    # its held-out re-test sees the pooled levels as one group against the reference
    if res.relations:
        from proteus.edge_data import edge_design
        from proteus.records import Provenance

        rel = res.relations[0].model_copy(update={"provenance": Provenance(tool="differential_abundance", params=res.relations[0].provenance.params)})
        d = edge_design(study, rel)
        assert not isinstance(d, str)
        assert int(d.labels.sum()) == c.n_case and int((~d.labels).sum()) == c.n_control


def test_a_pooled_case_needs_a_model_that_keeps_the_levels(nafld, tmp_path):
    from proteus.tools.registry import ToolInputError

    study, prof = nafld
    c = _pooled(prof)
    base = {"modality": "proteomics", "group": c.group, "case": c.case, "control": c.control, "case_levels": c.case_levels}
    with pytest.raises(ToolInputError, match="full design"):
        get_tool("differential_abundance")(study, base | {"method": "welch"}, ToolContext(out_dir=tmp_path, seed=0, figures=False))
    # a model that names one pooled level as the case gets the pool's own label, never that level's
    res = get_tool("differential_abundance")(study, base | {"case": c.case_levels[0]}, ToolContext(out_dir=tmp_path, seed=0, figures=False))
    assert res.metrics["n_case"] == c.n_case and all(r.object.label.startswith(f"{c.group}: pooled ") for r in res.relations)
    from proteus.policy.decision_schemas import RunNames, tool_step_schema

    params = tool_step_schema(get_tool("differential_abundance"), RunNames.of(prof), required_only=False)["properties"]["params"]
    variant = next(v for v in params.get("anyOf", [params]) if v["properties"]["group"].get("const") == c.group)
    assert set(c.case_levels) <= set(variant["properties"]["case_levels"]["items"]["enum"])  # a model can name the pool's levels
    with pytest.raises(ToolInputError, match="not a level"):
        get_tool("differential_abundance")(study, base | {"case_levels": [*c.case_levels[:1], "no such level"]},
                                           ToolContext(out_dir=tmp_path, seed=0, figures=False))


def test_f_test_hits_are_described_by_the_level_that_drives_them(nafld, tmp_path):
    study, prof = nafld
    f = next(f for f in prof.factors if len(f.levels) > 2)
    res = get_tool("differential_anova")(study, {"modality": "proteomics", "group": f.name, "levels": f.levels},
                                         ToolContext(out_dir=tmp_path, seed=0, figures=False))
    tab = res.tables["results"].set_index("feature")
    assert res.relations
    lowest = 0
    for r in res.relations:
        row = tab.loc[r.stats.extra["feature_id"]]
        means = row[[f"mean_{lv}" for lv in f.levels]].astype(float)
        level = r.stats.extra["level"]
        # the extreme level farther from the others, on its side: the lowest level when the effect is negative
        assert abs(r.stats.effect) >= abs(row["top_vs_rest"]) - 1e-9
        assert r.stats.direction == ("up" if r.stats.effect > 0 else "down")
        assert (means.idxmin() if r.stats.effect < 0 else means.idxmax()) == f"mean_{level}"
        lowest += r.stats.effect < 0
    assert lowest > 0  # some hits are a level falling, which "highest in" would have misdescribed
