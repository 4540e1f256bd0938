"""One copy-number segment, one hypothesis: cis effects of genes whose copy number co-segregates.

A gained or lost chromosome segment changes the copy number of every gene on it in the same samples,
so the copy-number values of its genes co-vary across samples almost perfectly; each of its genes
whose mRNA or protein follows its dosage is then one more observation of the same event, not a
separate finding. Two copy-number cis effects are one segment when their genes' copy-number values
correlate at Spearman rho >= :data:`CO_SEGREGATION` over the samples the cis test used (derived from
the data alone: no gene positions are needed). The segment's statement lists its genes with cis
effects, those reaching both the mRNA and the protein first (Mertins et al. 2016,
doi:10.1038/nature18003, and Zhang et al. 2016, doi:10.1016/j.cell.2016.07.054: most copy-number
effects on mRNA are buffered at the protein level, so the genes that escape are the finding). The statement asserts
both layers, so its claim rests on two keys (:class:`~proteus.records.KeyEdge`, each re-tested on held-out samples by
:mod:`proteus.validation`): the copy-number cis edge on the mRNA and the one on the protein of the first gene it names
that reaches both. It says the dosage reaches the protein level only when a gene of the segment has a copy-number cis
edge on the protein, else that the protein was not shown to follow.

Where a segment lies is named from the genes' positions (:func:`proteus.genesets.gene_loci`, human layers only): the
chromosome arm and the span of cytogenetic bands its genes cover ("on 1q (1q21.1-1q44)"), and, when they lie on
several arms, each arm with its genes: co-segregating regions, not one segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from proteus.genesets import organism_problem
from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import HypothesisDraft
from proteus.policy.result_tables import ResultTables
from proteus.records import KeyEdge, Relation
from proteus.study import Study

__all__ = ["CO_SEGREGATION", "MIN_ARM_SHARE", "Arm", "Segment", "arms_of", "copy_number_lead", "co_segregate", "segment_of", "segment_keys",
           "segment_draft"]

CO_SEGREGATION = 0.8
"""Spearman rho of two genes' copy-number values across samples above which they sit on one segment:
genes of one gained arm or amplicon correlate near 1, neighbouring independent events far below."""

MIN_ARM_SHARE = 0.1
"""Share of a segment's placed genes an arm must hold to be named (genes on other arms are counted as elsewhere)."""

_NAMED = 5
"""Genes a segment's statement names (the rest are counted)."""


def _is_copy_number_cis(r: Relation) -> bool:
    return r.predicate == "cis_effect_on" and r.subject.type == "gene" and bool((r.stats.extra or {}).get("source_modality"))


def copy_number_lead(evidence: list[Relation]) -> Relation | None:
    """The first copy-number cis edge among a draft's ``evidence`` (its gene is the draft's segment lead)."""
    return next((r for r in evidence if _is_copy_number_cis(r)), None)


def _copy_number(study: Study, r: Relation, cache: dict) -> pd.DataFrame | None:
    """Copy-number values (samples x genes, ranked per gene) of the samples cis edge ``r``'s tool call used."""
    from proteus.stats.features import feature_genes
    from proteus.tools.correlation import restricted_samples

    p = r.provenance.params or {}
    layer = str((r.stats.extra or {}).get("source_modality") or p.get("modality"))
    if layer not in study.modalities:
        return None
    key = ("copy number", layer, repr(sorted((p.get("restrict") or {}).items())))
    if key not in cache:
        a = study.modalities[layer]
        samples = restricted_samples(study, list(a.obs_names.astype(str)), p.get("restrict"))
        X = pd.DataFrame(np.asarray(a[samples].X, dtype=float), index=samples, columns=feature_genes(a).fillna("").to_numpy())
        X = X.loc[:, (X.columns != "") & ~X.columns.duplicated()]
        cache[key] = (X, X.rank())
    return cache[key]


