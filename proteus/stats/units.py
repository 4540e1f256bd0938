"""Curated biological units that cover findings moving together in one contrast.

A unit is a shipped curated gene set (Reactome, WikiPathways, GO biological process; sources in
``proteus/genesets/SOURCES.json``) small enough to name one function (at most :data:`MAX_UNIT` genes).
Several changed features of one contrast that move the same way and belong to one unit are one
finding about the unit, not one per protein.

Which unit: the one covering the most of the changed genes, ties going to the most specific (the
smallest hypergeometric tail over the measured genes: the over-representation test of Perseus / DAVID,
Fisher's exact test one-sided, which a small unit wins over a large one holding as many); a unit is
kept only when that tail is below ``alpha``, and a unit covering only two genes only when it is small
(:data:`MAX_PAIR_UNIT`). Units are taken greedily, each covering at least two genes not yet covered.

Whether the unit moves (:func:`unit_change`): picking members by significance says nothing about the
rest of the unit, so a unit is said to move one way only when no significant member moves the other
way and the unit as a whole does: its measured members' median log2 fold change has that sign, their
moderated t statistics rank beyond the other features' (a competitive rank-sum gene-set test,
limma's ``wilcoxGST``; Michaud et al. 2008, doi:10.1186/1471-2164-9-S1-S14), and at least
:data:`MIN_UNIT_SHARE` of its measured members changed that way. The competitive test alone passes
when a few strong members shift the ranks of a large unit (3 of 56); "the unit moves" is then a claim
about 53 proteins that did not change, so the changed proteins are stated instead (:func:`unit_share`
says the same of an enrichment result).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd
from scipy.stats import hypergeom, mannwhitneyu

__all__ = ["MAX_UNIT", "MAX_PAIR_UNIT", "MIN_UNIT_SHARE", "MAX_COMPLEX", "Unit", "partners", "named_paralogs", "gene_units", "unit_genes", "unit_genes_of", "set_name", "shared_unit", "covering_units", "UnitChange", "unit_change", "unit_share"]

MAX_UNIT = 200
"""Largest gene set that still names one function (broader terms, e.g. 'Metabolism of proteins', do not)."""

MAX_PAIR_UNIT = 50
"""Largest unit that two changed genes alone may stand for (a complex or one specific process); larger
units need three, since among thousands of sets two strong changes share a large one often by chance."""

MIN_UNIT_SHARE = 0.2
"""Share of a unit's measured members that must change one way before the unit is said to move: one in
five. Below it the unit's median and ranks are carried by a minority, and a sentence about the unit
would mostly describe members that did not change. At a 5% FDR with moderate power (~50% per member,
typical of cohorts of 10-20 per group) a unit whose members truly all shift shows about half of them
significant, so a fifth leaves room for weaker members while refusing units led by a handful."""


def unit_share(n_changed: int, n_measured: int) -> bool:
    """Whether ``n_changed`` of a unit's ``n_measured`` measured members are enough to speak of the unit
    (at least :data:`MIN_UNIT_SHARE`); otherwise the changed members are the finding, not the unit."""
    return n_measured > 0 and n_changed >= MIN_UNIT_SHARE * n_measured


MAX_COMPLEX = 30
"""Largest curated unit whose members are called a protein's partners (a complex or one small machine)."""

_LIBRARY_NAMES = {"reactome": "Reactome", "wikipathways": "WikiPathways", "go_bp": "GO biological process"}


@dataclass(frozen=True)
class Unit:
    """A curated unit and the changed genes it covers."""

    library: str
    set_id: str
    name: str
    members: tuple[str, ...]
    """The changed genes it holds, in the order given."""
    size: int
    """Its genes in the curated source."""
    n_measured: int | None = None
    """Its genes among the measured ones (the background; ``None`` without one)."""
    p: float | None = None
    """Hypergeometric tail: as many or more of the changed genes among ``n_measured`` by chance."""

    @property
    def source(self) -> str:
        return _LIBRARY_NAMES.get(self.library, self.library)


@lru_cache(maxsize=1)
def _units() -> tuple[dict[tuple[str, str], frozenset[str]], dict[tuple[str, str], str]]:
    from proteus import genesets

    sets, names = {}, {}
    for lib in genesets.LIBRARIES:
        nm = genesets.set_names(lib)
        for sid, genes in genesets.load(lib).items():
            if 2 <= len(genes) <= MAX_UNIT:
                sets[(lib, sid)] = frozenset(genes)
                names[(lib, sid)] = nm.get(sid, sid)
    return sets, names


