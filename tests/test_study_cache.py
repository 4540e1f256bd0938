"""The parsed-study cache behind ``proteus tools run``: same data as ``load_study``, only the named layers,
and a changed input file is a miss."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from proteus.cli import _layers_named, app
from proteus.study_cache import load_study_cached, study_key
from proteus.tools import get_tool


def _same_layer(a, b) -> None:
    assert list(a.obs_names) == list(b.obs_names) and list(a.var_names) == list(b.var_names)
    np.testing.assert_array_equal(np.asarray(a.X), np.asarray(b.X))
    pd.testing.assert_frame_equal(a.var, b.var)
    assert a.uns == b.uns


def test_cached_study_equals_load_study_and_reads_only_the_chosen_layers(ucec_dir, ucec_study, tmp_path):
    first = load_study_cached(ucec_dir, cache=tmp_path, layers=lambda names: ["proteomics"])
    entry = tmp_path / study_key(ucec_dir)
    assert sorted(p.stem for p in (entry / "layers").glob("*.pkl")) == sorted(ucec_study.modalities)
    again = load_study_cached(ucec_dir, cache=tmp_path, layers=lambda names: [n for n in names if n in ("proteomics", "cna")])
    assert list(first.modalities) == ["proteomics"] and sorted(again.modalities) == ["cna", "proteomics"]
    for name, layer in again.modalities.items():
        _same_layer(layer, ucec_study.modalities[name])
    pd.testing.assert_frame_equal(again.clinical, ucec_study.clinical)
    pd.testing.assert_frame_equal(again.mutations, ucec_study.mutations)
    assert [r.path for r in again.reports] == [r.path for r in ucec_study.reports]
    full = load_study_cached(ucec_dir, cache=tmp_path)
    assert sorted(full.modalities) == sorted(ucec_study.modalities)


def test_a_changed_input_file_is_a_miss(ucec_dir, tmp_path):
    data = Path(shutil.copytree(ucec_dir, tmp_path / "data"))
    before = study_key(data)
    with open(data / "clinical.tsv", "a", encoding="utf-8") as f:
        f.write("\n")
    assert study_key(data) != before
    assert study_key(ucec_dir) == before  # the key is the content, not the folder


def test_another_version_of_a_pickled_library_is_a_miss(ucec_dir, monkeypatch):
    from proteus import study_cache

    before = study_key(ucec_dir)
    versions = study_cache._pickle_versions()
    monkeypatch.setattr(study_cache, "_pickle_versions", lambda: {**versions, "anndata": versions["anndata"] + ".post1"})
    assert study_key(ucec_dir) != before


def test_layers_named_follow_the_registry_layer_fields():
    names = ["proteomics", "transcriptomics", "cna"]
    de = get_tool("differential_abundance")
    assert _layers_named(de, {"modality": "transcriptomics", "group": "g", "case": "a", "control": "b"}, names) == ["transcriptomics"]
    assert _layers_named(de, {"modality": "nope", "group": "g", "case": "a", "control": "b"}, names) == names
    assert _layers_named(de, {"modality": "proteomics"}, names) == names  # does not parse: the tool reports it
    cis = get_tool("cna_cis_effect")
    assert _layers_named(cis, {"modality": "cna"}, names) == names  # targets left to the tool: every layer
    assert _layers_named(cis, {"modality": "cna", "modalities": ["proteomics"]}, names) == ["proteomics", "cna"]


def test_tools_run_gives_the_same_tables_with_and_without_the_cache(ucec_dir, ucec_study, tmp_path, monkeypatch):
    monkeypatch.setenv("PROTEUS_CACHE", str(tmp_path / "cache"))
    clin = ucec_study.clinical
    group = next(c for c in clin.columns if clin[c].nunique() == 2 and clin[c].value_counts().min() >= 20)
    case, control = sorted(map(str, clin[group].dropna().unique()))
    params = json.dumps({"modality": "proteomics", "group": group, "case": case, "control": control})
    tables = {}
    for label, flags in (("miss", []), ("hit", []), ("direct", ["--no-cache"])):
        out = tmp_path / label
        r = CliRunner().invoke(app, ["tools", "run", "differential_abundance", "--data", str(ucec_dir), "--out", str(out), "--params", params, *flags])
        assert r.exit_code == 0, r.output
        tables[label] = {p.name: p.read_text() for p in sorted(out.glob("*.tsv"))}
    assert tables["direct"] and tables["miss"] == tables["direct"] and tables["hit"] == tables["direct"]

    # a warm call in a fresh process imports the one tool family it runs, none of the others, no reader,
    # and nothing of the research loop, report, evaluation, models or scipy.stats (see proteus.stats.distributions);
    # anndata comes without dask (cli._import_anndata_without_dask), and --no-figures without matplotlib
    code = ("import json, sys\nfrom proteus.cli import app\n"
            "try:\n    app(json.loads(sys.argv[1]), standalone_mode=False)\nfinally:\n"
            "    print(json.dumps(sorted(sys.modules)))")
    args = ["tools", "run", "differential_abundance", "--data", str(ucec_dir), "--out", str(tmp_path / "fresh"), "--params", params,
            "--no-figures"]
    env = {**os.environ, "PROTEUS_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env, check=True)
    loaded = set(json.loads(r.stdout.strip().splitlines()[-1]))
    assert {"proteus.tools.differential", "anndata"} <= loaded
    unwanted = ["proteus.io.load", "proteus.runner", "proteus.report", "proteus.evals.harness", "proteus.llm", "proteus.policy",
                "langgraph", "scanpy", "scipy.stats", "dask", "matplotlib",
                *(f"proteus.tools.{m}" for m in ("correlation", "cytometry", "enrichment", "qc"))]
    assert [m for m in unwanted if m in loaded] == []
    # another process may round the last bits differently (BLAS threading): equal to 1e-9, same rows and columns
    fresh = {p.name: p.read_text() for p in sorted((tmp_path / "fresh").glob("*.tsv"))}
    assert fresh.keys() == tables["direct"].keys()
    for name, text in fresh.items():
        pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(text), sep="\t"), pd.read_csv(io.StringIO(tables["direct"][name]), sep="\t"),
                                      check_exact=False, rtol=1e-9, atol=1e-12)
    assert not (tmp_path / "fresh" / "figures").exists() and len(list((tmp_path / "hit" / "figures").glob("*.png"))) == 2
