"""Cytometry on real data: the Bodenmiller BCR-XL CyTOF subsample (8 FCS, 4 donors x Ref/BCRXL),
fcsparser's BD FACSDiva test file, and scanpy's pbmc68k_reduced for the single-cell tool.

Known biology of the BCR-XL data (Bodenmiller 2012; Nowicka 2017 CATALYST workflow): B-cell
receptor cross-linking raises pS6, pPlcg2 and pErk in B cells, not in T or NK cells.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from proteus.datasets import shared_dataset_dir
from proteus.io.cytometry import guess_instrument, is_panel, is_sample_sheet, read_cytometry
from proteus.kg import KnowledgeGraph
from proteus.policy.result_tables import ResultTables
from proteus.records import Step
from proteus.study import Study
from proteus.tools import ToolContext, ToolInputError, get_tool
from proteus.stats.metaclustering import consensus_metaclustering
from proteus.stats.nb_glm import nb_glm_da, nb_glm_fit
from proteus.stats.som import flowsom_codes

DATA = shared_dataset_dir("bodenmiller-bcrxl")
CONTRAST = {"modality": "cytometry", "group": "condition", "case": "BCRXL", "control": "Ref", "block": "patient_id"}

pytestmark = pytest.mark.skipif(DATA is None, reason="Bodenmiller BCR-XL data not in shared/datasets (set PROTEUS_SHARED)")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _read() -> tuple[ad.AnnData, pd.DataFrame]:
    return read_cytometry(sorted(DATA.glob("*.fcs")), pd.read_csv(DATA / "metadata.tsv", sep="\t"),
                          pd.read_csv(DATA / "panel.tsv", sep="\t"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Read, cluster, DA and DS once for the module."""
    a, samples = _read()
    study = Study(DATA, {"cytometry": a}, samples)
    ctx = ToolContext(out_dir=tmp_path_factory.mktemp("cyto"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cl = get_tool("cytometry_clustering")(study, {"modality": "cytometry"}, ctx)
        da = get_tool("cytometry_differential_abundance")(study, CONTRAST, ctx)
        ds = get_tool("cytometry_differential_state")(study, CONTRAST, ctx)
    return {"study": study, "ctx": ctx, "cl": cl, "da": da, "ds": ds}


# --- reading ---------------------------------------------------------------------------------


def test_read_bodenmiller_matches_fcs_headers():
    import flowio

    a, samples = _read()
    meta = pd.read_csv(DATA / "metadata.tsv", sep="\t")
    panel = pd.read_csv(DATA / "panel.tsv", sep="\t")
    assert a.uns["modality"] == "cytometry" and a.uns["level"] == "cell"
    assert a.uns["instrument"] == "mass" and a.uns["cofactor"] == 5.0
    assert a.obs["sample_id"].nunique() == 8
    for row in meta.itertuples():
        tot = int(flowio.FlowData(str(DATA / row.file_name), only_text=True).text["tot"])
        assert (a.obs["sample_id"] == row.sample_id).sum() == tot
        assert samples.loc[row.sample_id, "n_cells"] == tot
        assert samples.loc[row.sample_id, "condition"] == row.condition
        assert samples.loc[row.sample_id, "patient_id"] == row.patient_id
    assert list(a.var_names) == list(panel["antigen"])
    assert list(a.var["marker_class"]) == list(panel["marker_class"])
    assert set(a.obs["condition"]) == {"BCRXL", "Ref"} and a.obs["patient_id"].nunique() == 4
    np.testing.assert_array_equal(a.X, a.layers["raw"])
    # raw values unchanged: first event of the first file
    f = flowio.FlowData(str(DATA / "PBMC_patient1_BCRXL.fcs"))
    first = np.asarray(f.as_array(preprocess=False))[0]
    np.testing.assert_allclose(a[a.obs["sample_id"] == "BCRXL1"].layers["raw"][0], first, rtol=1e-6)


def test_read_without_sheet_or_panel_uses_pns_and_file_stems():
    a, samples = read_cytometry(sorted(DATA.glob("*.fcs")), None, None)
    assert "pS6" in a.var_names and "CD20" in a.var_names
    assert a.var.loc["pS6", "marker_class"] == "state" and a.var.loc["CD3", "marker_class"] == "type"
    assert "PBMC_patient1_BCRXL" in samples.index and a.uns["cofactor"] == 5.0


def test_panel_and_sheet_detection():
    panel = pd.read_csv(DATA / "panel.tsv", sep="\t")
    meta = pd.read_csv(DATA / "metadata.tsv", sep="\t")
    names = [p.name for p in DATA.glob("*.fcs")]
    assert is_panel(panel) and not is_panel(meta)
    assert is_sample_sheet(meta, names) == "file_name" and is_sample_sheet(panel, names) is None
    assert guess_instrument(list(panel["fcs_colname"])) == "mass"
    assert guess_instrument(["FSC-A", "SSC-A", "FITC-A", "PE-A", "APC-A"]) == "fluorescence"


def test_facs_diva_file_is_fluorescence_cofactor_150():
    import fcsparser  # in the [data] extra that [test] includes: a missing install fails, never skips
    a, samples = read_cytometry([fcsparser.test_sample_path], None, None)
    assert a.uns["instrument"] == "fluorescence" and a.uns["cofactor"] == 150.0
    assert a.n_obs == 14945 and len(samples) == 1
    assert {"FITC-A", "PerCP-Cy5-5-A", "AmCyan-A", "PE-TxRed YG-A"} == set(a.var_names)
    assert (a.var["marker_class"] == "type").all()  # "PE-..." is not a phospho-epitope
    assert {"FSC-A", "SSC-A", "Time"} <= set(a.obsm["non_marker"].columns)


# --- clustering ------------------------------------------------------------------------------


def test_clustering_finds_pbmc_populations(run):
    cl, a = run["cl"], run["study"].modalities["cytometry"]
    pops = set(cl.metrics["populations"])
    assert {"B cells", "CD4 T cells", "CD4- T cells", "monocytes", "NK cells"} <= pops
    assert "CD8 T cells" not in pops  # the panel has no CD8: populations are named from measured markers only
    assert cl.metrics["unassigned_fraction"] < 0.25
    # the layer records the clustering so DA/DS reuse it
    assert {"cluster", "population"} <= set(a.obs.columns) and "arcsinh" in a.layers
    assert a.uns["proteus_clustering"]["key"] == cl.metrics["clustering_key"]
    # B cells are CD20+ (marker_of relation), CD4 T cells CD4+
    edges = {(r.subject.label, r.object.label) for r in cl.relations if r.predicate == "marker_of"}
    assert ("CD20", "B cells") in edges and ("CD4", "CD4 T cells") in edges
    b = a.obs["population"] == "B cells"
    assert 0.03 < b.mean() < 0.15  # PBMC B-cell fraction
    assert len(cl.figures) == 3 and all(Path(f).exists() for f in cl.figures)


def test_clustering_is_cached_and_deterministic(run):
    study, ctx = run["study"], run["ctx"]
    again = get_tool("cytometry_clustering")(study, {"modality": "cytometry", "embedding": "none"}, ctx)
    assert again.metrics["reused"] and again.metrics["clustering_key"] == run["cl"].metrics["clustering_key"]
    assert "Reused" in again.summary


def test_som_and_consensus_recover_separated_groups():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(m, 0.3, size=(300, 3)) for m in (0, 4, 8)])
    codes, mapping = flowsom_codes(X, xdim=5, ydim=5, seed=0)
    lab, _ = consensus_metaclustering(codes, 3, reps=30, seed=0)
    cell = lab[mapping]
    truth = np.repeat([0, 1, 2], 300)
    assert pd.crosstab(truth, cell).gt(0).sum(1).eq(1).all()  # each true group in one metacluster


