"""One event, one hypothesis: drafts about the same feature moving the same way in the same samples.

A feature lost in one group of samples shows up in every grouping and test that contains those samples
(the status column, the subtype column that refines it, the gene mutation that marks the same tumours,
the F-test across subtypes, the pooled contrast of several levels, the pathway its gene sits in). Each is
true, but together they are one observation spending several report slots. Two drafts are one event when
a feature that leads one of them (the gene of its first group-comparison edge) is among the other's
features, moving the same way, and either

- the two comparisons' case samples are the same ones: Jaccard overlap of at least :data:`SAME_SAMPLES`
  (each draft's lead is looked up in the other, so the order of the drafts does not decide); or
- one is a pooled contrast (several levels against one reference) and the other compares samples inside
  it: at least :data:`SAME_SAMPLES` of its case samples are pooled cases and its control samples are the
  pooled control (Jaccard at least :data:`SAME_SAMPLES`); the pooled statement states each level's own
  effect, so the level's change is part of it.

Sample sets come from whatever defines the grouping (:func:`comparison_samples`): a sample-table column or
a gene's mutation status (the genotyped samples of the tool call), so a subtype column and a mutation that
marks the same samples match. The draft with the
most features states the event (the earlier one on a tie), at the best rank of the drafts it folds; its
rationale cites the others' statements and edges. An event holding a positive control (:mod:`proteus.policy.controls`,
the genes whose products define a grouping) is that control: the discoveries in it restate what the control checks.

A draft about a single feature is also part of a pathway programme's event when the feature is a changed
member of a pathway another draft states as moving (:func:`~proteus.policy.claims.pathway_moves`) in the same
contrast and direction: the programme states it. Two wider events are folded the same way and stated anew,
at the best rank of their drafts:

- one copy-number segment (:mod:`proteus.policy.segments`): copy-number cis effects of genes whose copy
  number co-segregates across samples are one gain or loss; the segment's statement lists its genes with
  cis effects;
- one theme (:mod:`proteus.policy.themes`): drafts about single features of one contrast moving one way
  whose cited features share a curated unit are one finding about the unit, naming it and its members.

Last, one promoter (:mod:`proteus.policy.promoters`): a gene that leads a draft and its head-to-head partner (a
shared bidirectional promoter), changing the same way in the same samples (an edge of the graph), are one event: the
statement says so and cites the partner's change, and a single-feature draft led by the partner folds into it (into
the draft about several features, else the earlier one). Human layers only.
"""

from __future__ import annotations

from typing import NamedTuple

from proteus.confounding import evidence_contrast
from proteus.genesets import organism_problem
from proteus.kg import KnowledgeGraph
from proteus.policy.claims import pathway_moves
from proteus.policy.decisions import HypothesisDraft
from proteus.policy.promoters import bidirectional_partners, promoter_clause
from proteus.policy.result_tables import ResultTables
from proteus.policy.segments import co_segregate, copy_number_lead, segment_draft, segment_of
from proteus.policy.themes import Theme, themes_of, theme_draft
from proteus.records import Relation
from proteus.study import Study

__all__ = ["SAME_SAMPLES", "comparison_samples", "fold_same_events"]

SAME_SAMPLES = 0.8
"""Overlap of two comparisons' samples (Jaccard; share inside, for a pooled contrast) above which they compare the same samples."""


class _Signal(NamedTuple):
    """One group-comparison edge: its gene, direction (+1/-1), case and control samples, whether it pools levels, and the edge."""

    gene: str
    sign: int
    cases: frozenset[str]
    controls: frozenset[str]
    pooled: bool
    edge: Relation


def _mutation_samples(study: Study, r: Relation, gene: str, cache: dict) -> tuple[frozenset[str], frozenset[str]] | None:
    """(mutated, wild-type) genotyped samples of ``gene`` in the tool call of mutation edge ``r``."""
    from proteus.tools.correlation import restricted_samples
    from proteus.tools.mutation import mutation_matrix

    p = r.provenance.params or {}
    mod = r.modality or p.get("modality") or next(iter(p.get("modalities") or []), None)
    if mod not in study.modalities or study.mutations is None:
        return None
    key = ("mutation", mod, repr(sorted((p.get("restrict") or {}).items())), p.get("variant_classes") or "nonsilent")
    if key not in cache:
        samples = restricted_samples(study, list(study.modalities[mod].obs_names.astype(str)), p.get("restrict"))
        cache[key] = mutation_matrix(study, samples, p.get("variant_classes") or "nonsilent")[0]
    mat = cache[key]
    if gene not in mat:
        return None
    hit = mat[gene].astype(bool)
    return frozenset(map(str, mat.index[hit])), frozenset(map(str, mat.index[~hit]))


