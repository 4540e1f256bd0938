"""A study and its run's main results as MuData (``study.h5mu``), for scanpy / muon users.

``proteus export h5mu RUN_DIR`` reads the run's data folder again (checked against the run's input
fingerprint) and writes ``RUN_DIR/study.h5mu``; open it with ``mudata.read_h5mu``. Layout
(Bredikhin et al. 2022, MuData, doi:10.1186/s13059-021-02577-8):

- ``mdata.mod[<layer>]``: one AnnData per omics layer, ``X`` as float32 (samples, or cells, x
  features) and ``var`` / ``uns`` as read.
- ``mdata.obs``: the clinical / sample table (global; a cell's row is its sample's); each
  sample-level layer's ``obs`` holds the same columns for its samples, a cell-level layer's ``obs``
  adds them to each cell through ``obs["sample_id"]``.
- ``mdata.mod[<layer>].varm["contrast_<step>"]``: features x 4 array of ``logFC``, ``t``, ``p``, ``q``
  (column names in the layer's ``uns["contrast_columns"]``; rows are the layer's ``var_names``, not
  stored again) of each two-group differential test the run made on that layer (features the step did
  not test are NaN), read from the step's table ``tables/<step>_results.tsv.gz`` (6 significant
  digits, as written there).
- A cytometry layer the run clustered: ``obs["cluster"]`` / ``obs["population"]`` and
  ``layers["arcsinh"]`` as the run made them (recomputed with its parameters and seed, the
  clustering key checked), and each differential abundance / state table in
  ``uns["contrast_<step>"]``.
- ``mdata.uns["contrasts"]``: one row per contrast (key, step, tool, layer, group, case, control,
  covariates or pairing block, tests, q < 0.05); ``mdata.uns["proteus"]``: the run's id, policy, model,
  seed, status and counts; ``mdata.uns["mutations"]``: the long mutation table, when the study has one.

The layers are the data folder's as read, restricted to the run's samples where the run was given a
subset of them (``run.json`` ``samples``: the evaluation harness's discovery split).

It is written on request, not in every run: for the CPTAC UCEC cohort it takes 66 MB (gzip, X as
float32; the phosphosite matrix alone 16 MB), against 23 MB for the rest of the run directory.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:  # the command line imports this module; the data libraries load when it runs
    import anndata as ad
    import pandas as pd

    from proteus.study import Study

__all__ = ["CONTRAST_TOOLS", "POPULATION_CONTRAST_TOOLS", "contrast_tables", "study_mudata", "write_h5mu", "h5mu_cli"]

CONTRAST_TOOLS = {"differential_abundance": "results"}
"""Tools whose table (tool -> table name) is a two-group contrast with per-feature logFC, t, p and q:
written to the layer's ``varm``."""

POPULATION_CONTRAST_TOOLS = {"cytometry_differential_abundance": "differential_abundance",
                             "cytometry_differential_state": "differential_state"}
"""Tools whose table is a two-group contrast of cell populations (and markers within them): written
whole to the cell-level layer's ``uns``."""

_CONTRAST_COLUMNS = ["logFC", "t", "p", "q"]


@contextmanager
def _quiet_mudata() -> Iterator[None]:
    """MuData's coming default (modality columns are not copied into the global ``obs`` / ``var``),
    without its warning that layers share feature names (genes measured in several layers do)."""
    import mudata

    with mudata.set_options(pull_on_update=False), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="var_names are not unique")
        yield


def _h5_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every column in a dtype h5ad writes: numbers and booleans kept, other columns as
    string categoricals (missing values stay missing); the index as strings."""
    import pandas as pd

    cols = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_bool_dtype(s) or (pd.api.types.is_numeric_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype)):
            cols[str(c)] = s.to_numpy()
        else:
            cols[str(c)] = pd.Categorical(s.astype("string").astype(object).where(s.notna(), None))
    return pd.DataFrame(cols, index=df.index.astype(str))


def _plain(value: Any) -> Any:
    """A JSON-like value h5 can store: ``None`` dropped from dicts, mixed lists as strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value) or all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return list(value)
        return [json.dumps(v, default=str) for v in value]
    return value