# --- differential abundance ------------------------------------------------------------------


def test_da_uses_samples_as_units(run):
    da = run["da"]
    tab = da.tables["differential_abundance"]
    assert da.metrics["n_samples"] == 8 and da.metrics["paired"] and da.metrics["n_blocks"] == 4
    assert {"B cells", "CD4 T cells", "CD4- T cells"} <= set(tab["population"])
    assert tab["p"].between(0, 1).all() and (tab["q"] >= tab["p"]).all()
    for r in da.relations:
        assert r.stats.n == 8 and r.subject.type == "cell_population"
        assert r.object.id == "sample_group:condition: BCRXL vs Ref"
        assert r.predicate == ("higher_in" if r.stats.effect > 0 else "lower_in")


def test_nb_glm_matches_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(8), np.repeat([0.0, 1.0], 4), np.tile([0, 1, 0, 0], 2), np.tile([0, 0, 1, 0], 2)])
    lib = np.log(rng.integers(400, 900, 8).astype(float))
    y = rng.negative_binomial(10, 0.5, 8).astype(float)
    ll, beta, _ = nb_glm_fit(y, X, lib, 0.1)
    ref = sm.GLM(y, X, family=sm.families.NegativeBinomial(alpha=0.1), offset=lib).fit(tol=1e-12)
    np.testing.assert_allclose(beta, ref.params, rtol=1e-5, atol=1e-7)
    assert ll == pytest.approx(ref.llf, rel=1e-8)


