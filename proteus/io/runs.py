"""Several runs of one quantification tool in one data folder: merged into one layer, or refused.

Runs with distinct sample names become one layer (features joined, missing where a run did not
quantify them) with the run (its folder, else its file) as a ``run`` sample-table column, a
technical factor for the design. Runs that share sample names are separate quantifications of
overlapping samples (e.g. one comparison per MaxQuant run): merging them would need a guess, so
loading stops with a :class:`~proteus.study.LayoutError` that says how to proceed.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

import anndata as ad
import numpy as np
import pandas as pd

from proteus.study import FileReport, LayoutError

__all__ = ["merge_runs", "RUN_COLUMN"]

RUN_COLUMN = "run"
_TOOL_NAMES = {"maxquant": "MaxQuant", "diann": "DIA-NN", "diann_report": "DIA-NN", "spectronaut_report": "Spectronaut", "fragpipe": "FragPipe"}


def _labels(paths: list[str]) -> list[str]:
    """Run labels: the parent folders when they differ, else the file names (without sheet)."""
    files = [PurePosixPath(p.split(":")[0]) for p in paths]
    parents = [str(f.parent) if str(f.parent) != "." else "(top folder)" for f in files]
    return parents if len(set(parents)) == len(parents) else [f.as_posix() for f in files]


def _merge(layers: list[ad.AnnData], labels: list[str]) -> ad.AnnData:
    frames = [a.to_df() for a in layers]
    x = pd.concat(frames, axis=0, join="outer", sort=False)
    var = layers[0].var
    for a in layers[1:]:
        var = var.combine_first(a.var)
    var = var.reindex(x.columns)
    obs = pd.concat([a.obs for a in layers], axis=0, sort=False)
    obs[RUN_COLUMN] = np.repeat(labels, [a.n_obs for a in layers])
    out = ad.AnnData(X=x.to_numpy(dtype="float64"), obs=obs, var=var)
    out.uns.update(layers[0].uns)
    out.uns["source"] = "; ".join(str(a.uns.get("source")) for a in layers)
    out.uns["sample_annotation"] = list(dict.fromkeys([*layers[0].uns.get("sample_annotation", []), RUN_COLUMN]))
    return out


def merge_runs(layers: list[tuple[ad.AnnData, FileReport, str]]) -> list[tuple[ad.AnnData, FileReport, list[FileReport]]]:
    """Merge layers read by the same vendor reader into one per modality (see module docstring).

    Parameters
    ----------
    layers
        (layer, file report, reader kind) for every table read; only layers of the vendor readers
        (MaxQuant, DIA-NN, Spectronaut, FragPipe) are merged.

    Returns
    -------
    list of (layer, report, merged_reports)
        One entry per resulting layer; ``merged_reports`` are the other files merged into it.

    Raises
    ------
    LayoutError
        Two runs of one tool share sample names.
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (a, _, kind) in enumerate(layers):
        key = (kind, str(a.uns.get("modality"))) if kind in _TOOL_NAMES else (f"#{i}", "")
        groups[_TOOL_NAMES.get(kind, key[0]), key[1]].append(i)
    out = []
    for (tool, _), idx in groups.items():
        if len(idx) == 1:
            a, rep, _ = layers[idx[0]]
            out.append((a, rep, []))
            continue
        runs = [layers[i] for i in idx]
        paths = [rep.path for _, rep, _ in runs]
        seen: dict[str, str] = {}
        shared: list[str] = []
        for (a, rep, _) in runs:
            for s in map(str, a.obs_names):
                if s in seen and seen[s] != rep.path:
                    shared.append(s)
                seen.setdefault(s, rep.path)
        if shared:
            msg = (
                f"{len(runs)} {tool} runs in one folder ({', '.join(paths)}) share sample names "
                f"({', '.join(sorted(set(shared))[:3])}): they are separate quantifications and cannot be merged "
                f"without guessing which samples belong together. Analyse each run on its own "
                f"(proteus run <folder of one run>), or rename the samples so that every sample is unique."
            )
            raise LayoutError(msg)
        labels = _labels(paths)
        merged = _merge([a for a, _, _ in runs], labels)
        first = runs[0][1]
        first.notes.append(
            f"{len(runs)} {tool} runs ({', '.join(paths)}) merged into one layer of {merged.n_obs} samples; "
            f"the run is the sample-table column {RUN_COLUMN!r} (a technical factor)"
        )
        for _, rep, _ in runs[1:]:
            rep.notes.append(f"merged with {first.path} into one layer")
        out.append((merged, first, [rep for _, rep, _ in runs[1:]]))
    return out