def comparison_samples(r: Relation, study: Study, cache: dict | None = None) -> tuple[frozenset[str], frozenset[str]] | None:
    """(case, control) samples a group-comparison edge compares, whatever defines the grouping: a
    sample-table column (:func:`proteus.confounding.evidence_contrast`, on the samples of the edge's
    layer) or a gene's mutation status (mutated vs wild-type genotyped samples of the tool call);
    ``None`` for any other edge. Markers of clusters found in the run are not: a cluster hypothesis
    claims the clustering (what it is associated with), not its markers' change."""
    cache = {} if cache is None else cache
    key = evidence_contrast(r)
    if key is not None:
        group, cases, controls = key
        clin = study.sample_table(r.modality) if r.modality in study.modalities else study.clinical
        if group not in clin:
            return None
        g = clin[group].astype(str).where(clin[group].notna())
        return frozenset(map(str, clin.index[g.isin(cases)])), frozenset(map(str, clin.index[g.isin(controls)]))
    extra = r.stats.extra or {}
    if str(extra.get("mutation", "")).startswith("mutation:"):
        return _mutation_samples(study, r, str(extra["mutation"]).split(":", 1)[1], cache)
    if r.predicate == "cis_effect_on" and r.subject.type == "mutation":
        return _mutation_samples(study, r, r.subject.label, cache)
    return None


def _gene(r: Relation) -> str:
    """The gene an edge's change is about (the object of a mutation's cis effect, else the subject's gene)."""
    return r.object.label if r.predicate == "cis_effect_on" else str(r.stats.extra.get("gene") or r.subject.label.split("-")[0])


def _signal(r: Relation, study: Study, cache: dict) -> _Signal | None:
    """The gene, direction and samples of a group-comparison edge; ``None`` for any other edge."""
    if r.predicate in ("higher_in", "lower_in"):
        sign = 1 if r.predicate == "higher_in" else -1
    elif r.predicate in ("differs_across", "cis_effect_on") and r.stats.effect:
        sign = 1 if r.stats.effect > 0 else -1
    else:
        return None
    samples = comparison_samples(r, study, cache)
    if samples is None or not samples[0]:
        return None
    return _Signal(_gene(r), sign, *samples, bool((r.provenance.params or {}).get("case_levels")), r)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def _inside(part: _Signal, pooled: _Signal) -> bool:
    """Whether ``part`` compares samples inside the pooled contrast ``pooled`` (its cases among the pooled
    cases, its controls the pooled control)."""
    return (pooled.pooled and not part.pooled and len(part.cases & pooled.cases) >= SAME_SAMPLES * len(part.cases)
            and _jaccard(part.controls, pooled.controls) >= SAME_SAMPLES)


def _same_event(one: list[_Signal], other: list[_Signal]) -> bool:
    """Whether drafts with signals ``one`` and ``other`` are about one event (see the module docstring): the lead
    of either among the other's features, either way round."""
    if not one or not other:
        return False
    pairs = [(one[0], x) for x in other] + [(other[0], x) for x in one]
    return any(a.gene == b.gene and a.sign == b.sign and (_jaccard(a.cases, b.cases) >= SAME_SAMPLES or _inside(a, b) or _inside(b, a))
               for a, b in pairs)


def _same_contrast(a: _Signal, b: _Signal) -> bool:
    return a.sign == b.sign and _jaccard(a.cases, b.cases) >= SAME_SAMPLES and _jaccard(a.controls, b.controls) >= SAME_SAMPLES


def _single_feature(d: HypothesisDraft, sig: list[_Signal]) -> bool:
    """A discovery led by one group-comparison edge whose cited changes all move one way in the same samples
    (a feature, with its other layers or partners): a candidate for a theme."""
    return (d.kind == "discovery" and bool(sig) and d.evidence[0] == sig[0].edge.id and not sig[0].pooled
            and all(_same_contrast(s, sig[0]) for s in sig))


def _measured(study: Study, layer: str | None, cache: dict) -> frozenset[str]:
    """Genes measured in ``layer`` (the background of a unit test)."""
    from proteus.stats.features import feature_genes

    if ("measured", layer) not in cache:
        cache[("measured", layer)] = frozenset(feature_genes(study.modalities[layer]).dropna().astype(str)) if layer in study.modalities else frozenset()
    return cache[("measured", layer)]


