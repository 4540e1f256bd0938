"""The parsed-study cache behind ``proteus tools run``: same data as ``load_study``, only the named layers,
and a changed input file is a miss."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from proteus.cli import _layers_named, app
from proteus.study_cache import load_study_cached, study_key
from proteus.tools import get_tool


def _same_layer(a, b) -> None:
    assert list(a.obs_names) == list(b.obs_names) and list(a.var_names) == list(b.var_names)
    np.testing.assert_array_equal(np.asarray(a.X), np.asarray(b.X))
    pd.testing.assert_frame_equal(a.var, b.var)
    assert a.uns == b.uns


def _same_study(got, want, layers, mutations=True) -> None:
    assert list(got.modalities) == layers
    for name in layers:
        _same_layer(got.modalities[name], want.modalities[name])
    pd.testing.assert_frame_equal(got.clinical, want.clinical)
    if want.mutations is None or not mutations:
        assert got.mutations is None
    else:
        pd.testing.assert_frame_equal(got.mutations, want.mutations)
    assert got.sample_notes == want.sample_notes
    assert [m.layer for m in got.sample_matching] == [m.layer for m in want.sample_matching if m.layer in layers]


def test_cached_study_equals_load_study_and_parses_only_the_chosen_layers(ucec_dir, ucec_study, tmp_path):
    first = load_study_cached(ucec_dir, cache=tmp_path, layers={"proteomics"})
    entry = tmp_path / study_key(ucec_dir)
    assert [p.name.split("-")[0] for p in (entry / "kinds").glob("*.pkl")] == ["proteomics"]
    _same_study(first, ucec_study, ["proteomics"])
    parsed = next((entry / "kinds").glob("proteomics-*.pkl")).stat().st_mtime_ns
    again = load_study_cached(ucec_dir, cache=tmp_path, layers={"proteomics", "cna"})
    assert sorted(p.name.split("-")[0] for p in (entry / "kinds").glob("*.pkl")) == ["cna", "proteomics"]
    assert next((entry / "kinds").glob("proteomics-*.pkl")).stat().st_mtime_ns == parsed  # read, not parsed again
    _same_study(again, ucec_study, [n for n in ucec_study.modalities if n in ("proteomics", "cna")])
    full = load_study_cached(ucec_dir, cache=tmp_path)
    _same_study(full, ucec_study, list(ucec_study.modalities))
    assert [r.path for r in full.reports] == [r.path for r in ucec_study.reports]
    unknown = load_study_cached(ucec_dir, cache=tmp_path, layers={"nope"})  # the tool's error lists every layer
    assert list(unknown.modalities) == list(ucec_study.modalities)


def test_a_cached_layer_is_the_anndata_it_stored(ucec_dir, ucec_study, tmp_path):
    from proteus.study_cache import CachedLayer

    load_study_cached(ucec_dir, cache=tmp_path, layers={"proteomics"})
    layer = load_study_cached(ucec_dir, cache=tmp_path, layers={"proteomics"}).modalities["proteomics"]
    want = ucec_study.modalities["proteomics"]
    assert isinstance(layer, CachedLayer) and layer.shape == want.shape and len(layer) == want.n_obs
    _same_layer(layer, want)  # X, obs, var, uns as stored, before any AnnData is built
    names = list(want.obs_names[::3])
    _same_layer(layer[names], want[names])  # indexing builds the AnnData
    _same_layer(layer.anndata(), want)
    assert layer.anndata() is layer.anndata() and layer.X is layer.anndata().X
    pd.testing.assert_frame_equal(layer.to_df(), want.to_df())  # any other attribute is the AnnData's
    layer.uns["note"] = "kept"
    assert layer.anndata().uns["note"] == "kept"


def test_without_a_sample_table_the_layers_name_the_samples_so_their_files_are_read_whole(ucec_dir, tmp_path):
    from proteus.io.load import load_layers, load_study

    data = _small_folder(ucec_dir, tmp_path / "d", {"mirna.tsv.gz": "mirna.tsv.gz", "proteomics.tsv.gz": "proteomics.tsv.gz"})
    (data / "clinical.tsv").unlink()
    for kinds in ({"mirna"}, {"mirna", "proteomics"}):
        part = load_layers(data, kinds)
        assert part.left_out == {} and part.read_whole == {"mirna.tsv.gz", "proteomics.tsv.gz"}
    _same_study(part.study, load_study(data), ["mirna", "proteomics"])


def test_mutations_are_parsed_only_when_asked_for(ucec_dir, ucec_study, tmp_path):
    from proteus.io.load import load_layers

    part = load_layers(ucec_dir, {"mirna"}, read_mutations=False)
    _same_study(part.study, ucec_study, ["mirna"], mutations=False)  # the MAF's sample ids still match the samples
    maf = next(r for r in part.study.reports if r.kind == "maf")
    assert maf.notes[-1] == "mutations not read (not asked for)"
    first = load_study_cached(ucec_dir, cache=tmp_path, layers={"mirna"}, mutations=False)
    _same_study(first, ucec_study, ["mirna"], mutations=False)
    assert part.study.mutations is None and first.mutations is None
    again = load_study_cached(ucec_dir, cache=tmp_path, layers={"mirna"})
    _same_study(again, ucec_study, ["mirna"])


def _small_folder(ucec_dir, dest: Path, layers: dict[str, str]) -> Path:
    """A folder of UCEC's sample table and some of its layer files, under new names."""
    dest.mkdir()
    shutil.copy(ucec_dir / "clinical.tsv", dest / "clinical.tsv")
    for src, name in layers.items():
        shutil.copy(ucec_dir / src, dest / name)
    return dest


