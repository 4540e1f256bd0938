"""A large effect that misses the FDR is reported with the power the design had for it, never as a finding
(:mod:`proteus.stats.power`, the report's "Large effects without significance"). Evidence: the NAFLD
plasma cohort's two-group differentials, computed by the tool in the test."""

from __future__ import annotations

import json
import math

import pytest

from proteus.stats.power import bh_threshold, detectable_effect, t_power, underpowered_effects


def test_t_power_matches_r_power_t_test():
    """Pinned to R 4.x ``stats::power.t.test`` (two-sample, two-sided, strict = FALSE)::

        power.t.test(n = 10, delta = 1, sd = 1, sig.level = 0.05)$power   # 0.561984615
        power.t.test(n = 10, delta = 1, sd = 1, sig.level = 0.001)$power  # 0.08492192239
        power.t.test(n = 10, power = 0.8, sd = 1, sig.level = 0.05)$delta # 1.324945639
    """
    assert t_power(1.0, 10, 10, 0.05) == pytest.approx(0.561984615, abs=1e-8)
    assert t_power(1.0, 10, 10, 0.001) == pytest.approx(0.08492192239, abs=1e-9)
    assert detectable_effect(10, 10, 0.05) == pytest.approx(1.324945639, abs=1e-5)
    assert t_power(5.0, 1, 10) == 0.0 and math.isinf(detectable_effect(1, 10))
    # more samples, or a looser level, never lose power
    assert t_power(1.0, 10, 30) > t_power(1.0, 10, 10) and t_power(1.0, 10, 10, 0.05) > t_power(1.0, 10, 10, 0.01)


@pytest.fixture(scope="module")
def nafld_tables(nafld_dir, tmp_path_factory):
    """Every two-group differential of the cohort's contrasts: (step id, params, metrics, full table)."""
    from proteus.io import load_study
    from proteus.profile import profile_study
    from proteus.records import Provenance
    from proteus.tools.registry import ToolContext, get_tool

    study = load_study(nafld_dir)
    out = tmp_path_factory.mktemp("power")
    found = []
    for i, c in enumerate(profile_study(study).contrasts):
        params = {"modality": "proteomics", "group": c.group, "case": c.case, "control": c.control} | ({"case_levels": c.case_levels} if c.case_levels else {})
        res = get_tool("differential_abundance")(study, params, ToolContext(out_dir=out, seed=0, figures=False, provenance=Provenance(tool="differential_abundance", step=f"S{i}")))
        found.append((f"S{i}", params, res.metrics, res.tables["results"]))
    return found


def test_large_effects_that_miss_the_fdr_get_their_power_not_silence(nafld_tables):
    listed = 0
    for _, _, metrics, tab in nafld_tables:
        fdr = float(metrics.get("fdr", 0.05))
        got = underpowered_effects(tab, fdr=fdr)
        alpha = bh_threshold(tab["p"].to_numpy(float), tab["q"].to_numpy(float), fdr)
        called = tab[tab["q"] < fdr]
        # the threshold is the p the table's calls needed: every called p is at or below it, every other above
        assert (called["p"] <= alpha).all() and (tab.loc[tab["q"] >= fdr, "p"].dropna() > alpha).all()
        for r in got.itertuples():
            row = tab[tab["label"].astype(str) == r.label].iloc[0]
            assert row["q"] >= fdr and abs(row["logFC"]) >= 1 and row["detection"] in ("both", None)
            assert min(r.n_case / tab["n_case"].max(), r.n_control / tab["n_control"].max()) >= 0.5
            # the effect was not called, so this design's power for it is below a coin flip, and the effect it could
            # call with 80% power is larger than the one observed
            assert r.power < 0.5 and r.detectable > abs(r.logFC)
            assert t_power(r.detectable / r.sd, r.n_case, r.n_control, alpha) == pytest.approx(0.8, abs=1e-6)
            assert r.sd == pytest.approx(abs(row["logFC"] / row["t"]) / math.sqrt(1 / r.n_case + 1 / r.n_control))
        listed += len(got)
    assert listed, "the cohort has two-fold effects that miss the FDR"


def test_the_report_lists_them_as_suggestive_never_as_findings(nafld_tables, tmp_path):
    from proteus.report import render_report

    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    steps = []
    for sid, params, metrics, tab in nafld_tables:
        rel = f"tables/{sid}_results.tsv"
        tab.to_csv(run / rel, sep="\t", index=False)
        steps.append({"id": sid, "tool": "differential_abundance", "params": params, "metrics": metrics, "status": "done", "tables": [rel]})
    (run / "state.json").write_text(json.dumps({"workflows": [{"id": "W1", "steps": steps}]}, default=str))
    text = render_report(run)
    assert "id='power'>Large effects without significance" in text
    section = text[text.index("id='power'"):]
    section = section[: section.index("</ul>")]
    for sid, params, metrics, tab in nafld_tables:
        for r in underpowered_effects(tab, fdr=float(metrics.get("fdr", 0.05))).head(3).itertuples():
            line = next(x for x in section.split("<li>") if f"step {sid})" in x and f"<b>{r.label}</b>" in x)
            assert f"power {r.power:.2f}" in line and f"&ge; {r.detectable:.2f}" in line and "suggestive, underpowered" in line
        for lab in tab.loc[tab["q"] < float(metrics.get("fdr", 0.05)), "label"].astype(str):
            assert not any(f"step {sid})" in x and f"<b>{lab}</b>" in x for x in section.split("<li>"))
    # counter-example: with every large effect called, there is nothing to list
    for sid, params, metrics, tab in nafld_tables:
        called = tab.assign(q=tab["q"].where(tab["logFC"].abs() < 1, 0.001))
        called.to_csv(run / f"tables/{sid}_results.tsv", sep="\t", index=False)
    assert "id='power'" not in render_report(run)