def _layer(adata: ad.AnnData, clinical: pd.DataFrame) -> ad.AnnData:
    """One layer as written: float32 ``X``, clinical columns in ``obs``, writable ``uns`` only."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    if adata.uns.get("level") == "cell":
        obs = adata.obs.copy()
        per_cell = clinical.reindex(obs["sample_id"].astype(str))
        for c in [c for c in clinical.columns if c not in obs.columns]:
            obs[c] = per_cell[c].to_numpy()
    else:
        obs = clinical.reindex(adata.obs_names.astype(str))
        obs = pd.concat([adata.obs.loc[:, [c for c in adata.obs.columns if c not in obs.columns]].set_axis(obs.index), obs], axis=1)
    layers = {k: (v.toarray() if hasattr(v, "toarray") else np.asarray(v)).astype(np.float32) for k, v in adata.layers.items()}
    uns = {k: _plain(v) for k, v in adata.uns.items() if not k.startswith("_") and isinstance(v, (str, int, float, bool, list, dict))}
    return ad.AnnData(X.astype(np.float32), obs=_h5_safe(obs), var=_h5_safe(adata.var), layers=layers, uns=uns)


def _steps(run_dir: Path) -> list[dict[str, Any]]:
    state = json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
    return [s for w in state.get("workflows", []) for s in w.get("steps", []) if s.get("status") == "done"]


def contrast_tables(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's finished two-group contrasts (:data:`CONTRAST_TOOLS`, :data:`POPULATION_CONTRAST_TOOLS`)
    with their tables.

    Each item: ``key`` (``contrast_<step>``), ``step``, ``tool``, ``modality``, ``group``, ``case``,
    ``control``, ``covariates`` (or the pairing ``block``) and ``table`` (the step's table as written).
    """
    import pandas as pd

    run_dir = Path(run_dir)
    out = []
    for s in _steps(run_dir):
        name = {**CONTRAST_TOOLS, **POPULATION_CONTRAST_TOOLS}.get(s.get("tool"))
        path = f"tables/{s['id']}_{name}.tsv.gz"
        if name is None or path not in (s.get("tables") or []):
            continue
        p = s.get("params") or {}
        out.append({"key": f"contrast_{s['id']}", "step": s["id"], "tool": s["tool"], "modality": p.get("modality"),
                    "group": p.get("group"), "case": p.get("case"), "control": p.get("control"),
                    "covariates": list(p.get("covariates") or ([p["block"]] if p.get("block") else [])),
                    "table": pd.read_csv(run_dir / path, sep="\t", dtype={"feature": str})})
    return out


def _cluster_as_run(study: Study, run_dir: Path) -> None:
    """Give each cell-level layer the run analysed the run's populations: its last
    ``cytometry_clustering`` (or, when the run clustered only inside DA / DS, the default one),
    recomputed with the run's parameters and seed (deterministic; the clustering key is checked)."""
    chosen: dict[str, dict[str, Any]] = {}
    for s in _steps(run_dir):
        if s["tool"].startswith("cytometry_") and (s["tool"] == "cytometry_clustering" or s["params"]["modality"] not in chosen):
            chosen[s["params"]["modality"]] = s
    if not chosen:
        return
    from proteus.tools.cytometry import ClusteringParams, ensure_clustering

    seed = int(json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("seed") or 0)
    for modality, s in chosen.items():
        if modality not in study.modalities:
            continue
        params = ClusteringParams(**s["params"]) if s["tool"] == "cytometry_clustering" else None
        rec, _ = ensure_clustering(study, modality, params, seed)
        if rec["key"] != s["metrics"].get("clustering_key", rec["key"]):
            msg = f"the populations of {modality!r} could not be recomputed as the run made them (clustering {rec['key']} != {s['metrics']['clustering_key']})"
            raise RuntimeError(msg)