def _programme(d: HypothesisDraft, kg: KnowledgeGraph, study: Study, cache: dict) -> tuple[_Signal, frozenset[str]] | None:
    """The contrast (as a signal) and the changed member genes of the pathways a draft states as moving
    (:func:`~proteus.policy.claims.pathway_moves`, one contrast and direction); ``None`` for any other draft."""
    rels = [r for e in d.evidence if (r := kg.relation(e)) is not None and r.predicate == "enriched_in" and r.object.type == "sample_group"
            and pathway_moves(r)]
    if not rels:
        return None
    r = rels[0]
    samples = comparison_samples(r, study, cache)
    if samples is None or not samples[0]:
        return None
    sign = 1 if r.stats.direction in ("up", "positive") else -1
    same = [x for x in rels if x.object.id == r.object.id and x.stats.direction == r.stats.direction]
    genes = frozenset(str(g) for x in same for g in (x.stats.extra or {}).get("genes", []) or [])
    return _Signal("", sign, *samples, bool((r.provenance.params or {}).get("case_levels")), r), genes


def _merge(events: list[list[int]], groups: list[list[int]]) -> list[list[int]]:
    """``events`` with the events holding the drafts of each of ``groups`` merged into one, at the first one's place."""
    where = {i: k for k, ev in enumerate(events) for i in ev}
    out = [list(ev) for ev in events]
    for g in groups:
        ks = sorted({where[i] for i in g})
        for k in ks[1:]:
            for i in out[k]:
                where[i] = ks[0]
            out[ks[0]] += out[k]
            out[k] = []
    return [sorted(ev) for ev in out if ev]


def _segments(drafts: list[HypothesisDraft], kg: KnowledgeGraph, study: Study, cache: dict) -> list[tuple[list[int], Relation]]:
    """Copy-number cis drafts whose genes' copy number co-segregates (each compared with a segment's first
    draft), with the first draft's cis edge."""
    out: list[tuple[list[int], Relation]] = []
    for i, d in enumerate(drafts):
        r = copy_number_lead([x for e in d.evidence if (x := kg.relation(e)) is not None])
        if r is None:
            continue
        seg = next((g for g, first in out if co_segregate(first, r, study, cache)), None)
        if seg is None:
            out.append(([i], r))
        else:
            seg.append(i)
    return out


def _features(signals: list[_Signal]) -> list[tuple[str, Relation]]:
    """A draft's cited features as (gene, edge), one per gene, its lead first."""
    return list({s.gene: (s.gene, s.edge) for s in signals}.values())


def _themes(events: list[list[int]], drafts: list[HypothesisDraft], signals: list[list[_Signal]], study: Study, cache: dict) -> list[Theme]:
    """Themes (:func:`~proteus.policy.themes.themes_of`) among the single-feature events, pooled per contrast and direction."""
    pools: list[list[int]] = []
    for i in (ev[0] for ev in events if _single_feature(drafts[ev[0]], signals[ev[0]])):
        pool = next((p for p in pools if _same_contrast(signals[i][0], signals[p[0]][0])), None)
        if pool is None:
            pools.append([i])
        else:
            pool.append(i)
    out = []
    for pool in pools:
        lead = signals[pool[0]][0]
        out += themes_of({i: _features(signals[i]) for i in pool}, _measured(study, lead.edge.modality, cache), lead.sign)
    return out


def _covered(events: list[list[int]], drafts: list[HypothesisDraft], signals: list[list[_Signal]], themes: list[Theme],
             kg: KnowledgeGraph, study: Study, cache: dict) -> list[list[int]]:
    """Events a stated programme covers, each as [the programme's draft, the event's drafts...]: a single-feature
    event or theme of the programme's contrast and direction whose lead, or at least half of whose cited genes,
    are changed members of the pathways the programme states as moving."""
    programmes = {i: p for i, d in enumerate(drafts) if (p := _programme(d, kg, study, cache)) is not None}
    in_theme = {i: t for t in themes for i in t.drafts}
    out = []
    for ev in events:
        members = list(in_theme[ev[0]].drafts) if ev[0] in in_theme else [ev[0]] if _single_feature(drafts[ev[0]], signals[ev[0]]) else []
        if not members or any(i in programmes for i in ev):
            continue
        lead, genes = signals[members[0]][0], {s.gene for i in members for s in signals[i]}
        p = next((i for i, (sig, stated) in programmes.items()
                  if _same_contrast(lead, sig) and (lead.gene in stated or 2 * len(genes & stated) >= len(genes))), None)
        if p is not None:
            out.append([p, *ev])
    return out


