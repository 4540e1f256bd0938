"""Study design from other labs' sample tables: column roles, designs not pairs, power before capping.

Fixtures are written by the tests from shipped data: the ramus2016 UPS1-in-yeast MaxQuant LFQ set
(``../shared/datasets``; five spike-in amounts from its three blocks, three injections each) and
the CPTAC UCEC cohort.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from proteus.datasets import shared_dataset_dir
from proteus.design import is_reference_level, level_order
from proteus.io import load_study
from proteus.policy.base import ResearchView
from proteus.policy.heuristic import HeuristicPolicy
from proteus.policy.playbooks import bulk_plays
from proteus.profile import profile_study
from proteus.study import Study
from proteus.tools.registry import ToolContext, get_tool

UPS = shared_dataset_dir("ramus2016-ups1-maxquant") or Path("ramus2016-ups1-maxquant-not-found")
BLOCKS = {".": ("ups_25fmol", "ups_12.5fmol"), "50vs5": ("ups_50fmol", "ups_5fmol"), "50vs0.5": ("ups_0.5fmol",)}


def _ups_series() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Five UPS1 amounts x 3 injections: log2 LFQ (protein groups x samples) and the sheet.

    The blocks were quantified in separate MaxQuant runs, so each sample is median-centred (as an
    analyst does before combining runs); 0 (MaxQuant's missing) stays missing.
    """
    parts, sheets = [], []
    for block, keep in BLOCKS.items():
        sheet = pd.read_csv(UPS / block / "samples.tsv", sep="\t")
        sheet = sheet[sheet["condition"].isin(keep)]
        pg = pd.read_csv(UPS / block / "proteinGroups.txt", sep="\t").set_index("Protein IDs")
        parts.append(pg[[f"LFQ intensity {s}" for s in sheet["sample"]]].set_axis(list(sheet["sample"]), axis=1))
        sheets.append(sheet[["sample", "condition", "replicate"]])
    lfq = np.log2(pd.concat(parts, axis=1).replace(0, np.nan))
    lfq = (lfq - lfq.median() + float(lfq.median().median())).rename_axis("protein")
    return lfq, pd.concat(sheets, ignore_index=True)