def study_mudata(study: Study, run_dir: str | Path | None = None):
    """The study as a :class:`mudata.MuData` (see the module docstring), with the results of
    ``run_dir``'s contrasts in ``varm`` / ``uns`` and its summary in ``uns`` when ``run_dir`` is given.
    A cytometry layer of ``study`` the run clustered gains that clustering in place
    (:func:`proteus.tools.cytometry.ensure_clustering`)."""
    import mudata
    import pandas as pd

    contrasts = contrast_tables(run_dir) if run_dir is not None else []
    if run_dir is not None:
        _cluster_as_run(study, Path(run_dir))
    clinical = _h5_safe(study.clinical)
    mods = {name: _layer(a, study.clinical) for name, a in study.modalities.items()}
    rows = []
    for c in contrasts:
        a = mods.get(c["modality"])
        if a is None:
            continue
        t = c["table"]
        if c["tool"] in CONTRAST_TOOLS:
            t = t.drop_duplicates("feature").set_index("feature")
            a.varm[c["key"]] = t.reindex(a.var_names)[_CONTRAST_COLUMNS].to_numpy(float)
            a.uns["contrast_columns"] = list(_CONTRAST_COLUMNS)
        else:
            a.uns[c["key"]] = _h5_safe(t)
        rows.append({**{k: c[k] for k in ("key", "step", "tool", "modality", "group", "case")}, "control": c["control"] or "rest",
                     "covariates": ", ".join(c["covariates"]), "n_tested": int(t["p"].notna().sum()),
                     "n_q05": int((t["q"] < 0.05).sum())})
    sample_of = {}  # global obs name -> its row of the sample table (a cell's row is its sample's)
    for a in mods.values():
        ids = a.obs["sample_id"].astype(str) if a.uns.get("level") == "cell" and "sample_id" in a.obs else a.obs_names.to_series()
        sample_of.update(zip(a.obs_names, ids))
    with _quiet_mudata():
        md = mudata.MuData(mods)
        md.obs = clinical.reindex([sample_of.get(o, o) for o in md.obs_names]).set_axis(md.obs_names)
    if rows:
        md.uns["contrasts"] = pd.DataFrame(rows)
    if run_dir is not None and (Path(run_dir) / "run.json").is_file():
        info = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
        md.uns["proteus"] = _plain({k: info.get(k) for k in ("run_id", "data", "policy", "model", "seed", "status", "counts")})
    if study.mutations is not None and len(study.mutations):
        md.uns["mutations"] = _h5_safe(study.mutations.reset_index(drop=True))
    return md


def write_h5mu(run_dir: str | Path, out: str | Path | None = None, *, study: Study | None = None, force: bool = False) -> Path:
    """Write ``run_dir``'s study and contrast results as MuData (default ``RUN_DIR/study.h5mu``).

    The study is read again from the run's data folder (``run.json`` ``data``) unless given; a folder
    whose files changed since the run raises :class:`proteus.runner.InputsChangedError` unless
    ``force``. X is float32, every array gzip-compressed.
    """
    from proteus.rundir import fingerprint, input_files

    run_dir = Path(run_dir)
    if study is None:
        from proteus.io import load_study
        from proteus.runner import InputsChangedError

        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        data = Path(info["data"])
        if not data.exists():
            msg = f"the run's data folder {data} is gone; nothing to export"
            raise FileNotFoundError(msg)
        if not force and info.get("fingerprint") and fingerprint(input_files(data), data) != info["fingerprint"]:
            msg = f"the files in {data} changed since the run; pass --force to export the data as it is now"
            raise InputsChangedError(msg)
        study = load_study(data)
        if info.get("samples") is not None:  # a run on a subset of the folder's samples (evaluation split)
            study = study.subset_samples(info["samples"])
    out = Path(out) if out is not None else run_dir / "study.h5mu"
    md = study_mudata(study, run_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    with _quiet_mudata():
        md.write_h5mu(tmp, compression="gzip")
    tmp.replace(out)
    return out


def h5mu_cli(
    run_dir: Annotated[Path, typer.Argument(help="run directory written by `proteus run`", exists=True, file_okay=False, dir_okay=True)],
    out: Annotated[Optional[Path], typer.Option("--out", help="where to write (default RUN_DIR/study.h5mu)")] = None,
    force: Annotated[bool, typer.Option("--force", help="export even if the data folder changed since the run")] = False,
) -> None:
    """Write RUN_DIR/study.h5mu: the study's layers, clinical table and the run's contrast results (open with mudata.read_h5mu)."""
    from rich.console import Console
    from rich.markup import escape

    from proteus.runner import InputsChangedError

    try:
        path = write_h5mu(run_dir, out, force=force)
    except (InputsChangedError, FileNotFoundError) as e:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    Console().print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", highlight=False)
