"""Benchmark: the 8-file Bodenmiller BCR-XL pipeline (read + cluster + DA + DS), timed per stage.

Run ``python -m evals.bench_cytometry [data_dir] [--umap]``. Prints one JSON object with the
seconds of each stage, the total, the populations found and the top differential-state hits.
Target: < 60 s end to end on a laptop-class CPU (PCA map; --umap adds the UMAP, whose first call compiles numba code).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from proteus.datasets import shared_dataset_dir

DEFAULT = shared_dataset_dir("bodenmiller-bcrxl")


def run(data: Path = DEFAULT, umap: bool = False) -> dict:
    from proteus.io.cytometry import read_cytometry
    from proteus.study import Study
    from proteus.tools import ToolContext, get_tool

    t = {}
    t0 = time.perf_counter()
    a, samples = read_cytometry(sorted(data.glob("*.fcs")), pd.read_csv(data / "metadata.tsv", sep="\t"),
                                pd.read_csv(data / "panel.tsv", sep="\t"))
    t["read"] = time.perf_counter() - t0
    study = Study(data, {"cytometry": a}, samples)
    contrast = {"modality": "cytometry", "group": "condition", "case": "BCRXL", "control": "Ref", "block": "patient_id"}
    with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx = ToolContext(out_dir=Path(out))
        s = time.perf_counter()
        cl = get_tool("cytometry_clustering")(study, {"modality": "cytometry", "embedding": "umap" if umap else "pca"}, ctx)
        t["cluster"] = time.perf_counter() - s
        s = time.perf_counter()
        da = get_tool("cytometry_differential_abundance")(study, contrast, ctx)
        t["da"] = time.perf_counter() - s
        s = time.perf_counter()
        ds = get_tool("cytometry_differential_state")(study, contrast, ctx)
        t["ds"] = time.perf_counter() - s
    t["total"] = time.perf_counter() - t0
    top = ds.tables["differential_state"].head(6)
    return {
        "seconds": {k: round(v, 2) for k, v in t.items()},
        "cells": int(a.n_obs),
        "samples": int(a.obs["sample_id"].nunique()),
        "populations": cl.metrics["populations"],
        "da_significant": da.metrics["n_significant"],
        "ds_significant": ds.metrics["n_significant"],
        "ds_top": [f"{r.marker} | {r.population} {r.logFC:+.2f} q={r.q:.2g}" for r in top.itertuples()],
    }


if __name__ == "__main__":
    args = [x for x in sys.argv[1:] if not x.startswith("--")]
    print(json.dumps(run(Path(args[0]) if args else DEFAULT, umap="--umap" in sys.argv), indent=1))