class _Pair(NamedTuple):
    """A lead gene and its head-to-head partner changing the same way in the same samples (its strongest such edge)."""

    gene: str
    partner: str
    distance: int
    edge: Relation


def _by_gene(kg: KnowledgeGraph, cache: dict) -> dict[str, list[Relation]]:
    """The graph's group-comparison edges by the gene they are about."""
    if "by gene" not in cache:
        out: dict[str, list[Relation]] = {}
        for r in kg.relations.values():
            if r.predicate in ("higher_in", "lower_in", "differs_across") or (r.predicate == "cis_effect_on" and r.subject.type == "mutation"):
                out.setdefault(_gene(r), []).append(r)
        cache["by gene"] = out
    return cache["by gene"]


def _promoter_pairs(leads: list[_Signal], kg: KnowledgeGraph, study: Study, cache: dict) -> list[_Pair]:
    """Head-to-head partners (:func:`~proteus.policy.promoters.bidirectional_partners`) of the genes of ``leads`` with
    an edge in the graph changing the same way in the same samples; genes of human layers only."""
    out: dict[tuple[str, str], _Pair] = {}
    for lead in leads:
        layer = study.modalities.get(lead.edge.modality) if lead.edge.modality else None
        if layer is None or organism_problem(layer.uns.get("organism")) is not None:
            continue
        for partner, distance in bidirectional_partners(lead.gene).items():
            same = [r for r in _by_gene(kg, cache).get(partner, []) if (x := _signal(r, study, cache)) is not None and _same_contrast(lead, x)]
            if same and (lead.gene, partner) not in out and (partner, lead.gene) not in out:
                out[(lead.gene, partner)] = _Pair(lead.gene, partner, distance, min(same, key=lambda r: (r.stats.q_else_p(), r.id)))
    return list(out.values())


def _leads(event: list[int], signals: list[list[_Signal]]) -> list[_Signal]:
    """The lead change of each draft of ``event``."""
    return [signals[i][0] for i in event if signals[i]]


def _promoter_folds(events: list[list[int]], drafts: list[HypothesisDraft], signals: list[list[_Signal]], kg: KnowledgeGraph,
                    study: Study, cache: dict) -> list[list[int]]:
    """Events about one gene (single-feature drafts) that is the head-to-head partner of a lead of another event,
    changing the same way in the same samples, each as [the stating event's first draft, the folded event's drafts...]:
    events about several features state first, then the others in rank order; an event that states folds no further."""
    single = [all(_single_feature(drafts[i], signals[i]) for i in ev) and len({s.gene for i in ev for s in signals[i]}) == 1 for ev in events]
    folded: set[int] = set()
    stating: set[int] = set()
    out = []
    for k in sorted(range(len(events)), key=lambda k: (single[k], k)):
        if k in folded:
            continue
        partners = {p.partner for p in _promoter_pairs(_leads(events[k], signals), kg, study, cache)}
        mine = [k2 for k2, ev in enumerate(events) if k2 != k and single[k2] and k2 not in folded | stating and signals[ev[0]][0].gene in partners]
        if mine:
            folded.update(mine)
            stating.add(k)
            out.append([events[k][0]] + [i for k2 in mine for i in events[k2]])
    return out


def _with_promoter(d: HypothesisDraft, pairs: list[_Pair], folded: list[HypothesisDraft]) -> HypothesisDraft:
    """Draft ``d`` saying that its lead genes and their head-to-head partners in ``pairs`` are one promoter event,
    citing the partners' edges and the drafts ``folded`` into it."""
    pairs = [p for p in pairs if f"bidirectional promoter with {p.partner}" not in d.statement][:2]
    if not pairs and not folded:
        return d
    words = {"higher_in": "higher", "lower_in": "lower"}
    clause = "; ".join(promoter_clause(p.gene, p.partner, p.distance, words.get(p.edge.predicate, "changed the same way")) for p in pairs)
    base = d.statement.rstrip().rstrip(".")
    statement = f"{base[:500 - len(clause) - 3]}; {clause}." if clause else d.statement
    new = [p.edge.id for p in pairs if p.edge.id not in d.evidence]
    keys = {k.edge for k in d.key_edges}
    rest = [e for e in d.evidence if e not in keys][:max(0, 12 - len(new) - len(keys))]  # the key edges stay cited
    evidence = [e for e in d.evidence if e in keys or e in rest] + new
    also = (" One promoter event, folded here: " + "; ".join(f"{x.statement.rstrip('.')[:160]} ({', '.join(x.evidence[:2])})" for x in folded) + "."
            if folded else "")
    return d.model_copy(update={"statement": statement, "evidence": evidence, "rationale": d.rationale[:1200 - len(also)] + also})


