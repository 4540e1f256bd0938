"""End to end: ``proteus run`` on the small bundled datasets, asserting real scientific outcomes.

One offline run per dataset (the command a user types, in a subprocess), each well under a minute
on an idle machine:

- GSE7390 (microarray, time/event): survival analysed, an ``associated_with_survival`` relation and a
  survival hypothesis; the probe layer is read as transcriptomics.
- Bodenmiller BCR-XL (8 FCS files, paired design): pS6 rises in B cells (sample = statistical unit),
  several grounded hypotheses.
- pbmc68k (one donor, .h5ad): populations named, no crash without conditions.
- facs-diva (one FCS file, no sample sheet): populations described with the fluorescence cofactor.
- GSE7390 with the clinical rows' sample ids shuffled: (almost) no hypotheses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from proteus import datasets

pytestmark = pytest.mark.slow


def _fetch(name: str, dest: Path) -> Path:
    try:
        return datasets.fetch(name, dest)
    except datasets.MissingSourceError as e:
        pytest.skip(str(e))


def _run(data: Path, out: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "proteus", "run", str(data), "--out", str(out), "-q", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trace = [json.loads(x) for x in (out / "trace.jsonl").read_text().splitlines() if x.strip()]
    kg = json.loads((out / "kg.json").read_text())
    return {
        "calls": [e for e in trace if e.get("kind") == "tool_call"],
        "bugs": [e for e in trace if e.get("kind") == "tool_bug"],
        "state": json.loads((out / "state.json").read_text()),
        "hypotheses": [json.loads(x) for x in (out / "hypotheses.jsonl").read_text().splitlines() if x.strip()],
        "relations": [e for e in kg["edges"] if "stats" in e],
        "edge_ids": {e["id"] for e in kg["edges"]},
        "profile": json.loads((out / "profile.json").read_text()),
    }


def _grounded(run: dict) -> None:
    assert not run["bugs"], run["bugs"][0]
    for h in run["hypotheses"]:
        assert h["evidence"], h["statement"]
        assert set(h["evidence"]) <= run["edge_ids"], h["statement"]


@pytest.fixture(scope="module")
def gse7390(tmp_path_factory):
    base = tmp_path_factory.mktemp("gse7390")
    return _fetch("gse7390-breast", base / "data")


def test_gse7390_survival(gse7390, tmp_path):
    run = _run(gse7390, tmp_path / "run")
    _grounded(run)
    prof = run["profile"]
    assert [m["kind"] for m in prof["modalities"]] == ["transcriptomics"]
    assert prof["modalities"][0]["id_type"] == "probe"
    kinds = {v["name"]: v["kind"] for v in prof["variables"]}
    assert (kinds["time"], kinds["event"]) == ("survival_time", "survival_event")
    assert [tuple(p) for p in prof["survival"]] == [("time", "event")]
    tools = {c["tool"] for c in run["calls"] if c["status"] == "done"}
    assert {"cox_per_feature", "kaplan_meier"} <= tools
    # probe ids do not map to genes: no pathway/network steps planned on them
    assert not {"enrichment_ora", "enrichment_gsea", "ppi_network"} & {c["tool"] for c in run["calls"]}
    surv = [r for r in run["relations"] if r["predicate"] == "associated_with_survival"]
    assert surv
    surv_ids = {r["id"] for r in surv}
    assert any(surv_ids & set(h["evidence"]) for h in run["hypotheses"])
    # the misspelt 'unkown' grade (n=2) is not a level anyone compares
    assert not any("unkown" in json.dumps(c["params"]) for c in run["calls"])
    assert len(run["hypotheses"]) >= 3


def test_gse7390_permuted_labels_give_almost_no_hypotheses(gse7390, tmp_path):
    data = tmp_path / "perm"
    data.mkdir()
    (data / "expression.tsv").write_bytes((gse7390 / "expression.tsv").read_bytes())
    clin = pd.read_csv(gse7390 / "clinical.tsv", sep="\t")
    clin["sample_id"] = np.random.default_rng(1).permutation(clin["sample_id"].to_numpy())
    clin.to_csv(data / "clinical.tsv", sep="\t", index=False)
    run = _run(data, tmp_path / "run")
    _grounded(run)
    # clinical-only facts (ER vs outcome) survive the shuffle; expression-clinical links must not
    assert len(run["hypotheses"]) <= 1, [h["statement"] for h in run["hypotheses"]]


def test_bodenmiller_bcrxl_signalling_in_b_cells(tmp_path):
    data = _fetch("bodenmiller-bcrxl", tmp_path / "data")
    run = _run(data, tmp_path / "run")
    _grounded(run)
    up = [r for r in run["relations"] if r["predicate"] == "higher_in" and r["subject"]["type"] == "marker"
          and r["stats"]["extra"].get("population") == "B cells" and "BCRXL" in r["object"]["label"]]
    markers = {r["stats"]["extra"]["marker"] for r in up}
    assert "pS6" in markers
    assert markers & {"pPlcg2", "pErk", "pBtk", "pSHP2"}
    assert all(r["stats"]["n"] == 8 for r in up)  # samples, not cells
    assert len(run["hypotheses"]) >= 3
    assert any("B cells" in h["statement"] and "pS6" in h["statement"] for h in run["hypotheses"])
    # no hypothesis about unnamed clusters, no duplicated population statements
    assert not any("unassigned" in h["statement"] for h in run["hypotheses"])


def test_pbmc68k_populations_named(tmp_path):
    data = _fetch("pbmc68k", tmp_path / "data")
    run = _run(data, tmp_path / "run")
    _grounded(run)
    calls = [c for c in run["calls"] if c["tool"] == "singlecell_clustering"]
    assert calls and calls[0]["status"] == "done"
    named = {r["object"]["label"] for r in run["relations"] if r["predicate"] == "marker_of"}
    assert {"B cells", "NK cells", "monocytes"} <= named
    assert run["hypotheses"]
    assert any("NK cells" in h["statement"] or "B cells" in h["statement"] for h in run["hypotheses"])


def test_facs_diva_single_file_described(tmp_path):
    data = _fetch("facs-diva", tmp_path / "data")
    run = _run(data, tmp_path / "run")
    _grounded(run)
    calls = [c for c in run["calls"] if c["tool"] == "cytometry_clustering"]
    assert calls and calls[0]["status"] == "done"
    assert "cofactor 150" in calls[0]["summary"]
    assert [o["status"] for o in run["state"]["objectives"]] == ["done"]
