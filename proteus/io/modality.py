"""Modality of a feature table, from its file name first and its content second.

Kinds: ``proteomics``, ``phosphoproteomics``, ``acetylproteomics``, ``transcriptomics``, ``cna``,
``mirna`` (bulk) and ``cytometry``, ``single_cell`` (cell level; set by their readers).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

__all__ = ["detect_modality", "kind_from_name", "site_gene", "PHOSPHO_SITE", "ACETYL_SITE"]

PHOSPHO_SITE = re.compile(r"^(?P<gene>.+?)[-_.](?:p)?(?P<site>[STY]\d+(?:[STYsty]\d+)*)(?:[-_;].*)?$")
ACETYL_SITE = re.compile(r"^(?P<gene>.+?)[-_.](?:ac)?(?P<site>K\d+(?:[Kk]\d+)*)(?:[-_;].*)?$")
MIRNA = re.compile(r"^(hsa|mmu|rno)-(mir|let|miR)", re.IGNORECASE)

_NAME_RULES = (
    ("phosphoproteomics", re.compile(r"phospho|phosphosite|_sty|sty_|ptm_?p\b", re.I)),
    ("acetylproteomics", re.compile(r"acetyl|kac\b|_ac_", re.I)),
    ("mirna", re.compile(r"mirna|microrna|mir_?seq", re.I)),
    ("cna", re.compile(r"\bcn[av]\b|cna|cnv|copy.?number|gistic", re.I)),
    ("transcriptomics", re.compile(
        r"(?<![a-z])[mt]?rna|rna_?seq|transcript|expression|(?<![a-z])expr|microarray|affy|fpkm|(?<![a-z])tpm(?![a-z])|counts",
        re.I)),
    ("proteomics", re.compile(r"(?<![a-z])prot|pg_matrix|proteingroups|olink|somascan", re.I)),
)


def _site_fraction(ids: pd.Index, pattern: re.Pattern) -> float:
    sample = [str(i) for i in ids[:: max(1, len(ids) // 2000)]]
    return float(np.mean([bool(pattern.match(s)) for s in sample])) if sample else 0.0


def site_gene(feature: str) -> str:
    """Gene symbol of a site id (``TP53-S15`` -> ``TP53``); the id itself when it is not a site."""
    for pat in (PHOSPHO_SITE, ACETYL_SITE):
        m = pat.match(str(feature))
        if m:
            return m.group("gene")
    return str(feature)


def kind_from_name(name: str) -> tuple[str, str] | None:
    """The modality kind a file (or sheet) name decides (``phospho``, ``rna``, ``cnv`` ...) and the
    reason, or None when the name does not decide (then :func:`detect_modality` reads the content)."""
    stem = re.sub(r"\.(gz|tsv|csv|txt|xlsx|cct|cbt)$", "", name.lower())
    for kind, pat in _NAME_RULES:
        if pat.search(stem):
            return kind, f"file name ({pat.search(stem).group(0)!r})"
    return None


def detect_modality(name: str, features: pd.Index, values: np.ndarray) -> tuple[str, str]:
    """Guess the modality kind of a samples x features table.

    Parameters
    ----------
    name
        File (and sheet) name; tokens like ``phospho``, ``rna``, ``cnv`` decide first.
    features
        Feature ids; site ids (``GENE-S123``, ``GENE_K45``) and ``hsa-miR`` ids decide next.
    values
        The numeric matrix (NaN allowed); value ranges decide last.

    Returns
    -------
    (kind, reason)
        The modality kind and a short reason for the report.
    """
    by_name = kind_from_name(name)
    if by_name is not None:
        return by_name
    if _site_fraction(features, MIRNA) > 0.5:
        return "mirna", "miRNA ids"
    if _site_fraction(features, PHOSPHO_SITE) > 0.5:
        return "phosphoproteomics", "S/T/Y site ids"
    if _site_fraction(features, ACETYL_SITE) > 0.5:
        return "acetylproteomics", "K site ids"
    v = values[np.isfinite(values)] if values.size else values
    if v.size:
        zeros = float(np.mean(v == 0))
        med = float(np.median(v))
        if zeros > 0.1 and abs(med) < 0.1 and v.min() < 0:
            return "cna", "values centred on 0 with many exact zeros"
        if v.min() >= 0 and np.all(v == np.round(v)) and v.max() > 1000 and zeros > 0.05:
            return "transcriptomics", "non-negative integer counts with zeros"
        if v.min() >= 0 and v.max() < 30 and zeros > 0.05:
            return "transcriptomics", "log-expression range with many zeros"
    return "proteomics", "default for a numeric feature table"