def test_load_layers_leaves_out_other_kinds_and_equals_load_study(ucec_dir, tmp_path):
    from proteus.io.load import load_layers, load_study

    data = _small_folder(ucec_dir, tmp_path / "d", {"proteomics.tsv.gz": "proteomics.tsv.gz", "cna.tsv.gz": "cna.tsv.gz",
                                                    "mirna.tsv.gz": "mirna.tsv.gz"})
    whole = load_study(data)
    part = load_layers(data, {"cna"})
    assert part.left_out == {"proteomics.tsv.gz": "proteomics", "mirna.tsv.gz": "mirna"} and part.read_whole == set()
    _same_study(part.study, whole, ["cna"])
    assert next(r for r in part.study.reports if r.path == "proteomics.tsv.gz").notes[-1] == "proteomics layer not read (not asked for)"

    # a head that does not show the whole table's row count (a blank line) or column kinds (a column
    # empty in its first rows): read whole
    cna = gzip.decompress((ucec_dir / "cna.tsv.gz").read_bytes()).decode().split("\n")
    for edit in ("blank line", "late column"):
        lines = list(cna)
        if edit == "blank line":
            lines.insert(3, "")
        else:
            for i in range(1, 600):
                fields = lines[i].split("\t")
                fields[5] = ""
                lines[i] = "\t".join(fields)
        (data / "cna.tsv.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
        whole = load_study(data)
        part = load_layers(data, {"proteomics"})
        assert "cna.tsv.gz" not in part.left_out and part.read_whole == {"cna.tsv.gz"}, edit
        _same_study(part.study, whole, [n for n in whole.modalities if n in ("cna", "proteomics")])
    shutil.copy(ucec_dir / "cna.tsv.gz", data / "cna.tsv.gz")

    # a narrow table could be a sample table: read whole, and its hash kept by the cache
    y = pd.read_csv(ucec_dir / "proteomics.tsv.gz", sep="\t", index_col=0)
    y.iloc[:, :12].to_csv(data / "proteomics.tsv.gz", sep="\t")
    whole = load_study(data)
    part = load_layers(data, {"cna"})
    assert "proteomics.tsv.gz" not in part.left_out and part.read_whole == {"proteomics.tsv.gz"}
    _same_study(part.study, whole, [n for n in whole.modalities if n in ("cna", "proteomics")])

    # a file whose content, not its name, makes it a left-out kind's layer: numbering could differ, so all are read
    shutil.copy(ucec_dir / "proteomics.tsv.gz", data / "proteomics.tsv.gz")
    shutil.copy(ucec_dir / "proteomics.tsv.gz", data / "values.tsv.gz")
    whole = load_study(data)
    part = load_layers(data, {"cna"})
    assert part.left_out == {} and list(part.study.modalities) == list(whole.modalities)
    assert sorted(whole.modalities) == ["cna", "mirna", "proteomics", "proteomics_2"]


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
    de = get_tool("differential_abundance")
    assert _layers_named(de, {"modality": "transcriptomics", "group": "g", "case": "a", "control": "b"}) == {"transcriptomics"}
    assert _layers_named(de, {"modality": "nope", "group": "g", "case": "a", "control": "b"}) == {"nope"}  # the cache reads all
    assert _layers_named(de, {"modality": "proteomics"}) is None  # does not parse: the tool reports it
    cis = get_tool("cna_cis_effect")
    assert _layers_named(cis, {"modality": "cna"}) is None  # targets left to the tool: every layer
    assert _layers_named(cis, {"modality": "cna", "modalities": ["proteomics"]}) == {"proteomics", "cna"}


def test_tools_run_gives_the_same_tables_with_and_without_the_cache(ucec_dir, ucec_study, tmp_path, monkeypatch):
    monkeypatch.setenv("PROTEUS_CACHE", str(tmp_path / "cache"))
    clin = ucec_study.clinical
    group = next(c for c in clin.columns if clin[c].nunique() == 2 and clin[c].value_counts().min() >= 20)
    case, control = sorted(map(str, clin[group].dropna().unique()))
    params = json.dumps({"modality": "proteomics", "group": group, "case": case, "control": control})
    tables = {}
    median = json.dumps({**json.loads(params), "normalize": "median"})  # normalising subsets the layer: its AnnData is built
    for label, flags in (("miss", []), ("hit", []), ("direct", ["--no-cache"]), ("hit_median", []), ("direct_median", ["--no-cache"])):
        out = tmp_path / label
        r = CliRunner().invoke(app, ["tools", "run", "differential_abundance", "--data", str(ucec_dir), "--out", str(out),
                                     "--params", median if label.endswith("median") else params, *flags])
        assert r.exit_code == 0, r.output
        tables[label] = {p.name: p.read_text() for p in sorted(out.glob("*.tsv"))}
    assert tables["direct"] and tables["miss"] == tables["direct"] and tables["hit"] == tables["direct"]
    assert tables["direct_median"] != tables["direct"] and tables["hit_median"] == tables["direct_median"]

    # a warm call in a fresh process imports the one tool family it runs, none of the others, no reader, not
    # anndata (the two-group test reads the cached layer's X, obs, var, uns: study_cache.CachedLayer),
    # and nothing of the research loop, report, evaluation, models, scipy.stats (see proteus.stats.distributions) or rich;
    # --no-figures not matplotlib
    code = ("import json, sys\nfrom proteus.cli import app\n"
            "try:\n    app(json.loads(sys.argv[1]), standalone_mode=False)\nfinally:\n"
            "    print(json.dumps(sorted(sys.modules)))")
    args = ["tools", "run", "differential_abundance", "--data", str(ucec_dir), "--out", str(tmp_path / "fresh"), "--params", params,
            "--no-figures"]
    env = {**os.environ, "PROTEUS_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env, check=True)
    loaded = set(json.loads(r.stdout.strip().splitlines()[-1]))
    assert "proteus.tools.differential" in loaded
    unwanted = ["proteus.io.load", "proteus.runner", "proteus.report", "proteus.evals.harness", "proteus.llm", "proteus.policy",
                "langgraph", "anndata", "zarr", "h5py", "scanpy", "scipy.stats", "dask", "matplotlib", "rich",
                *(f"proteus.tools.{m}" for m in ("correlation", "cytometry", "enrichment", "qc"))]
    assert [m for m in unwanted if m in loaded] == []
    # another process may round the last bits differently (BLAS threading): equal to 1e-9, same rows and columns
    fresh = {p.name: p.read_text() for p in sorted((tmp_path / "fresh").glob("*.tsv"))}
    assert fresh.keys() == tables["direct"].keys()
    for name, text in fresh.items():
        pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(text), sep="\t"), pd.read_csv(io.StringIO(tables["direct"][name]), sep="\t"),
                                      check_exact=False, rtol=1e-9, atol=1e-12)
    assert not (tmp_path / "fresh" / "figures").exists() and len(list((tmp_path / "hit" / "figures").glob("*.png"))) == 2


