"""Samples the sample table itself flags as excluded (a curator's "exclude", "QC failed", "outlier" column).

A study's own exclusion flag is the curators' decision (failed QC, wrong histology, withdrawn
consent); every analysis honours it. A column counts as an exclusion flag when its name says so
(exclude / excluded / exclusion / discard / QC fail / outlier) and its values are yes/no-like; the
flagged samples (a minority) are left out of every layer, the sample table and the mutation table,
and ``Study.sample_notes`` (shown by the run and the report) says which column removed how many.
"""

from __future__ import annotations

import re

import pandas as pd

from proteus.study import Study

__all__ = ["exclusion_flags", "drop_excluded"]

_NAME = re.compile(r"(exclu|discard|qc.?fail|fail.?qc|outlier)", re.I)
_TRUE = {"yes", "y", "true", "t", "1", "1.0", "excluded", "exclude", "fail", "failed"}
_FALSE = {"no", "n", "false", "f", "0", "0.0", "included", "include", "pass", "passed", ""}


def exclusion_flags(clinical: pd.DataFrame) -> dict[str, list[str]]:
    """Exclusion columns of a sample table and the samples each flags (only columns flagging at
    least one and fewer than half of the samples with a value)."""
    out: dict[str, list[str]] = {}
    for col in clinical.columns:
        if not _NAME.search(str(col)):
            continue
        vals = clinical[col].dropna().astype(str).str.strip().str.lower()
        if vals.empty or not set(vals) <= _TRUE | _FALSE:
            continue
        flagged = vals[vals.isin(_TRUE)]
        if 0 < len(flagged) < len(vals) / 2:
            out[str(col)] = list(map(str, flagged.index))
    return out


def drop_excluded(study: Study) -> Study:
    """``study`` without the samples its sample table flags as excluded (see the module docstring)."""
    flags = exclusion_flags(study.clinical)
    if not flags:
        return study
    gone = {s for samples in flags.values() for s in samples}
    kept = study.subset_samples([s for s in study.samples() if s not in gone])
    kept.sample_notes += [f"{len(samples)} sample(s) flagged in {col!r} left out of every analysis" for col, samples in flags.items()]
    return kept