def _write(folder: Path, lfq: pd.DataFrame, sheet: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lfq.to_csv(folder / "proteins.tsv", sep="\t")
    sheet.to_csv(folder / "samples.tsv", sep="\t", index=False)
    return folder


@pytest.fixture(scope="module")
def ups_series():
    if not UPS.exists():
        pytest.skip("ramus2016 UPS1 set not found")
    return _ups_series()


def _roles(prof) -> dict[str, str]:
    return {v.name: v.role for v in prof.variables}


# --- token-anchored word rules: one test per rule ---------------------------------------------------


def _two_level(levels: list[str]) -> Study:
    n = 8
    clin = pd.DataFrame({"response": [levels[0]] * n + [levels[1]] * n}, index=[f"S{i}" for i in range(2 * n)])
    a = pd.DataFrame(np.random.default_rng(0).normal(20, 1, (2 * n, 30)), index=clin.index, columns=[f"G{i}" for i in range(30)])
    import anndata as ad

    layer = ad.AnnData(a.to_numpy(), obs=pd.DataFrame(index=clin.index), var=pd.DataFrame(index=a.columns))
    layer.uns.update(modality="proteomics", level="sample")
    return Study(".", {"proteomics": layer}, clin)


def test_ref_is_a_reference_but_refractory_is_not():
    assert is_reference_level("ref") and not is_reference_level("refractory")
    c = profile_study(_two_level(["refractory", "ref"])).contrasts[0]
    assert (c.case, c.control) == ("refractory", "ref")


def test_normal_is_a_reference_but_abnormal_is_not():
    assert is_reference_level("Adjacent normal") and not is_reference_level("abnormal")
    c = profile_study(_two_level(["normal", "abnormal"])).contrasts[0]
    assert (c.case, c.control) == ("abnormal", "normal")


def test_negative_is_a_reference_but_triple_negative_is_not():
    assert is_reference_level("negative") and not is_reference_level("triple-negative")
    c = profile_study(_two_level(["luminal", "triple-negative"])).contrasts[0]
    assert c.kind == "two_level" and "triple-negative" in (c.case, c.control)
    assert profile_study(_two_level(["luminal", "triple-negative"])).factors[0].references == []


def test_ordered_levels_read_from_names():
    assert level_order(["10 uM", "vehicle", "1 uM", "100 uM"])[0] == ["vehicle", "1 uM", "10 uM", "100 uM"]
    assert level_order(["Stage III", "Stage I", "Stage II"])[0] == ["Stage I", "Stage II", "Stage III"]
    assert level_order(["high", "low", "medium"])[0] == ["low", "medium", "high"]
    assert level_order(["poorly differentiated", "intermediate", "well differentiated"])[0] == [
        "well differentiated", "intermediate", "poorly differentiated"]
    assert level_order(["A", "C", "B"]) == (["A", "B", "C"], False, "")


def test_msstats_style_annotation_columns():
    """An MSstats-like sheet: camelCase names, a biological replicate index nested in each condition, a
    technical replicate inside it, a run per sample, a preparation batch across it; only the condition is
    studied, adjusted for the batch only."""
    study = _two_level(["KO", "siCtrl"])
    study.clinical["BioReplicate"] = [1, 2, 3, 4] * 2 + [1, 2, 3, 4] * 2
    study.clinical["TechReplicate"] = [1, 1, 1, 1, 2, 2, 2, 2] * 2
    study.clinical["Run"] = [f"run_{i:02d}.raw" for i in range(16)]
    study.clinical["PrepBatch"] = [1, 2] * 8  # crosses the condition: adjusted for
    prof = profile_study(study)
    roles = {v.name: v.role for v in prof.variables}
    assert roles == {"response": "biological", "BioReplicate": "technical", "TechReplicate": "technical", "Run": "technical",
                     "PrepBatch": "technical"}
    c = prof.contrasts[0]
    assert {v.nested_in for v in prof.variables if v.name.endswith("Replicate")} == {"response"}
    assert (c.case, c.control) == ("KO", "siCtrl") and c.covariates == ["PrepBatch"]  # replicate indices restart in each condition


def test_time_course_without_events_is_an_ordered_factor():
    study = _two_level(["a", "b"])
    study.clinical["time"] = [0, 6, 24, 48] * 4  # hours after treatment, no event column: not a follow-up
    f = next(f for f in profile_study(study).factors if f.name == "time")
    assert f.ordered and f.levels == ["0", "6", "24", "48"] and f.references == ["0"]


# --- ramus2016 UPS1: replicate index, lab crossed with the condition, an ordered series ------------


def test_replicate_column_nested_in_every_condition_is_technical(ups_series, tmp_path):
    lfq, sheet = ups_series
    sheet = sheet.assign(tag=[f"R{r}" for r in sheet["replicate"]])  # a replicate index nobody named as such
    prof = profile_study(load_study(_write(tmp_path / "d", lfq, sheet)))
    roles = {v.name: v for v in prof.variables}
    for col in ("replicate", "tag"):
        assert roles[col].role == "technical" and roles[col].nested_in == "condition", roles[col]
    assert {c.group for c in prof.contrasts} == {"condition"}
    assert not any(c.covariates for c in prof.contrasts)  # nested: replicate 1 of one amount is not replicate 1 of another
    objectives = [p.objective.title for p in bulk_plays(prof)]
    assert not any("replicate" in t or "tag" in t for t in objectives if not t.startswith("Data quality"))


def test_five_level_ordered_series_gets_f_test_trend_and_each_level_vs_lowest(ups_series, tmp_path):
    lfq, sheet = ups_series
    study = load_study(_write(tmp_path / "d", lfq, sheet))
    prof = profile_study(study)
    f = next(f for f in prof.factors if f.name == "condition")
    assert f.ordered and f.levels == ["ups_0.5fmol", "ups_5fmol", "ups_12.5fmol", "ups_25fmol", "ups_50fmol"]
    assert f.references == ["ups_0.5fmol"]
    play = next(p for p in bulk_plays(prof) if p.objective.title == "Differences across condition")
    anova = play.steps[0]
    assert anova.tool == "differential_anova" and anova.params["ordered"] and anova.params["levels"] == f.levels
    da = [s.params for s in play.steps if s.tool == "differential_abundance"]
    assert {p["control"] for p in da} == {"ups_0.5fmol"} and {p["case"] for p in da} == set(f.levels[1:])

    # the trend test on the real spike-in: UPS1 rises with the amount, the yeast background does not
    modality = next(iter(study.modalities))
    res = get_tool("differential_anova")(study, anova.params | {"modality": modality}, ToolContext(out_dir=tmp_path / "out"))
    t = res.tables["results"].sort_values("trend_t", ascending=False)
    ups = t["feature"].str.contains("ups")
    assert ups.sum() >= 5  # UPS1 measured at every amount (most are missing at 0.5 fmol)
    assert (t.loc[ups, "trend_q"] < 0.01).all() and (t.loc[ups, "trend_slope"] > 0).all()
    assert ups.iloc[: ups.sum()].all()  # they lead the trend ranking
    yeast_hits = t[~ups & (t["trend_q"] < 0.01)]
    assert yeast_hits["trend_slope"].abs().median() < 0.25 * t.loc[ups, "trend_slope"].median()
    assert res.metrics["n_trend_up"] >= ups.sum()
    # stated as the design tested it: a trend across the ordered amounts, not a level against the rest
    from proteus.kg import KnowledgeGraph
    from proteus.policy.patterns import _factor_differences

    kg = KnowledgeGraph()
    kg.add_relations(res.relations)
    trend = next(d for d in _factor_differences(kg) if "trend across ordered condition" in d.statement)
    assert " rise along the ordered levels of condition" in trend.statement and "rest" not in trend.statement
    assert all(kg.relation(e).stats.extra["test"] == "linear trend" for e in trend.evidence)


def test_two_maxquant_runs_confound_the_comparisons_across_them(tmp_path):
    """Two real MaxQuant runs (25 vs 12.5 and 50 vs 5 fmol) in one folder: the run is a technical
    column; comparisons across runs are flagged confounded and come after the one within a run."""
    if not UPS.exists():
        pytest.skip("ramus2016 UPS1 set not found")
    for name, block in (("run_a", "."), ("run_b", "50vs5")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "proteinGroups.txt").write_bytes((UPS / block / "proteinGroups.txt").read_bytes())
    prof = profile_study(load_study(tmp_path))
    run = next(v for v in prof.variables if v.role == "technical")
    f = next(f for f in prof.factors)
    assert f.ordered and f.confounded == [run.name]
    ranked = [(c.case, c.control, c.confounded) for c in prof.contrasts]
    assert not ranked[0][2] and all(conf == [run.name] for *_, conf in ranked[1:]), ranked
    play = next(p for p in bulk_plays(prof) if p.objective.family == "differential")
    assert "confounded" in play.objective.rationale
    assert sum("CONFOUNDED" in s.rationale for s in play.steps) == len(ranked) - 1


def test_lab_crossed_with_the_condition_is_a_covariate_never_an_objective(ups_series, tmp_path):
    lfq, sheet = ups_series
    sheet = sheet.assign(lab=[f"site{65 + 7 * r}" for r in sheet["replicate"]]).drop(columns="replicate")
    prof = profile_study(load_study(_write(tmp_path / "d", lfq, sheet)))
    assert _roles(prof)["lab"] == "technical"
    assert prof.contrasts and all(c.covariates == ["lab"] for c in prof.contrasts)
    plays = bulk_plays(prof)
    steps = [s for p in plays for s in p.steps]
    assert all("lab" not in (s.params.get("group"), s.params.get("variable")) for s in steps)
    assert not any("lab" in p.objective.title or "site" in p.objective.title for p in plays if p.objective.family != "qc")
    assert all(s.params.get("covariates") == ["lab"] for s in steps if s.tool in ("differential_abundance", "differential_anova", "enrichment_ora"))
    assert any(s.tool == "batch_check" and s.params["batch"] == "lab" for s in steps)


def test_a_model_cannot_study_a_technical_factor(ups_series, tmp_path):
    """The step check both policies use refuses a contrast on the lab; QC may still describe it."""
    from types import SimpleNamespace

    from proteus.graphs.nodes import check_step
    from proteus.policy.decisions import StepSpec

    lfq, sheet_with_replicate = ups_series
    sheet = sheet_with_replicate.assign(lab=[f"site{65 + 7 * r}" for r in sheet_with_replicate["replicate"]]).drop(columns="replicate")
    study = load_study(_write(tmp_path / "d", lfq, sheet))
    ctx = SimpleNamespace(study=study, profile=profile_study(study))
    bad = StepSpec(tool="differential_abundance", params={"modality": "proteomics", "group": "lab", "case": "site72", "control": "site79"})
    assert "technical column" in check_step(ctx, bad) and "covariates" in check_step(ctx, bad)
    ok = StepSpec(tool="differential_abundance", params={"modality": "proteomics", "group": "condition", "case": "ups_25fmol",
                                                          "control": "ups_0.5fmol", "covariates": ["lab"]})
    assert check_step(ctx, ok) is None
    assert check_step(ctx, StepSpec(tool="missingness_report", params={"modality": "proteomics", "group": "lab"})) is None
    # nor as a survival time: a replicate index is technical whatever its numbers (a served model proposed this)
    study = load_study(_write(tmp_path / "r", lfq, sheet_with_replicate))
    ctx = SimpleNamespace(study=study, profile=profile_study(study))
    cox = StepSpec(tool="cox_per_feature", params={"modality": "proteomics", "time": "replicate", "event": "condition"})
    assert "'replicate' is a technical column" in check_step(ctx, cox) and "('time')" in check_step(ctx, cox)


def test_donor_column_pairs_conditions_as_a_block():
    """BCR-XL CyTOF: each patient measured unstimulated and stimulated; the patient is a block, not a factor."""
    folder = shared_dataset_dir("bodenmiller-bcrxl")
    if folder is None:
        pytest.skip("bodenmiller-bcrxl not found")
    prof = profile_study(load_study(folder))
    roles = {v.name: v for v in prof.variables}
    assert roles["patient_id"].role == "block"
    assert {c.group for c in prof.contrasts} == {"condition"}
    assert all(c.covariates == ["patient_id"] for c in prof.contrasts)


# --- UCEC: objectives capped at five, ranked by power ---------------------------------------------------


@pytest.mark.slow
def test_ucec_objectives_capped_at_five_follow_power(ucec_study):
    prof = profile_study(ucec_study)
    technical = {v.name for v in prof.variables if v.role in ("technical", "block", "identifier")}
    assert {"Proteomics_TMT_plex", "Proteomics_TMT_batch"} <= technical
    view = ResearchView(profile=prof, kg=None, tools=[], objectives=[], check_step=lambda s: None, max_objectives=5)
    plan = HeuristicPolicy().plan_objectives(view).objectives
    assert len(plan) == 5
    titles = [o.title for o in plan]
    assert not any(col in t for t in titles for col in technical)
    planned = [f for f in prof.factors if any(f"across {f.name}" in t or t.startswith(f"{f.name}:") for t in titles)]
    assert planned and planned[0].name == prof.sample_type_column
    assert planned == prof.factors[: len(planned)]  # the cap keeps the head of the power ranking
    assert min(f.power for f in planned) > 10  # no 7-vs-96 split (effective n 6.5)
    order = [f.name for f in prof.factors]
    assert order.index("MSI_status") < order.index("POLE_subtype")  # a balanced split before 7 vs 88 (flagged cases excluded)
    first = prof.contrasts[0]
    assert "Proteomics_TMT_plex" in first.covariates
    deep = next(p for p in bulk_plays(prof) if p.objective.family == "differential")
    by_layer = {s.params["modality"]: s.params.get("covariates", []) for s in deep.steps if s.tool == "differential_abundance"}
    assert "Proteomics_TMT_plex" in by_layer["proteomics"] and "Proteomics_TMT_plex" not in by_layer["transcriptomics"]


# --- loud failure --------------------------------------------------------------------------------------


def test_tool_that_cannot_find_promised_samples_stops_with_both_numbers(ups_series, tmp_path):
    """A reader bug simulated on real data: the layer's sample names stop matching the sheet after profiling."""
    from types import SimpleNamespace

    from proteus.graphs.nodes import _broken_promise

    lfq, sheet = ups_series
    study = load_study(_write(tmp_path / "d", lfq, sheet))
    prof = profile_study(study)
    c = next(c for c in prof.contrasts if c.group == "condition")
    step = {"modality": "proteomics", "group": c.group, "case": c.case, "control": c.control}
    assert _broken_promise(SimpleNamespace(study=study, profile=prof), step) is None
    layer = study.modalities["proteomics"]
    layer.obs_names = [f"D:\\raw\\{s}.raw" for s in layer.obs_names]
    msg = _broken_promise(SimpleNamespace(study=study, profile=prof), step)
    assert f"promised {c.n_case} {c.case!r} and {c.n_control} {c.control!r}" in msg and "holds 0 and 0" in msg


@pytest.mark.slow
def test_run_in_which_no_tool_succeeds_exits_non_zero_with_the_reason(ucec_dir, tmp_path):
    """UCEC's sample table and somatic mutations without any omics layer: nothing a tool can analyse."""
    import json
    import shutil
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    for name in ("clinical.tsv", "somatic.maf.gz"):
        shutil.copy(Path(ucec_dir) / name, data / name)
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "proteus", "run", str(data), "--out", str(run), "--max-objectives", "2"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    assert "no tool call succeeded" in r.stderr and "no omics layer" in r.stderr
    assert "every step failed" in r.stderr  # the objective's failure is said in the terminal
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "no tool call succeeded" in info["failure"]
    html = (run / "report.html").read_text()
    assert "This run failed" in html and "every step failed" in html


@pytest.mark.slow
def test_run_adjusts_for_the_lab_in_trace_and_reports_the_design(ups_series, tmp_path):
    """A whole run on the five-amount UPS1 series measured in three labs: what trace.jsonl and the report show."""
    import json

    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.runner import run_research

    lfq, sheet = ups_series
    sheet = sheet.assign(lab=[f"site{65 + 7 * r}" for r in sheet["replicate"]])
    data = _write(tmp_path / "data", lfq, sheet)
    run_research(data, tmp_path / "run", policy=HeuristicPolicy(), max_objectives=3)
    calls = [json.loads(x) for x in (tmp_path / "run" / "trace.jsonl").read_text().splitlines()]
    calls = [c for c in calls if c.get("kind") == "tool_call"]
    tested = [c for c in calls if c["tool"] in ("differential_abundance", "differential_anova")]
    assert tested and all(c["params"].get("covariates") == ["lab"] for c in tested)
    assert all(c["status"] == "done" for c in tested)
    assert all("lab" != c["params"].get("group") and "replicate" != c["params"].get("group") for c in calls)
    anova = next(c for c in tested if c["tool"] == "differential_anova")
    assert anova["params"]["ordered"] and anova["metrics"]["n_trend_up"] > 0
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert not any("lab" in o["title"] or "replicate" in o["title"] for o in state["objectives"] if o["family"] != "qc")
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Study design" in html and "named as a technical factor" in html and "restarts at 1 inside every level" in html
