"""Benchmark differential abundance on spike-in sets with a known answer.

A spike-in folder holds one quantification table (MaxQuant, DIA-NN, FragPipe or a plain matrix),
a sample table with a ``condition`` column, and ``truth.json`` with ``true_positive_ids``,
``true_negative_ids``, ``id_column`` and ``contrasts`` (name, numerator, denominator,
expected_log2fc) (the layout of ``shared/datasets/ramus2016-ups1-maxquant`` and its sub-folders).
Protein groups are classified by all their members (:func:`classify_groups`): groups with a
contaminant / decoy member or of mixed species are ambiguous, reported apart and in neither count.
For each folder, contrast and method it reports true and false positives at q < 0.05, the
observed false-discovery proportion (FP / calls), and recall at 5 % observed FDP (the most true
positives reachable down the p-value ranking while FP / calls <= 0.05), plus the recall ratio to
the reference **limma-with-filter** (today's limma on observed values, >= 2 per group, no
normalisation), and the time of the tool call. ``lfc`` is the fold-change threshold the call tested
against: the default ('auto') picks log2(1.5) where the replicates are repeat measurements of one
sample (:mod:`proteus.stats.replicates`); the row ``auto, lfc=0`` is the default without it.

Usage: ``python -m proteus.evals.bench_spikein [FOLDER ...]`` (default: the shared UPS1 folder
and its sub-folders).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from proteus.datasets import shared_dataset_dir
from proteus.io import load_study
from proteus.tools.registry import ToolContext, get_tool

REFERENCE = "limma-with-filter"
METHODS = {  # fixed methods test without a fold-change threshold (lfc=0), as before lfc='auto'
    REFERENCE: {"method": "limma", "normalize": "none", "variance_prior": "constant", "lfc": 0.0},
    "limma+median": {"method": "limma", "normalize": "median", "variance_prior": "constant", "lfc": 0.0},
    "downshift": {"method": "limma", "impute": "downshift", "min_valid": 3, "lfc": 0.0},
    "censored": {"method": "censored", "variance_prior": "constant", "lfc": 0.0},
    "censored+vsn": {"method": "censored", "variance_prior": "constant", "normalize": "vsn", "lfc": 0.0},
    "auto (default)": {},
    # the default before lfc='auto': no fold-change threshold whatever the replicates
    "auto, lfc=0": {"lfc": 0.0},
    # TREAT at the conventional 1.5-fold (McCarthy & Smyth 2009) asked for on every contrast
    "auto + TREAT 1.5x": {"lfc": float(np.log2(1.5))},
}


def spikein_folders(root: Path) -> list[Path]:
    """Folders under ``root`` (itself included) that hold a ``truth.json``."""
    return sorted({p.parent for p in root.rglob("truth.json")})


def _study(folder: Path):
    """Load only the folder's own files (sub-folders are separate quantifications)."""
    tmp = Path(tempfile.mkdtemp(prefix="spikein_"))
    for f in folder.iterdir():
        if f.is_file() and f.name != "truth.json":
            shutil.copy(f, tmp / f.name)
    return load_study(tmp), tmp


DECOY_PREFIXES = ("CON__", "REV__")  # MaxQuant's contaminant and decoy tags


def classify_groups(truth: dict) -> tuple[set[str], set[str], set[str]]:
    """Split the truth's protein groups into true-changing, true-null and ambiguous by ALL their members.

    A member accession belongs to the changing (null) side when it occurs in a true-positive
    (true-negative) group and is not a contaminant or decoy. A group counts as true-changing or
    true-null only when every member is on that side; groups with a contaminant or decoy member, or
    with members of both sides (mixed species), are ambiguous and scored apart, as LFQbench
    (Navarro et al. 2016) and OpDEA (Peng et al. 2024) set aside mixed-species groups.
    """
    tp_groups, tn_groups = truth["true_positive_ids"], truth["true_negative_ids"]

    def members(groups):
        return {m for g in groups for m in g.split(";") if not m.startswith(DECOY_PREFIXES)}

    up, null = members(tp_groups), members(tn_groups)
    groups = set(tp_groups) | set(tn_groups) | set(truth.get("excluded_ids", []))
    changing = {g for g in groups if set(g.split(";")) <= up - null}
    nulls = {g for g in groups if set(g.split(";")) <= null - up}
    return changing, nulls, groups - changing - nulls