@lru_cache(maxsize=1)
def _by_gene() -> dict[str, frozenset[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    for key, genes in _units()[0].items():
        for g in genes:
            out.setdefault(g, set()).add(key)
    return {g: frozenset(k) for g, k in out.items()}


def gene_units(gene: str) -> frozenset[tuple[str, str]]:
    """The curated units (``(library, set id)``) that hold ``gene``."""
    return _by_gene().get(gene, frozenset())


@lru_cache(maxsize=1)
def _interactors() -> dict[str, frozenset[str]]:
    from proteus import genesets

    e = genesets.ppi_edges()
    out: dict[str, set[str]] = {}
    for a, b in zip(e["a"].astype(str), e["b"].astype(str)):
        out.setdefault(a, set()).add(b)
        out.setdefault(b, set()).add(a)
    return {g: frozenset(v) for g, v in out.items()}


def partners(gene: str) -> dict[str, str]:
    """The curated partners of ``gene`` and where each comes from: its BioPlex 3.0 interactors
    (co-purified with it, Huttlin et al. 2021, doi:10.1016/j.cell.2021.04.011) and the other members
    of the small curated units that hold it (at most :data:`MAX_COMPLEX` genes: a complex or one
    small machine), named by the smallest such unit."""
    out = {g: "BioPlex interactor" for g in sorted(_interactors().get(gene, ())) if g != gene}
    sets, names = _units()
    for key in sorted(gene_units(gene), key=lambda k: (len(sets[k]), k)):
        if len(sets[key]) <= MAX_COMPLEX:
            for g in sorted(sets[key] - {gene}):
                out.setdefault(g, f"'{names[key]}' ({_LIBRARY_NAMES.get(key[0], key[0])})")
    return out


_LIKE = re.compile(r"^(?P<stem>[A-Z0-9]+?)L\d+$")


@lru_cache(maxsize=1)
def _like_symbols() -> dict[str, frozenset[str]]:
    from proteus import genesets

    symbols = genesets.known_symbols()
    out: dict[str, set[str]] = {}
    for g in symbols:
        if (m := _LIKE.match(g)) and m["stem"] in symbols:
            out.setdefault(m["stem"], set()).add(g)
            out.setdefault(g, set()).add(m["stem"])
    return {g: frozenset(v) for g, v in out.items()}


def named_paralogs(gene: str) -> frozenset[str]:
    """Paralogs of ``gene`` named as such: a '-like' symbol of it (``RPL22L1`` of ``RPL22``: HGNC names a gene
    related by sequence after its relative with the suffix L and a number; Bruford et al. 2020,
    doi:10.1038/s41588-020-0669-3) that also shares a curated unit with it (a Reactome / WikiPathways / GO set of
    at most :data:`MAX_UNIT` genes), so a symbol that only looks alike (MICA, MICAL3) is not taken."""
    mine = gene_units(gene)
    return frozenset(g for g in _like_symbols().get(gene, ()) if mine & gene_units(g))


def unit_genes(unit: Unit) -> frozenset[str]:
    """Every gene of ``unit`` in its curated source."""
    return unit_genes_of((unit.library, unit.set_id))


def unit_genes_of(key: tuple[str, str]) -> frozenset[str]:
    """Every gene of the unit ``(library, set id)``."""
    return _units()[0][key]


def set_name(key: tuple[str, str]) -> str:
    """The name of the unit ``(library, set id)``."""
    return _units()[1][key]


def shared_unit(genes: list[str]) -> Unit | None:
    """The curated unit holding the most of ``genes`` (at least two), ties to the smallest; no background."""
    sets, names = _units()
    hits: dict[tuple[str, str], list[str]] = {}
    for g in dict.fromkeys(genes):
        for key in gene_units(g):
            hits.setdefault(key, []).append(g)
    best = min(((-len(v), len(sets[k]), k) for k, v in hits.items() if len(v) >= 2), default=None)
    if best is None:
        return None
    key = best[2]
    return Unit(key[0], key[1], names[key], tuple(hits[key]), len(sets[key]))


def covering_units(changed: list[str], measured: set[str] | frozenset[str], *, alpha: float = 0.05,
                   max_units: int = 3, min_members: int = 2) -> list[Unit]:
    """Units that cover ``changed`` genes (one contrast, one direction), most specific first.

    Parameters
    ----------
    changed
        Genes of the features that changed the same way in one contrast.
    measured
        Genes of every feature tested in that contrast (the background; ``changed`` is counted in it).
    alpha
        A unit is kept only when its hypergeometric tail is below ``alpha``.
    max_units, min_members
        At most ``max_units`` units, each covering at least ``min_members`` genes not covered before.

    Returns
    -------
    Units in the order chosen (smallest tail first), each with the changed genes it covers.
    """
    measured = set(measured) | set(changed)
    todo = [g for g in dict.fromkeys(changed) if g]
    sets, names = _units()
    N, n = len(measured), len(todo)
    out: list[Unit] = []
    while len(out) < max_units and len(todo) >= min_members:
        cands: dict[tuple[str, str], list[str]] = {}
        for g in todo:
            for key in gene_units(g):
                cands.setdefault(key, []).append(g)
        best = None
        for key, hit in cands.items():
            if len(hit) < min_members or (len(hit) < 3 and len(sets[key]) > MAX_PAIR_UNIT):
                continue
            K = len(sets[key] & measured)
            p = float(hypergeom.sf(len(hit) - 1, N, K, n))
            rank = (-len(hit), p, len(sets[key]), key)
            if p < alpha and (best is None or rank < best[0]):
                best = (rank, Unit(key[0], key[1], names[key], tuple(hit), len(sets[key]), K, p))
        if best is None:
            break
        out.append(best[1])
        todo = [g for g in todo if g not in best[1].members]
    return out


@dataclass(frozen=True)
class UnitChange:
    """How every measured member of a unit moved in one contrast."""

    n_measured: int
    """Measured features of the unit's genes in the contrast's table."""
    median: float
    """Median log2 fold change of those features."""
    p_rank: float
    """One-sided rank-sum p of their statistics against every other feature's, in the unit's direction."""
    changed: tuple[tuple[str, float, float], ...]
    """(label, log2FC, q) of the members significant in the unit's direction, strongest first."""
    against: tuple[tuple[str, float, float], ...]
    """(label, log2FC, q) of the members significant in the other direction."""

    def shifts(self, sign: int, alpha: float = 0.05) -> bool:
        """The unit's members lean ``sign``-wards: no significant member the other way, the median on that
        side and the rank test below ``alpha`` (however few members changed)."""
        return not self.against and self.median * sign > 0 and self.p_rank < alpha

    def moves(self, sign: int, alpha: float = 0.05) -> bool:
        """The unit moves ``sign``-wards as a whole: it :meth:`shifts` that way and at least
        :data:`MIN_UNIT_SHARE` of its measured members changed that way (:func:`unit_share`)."""
        return self.shifts(sign, alpha) and unit_share(len(self.changed), self.n_measured)


def unit_change(table: pd.DataFrame, genes: frozenset[str], sign: int, *, fdr: float = 0.05) -> UnitChange | None:
    """Every measured member of a unit (``genes``) in one contrast's result ``table`` (``gene``, ``label``,
    ``logFC``, ``q`` and, where the test has one, ``t``), read for direction ``sign`` (+1 higher, -1 lower);
    ``None`` when fewer than two members or no other feature were measured."""
    if not {"gene", "label", "logFC", "q"} <= set(table.columns):
        return None
    tab = table.dropna(subset=["logFC"])
    inside = tab["gene"].astype(str).isin(genes).to_numpy()
    mine, rest = tab[inside], tab[~inside]
    stat = "t" if "t" in tab and tab["t"].notna().all() else "logFC"
    if len(mine) < 2 or rest.empty:
        return None
    p = float(mannwhitneyu(mine[stat], rest[stat], alternative="greater" if sign > 0 else "less").pvalue)
    sig = mine[mine["q"] < fdr].sort_values("q")
    rows = lambda d: tuple((str(lab), float(fc), float(q)) for lab, fc, q in zip(d["label"], d["logFC"], d["q"]))
    return UnitChange(len(mine), float(mine["logFC"].median()), p,
                      rows(sig[sig["logFC"] * sign > 0]), rows(sig[sig["logFC"] * sign < 0]))
