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
that reaches both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import HypothesisDraft
from proteus.policy.result_tables import ResultTables
from proteus.records import KeyEdge, Relation
from proteus.study import Study

__all__ = ["CO_SEGREGATION", "Segment", "copy_number_lead", "co_segregate", "segment_of", "segment_keys", "segment_draft"]

CO_SEGREGATION = 0.8
"""Spearman rho of two genes' copy-number values across samples above which they sit on one segment:
genes of one gained arm or amplicon correlate near 1, neighbouring independent events far below."""

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
    centred = study.modalities[str((r.stats.extra or {}).get("source_modality"))].uns.get("scale") == "centred"
    v = X[lead].dropna()
    return Segment(lead, int(len(v)), both, one, tuple(edges), int((v > 0).sum()) if centred else 0, int((v < 0).sum()) if centred else 0,
                   tuple(sorted(word.items())))


def _names(genes: tuple[str, ...] | list[str]) -> str:
    genes = list(genes)
    shown = ", ".join(genes[:_NAMED])
    return shown + (f" and {len(genes) - _NAMED} more" if len(genes) > _NAMED else "")


def segment_keys(seg: Segment) -> list[KeyEdge]:
    """The edges a segment's claim rests on: copy number on the mRNA and on the protein of the first gene of
    ``seg.both`` with both cis edges in the graph (the statement's first named), else the strongest edge of each
    layer; a layer without an edge gives no key."""
    word = dict(seg.words)

    def layer(e: Relation) -> str | None:
        return word.get(str((e.stats.extra or {}).get("target_modality") or e.modality))

    pairs = [{layer(e): e for e in reversed(seg.edges) if e.subject.label == g} for g in seg.both]  # strongest edge per layer wins
    pair = next((x for x in pairs if {"mRNA", "protein"} <= x.keys()), None)
    if pair is None:
        pair = {}
        for e in seg.edges:
            pair.setdefault(layer(e), e)
    return [KeyEdge(edge=pair[w].id, role=f"copy number on {pair[w].subject.label} {w}") for w in ("mRNA", "protein") if w in pair]


def segment_draft(seg: Segment, folded: list[HypothesisDraft]) -> HypothesisDraft:
    """One hypothesis about segment ``seg``, in place of the cis-effect drafts ``folded`` (best first)."""
    n = len(seg.genes)
    where = f"; above 0 in {seg.above}, below 0 in {seg.below}" if seg.above or seg.below else ""
    one = len(seg.one_layer)
    reach = (f"the mRNA and the protein of {len(seg.both)} of them follow it ({_names(seg.both)}" + (f"; {one} more in one layer only)" if one else ")")
             if seg.both else "their mRNA or protein follows it")
    statement = (f"One copy-number segment, not {n} separate genes: the copy number of {seg.lead} co-segregates with that of {n - 1} other "
                 f"genes with cis effects (Spearman rho >= {CO_SEGREGATION} over {seg.n_samples} samples{where}), and {reach}: "
                 "the dosage of the segment reaches the protein level rather than being buffered.")
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
