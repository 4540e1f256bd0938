"""Benchmark: whole-process ``proteus tools run differential_abundance`` against whole-process Rscript limma.

On the CPTAC UCEC folder (``proteus datasets fetch cptac-ucec``), tumour vs adjacent normal proteomics
(the README's example call), wall time of one process each, in this run on this machine. Like with
like: the Rscript reference writes one table, so the proteus calls run with ``--no-figures`` (tables
only) except ``warm_cache_figures``:

- ``proteus tools run ... --no-cache``: parses every layer of the folder, then tests one;
- ``proteus tools run ...`` on a cold study cache: parses the sample table and the proteomics file,
  and of the other files only what the study-wide decisions use (the other layer files' first lines,
  the MAF's sample column; :func:`proteus.io.load.load_layers`), and stores them;
- ``proteus tools run ...`` on a warm cache (hashes the inputs, reads the shared part and the one
  layer; best of 3);
- ``warm_cache_figures``: the same with its two figures drawn (the default of ``tools run``; best of 3);
- ``Rscript``: reads the same proteomics matrix and groups (TSV), ``lmFit`` + ``eBayes`` + ``topTable``,
  writes the table (best of 3);
- ``import_anndata``: ``python -c "import anndata"`` (best of 3), what a warm call saves by reading
  the cached layer as :class:`proteus.study_cache.CachedLayer` (X, obs, var, uns without anndata,
  zarr or h5py; a miss imports anndata without dask, ``proteus.study_cache.import_anndata_without_dask``).

Each also as CPU seconds of the process (user + system, ``*_cpu``), steadier than wall time on a
shared machine. Prints one JSON object with the seconds and the ratios to Rscript (wall and CPU).
Target: warm-cache ratio <= 1, cold-cache ratio ~2.

Measured (2-core machine shared with other jobs, load 6-9, three runs; ratios to Rscript in the same
run, CPU, which load distorts less than wall): before the per-layer cache (a miss parsed all seven
layers and the MAF) cold 6.95x wall on an idle machine, warm 1.54x CPU (1.14x wall); after: cold
3.0-3.5x CPU (1.8-2.9x wall), warm 1.18-1.22x CPU (0.7-1.5x wall), no cache 7.3-8.2x CPU. The cold
call's parsing is now the MAF's sample column (~0.7 s CPU), the six layer files' heads (~0.2 s)
and the proteomics layer (~0.4 s); the warm call's CPU is imports (anndata with zarr and h5py
~0.38 s, the tool's modules with scipy.special and pydantic ~0.2 s), the test (~0.2 s), writing
the table (~0.06 s) and hashing the inputs (~0.03 s). zarr 2.18 (which anndata 0.12 accepts)
imports ~50 ms faster but anndata then warns at import that zarr v2 support ends: the pin stays.
Since the cache stores a layer's parts rather than the AnnData and the two-group test reads them
without building one, ``lm_fit`` inverts each distinct X'X once and the MAF's sample column is
parsed from lines cut after it: at load 1.3-1.9 warm 0.73 s against Rscript 0.82 s, 0.89x wall
(0.91x CPU), cold 3.2x, no cache 6.5x; at load 13-14, three runs, warm 0.74 / 0.98 / 1.07x wall
(median 0.98x), 0.86 / 0.95 / 1.00x CPU (median 0.95x), cold 2.86-3.31x wall, 2.94-3.04x CPU.
A warm call's CPU (~0.66 s) is now pandas and numpy imports (~0.2 s), the tool's modules (~0.15 s),
the test (~0.15 s), writing the table (~0.06 s), reading the cache (~0.04 s).

Usage: ``python -m proteus.evals.bench_tools_run [--data DIR]`` (needs cptac==0.4.1; Rscript + limma).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

R_CODE = r"""
suppressMessages(library(limma))
a <- commandArgs(trailingOnly = TRUE)
y <- as.matrix(read.delim(a[1], row.names = 1, check.names = FALSE))
g <- read.delim(a[2], row.names = 1)$case
fit <- eBayes(suppressWarnings(lmFit(y, cbind(1, g)))[, 2])
write.table(topTable(fit, coef = 1, number = Inf, sort.by = "none"), a[3], sep = "\t", quote = FALSE)
"""

CALL = {"modality": "proteomics", "group": "Proteomics_Tumor_Normal", "case": "Tumor", "control": "Adjacent_normal"}


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _best(cmd: list[str], env: dict[str, str], n: int = 3) -> tuple[float, float]:
    runs = [_run(cmd, env) for _ in range(n)]
    return min(w for w, _ in runs), min(c for _, c in runs)


def bench(data: Path, tmp: Path) -> dict:
    """Seconds of each whole process and their ratios to Rscript (see the module docstring)."""
    from proteus.io import load_study

    env = {**os.environ, "PROTEUS_CACHE": str(tmp / "cache")}
    proteus = [sys.executable, "-m", "proteus", "tools", "run", "differential_abundance", "--data", str(data),
               "--out", str(tmp / "out"), "--params", json.dumps(CALL)]
    out: dict = {}
    tables = [*proteus, "--no-figures"]
    out["no_cache"], out["no_cache_cpu"] = _run([*tables, "--no-cache"], env)
    out["cold_cache"], out["cold_cache_cpu"] = _run(tables, env)
    out["warm_cache"], out["warm_cache_cpu"] = _best(tables, env)
    out["warm_cache_figures"], out["warm_cache_figures_cpu"] = _best(proteus, env)
    out["import_anndata"], out["import_anndata_cpu"] = _best([sys.executable, "-c", "import anndata"], env)
    if shutil.which("Rscript"):
        study = load_study(data)
        a = study.modalities[CALL["modality"]]
        groups = study.clinical.reindex(a.obs_names.astype(str))[CALL["group"]].astype(str)
        keep = groups.isin([CALL["case"], CALL["control"]]).to_numpy()
        import pandas as pd

        pd.DataFrame(a.X[keep].T, index=a.var_names, columns=a.obs_names[keep]).to_csv(tmp / "y.tsv", sep="\t", na_rep="NA")
        pd.DataFrame({"case": (groups[keep] == CALL["case"]).astype(int).to_numpy()}, index=a.obs_names[keep]).to_csv(tmp / "g.tsv", sep="\t")
        (tmp / "b.R").write_text(R_CODE)
        r = ["Rscript", str(tmp / "b.R"), str(tmp / "y.tsv"), str(tmp / "g.tsv"), str(tmp / "o.tsv")]
        out["rscript"], out["rscript_cpu"] = _best(r, env)
        keys = ("no_cache", "cold_cache", "warm_cache", "warm_cache_figures", "import_anndata")
        out["ratio_to_rscript"] = {k: round(out[k] / out["rscript"], 2) for k in keys}
        out["cpu_ratio_to_rscript"] = {k: round(out[f"{k}_cpu"] / out["rscript_cpu"], 2) for k in keys}
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="the cptac-ucec folder (default: fetched into a temporary folder)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = a.data
        if data is None:
            from proteus.datasets import fetch

            data = fetch("cptac-ucec", Path(tmp) / "ucec")
        print(json.dumps(bench(data, Path(tmp)), indent=1))


if __name__ == "__main__":
    main()
