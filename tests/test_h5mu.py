"""``proteus export h5mu``: the study and its run's contrasts as MuData, read back with mudata on UCEC."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

mudata = pytest.importorskip("mudata")


@pytest.fixture(scope="module")
def ucec_h5mu(ucec_run):
    from proteus.cli import app

    result = CliRunner().invoke(app, ["export", "h5mu", str(ucec_run)])
    assert result.exit_code == 0, result.output
    path = ucec_run / "study.h5mu"
    assert path.is_file()
    return mudata.read_h5mu(path)


def test_layers_and_clinical_obs(ucec_h5mu, ucec_study):
    md = ucec_h5mu
    assert set(md.mod) == set(ucec_study.modalities)
    for name, a in ucec_study.modalities.items():
        m = md.mod[name]
        assert m.shape == a.shape, name
        assert list(m.obs_names) == list(map(str, a.obs_names)) and list(m.var_names) == list(map(str, a.var_names))
        assert m.X.dtype == np.float32
        np.testing.assert_array_equal(m.X, np.asarray(a.X, dtype=np.float32))  # NaN in the same places
        assert set(ucec_study.clinical.columns) <= set(m.obs.columns), name
    # global obs: the clinical table over the samples of every layer (mudata 0.3's reader adds each layer's
    # obs columns as '<layer>:<column>'); a text column keeps its values, a numeric one its numbers
    assert set(map(str, ucec_study.clinical.columns)) <= set(md.obs.columns)
    clin = ucec_study.clinical.reindex(md.obs_names)
    text = [c for c in clin.columns if clin[c].dtype == object][0]
    assert md.obs[text].astype(object).where(md.obs[text].notna(), None).tolist() == clin[text].where(clin[text].notna(), None).tolist()
    for c in [c for c in clin.columns if pd.api.types.is_float_dtype(clin[c])][:5]:
        np.testing.assert_array_equal(md.obs[c].to_numpy(float), clin[c].to_numpy(float))
    muts = md.uns["mutations"]
    assert len(muts) == len(ucec_study.mutations) and {"sample", "gene"} <= set(muts.columns)


def test_contrasts_in_varm_equal_the_run_tables(ucec_h5mu, ucec_run):
    md = ucec_h5mu
    state = json.loads((ucec_run / "state.json").read_text())
    steps = [s for w in state["workflows"] for s in w["steps"] if s["tool"] == "differential_abundance" and s["status"] == "done"]
    assert steps, "the UCEC run made no two-group differential test"
    summary = md.uns["contrasts"]
    assert sorted(summary["step"]) == sorted(s["id"] for s in steps)
    for s in steps:
        m = md.mod[s["params"]["modality"]]
        arr = m.varm[f"contrast_{s['id']}"]
        assert isinstance(arr, np.ndarray) and arr.shape == (m.n_vars, 4)  # no copy of the feature names
        assert list(m.uns["contrast_columns"]) == ["logFC", "t", "p", "q"]
        varm = pd.DataFrame(arr, index=m.var_names, columns=list(m.uns["contrast_columns"]))
        table = pd.read_csv(ucec_run / f"tables/{s['id']}_results.tsv.gz", sep="\t", dtype={"feature": str}).set_index("feature")
        tested = varm["p"].notna()
        assert set(varm.index[tested]) == set(table.index)
        got = varm.loc[table.index]
        for col in ["logFC", "t", "p", "q"]:
            np.testing.assert_array_equal(got[col].to_numpy(), table[col].to_numpy(float))
        row = summary.set_index("step").loc[s["id"]]
        assert (row["group"], row["case"]) == (s["params"]["group"], s["params"]["case"])
        assert row["n_tested"] == len(table) and row["n_q05"] == int((table["q"] < 0.05).sum())
    assert md.uns["proteus"]["run_id"] == ucec_run.name and md.uns["proteus"]["status"] == "finished"


def test_changed_inputs_refuse_to_export(ucec_run, tmp_path):
    from proteus.cli import app

    run = tmp_path / "run"
    run.mkdir()
    info = json.loads((ucec_run / "run.json").read_text())
    info["fingerprint"] = {**info["fingerprint"], "clinical.tsv": "0" * 64}
    (run / "run.json").write_text(json.dumps(info))
    shutil.copy(ucec_run / "state.json", run / "state.json")
    result = CliRunner().invoke(app, ["export", "h5mu", str(run)])
    assert result.exit_code == 2 and "changed since the run" in result.output
    assert not (run / "study.h5mu").exists()


def _done_steps(run) -> list[dict]:
    state = json.loads((run / "state.json").read_text())
    return [s for w in state["workflows"] for s in w["steps"] if s["status"] == "done"]


def test_cytometry_run_exports_its_populations_and_population_contrasts(tmp_path):
    """BCR-XL CyTOF (8 FCS files, offline run): cells keep their own obs and get their sample's
    sample-sheet columns (layer and global obs); the run's populations come back per cell (their
    per-sample fractions equal the clustering step's proportions table) and the DA / DS tables equal
    the run's tables."""
    from proteus.cli import app
    from proteus.datasets import shared_dataset_dir
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.runner import run_research

    data = shared_dataset_dir("bodenmiller-bcrxl")
    if data is None:
        pytest.skip("Bodenmiller BCR-XL data not in shared/datasets (set PROTEUS_SHARED)")
    run = tmp_path / "run"
    run_research(data, run, policy=HeuristicPolicy(), seed=0)
    result = CliRunner().invoke(app, ["export", "h5mu", str(run)])
    assert result.exit_code == 0, result.output
    md = mudata.read_h5mu(run / "study.h5mu")
    cells = md.mod["cytometry"]
    samples = pd.read_csv(data / "metadata.tsv", sep="\t").set_index("sample_id")
    of_sample = samples.loc[cells.obs["sample_id"].astype(str)]
    for c in ("condition", "patient_id"):
        assert cells.obs[c].astype(str).tolist() == of_sample[c].astype(str).tolist()
        assert md.obs.loc[cells.obs_names, c].astype(str).tolist() == of_sample[c].astype(str).tolist()  # a cell's row is its sample's

    steps = {s["tool"]: s for s in _done_steps(run)}
    clustering = steps["cytometry_clustering"]
    props = pd.read_csv(run / f"tables/{clustering['id']}_proportions.tsv.gz", sep="\t").set_index("sample_id")
    ours = pd.crosstab(cells.obs["sample_id"].astype(str), cells.obs["population"].astype(str), normalize="index")
    np.testing.assert_allclose(ours.loc[props.index, props.columns].to_numpy(), props.to_numpy(), atol=1e-6)
    assert cells.uns["proteus_clustering"]["key"] == clustering["metrics"]["clustering_key"]
    for tool, name in (("cytometry_differential_abundance", "differential_abundance"), ("cytometry_differential_state", "differential_state")):
        step = steps[tool]
        table = pd.read_csv(run / f"tables/{step['id']}_{name}.tsv.gz", sep="\t")
        got = cells.uns[f"contrast_{step['id']}"]
        np.testing.assert_array_equal(got["q"].to_numpy(float), table["q"].to_numpy(float))
        assert got["population"].astype(str).tolist() == table["population"].astype(str).tolist()
    assert set(md.uns["contrasts"]["tool"]) == {"cytometry_differential_abundance", "cytometry_differential_state"}