def test_tools_run_parses_a_layer_once_and_a_changed_file_only_its_layer(ucec_dir, ucec_study, tmp_path):
    data = Path(shutil.copytree(ucec_dir, tmp_path / "data"))
    clin = ucec_study.clinical
    group = next(c for c in clin.columns if clin[c].nunique() == 2 and clin[c].value_counts().min() >= 20)
    case, control = sorted(map(str, clin[group].dropna().unique()))
    env = {**os.environ, "PROTEUS_CACHE": str(tmp_path / "cache")}

    def run(layer: str, out: str, *flags: str) -> dict[str, str]:
        params = json.dumps({"modality": layer, "group": group, "case": case, "control": control})
        subprocess.run([sys.executable, "-m", "proteus", "tools", "run", "differential_abundance", "--data", str(data),
                        "--out", str(tmp_path / out), "--params", params, "--no-figures", *flags], env=env, check=True, capture_output=True)
        return {p.name: p.read_text() for p in sorted((tmp_path / out).glob("*.tsv"))}

    def cached() -> dict[str, int]:
        return {str(p.relative_to(tmp_path / "cache")): p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.pkl")}

    run("proteomics", "p1")
    first = cached()
    assert sorted(p.split("/")[-1].split("-")[0] for p in first if "/kinds/" in p) == ["proteomics"]
    cna = run("cna", "c1")
    second = cached()
    assert {p: t for p, t in second.items() if p in first} == first  # nothing parsed again
    assert sorted(p.split("/")[-1].split("-")[0] for p in second if "/kinds/" in p) == ["cna", "proteomics"]

    # a value past the head of the CNA file changes: only the CNA layer is parsed again
    path = data / "cna.tsv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().split("\n")
    last = next(i for i in range(len(lines) - 1, 0, -1) if lines[i].strip())
    fields = lines[last].split("\t")
    col = next(i for i, v in enumerate(fields[1:], 1) if v not in ("", "NA", "nan"))
    fields[col] = str(float(fields[col]) + 1.5)
    lines[last] = "\t".join(fields)
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    changed = run("cna", "c2")
    third = cached()
    assert {p: t for p, t in third.items() if p in second} == second
    assert sorted(p.split("/")[-1].split("-")[0] for p in set(third) - set(second)) == ["cna"]
    assert changed == run("cna", "c3", "--no-cache") and changed != cna
    run("proteomics", "p2")
    assert cached() == third


def test_head_bytes_is_the_first_lines_of_the_whole_file(ucec_dir, tmp_path):
    from proteus.io._text import head_bytes

    def first_lines(path: Path, n: int) -> tuple[bytes, bool]:
        raw = path.read_bytes()
        lines = io.BytesIO(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).readlines()
        return b"".join(lines[:n]), len(lines) > n

    for path in sorted(ucec_dir.iterdir()):
        assert head_bytes(path, 5002) == first_lines(path, 5002)
    text = gzip.decompress((ucec_dir / "mirna.tsv.gz").read_bytes())
    for name, content in {"end": text, "no_final_newline": text.rstrip(b"\n"), "one_long_line": text.replace(b"\n", b"\t", 2000)}.items():
        for packed, suffix in ((content, ".tsv"), (gzip.compress(content), ".tsv.gz")):
            path = tmp_path / f"{name}{suffix}"
            path.write_bytes(packed)
            for n in (0, 1, 336, 337, 338, 2337, 2338, 2339):
                assert head_bytes(path, n) == first_lines(path, n), (name, suffix, n)


def test_read_text_column_reads_the_column_as_the_whole_table_does(ucec_dir, tmp_path):
    from proteus.io._text import read_text_column, read_text_table

    maf = gzip.decompress((ucec_dir / "somatic.maf.gz").read_bytes()).decode()
    lines = maf.split("\n")
    col = "Tumor_Sample_Barcode"
    header_at = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    at = lines[header_at].split("\t").index(col)
    assert at > 0

    def blank_to(i: int, upto: int) -> list[str]:  # line i with its fields before ``upto`` emptied
        edited = list(lines)
        fields = edited[i].split("\t")
        edited[i] = "\t".join([""] * upto + fields[upto:])
        return edited

    variants = {
        "as written": (lines, True),
        "CRLF": ("\r\n".join(lines).split("\n"), True),
        "CR": (["\r".join(lines)], True),
        "a row blank up to the column": (blank_to(header_at + 3, at + 1), False),  # cut, it would be skipped as blank
        "a row blank before the column": (blank_to(header_at + 3, at), True),
        "a short row": (lines[: header_at + 5] + ["\t".join(lines[header_at + 5].split("\t")[: at - 2])] + lines[header_at + 6 :], True),
        "a quote": (lines[:-2] + [lines[-2].replace("\t", '\t"x"\t', 1)] + lines[-1:], False),
    }
    for name, (content, partial) in variants.items():
        path = tmp_path / f"{name.replace(' ', '_')}.maf.gz"
        path.write_bytes(gzip.compress("\n".join(content).encode()))
        whole = read_text_table(path, path.name, 10**9, comment="#")
        part, columns = read_text_column(path, path.name, 10**9, col, comment="#")
        assert part.partial == partial, name
        assert columns == list(whole.df.columns), name
        pd.testing.assert_series_equal(part.df[col], whole.df[col], obj=name)