def score(table: pd.DataFrame, ids: pd.Series, tp: set[str], tn: set[str], n_tp: int, fdr: float = 0.05,
          ambiguous: set[str] = frozenset()) -> dict:
    """TP, FP, observed FDP at q < fdr and recall at 5 % observed FDP for one result table; ambiguous
    groups called at q < fdr are counted apart (``ambiguous_called``), in neither TP nor FP."""
    truth_id = ids.reindex(table["feature"]).to_numpy()
    is_tp = np.isin(truth_id, list(tp))
    is_tn = np.isin(truth_id, list(tn))
    sig = table["q"].to_numpy() < fdr
    n_tp_sig, n_fp = int((sig & is_tp).sum()), int((sig & is_tn).sum())
    n_amb = int((sig & np.isin(truth_id, list(ambiguous))).sum())
    order = np.argsort(table["p"].to_numpy(), kind="stable")
    ctp, cfp = np.cumsum(is_tp[order]), np.cumsum(is_tn[order])
    ok = cfp / np.maximum(ctp + cfp, 1) <= 0.05
    return {"TP": n_tp_sig, "FP": n_fp, "FDP": n_fp / max(n_tp_sig + n_fp, 1),
            "recall@5%FDP": float(ctp[ok].max() / n_tp) if ok.any() else 0.0, "ambiguous_called": n_amb,
            "n_tested": int(len(table))}


def run_folder(folder: Path, out_dir: Path) -> list[dict]:
    truth = json.loads((folder / "truth.json").read_text())
    study, tmp = _study(folder)
    try:
        (modality,) = [m for m, a in study.modalities.items() if a.uns.get("level", "sample") == "sample"][:1]
        a = study.modalities[modality]
        id_col = {"Protein IDs": "protein_ids"}.get(truth.get("id_column"), "protein_ids")
        ids = pd.Series(a.var[id_col].astype(str).to_numpy() if id_col in a.var else a.var_names, index=a.var_names)
        tp, tn, ambiguous = classify_groups(truth)
        if ambiguous:
            print(f"{folder.name}: ambiguous groups, scored apart: {sorted(ambiguous)}")
        tool = get_tool("differential_abundance")
        rows = []
        for c in truth["contrasts"]:
            base = {"modality": modality, "group": "condition", "case": c["numerator"], "control": c["denominator"]}
            for name, extra in METHODS.items():
                t0 = time.perf_counter()
                res = tool(study, base | extra, ToolContext(out_dir=out_dir, seed=0))
                dt = time.perf_counter() - t0
                s = score(res.tables["results"], ids, tp, tn, len(tp), ambiguous=ambiguous)
                rows.append({"set": folder.name, "contrast": c["name"], "log2FC": c["expected_log2fc"], "method": name,
                             "resolved": res.metrics["method"], "lfc": round(res.metrics["lfc"], 3), **s, "seconds": round(dt, 3)})
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        folders = [f for a in argv for f in spikein_folders(Path(a))]
    else:
        root = shared_dataset_dir("ramus2016-ups1-maxquant")
        if root is None:
            print("no spike-in folder given and the shared UPS1 folder is absent")
            return pd.DataFrame()
        folders = spikein_folders(root)
    out = Path(tempfile.mkdtemp(prefix="bench_spikein_"))
    rows = [r for f in folders for r in run_folder(f, out)]
    shutil.rmtree(out, ignore_errors=True)
    df = pd.DataFrame(rows)
    ref = df[df["method"] == REFERENCE].set_index(["set", "contrast"])["recall@5%FDP"]
    df["recall_vs_ref"] = [r / ref.loc[(s, c)] if ref.loc[(s, c)] > 0 else np.inf
                           for s, c, r in zip(df["set"], df["contrast"], df["recall@5%FDP"])]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.round(3).to_string(index=False))
    return df


if __name__ == "__main__":
    main()
