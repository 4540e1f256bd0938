"""Benchmark proteus.stats.limma against R limma on CPTAC UCEC (tumour vs adjacent normal).

Prints, from one run on this machine: agreement with R (max relative difference of t, p, BH q),
Python vs R time for ``lmFit + eBayes`` on proteomics (10,999 proteins, missing values) and on
the phosphosite table (73,212 sites), with R timed inside R by ``system.time``.

Usage: ``python -m proteus.evals.bench_limma`` (needs cptac==0.4.1; Rscript + limma for the R side).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from proteus.stats.limma import ebayes, lm_fit, top_table

R_CODE = r"""
suppressMessages(library(limma))
a <- commandArgs(trailingOnly = TRUE)
y <- as.matrix(read.delim(a[1], row.names = 1, check.names = FALSE))
g <- read.delim(a[2], row.names = 1)$tumor
design <- cbind(1, g)
tm <- system.time({ fit <- suppressWarnings(lmFit(y, design)); fit <- eBayes(fit[, 2]) })[["elapsed"]]
tt <- topTable(fit, coef = 1, number = Inf, sort.by = "none")
write.table(data.frame(t = fit$t[, 1], p = fit$p.value[, 1], q = tt$adj.P.Val), a[3], sep = "\t", quote = FALSE)
cat(tm, "\n")
"""


def _data():
    d = Path(importlib.util.find_spec("cptac").origin).parent / "endometrial" / "data"
    clin = pd.read_csv(d / "clinical.txt", sep="\t", index_col=0, encoding="cp1252")
    prot = pd.read_csv(d / "proteomics.cct.gz", sep="\t", index_col=0)
    phos = pd.read_csv(d / "phosphoproteomics_site.cct.gz", sep="\t", index_col=0)
    tn = clin["Proteomics_Tumor_Normal"]
    samples = [s for s in prot.columns if tn.get(s) in ("Tumor", "Adjacent_normal")]
    g = (tn[samples] == "Tumor").astype(float)
    return prot[samples], phos[samples], g


def _python(Y: pd.DataFrame, g: pd.Series, repeats: int = 3):
    X = np.column_stack([np.ones(len(g)), g.to_numpy()])
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        eb = ebayes(lm_fit(Y.to_numpy(), X).subset([1]))
        best = min(best, time.perf_counter() - t0)
    return top_table(eb, 0, Y.index), best


def _r(Y: pd.DataFrame, g: pd.Series, tmp: Path):
    Y.to_csv(tmp / "y.tsv", sep="\t", na_rep="NA")
    pd.DataFrame({"tumor": g}).to_csv(tmp / "g.tsv", sep="\t")
    (tmp / "b.R").write_text(R_CODE)
    out = subprocess.run(["Rscript", str(tmp / "b.R"), str(tmp / "y.tsv"), str(tmp / "g.tsv"), str(tmp / "o.tsv")],
                         capture_output=True, text=True, check=True)
    return pd.read_csv(tmp / "o.tsv", sep="\t", index_col=0, na_values="NA"), float(out.stdout.split()[-1])


def _maxrel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN patterns differ"
    f = np.isfinite(a) & (b != 0)
    return float(np.max(np.abs(a[f] - b[f]) / np.abs(b[f])))


def main() -> None:
    prot, phos, g = _data()
    have_r = shutil.which("Rscript") is not None
    print(f"samples: {int(g.sum())} tumour, {int((1 - g).sum())} adjacent normal")
    for name, Y in (("proteomics", prot), ("phosphosites", phos)):
        tab, t_py = _python(Y, g)
        line = f"{name:13s} {Y.shape[0]:6d} features ({int(Y.isna().any(axis=1).sum())} with NaN): python {t_py:.3f} s"
        if have_r:
            with tempfile.TemporaryDirectory() as tmp:
                r, t_r = _r(Y, g, Path(tmp))
            rel = {k: _maxrel(tab[c], r[k]) for k, c in (("t", "t"), ("p", "P.Value"), ("q", "adj.P.Val"))}
            line += (f", R {t_r:.3f} s, speed-up x{t_r / t_py:.1f}; max rel diff "
                     + ", ".join(f"{k} {v:.1e}" for k, v in rel.items()))
        print(line)


if __name__ == "__main__":
    main()