def fold_same_events(drafts: list[HypothesisDraft], kg: KnowledgeGraph, study: Study,
                     tables: ResultTables | None = None) -> list[HypothesisDraft]:
    """``drafts`` (best first) with the drafts about one event folded into one (see the module
    docstring), each event at the rank of its best draft, folded again until nothing folds (a segment or
    theme stated anew can be one event with another draft), so no two of the drafts returned fold, in
    any order. ``tables`` (the run's full result tables) give a segment every gene with a cis effect and
    a theme's unit its share of changed members."""
    cache: dict = {}
    out = _fold(drafts, kg, study, tables, cache)
    while len(out) < len(drafts):
        drafts, out = out, _fold(out, kg, study, tables, cache)
    return out


def _fold(drafts: list[HypothesisDraft], kg: KnowledgeGraph, study: Study, tables: ResultTables | None, cache: dict) -> list[HypothesisDraft]:
    """One pass of :func:`fold_same_events`: each draft joins the first event whose first draft it is one event with."""
    signals = [[s for e in d.evidence if (r := kg.relation(e)) is not None and (s := _signal(r, study, cache)) is not None]
               for d in drafts]
    events: list[list[int]] = []
    for i, sig in enumerate(signals):
        event = next((ev for ev in events if _same_event(sig, signals[ev[0]])), None)  # its first draft: no chains through members
        if event is None:
            events.append([i])
        else:
            event.append(i)
    segments = _segments(drafts, kg, study, cache)
    events = _merge(events, [g for g, _ in segments])
    themes = _themes(events, drafts, signals, study, cache)
    events = _merge(events, [list(t.drafts) for t in themes])
    covered = _covered(events, drafts, signals, themes, kg, study, cache)
    events = _merge(events, covered)
    promoted = _promoter_folds(events, drafts, signals, kg, study, cache)
    events = _merge(events, promoted)
    promoted_drafts = {i for g in promoted for i in g[1:]}
    stater = {g[0] for g in covered}
    theme_of = {t.drafts[0]: t for t in themes if not any(i in g for g in covered for i in t.drafts)}
    segment_lead = {g[0]: r for g, r in segments}
    out = []
    for whole in events:
        event = [i for i in whole if i not in promoted_drafts]
        out.append(_with_promoter(_stated(event, drafts, signals, stater, theme_of, segment_lead, kg, study, tables, cache),
                                  _promoter_pairs(_leads(event, signals), kg, study, cache), [drafts[i] for i in whole if i in promoted_drafts]))
    return out


def _stated(event: list[int], drafts: list[HypothesisDraft], signals: list[list[_Signal]], stater: set[int], theme_of: dict[int, Theme],
            segment_lead: dict[int, Relation], kg: KnowledgeGraph, study: Study, tables: ResultTables | None, cache: dict) -> HypothesisDraft:
    """The one draft stating ``event``: a programme that covers it, a positive control in it (a discovery about the feature a
    control restates is that control, not a finding), its theme or segment stated anew, else its richest draft citing the others."""
    head = next((i for i in event if i in stater), None)
    head = head if head is not None or len(event) == 1 else next((i for i in event if drafts[i].kind == "positive control"), None)
    theme = next((theme_of[i] for i in event if i in theme_of), None)
    seg_head = next((i for i in event if i in segment_lead), None)
    seg = segment_of(segment_lead[seg_head], kg, study, tables, cache) if seg_head is not None and theme is None else None
    if head is None and theme is not None:
        return theme_draft(theme, drafts, {i: _features(signals[i]) for i in event}, tables)
    if head is None and seg is not None:
        stated = segment_draft(seg, [drafts[i] for i in event])
        return drafts[event[0]] if event == [event[0]] and stated.statement == drafts[event[0]].statement else stated
    head = head if head is not None else max(event, key=lambda i: (len({s.gene for s in signals[i]}), -i))
    d = drafts[head]
    others = [i for i in event if i != head]
    if others:
        what = ("members of the pathways it states, changing the same way in the same samples" if head in stater
                else "the same feature moving the same way in the same samples")
        also = (f" The same event ({what}) is also seen as: "
                + "; ".join(f"{drafts[i].statement.rstrip('.')[:160]} ({', '.join(drafts[i].evidence[:2])})" for i in others))[:600] + "."
        d = d.model_copy(update={"rationale": d.rationale[:1200 - len(also)] + also})
    return d