def co_segregate(a: Relation, b: Relation, study: Study, cache: dict) -> bool:
    """Whether the genes of copy-number cis edges ``a`` and ``b`` sit on one segment (module docstring)."""
    cn = _copy_number(study, a, cache)
    ga, gb = a.subject.label, b.subject.label
    if cn is None or ga not in cn[1] or gb not in cn[1]:
        return False
    return bool(cn[1][ga].corr(cn[1][gb]) >= CO_SEGREGATION)


@dataclass(frozen=True)
class Arm:
    """A chromosome arm holding genes of a segment: the arm (``"1q"``), how many of the genes lie on it and the span
    of cytogenetic bands they cover, in genome order (``"1q21.1-1q44"``)."""

    arm: str
    n: int
    span: str


def _band_span(bands: list[str], chromosome: str) -> str:
    """``"1q21.1-1q44"`` from the bands of genes in genome order (a gene's band may itself be a range, ``"1q21.1-q21.2"``)."""
    first = bands[0].split("-")[0]
    last = bands[-1].split("-")[-1]
    last = last if last.startswith(chromosome) else chromosome + last
    return first if first == last else f"{first}-{last}"


def arms_of(genes: tuple[str, ...] | list[str]) -> tuple[tuple[Arm, ...], int]:
    """The arms holding at least :data:`MIN_ARM_SHARE` of ``genes`` placed on an arm (NCBI Gene map locations,
    :func:`proteus.genesets.gene_loci`), most genes first, and how many placed genes lie elsewhere; ``((), 0)``
    when none is placed."""
    from proteus.genesets import gene_loci

    loci = gene_loci()
    placed = sorted((loci[g] for g in genes if g in loci and loci[g].arm), key=lambda x: (x.chromosome, x.start))
    by_arm: dict[str, list] = {}
    for x in placed:
        by_arm.setdefault(x.arm, []).append(x)
    kept = sorted((a for a, xs in by_arm.items() if len(xs) >= MIN_ARM_SHARE * len(placed)), key=lambda a: (-len(by_arm[a]), a))
    arms = tuple(Arm(a, len(by_arm[a]), _band_span([x.cytoband for x in by_arm[a]], by_arm[a][0].chromosome)) for a in kept)
    return arms, len(placed) - sum(a.n for a in arms)


@dataclass(frozen=True)
class Segment:
    """The genes with copy-number cis effects whose copy number co-segregates with a lead gene's."""

    lead: str
    n_samples: int
    both: tuple[str, ...]
    """Genes whose mRNA and protein both follow the segment's copy number, strongest first."""
    one_layer: tuple[tuple[str, str], ...]
    """(gene, layer word) of genes with a cis effect in one layer only."""
    edges: tuple[Relation, ...]
    """The knowledge-graph cis edges of the segment's genes, strongest first."""
    above: int
    below: int
    """Samples whose lead copy number is above / below 0 (only on a centred scale; else both 0)."""
    words: tuple[tuple[str, str], ...] = ()
    """(target layer, its word: "mRNA", "protein", else the layer's name) of the segment's cis effects."""
    arms: tuple[Arm, ...] = ()
    """The chromosome arms its genes lie on (:func:`arms_of`; empty when the genes' positions are not known)."""
    elsewhere: int = 0
    """Genes placed on other arms than :attr:`arms`."""

    @property
    def genes(self) -> tuple[str, ...]:
        return self.both + tuple(g for g, _ in self.one_layer)


def _cis_genes(r: Relation, kg: KnowledgeGraph, tables: ResultTables | None) -> dict[str, set[str]]:
    """Gene -> target layers with a significant cis effect in the tool call of edge ``r``: its full table
    when at hand (every gene tested), else the knowledge-graph edges of that step."""
    p = r.provenance.params or {}
    tab = tables.table(r.provenance.tool, "cis_effects", modality=p.get("modality")) if tables is not None else None
    out: dict[str, set[str]] = {}
    if tab is not None and "gene" in tab:
        for col in tab.columns:
            if col.startswith("sig_"):
                for g in tab.loc[tab[col].astype(str) == "True", "gene"].astype(str):
                    out.setdefault(g, set()).add(col[4:])
        return out
    for e in kg.by_predicate("cis_effect_on"):
        if _is_copy_number_cis(e) and e.provenance.step == r.provenance.step:
            out.setdefault(e.subject.label, set()).add(str(e.stats.extra.get("target_modality") or e.modality))
    return out