def _bcrxl_design(study: Study, samples: list[str]) -> pd.DataFrame:
    sheet = study.clinical.loc[samples]
    return pd.concat([pd.DataFrame({"intercept": 1.0, "case": (sheet["condition"] == "BCRXL").astype(float)}, index=samples),
                      pd.get_dummies(sheet["patient_id"].astype(str), prefix="block", drop_first=True, dtype=float)], axis=1)


def test_nb_glm_da_lrt_and_dispersion_match_statsmodels_on_bcrxl_counts(run):
    """The DA table on the BCR-XL counts (8 samples, paired by donor): each population's LR, p and log2FC
    equal statsmodels' NB GLM (``alpha`` = the common dispersion, offset log total cells) full vs
    reduced fit, and the common dispersion maximises the summed Cox-Reid adjusted profile
    likelihood (McCarthy et al. 2012) computed here from statsmodels' fits."""
    import statsmodels.api as sm

    da = run["da"]
    counts = da.tables["counts"].set_index("sample_id")
    X = _bcrxl_design(run["study"], list(counts.index))
    tab, phi = nb_glm_da(counts, X, "case")
    assert phi == pytest.approx(da.metrics["dispersion"], rel=1e-12)
    pd.testing.assert_frame_equal(tab.set_index("population").sort_index()[["logFC", "p", "q"]],
                                  da.tables["differential_abundance"].set_index("population").sort_index()[["logFC", "p", "q"]])
    lib = np.log(counts.sum(1).to_numpy(float))

    def fit(y, design, alpha):
        return sm.GLM(y, design, family=sm.families.NegativeBinomial(alpha=alpha), offset=lib).fit(tol=1e-12)

    for r in tab.itertuples():
        y = counts[r.population].to_numpy(float)
        full, reduced = fit(y, X.to_numpy(), phi), fit(y, X.drop(columns="case").to_numpy(), phi)
        lr = 2 * (full.llf - reduced.llf)
        assert r.LR == pytest.approx(lr, rel=1e-8, abs=1e-9)
        assert r.p == pytest.approx(stats.chi2.sf(lr, 1), rel=1e-8)
        assert r.logFC == pytest.approx(full.params[1] / np.log(2), abs=1e-6)

    def apl(alpha):
        total = 0.0
        for c in counts.columns:
            f = fit(counts[c].to_numpy(float), X.to_numpy(), alpha)
            w = f.mu / (1 + alpha * f.mu)
            total += f.llf - 0.5 * np.linalg.slogdet(X.to_numpy().T @ (X.to_numpy() * w[:, None]))[1]
        return total

    assert apl(phi) >= max(apl(phi * 0.9), apl(phi * 1.1))


# --- differential state ----------------------------------------------------------------------


def test_ds_finds_bcr_signalling_in_b_cells(run):
    ds = run["ds"]
    tab = ds.tables["differential_state"].set_index(["population", "marker"])
    for m in ("pS6", "pPlcg2", "pErk"):
        assert tab.loc[("B cells", m), "q"] < 0.05 and tab.loc[("B cells", m), "logFC"] > 0.5
        # not in T cells
        assert not (tab.loc[("CD4 T cells", m), "q"] < 0.05 and tab.loc[("CD4 T cells", m), "logFC"] > 0)
    assert tab.index[0] == ("B cells", "pS6")  # the strongest hit
    rel = next(r for r in ds.relations if r.subject.label == "pS6 | B cells")
    assert rel.predicate == "higher_in" and rel.stats.n == 8 and rel.stats.extra["population"] == "B cells"
    assert rel.stats.extra["marker"] == "pS6" and "CD4 T cells" in rel.stats.extra["other_populations"]
    assert ds.metrics["paired"] and ds.metrics["n_tested"] == 14 * len(set(tab.index.get_level_values(0)))


