"""Speed of ``differential_abundance`` on CPTAC UCEC tumour vs adjacent normal.

Times, in one process on this machine, the registered tool (``method='auto'``, which resolves to
limma on these log ratios, figures included) and the statistics engines on their own: limma
(``lm_fit`` + ``ebayes``) and the censored dropout model (forced, with a dropout curve at the 5th
percentile of the values, since ratios carry no abundance-dependent missingness) on the
proteomics table (10,999 proteins) and the phosphosite table (73,212 sites). Reported as seconds
(best of ``repeats``) and as ratios to limma on the same table, the reference run. Targets from
issue 15: tumour-vs-normal test under 1 s, 73k phosphosites under 2 s.

Usage: ``python -m proteus.evals.bench_differential_speed`` (needs cptac==0.4.1).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from proteus.evals.bench_limma import _data
from proteus.evals.timing import best_seconds
from proteus.stats.censored import DropoutCurves, censored_test
from proteus.stats.limma import ebayes, lm_fit
from proteus.study import Study
from proteus.tools.registry import ToolContext, get_tool


def bench(repeats: int = 3) -> pd.DataFrame:
    prot, phos, g = _data()
    case = g.to_numpy() == 1
    X = np.column_stack([np.ones(len(case)), case.astype(float)])
    clinical = pd.DataFrame({"tn": np.where(case, "Tumor", "Normal")}, index=g.index)
    rows = []
    for name, table in (("proteomics", prot), ("phosphosites", phos)):
        Y = table.to_numpy(dtype=float)
        t_limma = best_seconds(lambda: ebayes(lm_fit(Y, X).subset([1])), repeats)
        eb = ebayes(lm_fit(Y, X).subset([1]))
        curves = DropoutCurves(np.full(len(case), np.nanpercentile(Y, 5)), np.ones(len(case)), -10.0)
        inc = ~np.isfinite(Y).all(1) & np.isfinite(eb.s2_post) & np.isfinite(eb.coefficients[:, 0])
        t_cens = best_seconds(lambda: censored_test(Y[inc], X, 1, eb.s2_post[inc], eb.df_total[inc], curves), repeats)
        a = ad.AnnData(pd.DataFrame(Y.T, index=table.columns, columns=table.index.astype(str)))
        a.uns.update(modality="proteomics", level="sample")
        params = {"modality": name, "group": "tn", "case": "Tumor", "control": "Normal"}
        with tempfile.TemporaryDirectory() as out:
            tool = get_tool("differential_abundance")

            def run():  # a new Study each time: its contrast-table cache would answer a repeat
                return tool(Study(root=Path("."), modalities={name: a}, clinical=clinical), params, ToolContext(out_dir=Path(out), seed=0))

            t_tool = best_seconds(run, repeats)
            method = run().metrics["method"]
        for what, t in (("limma engine (reference)", t_limma), (f"tool, auto -> {method}", t_tool),
                        (f"censored engine ({int(inc.sum())} features with missing values)", t_cens)):
            rows.append({"table": name, "n_features": Y.shape[0], "run": what, "seconds": round(t, 3),
                         "ratio_to_limma": round(t / t_limma, 2)})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(bench().to_string(index=False))