def segment_of(r: Relation, kg: KnowledgeGraph, study: Study, tables: ResultTables | None, cache: dict) -> Segment | None:
    """The segment of cis edge ``r``'s gene: every gene with a significant cis effect in the same tool call
    whose copy number correlates with it at :data:`CO_SEGREGATION` or more; ``None`` when fewer than two
    (kept in ``cache``, so folding again does not recompute it)."""
    if ("segment", r.id) not in cache:
        cache[("segment", r.id)] = _segment_of(r, kg, study, tables, cache)
    return cache[("segment", r.id)]


def _segment_of(r: Relation, kg: KnowledgeGraph, study: Study, tables: ResultTables | None, cache: dict) -> Segment | None:
    from proteus.tools.correlation import modality_kind

    cn = _copy_number(study, r, cache)
    lead = r.subject.label
    if cn is None or lead not in cn[1]:
        return None
    X, ranks = cn
    cis = {g: layers for g, layers in _cis_genes(r, kg, tables).items() if g in ranks}
    rho = ranks[list(cis)].corrwith(ranks[lead]) if cis else pd.Series(dtype=float)
    members = [g for g in rho.index if rho[g] >= CO_SEGREGATION]
    if len(members) < 2:
        return None
    edges = sorted((e for e in kg.by_predicate("cis_effect_on") if _is_copy_number_cis(e) and e.provenance.step == r.provenance.step
                    and e.subject.label in members), key=lambda e: (e.stats.q_else_p(), e.subject.label, e.id))
    best = {}
    for e in edges:
        best.setdefault(e.subject.label, e.stats.q_else_p())
    order = sorted(members, key=lambda g: (best.get(g, 1.0), -len(cis[g]), g))
    kinds = {layer: modality_kind(study, layer) if layer in study.modalities else layer for g in members for layer in cis[g]}
    word = {layer: {"transcriptomics": "mRNA", "proteomics": "protein"}.get(kind, layer) for layer, kind in kinds.items()}
    both = tuple(g for g in order if len({word[x] for x in cis[g]} & {"mRNA", "protein"}) == 2)
    one = tuple((g, word[next(iter(cis[g]))]) for g in order if g not in both and len(cis[g]) == 1)
    source = study.modalities[str((r.stats.extra or {}).get("source_modality"))]
    centred = source.uns.get("scale") == "centred"
    v = X[lead].dropna()
    arms, elsewhere = arms_of(order) if organism_problem(source.uns.get("organism")) is None else ((), 0)
    return Segment(lead, int(len(v)), both, one, tuple(edges), int((v > 0).sum()) if centred else 0, int((v < 0).sum()) if centred else 0,
                   tuple(sorted(word.items())), arms, elsewhere)


def _names(genes: tuple[str, ...] | list[str]) -> str:
    genes = list(genes)
    shown = ", ".join(genes[:_NAMED])
    return shown + (f" and {len(genes) - _NAMED} more" if len(genes) > _NAMED else "")


def _word(seg: Segment, e: Relation) -> str | None:
    """The word ("mRNA", "protein", else the layer's name) of the layer cis edge ``e`` of ``seg`` targets."""
    return dict(seg.words).get(str((e.stats.extra or {}).get("target_modality") or e.modality))


def segment_keys(seg: Segment) -> list[KeyEdge]:
    """The edges a segment's claim rests on: copy number on the mRNA and on the protein of the first gene of
    ``seg.both`` with both cis edges in the graph (the statement's first named), else the strongest edge of each
    layer; a layer without an edge gives no key."""
    pairs = [{_word(seg, e): e for e in reversed(seg.edges) if e.subject.label == g} for g in seg.both]  # strongest edge per layer wins
    pair = next((x for x in pairs if {"mRNA", "protein"} <= x.keys()), None)
    if pair is None:
        pair = {}
        for e in seg.edges:
            pair.setdefault(_word(seg, e), e)
    return [KeyEdge(edge=pair[w].id, role=f"copy number on {pair[w].subject.label} {w}") for w in ("mRNA", "protein") if w in pair]