@pytest.mark.skipif(shutil.which("Rscript") is None or subprocess.run(["Rscript", "-e", "suppressMessages(library(limma))"],
                    capture_output=True).returncode != 0, reason="Rscript with the limma package is not installed")
def test_ds_matches_r_limma_on_bcrxl_medians(run, tmp_path):
    """The DS table equals R limma on the same sample x population medians and paired design::

        m <- as.matrix(read.delim("medians.tsv", row.names = 1, check.names = FALSE))
        X <- as.matrix(read.delim("design.tsv", row.names = 1))
        tt <- topTable(eBayes(lmFit(m, X)), coef = 2, number = Inf, sort.by = "none")

    (diffcyt's testDS_limma; BH then over all marker x population tests)."""
    ds = run["ds"]
    wide = ds.tables["sample_medians"].set_index(["population", "marker"])
    wide.index = [f"{p}|{m}" for p, m in wide.index]
    _bcrxl_design(run["study"], list(wide.columns)).to_csv(tmp_path / "design.tsv", sep="\t")
    wide.to_csv(tmp_path / "medians.tsv", sep="\t", float_format="%.17g")
    script = ('suppressMessages(library(limma)); m <- as.matrix(read.delim("medians.tsv", row.names = 1, check.names = FALSE)); '
              'X <- as.matrix(read.delim("design.tsv", row.names = 1)); '
              'tt <- topTable(eBayes(lmFit(m, X)), coef = 2, number = Inf, sort.by = "none"); '
              'write.table(data.frame(id = rownames(tt), logFC = tt$logFC, t = tt$t, p = tt$P.Value), "r.tsv", sep = "\\t", '
              'row.names = FALSE, quote = FALSE)')
    r = subprocess.run(["Rscript", "-e", script], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ref = pd.read_csv(tmp_path / "r.tsv", sep="\t").set_index("id")
    assert len(ref) == len(ds.tables["differential_state"]) > 50
    ours = ds.tables["differential_state"].assign(id=lambda t: t["population"] + "|" + t["marker"]).set_index("id").loc[ref.index]
    for col in ("logFC", "t", "p"):
        np.testing.assert_allclose(ours[col].to_numpy(float), ref[col].to_numpy(float), rtol=1e-6, atol=1e-10)


def test_sample_not_cell_is_the_unit(run):
    """Duplicating every cell leaves sample-level DS p-values and DA fold-changes unchanged, and DA
    relations keep n = 8 samples, whereas
    a cell-level test (Mann-Whitney over cells) becomes far more 'significant'."""
    study, ctx = run["study"], run["ctx"]
    a = study.modalities["cytometry"]
    dup = ad.concat([a, a], merge="same")
    dup.obs_names_make_unique()
    dup.uns.update(modality="cytometry", level="cell", cofactor=5.0)
    s2 = Study(DATA, {"cytometry": dup}, study.clinical)
    # min_cells=1 so that no (sample, population) median is dropped in one run and kept in the other
    ds1 = get_tool("cytometry_differential_state")(study, {**CONTRAST, "min_cells": 1}, ctx).tables["differential_state"]
    ds2 = get_tool("cytometry_differential_state")(s2, {**CONTRAST, "min_cells": 1}, ctx).tables["differential_state"]
    m = ds1.merge(ds2, on=["population", "marker"])
    np.testing.assert_allclose(m["p_x"], m["p_y"], rtol=1e-10)
    # DA: proportions are unchanged; the NB weights shift a little with depth, the unit stays the sample
    da2 = get_tool("cytometry_differential_abundance")(s2, CONTRAST, ctx)
    m = run["da"].tables["differential_abundance"].merge(da2.tables["differential_abundance"], on="population")
    np.testing.assert_allclose(m["logFC_x"], m["logFC_y"], atol=0.1)
    big = m["mean_count_x"] > 50
    assert (np.abs(np.log10(m.loc[big, "p_y"]) - np.log10(m.loc[big, "p_x"])) < 1).all()
    assert all(r.stats.n == 8 for r in da2.relations)

    def cell_level_p(adata):
        b = (adata.obs["population"] == "B cells").to_numpy()
        x = adata.layers["arcsinh"][:, list(adata.var_names).index("pAkt")]
        cond = adata.obs["condition"].to_numpy()
        return stats.mannwhitneyu(x[b & (cond == "BCRXL")], x[b & (cond == "Ref")]).pvalue

    assert cell_level_p(dup) < cell_level_p(a) / 100


def test_bad_arguments_are_input_errors(run):
    study, ctx = run["study"], run["ctx"]
    tool = get_tool("cytometry_differential_state")
    with pytest.raises(ToolInputError):
        tool(study, {**CONTRAST, "group": "treatment"}, ctx)
    with pytest.raises(ToolInputError):
        tool(study, {**CONTRAST, "case": "Stim"}, ctx)
    with pytest.raises(ToolInputError):
        tool(study, {**CONTRAST, "markers": ["pFOO"]}, ctx)
    with pytest.raises(ToolInputError, match="SOM codes"):  # 3x3 map: at most 8 metaclusters
        get_tool("cytometry_clustering")(study, {"modality": "cytometry", "som_grid": 3, "k": 9, "embedding": "none"}, ctx)


# --- playbook --------------------------------------------------------------------------------


def test_playbook_plans_valid_steps_and_composes_hypotheses(run):
    from proteus.policy import cytometry as playbook
    from proteus.profile import profile_study
    from proteus.tools.registry import validate_call

    study = run["study"]
    prof = profile_study(study)
    objs = playbook.objectives(prof)
    assert [o.title.split(" in ")[0] for o in objs][:1] == ["Cell populations"] and len(objs) == 3
    tools = []
    for o in objs:
        for s in playbook.workflow(o, prof):
            validate_call(get_tool(s.tool), study, s.params)
            tools.append(s.tool)
            if s.tool != "cytometry_clustering":
                assert s.params["block"] == "patient_id"
    assert tools == ["cytometry_clustering", "cytometry_differential_abundance", "cytometry_differential_state"]
    kg = KnowledgeGraph()
    for k in ("cl", "da", "ds"):
        kg.add_relations(run[k].relations)
    drafts = playbook.hypotheses(kg)
    assert drafts and all(e in kg.relations for d in drafts for e in d.evidence)
    bcr = [d for d in drafts if d.statement.startswith("B-cell receptor signalling is activated in B cells")]
    assert bcr and "pS6" in bcr[0].statement
    assert any(re.search(r"(specific to|detected only in) B cells", d.statement) for d in drafts)
    # a 10-minute ex vivo stimulation: population shares shift, nothing "expands"; a state marker that
    # moves in every population is one global shift, never restated per population
    assert not any(re.search(r"expan", d.statement) for d in drafts)
    glob = [d for d in drafts if re.search(r" in (every|\d+ of \d+) cell population", d.statement)]
    assert glob
    for d in glob:
        marker = d.statement.split(" is ")[0]
        assert not any(x.statement.startswith(f"{marker} is ") and x is not d for x in drafts)
    # with the run's tables, a shift between two T-cell clusters is set against the CD3+ total
    steps = [("S1", "cytometry_clustering", {"modality": "cytometry"}, run["cl"]), ("S2", "cytometry_differential_abundance", CONTRAST, run["da"])]
    tables = {}
    for sid, tool, params, res in steps:
        kg.add_step(Step(id=sid, tool=tool, params=params, status="done", tables=[f"tables/{sid}_{n}.tsv" for n in res.tables]), "W1")
        tables.update({f"tables/{sid}_{n}.tsv": tab for n, tab in res.tables.items()})
    with_tables = playbook.hypotheses(kg, tables=ResultTables(kg, tables.get))
    shift = [d for d in with_tables if d.statement.startswith("CD4- T cells make up a larger fraction")]
    assert shift and "CD4 T cells within CD3+ cells" in shift[0].statement


def _ds_drafts(run):
    from proteus.policy import cytometry as playbook

    kg = KnowledgeGraph()
    for k in ("cl", "da", "ds"):
        kg.add_relations(run[k].relations)
    return playbook.hypotheses(kg, max_items=100)


def test_cytometry_wording_passes_the_claim_checks_and_a_flipped_state_change_does_not(run):
    """The playbook's sentences obey :mod:`proteus.policy.claim_check` unchanged; a model's sentence
    that turns a population's significant rise into a fall (or says it does not change) is rejected."""
    from proteus.policy.claim_check import check_draft
    from proteus.policy.decisions import HypothesisDraft

    drafts = _ds_drafts(run)
    kg = KnowledgeGraph()
    for k in ("cl", "da", "ds"):
        kg.add_relations(run[k].relations)
    assert len(drafts) >= 5
    for d in drafts:
        out = check_draft(d, kg)
        assert out.rejected is None and not out.checks and out.draft == d, (d.statement, out.checks, out.rejected)
    up = max((r for r in kg.by_predicate("higher_in") if " | " in r.subject.label), key=lambda r: r.stats.effect)
    marker, pop = up.subject.label.split(" | ")

    def check(statement):
        return check_draft(HypothesisDraft(statement=statement, rationale="", evidence=[up.id], entities=[up.subject.id], test="flow"), kg)

    assert check(f"{marker} is increased in {pop} under BCRXL compared with Ref.").rejected is None
    assert "goes the other way" in check(f"{marker} is decreased in {pop} under BCRXL compared with Ref.").rejected
    assert "goes the other way" in check(f"In {pop}, {marker} is higher in Ref than in BCRXL.").rejected
    assert "does not change" in check(f"{marker} does not change in {pop} under BCRXL.").rejected


def test_shared_shift_says_every_only_when_significant_in_every_population(run):
    """A marker lower in all populations but significant in only some is "lower in k of n", never "in every"."""
    tab = run["ds"].tables["differential_state"]
    named = tab[~tab["population"].str.startswith("unassigned")]
    glob = [d for d in _ds_drafts(run) if re.search(r" in (every|\d+ of \d+) cell population", d.statement)]
    partial = 0
    for d in glob:
        marker = d.statement.split(" is ")[0]
        rows = named[named["marker"] == marker]
        n_sig = int((rows["q"] < 0.1).sum())
        assert (np.sign(rows["logFC"]) == np.sign(rows["logFC"].iloc[0])).all()
        if n_sig == len(rows):
            assert " in every cell population" in d.statement
        else:
            partial += 1
            assert " every " not in d.statement and f" in {n_sig} of {len(rows)} cell populations" in d.statement
    assert partial  # the BCR-XL run has markers lower everywhere but significant in only some populations


def test_specificity_says_does_not_change_only_with_a_negligible_interval(run):
    """q >= 0.05 in another population with 4 donors is absence of evidence: "not detected" unless the
    95% interval (limma SE, t on df_total) holds zero and lies within half the responding population's effect."""
    from scipy.stats import t as student_t

    tab = run["ds"].tables["differential_state"].set_index(["population", "marker"])
    spec = [d for d in _ds_drafts(run) if " only in " in d.statement or " is specific to " in d.statement]
    assert spec
    not_detected = 0
    for d in spec:
        m = re.match(r"The (increase|decrease) of (\S+) under .* (?:is specific to|was detected only in) ([^:]+):", d.statement)
        marker, pop = m.group(2), m.group(3)
        effect = tab.loc[(pop, marker), "logFC"]
        for verb, names in re.findall(r"(does not change|was not detected) in ([^(;.]+)", d.statement):
            for other in [x.strip() for x in names.split(",")]:
                row = tab.loc[(other, marker)]
                half = abs(row["logFC"] / row["t"]) * student_t.ppf(0.975, row["df_total"])
                lo, hi = row["logFC"] - half, row["logFC"] + half
                inside = row["q"] >= 0.05 and -abs(effect) / 2 < lo <= 0 <= hi < abs(effect) / 2
                assert inside == (verb == "does not change"), (d.statement, other)
                not_detected += verb == "was not detected"
        assert "donors" in d.statement or " does not change " in d.statement
    assert not_detected  # 4 donors cannot show most populations unchanged


def _da_drafts(study, ctx, run):
    """Hypotheses with the run's tables from ``run``'s clustering and a DA step on ``study``."""
    from proteus.policy import cytometry as playbook

    da = get_tool("cytometry_differential_abundance")(study, CONTRAST, ctx)
    kg, tables = KnowledgeGraph(), {}
    for sid, tool, params, res in [("S1", "cytometry_clustering", {"modality": "cytometry"}, run["cl"]),
                                   ("S2", "cytometry_differential_abundance", CONTRAST, da)]:
        kg.add_relations(res.relations)
        kg.add_step(Step(id=sid, tool=tool, params=params, status="done", tables=[f"tables/{sid}_{n}.tsv" for n in res.tables]), "W1")
        tables.update({f"tables/{sid}_{n}.tsv": tab for n, tab in res.tables.items()})
    drafts = [d for d in playbook.hypotheses(kg, max_items=100, tables=ResultTables(kg, tables.get)) if " fraction of cells " in d.statement]
    return drafts, da.tables["differential_abundance"].set_index("population")


def _renormalised_keeps_half(tab: pd.DataFrame, pop: str, up: bool) -> tuple[str, bool]:
    """(the opposite-moving significant population of largest fraction shift, whether ``pop``'s log2 ratio of
    mean fractions renormalised without it keeps at least half its raw value)."""
    d = tab["prop_case"] - tab["prop_control"]
    x = d[(tab.index != pop) & (tab["q"] < 0.05) & ((d < 0) == up)].abs().idxmax()
    raw = np.log2(tab.loc[pop, "prop_case"] / tab.loc[pop, "prop_control"])
    ren = np.log2(tab.loc[pop, "prop_case"] / (1 - tab.loc[x, "prop_case"]) / (tab.loc[pop, "prop_control"] / (1 - tab.loc[x, "prop_control"])))
    return x, ren * raw > 0 and abs(ren) >= abs(raw) / 2


def test_fraction_shift_that_follows_another_populations_fall_is_called_mechanical(run):
    """Compositional closure: drop 80% of the largest population's cells from every stimulated sample (derived
    from the real run); the other populations' fractions rise mechanically, and their hypotheses say so exactly
    when the shift renormalised without the fallen population keeps less than half its log2 ratio."""
    study, ctx = run["study"], run["ctx"]
    a = study.modalities["cytometry"]
    largest = run["da"].tables["differential_abundance"].set_index("population")["prop_control"].idxmax()
    rng = np.random.default_rng(0)
    hit = (a.obs["population"].astype(str) == largest).to_numpy() & (a.obs["condition"].astype(str) == "BCRXL").to_numpy()
    keep = ~hit | (rng.random(a.n_obs) < 0.2)
    sub = a[keep].copy()
    sub.uns.update(a.uns)
    drafts, tab = _da_drafts(Study(DATA, {"cytometry": sub}, study.clinical), ctx, run)
    mechanical = 0
    for d in drafts:
        pop = d.statement.split(" make up a ")[0]
        x, keeps = _renormalised_keeps_half(tab, pop, " larger " in d.statement)
        assert f"renormalised without {x}" in d.rationale
        assert ("mechanical consequence of " + x in d.statement) == (not keeps), d.statement
        mechanical += not keeps
    assert mechanical
    # on the real run the shifts outlast renormalisation: stated with the numbers, never called mechanical
    real, tab = _da_drafts(study, ctx, run)
    assert real and not any("mechanical" in d.statement for d in real)
    assert all("renormalised without" in d.rationale for d in real)


# --- single cell -----------------------------------------------------------------------------


def test_singlecell_clustering_pbmc68k(tmp_path):
    sc = pytest.importorskip("scanpy")
    try:
        a = sc.datasets.pbmc68k_reduced()
    except Exception as e:  # pragma: no cover - dataset ships with scanpy
        pytest.skip(f"pbmc68k_reduced unavailable: {e}")
    a.uns.update(modality="single_cell", level="cell")
    study = Study(tmp_path, {"single_cell": a})
    res = get_tool("singlecell_clustering")(study, {"modality": "single_cell"}, ToolContext(out_dir=tmp_path))
    pops = set(res.metrics["populations"])
    assert {"B cells", "NK cells", "monocytes", "CD4 T cells"} <= pops
    assert not res.metrics["has_samples"] and "can only be described" in res.summary
    # populations agree with the sorted-population labels shipped with the data
    ct = pd.crosstab(a.obs["population"], a.obs["bulk_labels"])
    assert ct.loc["B cells", "CD19+ B"] > 0.5 * ct.loc["B cells"].sum()
    assert ct.loc["NK cells"].idxmax() in ("CD56+ NK", "CD8+ Cytotoxic T")
    edges = {(r.subject.label, r.object.label) for r in res.relations}
    assert any(o == "B cells" and g in {"CD79A", "CD79B", "MS4A1"} for g, o in edges)
