"""The in-memory study: every omics layer as AnnData, plus clinical table and mutations.

Conventions (every tool relies on them):

- ``Study.modalities[name]`` is an AnnData with ``obs`` = samples and ``var`` = features for bulk
  layers (proteomics, phosphoproteomics, acetylproteomics, transcriptomics, cna, mirna, ...), or
  ``obs`` = cells with ``obs["sample_id"]`` for cell-level layers (cytometry, single_cell).
  ``adata.uns["modality"]`` is the modality kind, ``adata.uns["level"]`` is ``"sample"`` or ``"cell"``,
  ``adata.uns["source"]`` the file it came from. ``var["gene"]`` holds the gene symbol where one is
  known (also for sites: ``TP53-S15`` -> ``TP53``); ``uns["organism"]`` the species most features'
  annotation names, and ``var["organism"]`` each feature's where it names two or more. A layer read
  from the study cache (``proteus tools run``) is a :class:`proteus.study_cache.CachedLayer`: its
  ``X``, ``obs``, ``var`` and ``uns`` without importing anndata, the AnnData itself on any other use.
- ``Study.clinical`` is indexed by the harmonised sample id; each bulk ``obs_names`` uses the same ids.
- ``Study.mutations`` is long format: columns ``sample``, ``gene``, ``variant_class``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # a study read from the study cache runs its tools without importing anndata
    import anndata as ad

__all__ = ["FileReport", "SampleMatching", "Study", "NoUsableDataError", "LayoutError"]


class NoUsableDataError(RuntimeError):
    """Raised when a data folder holds nothing PROTEUS can analyse."""


class LayoutError(NoUsableDataError):
    """Raised when a data folder has a recognised layout that cannot be read without guessing
    (e.g. two runs of one tool whose sample names overlap)."""


@dataclass
class FileReport:
    """What happened to one input file: read as ``kind`` (and ``modality``), or skipped with ``problem``."""

    path: str
    kind: str | None = None
    modality: str | None = None
    shape: tuple[int, int] | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class SampleMatching:
    """How one layer's samples were matched to the sample table's rows.

    ``rules`` counts matched samples per rule (``exact id``, ``file name``, ``tumour/normal
    suffix``, optionally ``via column 'X'``); ``left_out`` gives each unmatched sample and why.
    """

    layer: str
    source: str
    n_samples: int
    n_rows: int
    rules: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def n_matched(self) -> int:
        return sum(self.rules.values())

    def summary(self) -> str:
        """One line: ``proteomics (report.pg_matrix.tsv): 6/6 samples matched to the sample table (file name 6)``."""
        how = ", ".join(f"{k} {n}" for k, n in self.rules.items()) or "no rule matched"
        line = f"{self.layer} ({self.source}): {self.n_matched}/{self.n_samples} samples matched to the {self.n_rows}-row sample table ({how})"
        if self.left_out:
            shown = "; ".join(f"{k}: {v}" for k, v in list(self.left_out.items())[:5])
            more = f" and {len(self.left_out) - 5} more" if len(self.left_out) > 5 else ""
            line += f"; left out {shown}{more}"
        return line


@dataclass
class Study:
    """All data of one study. See the module docstring for the conventions."""

    root: Path
    modalities: dict[str, ad.AnnData] = field(default_factory=dict)
    clinical: pd.DataFrame = field(default_factory=pd.DataFrame)
    mutations: pd.DataFrame | None = None
    reports: list[FileReport] = field(default_factory=list)
    sample_matching: list[SampleMatching] = field(default_factory=list)
    """One record per sample-level layer: how its samples were matched to the sample table."""
    sample_notes: list[str] = field(default_factory=list)
    """Changes made to the sample table (level spellings trimmed and merged, annotation taken from
    the data such as TMT plex or run folder) for the report to state."""
    cache: dict = field(default_factory=dict, repr=False, compare=False)
    """Derived results shared between tools within one process (e.g. a contrast's differential
    table, computed once and reused by enrichment and network tools). Never checkpointed."""

    def bulk(self) -> dict[str, ad.AnnData]:
        """Sample-level layers."""
        return {k: a for k, a in self.modalities.items() if a.uns.get("level", "sample") == "sample"}

    def cell_level(self) -> dict[str, ad.AnnData]:
        """Cell-level layers (cytometry, single-cell)."""
        return {k: a for k, a in self.modalities.items() if a.uns.get("level") == "cell"}

    def samples(self) -> list[str]:
        """Union of sample ids over clinical and all bulk layers, in first-seen order."""
        seen: dict[str, None] = dict.fromkeys(map(str, self.clinical.index))
        for a in self.bulk().values():
            seen.update(dict.fromkeys(map(str, a.obs_names)))
        return list(seen)

    def subset_samples(self, samples: list[str]) -> Study:
        """A copy restricted to ``samples`` (used for held-out validation and permutation nulls)."""
        keep = set(map(str, samples))
        mods = {}
        for name, a in self.modalities.items():
            if a.uns.get("level") == "cell":
                mods[name] = a[a.obs["sample_id"].astype(str).isin(keep)].copy()
            else:
                mods[name] = a[[s in keep for s in a.obs_names]].copy()
        clin = self.clinical.loc[[s for s in self.clinical.index if str(s) in keep]]
        muts = None
        if self.mutations is not None:
            muts = self.mutations[self.mutations["sample"].astype(str).isin(keep)]
        return Study(self.root, mods, clin, muts, list(self.reports), list(self.sample_matching), list(self.sample_notes))

    def sample_table(self, modality: str) -> pd.DataFrame:
        """Clinical rows aligned to the samples of a bulk modality (missing rows are all-NaN)."""
        a = self.modalities[modality]
        return self.clinical.reindex(a.obs_names.astype(str))