def _place(seg: Segment) -> str:
    """Where the segment lies, as the statement's subject: one arm and its bands, else each arm with its genes."""
    if not seg.arms:
        return "One copy-number segment"
    if len(seg.arms) == 1:
        stray = f"; {seg.elsewhere} co-segregating genes elsewhere" if seg.elsewhere else ""
        return f"One copy-number segment on {seg.arms[0].arm} ({seg.arms[0].span}{stray})"
    arms = [f"{a.arm} ({a.span}; {a.n} genes)" for a in seg.arms] + ([f"{seg.elsewhere} genes elsewhere"] if seg.elsewhere else [])
    return "Co-segregating copy-number regions on " + ", ".join(arms[:-1]) + " and " + arms[-1]


def _reach(seg: Segment) -> str:
    """Which layers follow the segment's dosage: the protein only where a gene has a copy-number cis edge on it."""
    one = len(seg.one_layer)
    if any(_word(seg, e) == "protein" for e in seg.edges):
        reach = (f"the mRNA and the protein of {len(seg.both)} of them follow it ({_names(seg.both)}" + (f"; {one} more in one layer only)" if one else ")")
                 if seg.both else "their mRNA or protein follows it")
        return f"{reach}: the dosage of the segment reaches the protein level rather than being buffered"
    mrna = [g for g in seg.genes if g in seg.both or (g, "mRNA") in seg.one_layer]
    return (f"the mRNA of {len(mrna)} of them follows it ({_names(mrna)})" if mrna else "a layer of theirs follows it") + \
        ": the protein was not shown to follow (no copy-number cis edge on the protein)"


def segment_draft(seg: Segment, folded: list[HypothesisDraft]) -> HypothesisDraft:
    """One hypothesis about segment ``seg``, in place of the cis-effect drafts ``folded`` (best first)."""
    n = len(seg.genes)
    where = f"; above 0 in {seg.above}, below 0 in {seg.below}" if seg.above or seg.below else ""
    statement = (f"{_place(seg)}, not {n} separate genes: the copy number of {seg.lead} co-segregates with that of {n - 1} other "
                 f"genes with cis effects (Spearman rho >= {CO_SEGREGATION} over {seg.n_samples} samples{where}), and {_reach(seg)}.")
    cited = [e for e in seg.edges if e.subject.label in seg.both[:4]] or list(seg.edges[:4])
    keys = segment_keys(seg)
    evidence = list(dict.fromkeys([k.edge for k in keys] + [e.id for e in cited] + [e for d in folded for e in d.evidence]))[:12]
    also = "; ".join(f"{d.statement.rstrip('.')[:140]} ({', '.join(d.evidence[:2])})" for d in folded)
    rationale = (f"Copy-number cis effects (copy number against the gene's own mRNA and protein): "
                 + "; ".join(f"{e.subject.label} -> {e.object.type} rho {e.stats.effect:+.2f}, q={e.stats.q_else_p():.1e}" for e in cited[:6])
                 + f". The copy-number values of these genes co-vary across samples (rho >= {CO_SEGREGATION} with {seg.lead}), as genes of one "
                 f"gained or lost segment do, so their cis effects are one event. Folded here: {also}")
    genes = list(seg.both[:4]) or [e.subject.label for e in cited]
    return HypothesisDraft(
        statement=statement[:500],
        rationale=rationale[:1200],
        evidence=evidence,
        entities=list(dict.fromkeys([f"gene:{g}" for g in genes] + [f"protein:{g}" for g in seg.both[:4]]))[:20],
        test=(f"Map the segment's boundaries in the copy-number profiles (segmentation of the {n} genes' positions) and, in cell lines or "
              f"tumours with and without its gain or loss, test whether {', '.join(genes[:3])} protein scales with its dosage; knock down "
              f"{genes[0]} in gained lines to test dependence on it.")[:600],
        key_edges=keys,
    )
