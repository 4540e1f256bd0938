"""Hypotheses composed from knowledge-graph patterns (the offline policy's scientific reasoning).

Each pattern looks for a configuration of relations that, together, say more than any one of
them, and writes a falsifiable statement with the edge ids as evidence. Every clause is checked
with :mod:`proteus.policy.claims` against the run's full result tables
(:class:`~proteus.policy.result_tables.ResultTables`), not only the significant relations:

- positive controls (:mod:`proteus.policy.controls`): a second organism's features that move with the
  grouping, one set-level QC statement with the background as negative control
- a grouping named after a gene (a mutation, methylation or subtype call): that gene's own products,
  a positive control (the grouping names the gene)
- curated units (:mod:`proteus.stats.units`): the strongest co-moving changes of a contrast that
  share a unit are one finding about the unit
- a mutation enriched in one level of a grouping whose carriers carry that gene's protein change there:
  the cis effect is the mechanism of the grouping's change
- mutation cis effect, worded by its carriers' variant classes: the direction they predict is a positive
  control (a known mechanism), the other direction a discovery
- mutation trans effects: what carriers differ in beyond the gene itself (adjusted for the groupings they are
  enriched in), with the pathways over-represented there, as an association; and a hypothesis about a protein
  whose difference between groups a curated partner's or named paralog's recurrent mutation explains names it
  as the candidate mechanism
- pathway programme: enriched pathways carried by the same changed members are one finding; a
  composition caveat where the members track a composition score or the contrast is tumour vs normal
- shared change: every level of a factor moves one way against its reference (the pooled contrast)
- multi-layer change: a protein and its mRNA change the same way in one contrast
- protein-only change: a protein changes while its measured mRNA does not (an equivalence bound), with the
  curated partners that change with it
- modification-specific regulation (phospho, acetyl, ... sites): a site that changes beyond its protein
  (sites that mirror it are said to)
- copy number reaching the protein; interaction modules (together only when directions agree)
- clusters (one per clustering, over all its clinical associations; unstable or technical ones are QC
  notes of the report), clinical correlates, outcome
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

from scipy.stats import hypergeom

from proteus import genesets
from proteus.confounding import cluster_stability
from proteus.kg import KnowledgeGraph
from proteus.policy.controls import mutation_cis_claim, spike_in_controls
from proteus.policy.claims import clustering_qc, directions_agree, enrichment_share, is_composition_score, negligible, pathway_moves, site_verdict
from proteus.policy.decisions import MAX_DRAFTS, HypothesisDraft
from proteus.policy.result_tables import ResultTables
from proteus.stats.features import SITE_KINDS
from proteus.stats.units import MIN_UNIT_SHARE, covering_units, partners, unit_change, unit_genes
from proteus.records import MODALITY_ENTITY, KeyEdge, Relation

__all__ = ["compose_hypotheses"]


_SITE_TYPES = tuple(MODALITY_ENTITY[k] for k in SITE_KINDS)
"""Entity types of modification sites (phosphosite, acetylsite, ...): each is set against its protein."""
_MODIFICATION = {"phosphosite": ("phosphorylation", "altered kinase or phosphatase activity"),
                 "acetylsite": ("acetylation", "altered acetyltransferase or deacetylase activity")}
"""The modification a site type carries and the enzymes that set it (other site types: 'modification')."""


def _modification(site_type: str) -> tuple[str, str]:
    return _MODIFICATION.get(site_type, ("modification", "altered activity of the enzymes that add or remove it"))


def _rank(r: Relation) -> tuple:
    """Sort key: strongest first, ties broken by label and id so the order never depends on hashing."""
    return (r.stats.q_else_p(), r.subject.label, r.id)


def _fmt(r: Relation) -> str:
    parts = []
    if r.stats.effect is not None:
        parts.append(f"{r.stats.effect_type or 'effect'} {r.stats.effect:+.2f}")
    if r.stats.q is not None:
        parts.append(f"q={r.stats.q:.1e}")
    if r.stats.n is not None:
        parts.append(r.stats.count_text())
    return ", ".join(parts)


def _gene(r: Relation) -> str:
    return str(r.stats.extra.get("gene") or r.subject.label.split("-")[0])


def _direction_word(r: Relation) -> str:
    return "higher" if r.predicate == "higher_in" else "lower"


def _contrast_words(label: str) -> tuple[str, str, str]:
    group, _, rest = label.partition(": ")
    case, _, control = rest.partition(" vs ")
    return group, case, control


def _changes(kg: KnowledgeGraph) -> dict[tuple[str, str], list[Relation]]:
    """higher_in/lower_in relations keyed by (contrast label, subject type)."""
    out: dict[tuple[str, str], list[Relation]] = defaultdict(list)
    for r in kg.relations.values():
        if r.predicate in ("higher_in", "lower_in") and r.object.type == "sample_group":
            out[(r.object.label, r.subject.type)].append(r)
    return out


_TRANSCRIPTION = ", consistent with a change in its transcription"
"""The reading of a gene's mRNA and protein moving together within cells (a draft's ``mechanism``)."""


def _multi_layer(kg: KnowledgeGraph, changes, pathway_genes) -> list[HypothesisDraft]:
    """Protein and mRNA of one gene change the same way in one contrast (two layers agree)."""
    out = []
    for (contrast, stype), prots in changes.items():
        if stype != "protein":
            continue
        rna = {r.subject.label: r for r in changes.get((contrast, "gene"), [])}
        group, case, control = _contrast_words(contrast)
        hits = [(p, rna[p.subject.label]) for p in prots if p.subject.label in rna and p.predicate == rna[p.subject.label].predicate]
        for p, g in sorted(hits, key=lambda t: _rank(t[0]))[:6]:
            gene = p.subject.label
            evidence = [p.id, g.id]
            pw = next(((pr, pname) for pname, (pr, genes) in sorted(pathway_genes.get((contrast, p.predicate), {}).items()) if gene in genes), None)
            extra = ""
            if pw:
                evidence.append(pw[0].id)
                extra = f" {gene} is a member of '{pw[1]}', enriched among the features {_direction_word(p)} in {case}."
            out.append(
                HypothesisDraft(
                    statement=f"{gene} is {_direction_word(p)} in {case} than in {control} ({group}) at both the mRNA and the protein level"
                              f"{_TRANSCRIPTION}.",
                    mechanism=_TRANSCRIPTION,
                    rationale=f"Protein {gene} is {_direction_word(p)} in {case} ({_fmt(p)}) and so is its mRNA ({_fmt(g)}): two layers, each tested "
                              f"on the samples it measured (protein n={p.stats.n}, mRNA n={g.stats.n}), agree in direction; the design is observational, so the order of events is not shown.{extra}",
                    evidence=evidence,
                    entities=[p.subject.id, g.subject.id, p.object.id] + ([pw[0].subject.id] if pw else []),
                    test=f"Measure {gene} mRNA (RT-qPCR) and protein (targeted MS or immunoblot) in an independent {case} vs {control} cohort; predict a {'positive' if p.predicate == 'higher_in' else 'negative'} log2 fold change at both levels.",
                )
            )
    return out


def _rna_layers(tables: ResultTables) -> list[str]:
    return [m for m, k in tables.kinds.items() if k == "transcriptomics"]


def _partners_lost(tab, gene: str, sign: int, fdr: float = 0.05) -> tuple[list[tuple[str, str, float]], str]:
    """Curated partners of ``gene`` (:func:`proteus.stats.units.partners`) that change the same way in
    one contrast's full protein ``tab``, when more of them do than the layer's share of such changes
    predicts (hypergeometric tail < 0.05), its BioPlex interactors tested first, then the members of
    its small curated units: their (gene, source, log2FC), strongest first, and the count as a clause;
    else ``([], "")``."""
    if tab is None or not {"gene", "logFC", "q"} <= set(tab.columns):
        return [], ""
    rows = tab.dropna(subset=["logFC", "q"])
    if "canonical" in rows:
        rows = rows[rows["canonical"].astype(str).eq("True")]
    rows = rows[rows["gene"].astype(str) != gene].drop_duplicates("gene")
    moved = (rows["q"] < fdr) & (rows["logFC"] * sign > 0)
    mine = partners(gene)
    K, N = int(moved.sum()), len(rows)
    for tier, what in ((lambda src: src == "BioPlex interactor", "BioPlex interactors"), (lambda src: src != "BioPlex interactor", "small curated units' members")):
        inside = rows["gene"].astype(str).map(lambda g: g in mine and tier(mine[g])).astype(bool)
        k, n = int((moved & inside).sum()), int(inside.sum())
        p = float(hypergeom.sf(k - 1, N, K, n)) if k else 1.0
        if k and p < 0.05:
            hit = rows[moved & inside].sort_values("q")
            return ([(str(g), mine[str(g)], float(fc)) for g, fc in zip(hit["gene"], hit["logFC"])],
                    f"{k} of its {n} measured {what} {'is' if k == 1 else 'are'} {'higher' if sign > 0 else 'lower'} too "
                    f"(against {K} of {N} proteins overall, hypergeometric p={p:.1e})")
    return [], ""


def _protein_only(kg: KnowledgeGraph, changes, tables: ResultTables, per_contrast: int = 3) -> list[HypothesisDraft]:
    """A protein that changes while its mRNA, measured in the same contrast, does not: the mRNA change is
    :func:`~proteus.policy.claims.negligible` against the protein's (not significant, its 95% interval inside
    +/- half the protein's effect: an equivalence bound, not only a change not detected). Read within cells that
    is a change after transcription (translation, degradation; e.g. a subunit degraded when its complex partner is
    lost: Gonçalves et al. 2017, doi:10.1016/j.cels.2017.08.013), the draft's ``mechanism``; partners of it that
    change the same way in the same samples, beyond chance (:func:`_partners_lost`), are named. Where the two
    layers were tested on different samples, both counts are said."""
    rna_layers = _rna_layers(tables)
    out = []
    for (contrast, stype), prots in sorted(changes.items()):
        if stype != "protein" or not rna_layers:
            continue
        group, case, control = _contrast_words(contrast)
        n = 0
        for p in sorted((r for r in prots if r.provenance.tool == "differential_abundance"), key=_rank)[:40]:
            gene = _gene(p)
            prot = tables.protein_change(group, case, control, gene)
            rna = next((c for m in rna_layers if (c := tables.change(m, group, case, control, gene)) is not None), None)
            if prot is None or rna is None or prot.effect * (1 if p.predicate == "higher_in" else -1) <= 0 or not negligible(rna, prot.effect):
                continue
            sign = 1 if prot.effect > 0 else -1
            word = _direction_word(p)
            lost, count = _partners_lost(_contrast_table(tables, p), gene, sign)
            edges = {r.subject.label: r for r in prots if r.predicate == p.predicate}
            cited = [edges[g] for g, _, _ in lost[:3] if g in edges]
            named = "; ".join(f"{g} {fc:+.2f} ({src})" for g, src, fc in lost[:3])
            names = ", ".join(g for g, _, _ in lost[:3])
            are = "are" if len(lost) > 1 else "is"
            bioplex = bool(lost) and lost[0][1] == "BioPlex interactor"
            if bioplex:
                partner_clause = f"; its interaction partner{'s' if len(lost) > 1 else ''} {names} (BioPlex) {are} {word} in the same samples"
            elif lost:
                partner_clause = f"; {names}, which share a small curated unit with it, {are} {word} in the same samples"
            else:
                partner_clause = ""
            mechanism = ": a change after transcription" + (", as when a subunit is degraded once its partner is lost" if bioplex else "")
            lo, hi = rna.interval
            counts = (f"; the mRNA tested on {rna.n[0]} {case} and {rna.n[1]} {control} samples, the protein on {prot.n[0]} and {prot.n[1]}"
                      if rna.n and prot.n and rna.n != prot.n else "")
            statement = (f"{gene} protein is {word} in {case} than in {control} ({group}) while its mRNA is unchanged "
                         f"(log2FC {rna.effect:+.2f}, 95% CI {lo:+.2f} to {hi:+.2f}, inside +/-{abs(prot.effect) / 2:.2f}, half the "
                         f"protein's change{counts}){mechanism}{partner_clause}.")
            out.append(
                HypothesisDraft(
                    statement=statement[:500],
                    mechanism=mechanism,
                    rationale=(f"Protein {gene}: {prot.text()}; mRNA {gene}: {rna.text()}, an interval that holds zero and lies inside +/- half "
                               f"the protein's {prot.effect:+.2f} (an equivalence bound), so the protein moves without its transcript"
                               + (f"; {count}: {named}" if lost else "; no excess of its curated partners (BioPlex, small curated units) "
                                  "moves the same way") + ".")[:1200],
                    evidence=[p.id] + [r.id for r in cited],
                    entities=[p.subject.id, f"gene:{gene}", p.object.id] + [r.subject.id for r in cited],
                    test=f"Measure {gene} protein (targeted MS or immunoblot) and mRNA (RT-qPCR) in independent {case} and {control} samples: "
                         f"predict protein {word} with mRNA unchanged; block the proteasome (or translation) in {case}-like cells and test "
                         f"whether {gene} protein recovers" + (f" with {lost[0][0]}" if lost else "") + ".",
                )
            )
            n += 1
            if n >= per_contrast:
                break
    return out


def _pathway_genes(kg: KnowledgeGraph) -> dict[tuple[str, str], dict[str, tuple[Relation, set[str]]]]:
    """Enriched pathways keyed by (contrast label, change predicate) -> name -> (relation, member genes)."""
    out: dict[tuple[str, str], dict[str, tuple[Relation, set[str]]]] = defaultdict(dict)
    for r in kg.by_predicate("enriched_in"):
        pred = "higher_in" if r.stats.direction in ("up", "positive") else "lower_in"
        genes = set(map(str, r.stats.extra.get("genes", []) or []))
        name = r.subject.label
        cur = out[(r.object.label, pred)].get(name)
        if cur is None or r.stats.q_else_p() < cur[0].stats.q_else_p():
            out[(r.object.label, pred)][name] = (r, genes)
    return out


def _composition_note(tables: ResultTables, genes: list[str]) -> tuple[str, str | None]:
    """Why a set of genes may reflect tissue composition: the composition score (clinical column) most
    of them track in a full correlation table (|rho| >= 0.4, q < 0.05), as a clause; else ``("", None)``."""
    best: tuple[str, str | None, int] = ("", None, 0)
    for params, tab in tables.tables("clinical_correlation", "correlations"):
        var = str(params.get("variable", ""))
        if not is_composition_score(var) or tab.empty:
            continue
        rows = tab[tab["gene"].astype(str).isin(genes) & (tab["q"] < 0.05) & (tab["r"].abs() >= 0.4)]
        if len(rows) * 2 >= len(genes) and len(rows) > best[2]:
            rhos = ", ".join(f"{g} {r:+.2f}" for g, r in zip(rows["gene"].head(4), rows["r"].head(4)))
            best = (f"; {len(rows)} of {len(genes)} of them track {var} across samples (rho {rhos}), "
                    "so the difference may reflect tissue composition", var, len(rows))
    return best[0], best[1]


def _table_members(tables: ResultTables, pr: Relation, genes: set[str], pred: str) -> list[tuple[str, str]]:
    """Changed members of enriched pathway ``pr`` read from its contrast's full differential table, strongest
    first, as (gene, effect text): when too few of them are among the knowledge graph's strongest changes."""
    prm = pr.provenance.params or {}
    tab = tables.table("differential_abundance", "results", **{k: prm[k] for k in ("modality", "group", "case", "control") if k in prm})
    if tab is None or not {"gene", "logFC", "q"} <= set(tab.columns):
        return []
    rows = tab[tab["gene"].astype(str).isin(genes) & (tab["q"] < 0.05) & (tab["logFC"] * (1 if pred == "higher_in" else -1) > 0)]
    if "canonical" in rows:
        rows = rows[rows["canonical"].astype(str).eq("True")]
    rows = rows.sort_values(["q", "gene"]).drop_duplicates("gene")
    return [(str(g), f"log2FC {fc:+.2f}, q={q:.1e}") for g, fc, q in zip(rows["gene"], rows["logFC"], rows["q"])]


def _pathway_programs(kg: KnowledgeGraph, changes, pathway_genes, tables: ResultTables, sample_type: str | None) -> list[HypothesisDraft]:
    """Enriched pathways carried by >= 2 changed members; pathways carried by the same members are one finding.

    Each contrast's strongest pathway-level result (smallest q among the pathways that may be said to move,
    :func:`~proteus.policy.claims.pathway_moves`) is stated first, whether or not its members are among the
    knowledge graph's strongest changes (its members are then read from the contrast's full table).

    A statement that pathways move rests on each pathway as a programme (a ``programme`` key per stated pathway:
    validation scores it per sample, :func:`proteus.edge_data.programme_design`); the members' edges it cites
    support it and are never its keys (one member's mRNA, or a gene outside one of the stated sets, cannot stand
    for the programme). A statement about changed members with the pathway as context rests on their edges."""
    out: list[tuple[str, Relation, HypothesisDraft]] = []
    for (contrast, pred), pws in sorted(pathway_genes.items()):
        group, case, control = _contrast_words(contrast)
        members = {r.subject.label: r for r in changes.get((contrast, "protein"), []) + changes.get((contrast, "gene"), []) if r.predicate == pred}
        merged: dict[tuple[str, ...], list[tuple[str, Relation]]] = {}
        ranked = sorted(pws.items(), key=lambda kv: _rank(kv[1][0]))
        for name, (pr, genes) in ranked:
            drivers = tuple(d.subject.label for d in sorted((members[g] for g in genes if g in members), key=_rank)[:4])
            if len(drivers) < 2:
                continue
            # pathways carried mostly by the same changed members state one finding
            key = next((k for k in merged if len(set(k) & set(drivers)) * 2 > min(len(k), len(drivers))), drivers)
            merged.setdefault(key, []).append((name, pr))
        groups = list(merged.values())[:4]
        top = next(((n, pr) for n, (pr, _) in ranked if pathway_moves(pr)), None)
        if top is not None and not any(n == top[0] for g in groups for n, _ in g):
            groups.insert(0, [top])
        for pws_ in groups:
            # a pathway "moves" only when a meaningful share of its measured members changed (claims.pathway_moves);
            # otherwise its changed members are the finding and the pathway is their context
            moving = [(n, p) for n, p in pws_ if pathway_moves(p)]
            pws_ = (moving or pws_)[:3]
            names = [n for n, _ in pws_]
            # the members named are those of the pathways stated (all of them when they move, else the first one's)
            stated = set().union(*(pws[n][1] for n in (names if moving else names[:1])))
            drivers = sorted((members[g] for g in stated if g in members), key=_rank)[:4]
            named = [(d.subject.label, _fmt(d)) for d in drivers]
            if len(named) < 2:
                named = _table_members(tables, pws_[0][1], stated, pred)[:4]
            if len(named) < 2:
                continue
            dnames = [g for g, _ in named]
            pr = pws_[0][1]
            word = "higher" if pred == "higher_in" else "lower"
            label = " / ".join(f"'{n}'" for n in names)
            shares = "; ".join(f"'{n}': {k} of its {m} measured members {word}" for n, p in pws_ if (km := enrichment_share(p)) for k, m in [km])
            note, var = _composition_note(tables, list(dnames))
            if not note and sample_type and group == sample_type:
                note = (f"; {case} and {control} tissue differ in cell make-up and no composition score was set against "
                        "these members, so part of the difference may reflect composition")
            if moving:
                statement = (f"The {label} programme{'s are' if len(names) > 1 else ' is'} {word} in {case} than in {control} ({group}), "
                             f"carried by {', '.join(dnames)}")
                test = f"Score {label} (single-sample GSEA of the members) in held-out {case} and {control} samples and test the difference"
            else:
                first = enrichment_share(pws_[0][1])
                statement = (f"{', '.join(dnames)}, members of '{names[0]}', {'are' if len(dnames) > 1 else 'is'} {word} in {case} than in {control} "
                             f"({group}); the pathway as a whole is not shown to move ({first[0]} of its {first[1]} measured members {word}, "
                             f"under the {MIN_UNIT_SHARE:.0%} a pathway claim needs)")
                test = f"Measure {', '.join(dnames)} in held-out {case} and {control} samples (targeted assay) and test each difference"
            out.append((contrast, pr, HypothesisDraft(
                statement=statement + (" (may reflect tissue composition)" if var else "") + ".",
                rationale=f"{label} enriched among features {word} in {case} ({_fmt(pr)}); changed members {', '.join(dnames)} "
                          f"({'; '.join(t for _, t in named[:2])})"
                          + (f"; {len(names)} pathways share these members" if len(names) > 1 else "")
                          + (f"; {shares}" if shares else "") + note + ".",
                evidence=[p.id for _, p in pws_] + [d.id for d in drivers],
                entities=[p.subject.id for _, p in pws_] + [pr.object.id] + [d.subject.id for d in drivers],
                test=test + (f", adjusting for {var}" if var else ", with a tissue-composition estimate as covariate") + ".",
                key_edges=[KeyEdge(edge=p.id, role=f"programme '{n}'", model="programme") for n, p in pws_] if moving else [],
            )))
    # each contrast's strongest moving pathway first (by q), then the rest in their order
    lead: dict[str, int] = {}
    for i, (contrast, pr, _) in sorted(enumerate(out), key=lambda t: _rank(t[1][1])):
        if pathway_moves(pr) and contrast not in lead:
            lead[contrast] = i
    first = sorted(lead.values(), key=lambda i: _rank(out[i][1]))
    return [out[i][2] for i in first] + [d for i, (_, _, d) in enumerate(out) if i not in lead.values()]


def _contrast_table(tables: ResultTables, r: Relation):
    """The full result table of the step that made relation ``r`` (``None`` when not at hand)."""
    prm = r.provenance.params
    return tables.table(r.provenance.tool, "results", **{k: prm[k] for k in ("modality", "group", "case", "control") if k in prm})


_UNIT_CANDIDATES = 12
"""The strongest changes per contrast and direction (the findings a report would cite) searched for units."""


def _units(changes, tables: ResultTables, taken: set[str]) -> list[HypothesisDraft]:
    """The strongest changes of one contrast that move the same way and share a curated unit
    (:func:`proteus.stats.units.covering_units`, the measured features as background): one hypothesis
    per unit, every member's edge cited, instead of one per protein. Edges in ``taken`` (already stated
    by a pathway programme or a gene's own grouping) are left out."""
    out = []
    for (contrast, stype), rels in sorted(changes.items()):
        if stype not in ("protein", "gene"):
            continue
        group, case, control = _contrast_words(contrast)
        for pred in ("lower_in", "higher_in"):
            mine = sorted((r for r in rels if r.predicate == pred and r.id not in taken and r.provenance.tool not in _UNSUPERVISED), key=_rank)[:_UNIT_CANDIDATES]
            tab = _contrast_table(tables, mine[0]) if len(mine) >= 2 else None
            if tab is None or tab.empty or "gene" not in tab:
                continue
            if "organism" in tab:  # a layer that mixes organisms: the curated sets describe one
                tab = tab[tab["organism"] == genesets.ORGANISM]
            gene_of = dict(zip(tab["label"].astype(str), tab["gene"].astype(str)))
            by_gene = {}
            for r in mine:
                if r.subject.label in gene_of:
                    by_gene.setdefault(gene_of[r.subject.label], r)
            sign = 1 if pred == "higher_in" else -1
            edge_of = {r.subject.label: r for r in rels if r.predicate == pred and r.id not in taken and r.provenance.tool not in _UNSUPERVISED}
            for unit in covering_units(list(by_gene), set(tab["gene"].dropna().astype(str))):
                moved = unit_change(tab, unit_genes(unit), sign)
                if moved is None or not moved.shifts(sign):
                    continue  # members picked by significance, not the unit: they stay claims about themselves
                members = sorted({id(r): r for r in [edge_of[lab] for lab, _, _ in moved.changed if lab in edge_of]
                                  + [by_gene[g] for g in unit.members]}.values(), key=_rank)[:10]
                word = _direction_word(members[0])
                names = ", ".join(m.subject.label for m in members)
                k, n = len(moved.changed), moved.n_measured
                if not moved.moves(sign):  # a few members lead the unit's ranks: they are the finding, the unit their context
                    out.append(HypothesisDraft(
                        statement=f"{', '.join(m.subject.label for m in members[:5])}, members of '{unit.name}' ({unit.source}), are {word} in {case} "
                                  f"than in {control} ({group}); "
                                  f"the unit as a whole is not shown to move ({k} of its {n} measured features {word}, median log2FC "
                                  f"{moved.median:+.2f}).",
                        rationale=(f"{k} of the {n} measured features of '{unit.name}' ({unit.source}, {unit.size} genes) are {word} in {case} "
                                   f"(q < 0.05), fewer than the {MIN_UNIT_SHARE:.0%} a unit claim needs, though the unit's statistics rank "
                                   f"{word} than the other features' (one-sided rank-sum gene-set test p={moved.p_rank:.1e}): "
                                   + "; ".join(f"{m.subject.label} {_fmt(m)}" for m in members) + ".")[:1200],
                        evidence=[m.id for m in members],
                        entities=[f"pathway:{unit.name}"] + [m.subject.id for m in members] + [members[0].object.id],
                        test=f"Measure {names} in independent {case} and {control} samples (targeted MS panel); predict each {word} in {case}."[:600],
                    ))
                    continue
                out.append(
                    HypothesisDraft(
                        statement=f"{'mRNAs' if stype == 'gene' else 'Proteins'} of the unit '{unit.name}' ({unit.source}) are {word} together in {case} than in {control} "
                                  f"({group}): {k} of its {n} measured features {word}, none the other way, median log2FC {moved.median:+.2f}; "
                                  f"strongest {names}."[:500],
                        rationale=(f"{k} of the {n} measured features of '{unit.name}' ({unit.source}, {unit.size} genes) are {word} in {case} "
                                   f"(q < 0.05), none significantly the other way; their median log2FC is {moved.median:+.2f} and their statistics "
                                   f"rank {word} than the other features' (one-sided rank-sum gene-set test p={moved.p_rank:.1e}); the unit is "
                                   f"over-represented among the {len(by_gene)} strongest features {word} there (hypergeometric p={unit.p:.1e}, "
                                   "measured features as background): " + "; ".join(f"{m.subject.label} {_fmt(m)}" for m in members) + ".")[:1200],
                        evidence=[m.id for m in members],
                        entities=[f"pathway:{unit.name}", f"unit:{unit.library}:{unit.set_id}"] + [m.subject.id for m in members] + [members[0].object.id],
                        test=f"Measure the members of '{unit.name}' ({names}, ...) in independent {case} and {control} samples (targeted MS panel); "
                             f"predict that the unit's median log2FC is {word} in {case} and that no member moves the other way."[:600],
                    )
                )
    return out


def _site_specific(kg: KnowledgeGraph, changes, tables: ResultTables) -> list[HypothesisDraft]:
    """Site changes (every modification-site layer) set against the full protein table of the same
    contrast: only a site that changes beyond its protein (or whose protein was measured flat) becomes a
    modification-specific hypothesis, at most four per contrast and site type."""
    out = []
    for (contrast, stype), sites in sorted(changes.items()):
        if stype not in _SITE_TYPES:
            continue
        group, case, control = _contrast_words(contrast)
        mod, enzymes = _modification(stype)
        n_layer = 0
        for s in sorted(sites, key=_rank)[:40]:
            gene = _gene(s)
            verdict = site_verdict(s, tables, gene, mod)
            if verdict is None or not verdict.site_specific:
                continue
            word = "increased" if s.predicate == "higher_in" else "decreased"
            n_layer += 1
            out.append(
                HypothesisDraft(
                    statement=f"{mod.capitalize()} of {s.subject.label} is {word} in {case} relative to {control} ({group}) "
                              + ("beyond the change in " if verdict.kind == "beyond_protein" else "without a change in ")
                              + f"{gene} protein abundance, pointing to {enzymes} on this site.",
                    mechanism=f", pointing to {enzymes} on this site",
                    rationale=f"Site {s.subject.label} is {_direction_word(s)} in {case} ({_fmt(s)}) {verdict.clause}.",
                    evidence=[s.id],
                    entities=[s.subject.id, f"protein:{gene}", s.object.id],
                    test=f"Immunoblot with a {s.subject.label}-specific antibody normalised to total {gene} in {case} vs {control}; "
                         "the site-to-protein ratio should differ in the same direction.",
                )
            )
            if n_layer >= 4:
                break
    return out


def _gene_events(kg: KnowledgeGraph, changes) -> list[HypothesisDraft]:
    """A sample grouping named after a gene (a mutation, methylation or subtype call of that gene), or
    one whose definition is named genes' products (:func:`proteus.genesets.phenotype_determinants`:
    mismatch-repair deficiency by MLH1/MSH2/MSH6/PMS2, receptor status by its receptor): the first thing
    to state is what happens to those genes' own products in the comparison, a positive control."""
    out = []
    for contrast, _ in sorted({(c, None) for c, _ in changes}):
        group, case, control = _contrast_words(contrast)
        if group.endswith(" mutation"):  # mutated vs wild type: the cis-effect pattern states it
            continue
        tokens = set(re.split(r"[^A-Za-z0-9]+", group)) - {""}
        phenotypes = [ph for ph in genesets.phenotype_determinants() if ph.matches(group, (case, control))]
        defining = {g for ph in phenotypes for g in ph.genes}
        own = [r for (c, stype), rels in changes.items() if c == contrast and stype in ("protein", "gene", *_SITE_TYPES)
               for r in rels if _gene(r) in tokens | defining and r.provenance.tool not in _UNSUPERVISED]
        if not own:
            continue
        layer = ["protein", "gene", *_SITE_TYPES]
        named = sorted((r for r in own if _gene(r) in tokens), key=_rank)
        if named:
            gene = _gene(named[0])
            own = sorted((r for r in own if _gene(r) == gene), key=lambda r: (layer.index(r.subject.type), _rank(r)))[:4]
            what, why = f"{case} samples of {group}, a grouping named after {gene}, differ from {control} in {gene}'s own products", f"The grouping names {gene}"
        else:  # the genes whose products define the phenotype: each one's most direct layer
            ph = phenotypes[0]
            best = {}
            for r in sorted(own, key=lambda r: (layer.index(r.subject.type), _rank(r))):
                best.setdefault(_gene(r), r)
            own = sorted(best.values(), key=_rank)[:4]
            gene = _gene(own[0])
            what = f"Expected (positive control): {case} samples of {group} differ from {control} in the genes whose products define {ph.name} ({ph.ref})"
            why = f"{group} ({case} vs {control}) reads as {ph.name}: {ph.definition} ({ph.citation})"
        layers = "; ".join(f"{'mRNA' if r.subject.type == 'gene' else r.subject.type} {r.subject.label} {_direction_word(r)} ({_fmt(r)})" for r in own)
        said = ", ".join(f"{'' if named else r.subject.label + ' '}{'mRNA' if r.subject.type == 'gene' else r.subject.type} {_direction_word(r)}" for r in own)
        out.append(
            HypothesisDraft(
                statement=f"{what}: {said}.",
                rationale=f"{why}; its own layers in {case} vs {control}: {layers}.",
                evidence=[r.id for r in own],
                entities=[f"protein:{gene}"] + [r.subject.id for r in own if r.subject.id != f"protein:{gene}"] + [own[0].object.id],
                test=f"Measure {', '.join(dict.fromkeys(_gene(r) for r in own))} protein (and mRNA) in independent {case} and {control} samples; the same "
                     f"direction should hold, and the downstream differences of {group} should follow their level within each group.",
                kind="positive control",
            )
        )
    return out


def _beyond_passengers(r: Relation) -> int:
    """A cis effect's carriers beyond passenger load (the tool's ``n_beyond_passengers``: carriers that are not
    hypermutated, or those at the gene's most frequent codon, whichever is more; 0 where not recorded)."""
    return int(r.stats.extra.get("n_beyond_passengers") or 0)


def _mutations(kg: KnowledgeGraph, changes, stated: set[str] | frozenset[str] = frozenset()) -> list[HypothesisDraft]:
    """A mutation's cis effect on its own protein, worded by its carriers' variant classes
    (:func:`~proteus.policy.controls.mutation_cis_claim`): the direction those classes predict is a
    positive control (a known mechanism); against them it is a discovery. What carriers differ in elsewhere is
    stated by :func:`_trans_effects`. The five genes mutated most beyond passenger load come first (drivers, as
    an analyst reads them: a hypermutator caveat is said in the sentence, it does not push a driver out), then the
    stronger effect; a cis effect already stated by another draft (an edge in ``stated``) is that draft's event."""
    out = []
    cis = [r for r in kg.by_predicate("cis_effect_on") if r.subject.type == "mutation" and r.object.type == "protein" and r.id not in stated]
    for r in sorted(cis, key=lambda r: (-_beyond_passengers(r), _rank(r)))[:5]:
        gene = r.subject.label
        ex = r.stats.extra
        claim = mutation_cis_claim(gene, r.stats.effect or 0.0, ex)
        layers = sorted((x for x in kg.by_predicate("cis_effect_on") if x.subject.id == r.subject.id and x.object.type != "protein"), key=_rank)[:3]
        hyper = ex.get("hypermutator_note") or ""
        confounded = "cannot be separated from hypermutator status" in hyper
        tail = "".join(f" Its {'mRNA' if x.object.type == 'gene' else x.object.label} is also {'lower' if (x.stats.effect or 0) < 0 else 'higher'} ({_fmt(x)})."
                       for x in layers)
        statement = (("Expected cis effect (positive control): samples" if claim.expected else "Samples")
                     + f" with somatic {gene} mutations have {claim.phrase}" + (f" ({claim.variants})" if claim.variants else "")
                     + (f", {claim.mechanism}" if claim.mechanism else "")
                     + (" (not separable from hypermutator status)" if confounded else "")
                     + ".")
        out.append(
            HypothesisDraft(
                statement=statement[:500],
                rationale=(f"{gene} protein is {'lower' if (r.stats.effect or 0) < 0 else 'higher'} in {gene}-mutated samples ({_fmt(r)})"
                           + (f"; {claim.variants}" if claim.variants else "") + (f"; {hyper}" if hyper else "") + "."
                           + (" The carriers' variant classes predict this direction: a known mechanism, stated as a control." if claim.expected else "")
                           + tail)[:1200],
                evidence=[r.id] + [x.id for x in layers],
                entities=[r.subject.id, r.object.id] + [x.object.id for x in layers],
                test=f"Compare {gene} protein by IHC or targeted MS in mutated vs wild-type tumours of an independent cohort, stratified by "
                     f"tumour mutation burden; introduce a patient-derived {gene} allele into a wild-type cell line and measure "
                     f"{gene} protein.",
                kind="positive control" if claim.expected else "discovery",
            )
        )
    return out


def _carrier_adjustment(extra: dict) -> tuple[list[str], str]:
    """What a ``mutation_association`` edge (its ``extra``) may say about the columns its model adjusted for: those the
    carriers are separable from, and a clause for those they are collinear with (``collinear_with_carriers``, the
    reading of :func:`proteus.confounding.collinear_v` that the confounder clause follows), never said adjusted for."""
    tied = extra.get("collinear_with_carriers") or {}
    adjusted = [c for c in extra.get("adjusted_for_enrichment") or [] if c not in tied]
    clause = (", though carrier status cannot be separated from " + ", ".join(f"{col} (Cramér's V {v:.2f})" for col, v in tied.items())
              if tied else "")
    return adjusted, clause


def _trans_effects(kg: KnowledgeGraph, changes) -> list[HypothesisDraft]:
    """What carriers of a recurrent mutation differ in beyond the gene's own products (``mutation_association``:
    proteins and sites, adjusted for the groupings the carriers are enriched in), with the pathways over-represented
    among those changes: one association per mutated gene, worded as such, naming what the model adjusted for and
    how many carriers are hypermutated."""
    out = []
    for contrast in sorted({c for c, _ in changes if c.endswith(": mutated vs wild-type")}):
        gene = contrast.split(" mutation: ")[0]
        rels = sorted((r for (c, stype), rs in changes.items() if c == contrast and stype in ("protein", "gene", *_SITE_TYPES)
                       for r in rs if r.provenance.tool == "mutation_association" and _gene(r) != gene), key=_rank)
        if not rels:
            continue
        lead = rels[:4]
        paths = sorted((r for r in kg.by_predicate("enriched_in") if r.object.label == contrast and r.provenance.tool == "mutation_association"),
                       key=_rank)[:2]
        ex = lead[0].stats.extra
        carriers, n_all = (lead[0].stats.observed or {}).get("mutated", (None, ex.get("n_mutated")))[1], lead[0].stats.n
        adjusted, tied = _carrier_adjustment(ex)
        changed = "; ".join(f"{'mRNA ' if r.subject.type == 'gene' else ''}{r.subject.label} {_direction_word(r)}"
                            + (" (its named paralog, a compensation candidate)" if (r.stats.extra or {}).get("family") else "")
                            for r in lead)
        path_txt = "; ".join(f"{r.subject.label} over-represented among the {'higher' if r.stats.direction == 'up' else 'lower'} "
                             f"features ({r.stats.n} genes, q={r.stats.q:.1e})" for r in paths)
        hyper = ex.get("n_mutated_hypermutated")
        statement = (f"Tumours carrying somatic {gene} mutations ({carriers} of {n_all} genotyped) differ from non-carriers beyond {gene} itself: "
                     f"{changed}" + (f", with {', '.join(adjusted)} adjusted for (carriers are enriched in it)" if adjusted else "") + tied
                     + (f"; {path_txt}" if path_txt else "") + ". An association across tumours, not an intervention.")
        out.append(
            HypothesisDraft(
                statement=statement[:500],
                rationale=("limma moderated t, carriers vs non-carriers, " + (f"adjusted for {', '.join(ex.get('covariates') or [])}" if ex.get("covariates") else "unadjusted")
                           + ": " + "; ".join(f"{r.subject.label} {_fmt(r)}" + (f" ({r.stats.extra['family']}, BH within it)" if (r.stats.extra or {}).get("family") else "")
                                              for r in lead)
                           + (f". Carriers are enriched in {', '.join(ex.get('enriched_in') or [])}" if ex.get("enriched_in") else "")
                           + (f". {hyper} of {carriers} carriers are hypermutated" if hyper is not None and ex.get("hypermutator_burden") is not None else "")
                           + (f". Pathways (hypergeometric, measured genes as background): {path_txt}" if path_txt else "") + ".")[:1200],
                evidence=[r.id for r in lead] + [r.id for r in paths],
                entities=[r.subject.id for r in lead] + [f"mutation:{gene}"] + [r.subject.id for r in paths],
                test=(f"In an independent genotyped cohort, compare {', '.join(r.subject.label for r in lead[:3])} between {gene}-mutant and wild-type "
                      f"tumours within the same {' and '.join(ex.get('adjusted_for_enrichment') or []) or 'subtype'}; in an isogenic {gene}-mutant vs wild-type cell line pair, "
                      "measure them to tell a consequence of the mutation from a correlate.")[:600],
            )
        )
    return out


def _mechanism_clause(kg: KnowledgeGraph, d: HypothesisDraft) -> tuple[str, list[str]]:
    """A recurrent mutation of a curated partner or named paralog of the draft's lead protein that explains its
    difference between two groups: the mutation is more frequent in the case group (``mutation_group_enrichment``)
    and its carriers have the protein changed the same way beyond the groupings adjusted for (a ``mutation_association``
    edge). Returns the clause and its edges (empty when none)."""
    from proteus.stats.units import named_paralogs, partners

    key = kg.relation(d.evidence[0])
    if key is None or key.predicate not in ("higher_in", "lower_in") or key.object.type != "sample_group" \
            or key.subject.type not in ("protein", "gene", *_SITE_TYPES) or key.object.label.endswith(": mutated vs wild-type"):
        return "", []
    target, (_, case, control) = _gene(key), _contrast_words(key.object.label)
    related = {g: "named paralog" for g in named_paralogs(target)} | {g: f"curated partner ({src})" for g, src in partners(target).items()}
    enriched = {r.subject.label: r for r in kg.relations.values() if r.provenance.tool == "mutation_group_enrichment"
                and r.object.label == key.object.label and r.predicate == "higher_in" and r.subject.label in related}
    trans = sorted((r for r in kg.relations.values() if r.provenance.tool == "mutation_association" and _gene(r) == target
                    and r.subject.type == key.subject.type and r.predicate == key.predicate
                    and str((r.stats.extra or {}).get("mutation", "")).removeprefix("mutation:") in enriched), key=_rank)
    if not trans:
        return "", []
    t = trans[0]
    gene = str(t.stats.extra["mutation"]).removeprefix("mutation:")
    e = enriched[gene]
    (a, n_a), (c, n_c) = e.stats.observed[case], e.stats.observed[control]
    adjusted, tied = _carrier_adjustment(t.stats.extra)
    return (f"; candidate mechanism: {gene}, its {related[gene]}, is mutated in {a} of {n_a} {case} vs {c} of {n_c} {control} samples, "
            f"and its carriers have {_direction_word(t)} {t.subject.label}" + (f" with {', '.join(adjusted)} adjusted for" if adjusted else "")
            + f" ({t.stats.effect:+.2f}, p={t.stats.p:.1g})" + tied), [e.id, t.id]


def _name_mechanisms(kg: KnowledgeGraph, drafts: list[HypothesisDraft]) -> list[HypothesisDraft]:
    """Each draft whose lead protein a partner's or paralog's recurrent mutation explains (:func:`_mechanism_clause`)
    says so in its statement and cites the two edges."""
    out = []
    for d in drafts:
        clause, edges = _mechanism_clause(kg, d)
        if clause:
            d = d.model_copy(update={"statement": (d.statement.rstrip().rstrip(".") + clause + ".")[:500],
                                     "evidence": (d.evidence + [e for e in edges if e not in d.evidence])[:12]})
        out.append(d)
    return out


def _cis_in_grouping(kg: KnowledgeGraph, changes) -> list[HypothesisDraft]:
    """A gene mutated more often in one level of a grouping (``mutation_group_enrichment``) whose carriers
    have a lower (higher) protein of that gene, and whose protein differs between the levels only through
    them (without the carriers the difference is under half and not significant): the mutation's cis
    effect is the mechanism of that protein's change in the grouping, stated as such. Its claim rests on two keys,
    always both re-tested: the grouping's difference in the protein, the headline it opens with (the graph's
    difference edge where it holds one; else, as where that difference was significant only over the enriched genes,
    the enrichment edge's own comparison of the levels, ``levels``), and the carriers' own effect (carriers against
    non-carriers, ``carriers``); it validates only where both replicate."""
    out = []
    enriched = [r for r in kg.relations.values() if r.provenance.tool == "mutation_group_enrichment" and r.predicate == "higher_in"]
    for r in sorted(enriched, key=_rank):
        ex, gene = r.stats.extra, r.subject.label
        d_all, d_wt, d_car = ex.get("own_diff_all"), ex.get("own_diff_wildtype"), ex.get("own_diff_carriers")
        p_all, p_wt, p_car, q_all = ex.get("own_p_all"), ex.get("own_p_wildtype"), ex.get("own_p_carriers"), ex.get("own_q_all")
        if None in (d_all, d_wt, d_car, p_all, p_wt, p_car, q_all) or q_all >= 0.05 or p_car >= 0.05 or d_all * d_car <= 0:
            continue
        if p_wt < 0.05 or abs(d_wt) >= abs(d_all) / 2:
            continue  # the difference stands without the carriers: the mutation is not its mechanism
        group, case, control = _contrast_words(r.object.label)
        word = "lower" if d_all < 0 else "higher"
        (a, n_a), (c, n_c) = r.stats.observed[case], r.stats.observed[control]
        claim = mutation_cis_claim(gene, d_car, ex)
        own = next((x for x in changes.get((r.object.label, "protein"), []) if _gene(x) == gene and x.predicate == f"{word}_in"), None)
        cis = next((x for x in kg.by_predicate("cis_effect_on") if x.subject.id == r.subject.id and x.object.type == "protein"
                    and (x.stats.effect or 0) * d_car > 0), None)
        out.append(
            HypothesisDraft(
                statement=(f"{gene} protein is {word} in {case} than in {control} ({group}) through its mutation carriers: {gene} is mutated in "
                           f"{a} of {n_a} {case} vs {c} of {n_c} {control} samples" + (f" ({claim.variants})" if claim.variants else "")
                           + f", carriers have {claim.phrase}, and without them the difference shrinks to {d_wt:+.2f} (p={p_wt:.2f}) from {d_all:+.2f}.")[:500],
                rationale=(f"{gene} mutations are more frequent in {case} ({_fmt(r)}; Fisher's exact test); its own protein differs between "
                           f"the levels by {d_all:+.2f} (Welch p={p_all:.1e}, BH q={q_all:.1e} over the enriched genes), carriers against non-carriers by {d_car:+.2f} (p={p_car:.1e}), "
                           f"and among non-carriers only by {d_wt:+.2f} (p={p_wt:.2f})"
                           + (f"; {claim.mechanism}" if claim.mechanism else "") + ". The grouping's difference in this protein is the "
                           "mutation's cis effect, not a separate regulation of the protein in that group.")[:1200],
                evidence=[x.id for x in (own, r, cis) if x is not None],
                entities=[f"protein:{gene}", r.subject.id, r.object.id],
                test=f"Measure {gene} protein in independent {case} and {control} samples with {gene} genotyped: predict the {word} level "
                     f"in {case} among carriers only, and no difference between {case} and {control} non-carriers.",
                # the claim states the grouping's difference and that the carriers' own effect carries it: both are keys
                key_edges=[KeyEdge(edge=own.id, role=f"{group} difference") if own is not None
                           else KeyEdge(edge=r.id, role=f"{group} difference", model="levels"),
                           KeyEdge(edge=r.id, role="carrier effect", model="carriers")],
            )
        )
    return out[:3]


def _cna(kg: KnowledgeGraph) -> list[HypothesisDraft]:
    """Copy number that correlates with both its mRNA and its protein (dosage reaches the protein)."""
    rels = [r for r in kg.by_predicate("cis_effect_on") if r.subject.type == "gene"]
    by_gene: dict[str, dict[str, Relation]] = defaultdict(dict)
    for r in rels:
        by_gene[r.subject.label][r.object.type] = r
    out = []
    for gene, d in sorted(by_gene.items(), key=lambda kv: (min(r.stats.q_else_p() for r in kv[1].values()), kv[0])):
        if "protein" in d and "gene" in d and directions_agree([d["protein"].stats.effect or 0, d["gene"].stats.effect or 0]):
            p, g = d["protein"], d["gene"]
            out.append(
                HypothesisDraft(
                    statement=f"{gene} copy number is associated with both its mRNA and its protein, so copy-number changes of {gene} "
                              "reach the protein level rather than being buffered.",
                    rationale=f"{gene} copy number correlates with its mRNA ({_fmt(g)}) and with its protein ({_fmt(p)}), "
                              "unlike the many genes whose protein is buffered against dosage.",
                    evidence=[g.id, p.id],
                    entities=[f"gene:{gene}", f"protein:{gene}"],
                    test=f"Compare {gene} protein in cell lines or tumours with and without {gene} gain (or after knockdown titration); "
                         f"protein should scale with dosage, and test whether {gene}-gained lines depend more on it (CRISPR).",
                )
            )
        if len(out) >= 3:
            break
    return out


def _correlates(kg: KnowledgeGraph) -> list[HypothesisDraft]:
    """Features that track a continuous clinical variable; a composition score is named as such.
    Variables whose strongest features are mostly the same (correlated or anti-correlated clinical
    variables) are one finding, stated for the first of them with the others named."""
    out = []
    by_var: dict[str, list[Relation]] = defaultdict(list)
    for r in kg.by_predicate("correlates_with"):
        if r.object.type == "clinical_variable" and (r.stats.extra or {}).get("test") != "linear trend":
            by_var[r.object.label].append(r)
    tops = {var: sorted(rels, key=_rank)[:3] for var, rels in sorted(by_var.items())}
    alias: dict[str, list[str]] = {}
    for var, top in tops.items():
        feats = {t.subject.id for t in top}
        home = next((v for v in alias if len(feats & {t.subject.id for t in tops[v]}) >= 2), None)
        if home is None:
            alias[var] = []
        else:
            alias[home].append(var)
    for var, also in alias.items():
        top = tops[var]
        names = ", ".join(t.subject.label for t in top)
        signs = {t.stats.direction for t in top}
        verb = "rise" if signs == {"positive"} else "fall" if signs == {"negative"} else "change"
        if is_composition_score(var):
            statement = (f"{names} {verb} with {var}, a tissue-composition score: they mark the cell types that score measures "
                         "rather than regulation within one cell type.")
        else:
            statement = f"{names} {verb} with {var} across samples."
        if also:
            statement = statement[:-1] + f" (the same features track {', '.join(also)})."
        out.append(
            HypothesisDraft(
                statement=statement,
                rationale="Spearman correlation: " + "; ".join(f"{t.subject.label} rho {t.stats.effect:+.2f}, q={t.stats.q_else_p():.1e}, n={t.stats.n}"
                                                               for t in top if t.stats.effect is not None) + ".",
                evidence=[t.id for t in top],
                entities=[t.subject.id for t in top] + [f"clinical_variable:{var}"],
                test=f"Measure {names} in an independent cohort with {var} recorded and test the correlation (Spearman, pre-registered direction)"
                     + ("; in sorted cell fractions the markers should follow the cell type, not the sample." if is_composition_score(var) else "."),
            )
        )
    return out[:3]


def _driven_by(r: Relation) -> str:
    """An F-test hit by the contrast that drives it: "C7 highest in A (+0.93 vs the other levels)"."""
    level = r.stats.extra.get("level")
    if level is None or r.stats.effect is None:
        return f"{r.subject.label} highest in {r.stats.extra.get('top_level')}"
    return f"{r.subject.label} {'highest' if r.stats.effect > 0 else 'lowest'} in {level} ({r.stats.effect:+.2f} log2 vs the other levels)"


def _level_q(tables: ResultTables, r: Relation, group: str, level: str, control: str) -> float | None:
    """q of pooled relation ``r``'s feature in its own two-group test of ``level`` against ``control``
    (``None`` when that contrast or feature was not tested)."""
    tab = tables.table("differential_abundance", "results", modality=r.modality, group=group, case=level, control=control)
    if tab is None or "q" not in tab:
        return None
    rows = tab[tab["label"].astype(str) == r.subject.label]
    q = float(rows["q"].iloc[0]) if not rows.empty else math.nan
    return q if math.isfinite(q) else None


def _shared_changes(changes, tables: ResultTables, fdr: float = 0.05) -> list[HypothesisDraft]:
    """Pooled contrasts (every non-reference level against the reference, on the full design): features
    every level moves the same way, stated with each level's own effect and, from the two-group tests of
    each level, its own q. "Each level on its own too" only when every level's own test passes ``fdr``;
    otherwise the claim is the pooled one, naming the levels significant alone and the ones that agree in
    direction only (a pooled effect can be carried by one level)."""
    out = []
    for (contrast, stype), rels in sorted(changes.items()):
        pooled = sorted((r for r in rels if r.stats.extra.get("level_effects") and r.provenance.tool not in _UNSUPERVISED), key=_rank)
        if stype in _CELL_TYPES or not pooled:
            continue
        group, case, control = _contrast_words(contrast)
        for word in ("higher", "lower"):
            top = [r for r in pooled if _direction_word(r) == word][:3]
            if not top:
                continue
            levels = list(top[0].stats.extra["level_effects"])
            names = ", ".join(t.subject.label for t in top)
            qs = {t.id: {lv: _level_q(tables, t, group, lv, control) for lv in t.stats.extra["level_effects"]} for t in top}
            alone = {t.id: [lv for lv, q in qs[t.id].items() if q is not None and q < fdr] for t in top}
            each = "; ".join(t.subject.label + " " + ", ".join(
                f"{lv} {e:+.2f}" + (f" (q={qs[t.id][lv]:.2g})" if qs[t.id][lv] is not None else "")
                for lv, e in t.stats.extra["level_effects"].items()) for t in top)
            if all(len(alone[t.id]) == len(qs[t.id]) for t in top):
                claim = "each level on its own too: a change they share, not one level's difference"
            else:
                claim = ("pooled over the levels; on its own " + "; ".join(
                    f"{t.subject.label} is significant in {' and '.join(alone[t.id]) if alone[t.id] else 'no level'}" for t in top)
                    + ", the other levels agree in direction only, so the data cannot tell a shared change from one level's")
            out.append(HypothesisDraft(
                statement=f"{names} {'are' if len(top) > 1 else 'is'} {word} in {case} levels of {group} ({', '.join(levels)}) "
                          f"than in {control}, {claim}.",
                rationale=f"Pooled contrast of the {len(levels)} levels against {control} on the full design "
                          f"({'; '.join(t.subject.label + ' ' + _fmt(t) for t in top)}); each level's own log2FC vs {control} "
                          f"(q of its own two-group test): {each}.",
                evidence=[t.id for t in top],
                entities=[t.subject.id for t in top] + [top[0].object.id],
                test=f"Measure {names} in independent {control} samples and samples of each other level of {group}; predict every level "
                     f"{word} than {control} (the pooled contrast, pre-registered direction).",
            ))
    return out


def _factor_differences(kg: KnowledgeGraph) -> list[HypothesisDraft]:
    """A multi-level factor stated as its design tested it: features that differ across it (F-test,
    each by the level that drives it, :func:`_driven_by`) and, for ordered levels, a trend across them."""
    out = []
    by_factor: dict[tuple[str, str], list[Relation]] = defaultdict(list)
    for r in kg.by_predicate("differs_across"):
        by_factor[(r.object.label, "F")].append(r)
    for r in kg.by_predicate("correlates_with"):
        if (r.stats.extra or {}).get("test") == "linear trend":
            by_factor[(r.object.label, "trend")].append(r)
    for (factor, test), rels in sorted(by_factor.items()):
        top = sorted(rels, key=_rank)[:3]
        names = ", ".join(t.subject.label for t in top)
        if test == "F":
            where = "; ".join(_driven_by(t) for t in top)
            statement = f"{names} differ across {factor} ({where})."
            rationale = "moderated F-test across the levels: " + "; ".join(
                f"{t.subject.label} F={t.stats.extra.get('F', float('nan')):.1f}, q={t.stats.q_else_p():.1e}" for t in top) + "."
            test_text = f"Measure {names} across the levels of {factor} in an independent cohort and test the difference (one-way ANOVA)."
        else:
            signs = {t.stats.direction for t in top}
            verb = "rise" if signs == {"positive"} else "fall" if signs == {"negative"} else "change"
            order = " < ".join(top[0].stats.extra.get("levels") or [])
            statement = f"{names} {verb} along the ordered levels of {factor} (a trend across ordered {factor}: {order})."
            rationale = "moderated t of a linear trend: " + "; ".join(
                f"{t.subject.label} {t.stats.effect:+.2f} log2 per level, q={t.stats.q_else_p():.1e}" for t in top if t.stats.effect is not None) + "."
            test_text = f"Measure {names} at each level of {factor} in an independent cohort and test a pre-registered monotone trend (Jonckheere-Terpstra)."
        out.append(HypothesisDraft(statement=statement, rationale=rationale, evidence=[t.id for t in top],
                                   entities=[t.subject.id for t in top] + [f"clinical_variable:{factor}"], test=test_text))
    return out[:3]


def _survival(kg: KnowledgeGraph) -> list[HypothesisDraft]:
    """Outcome associations: a feature (Cox per feature, or a high/low split) or a clinical grouping
    (Kaplan-Meier strata), with the feature's other relations as support. Unadjusted models are said so."""
    out = []
    for r in sorted(kg.by_predicate("associated_with_survival"), key=_rank)[:3]:
        hr = r.stats.effect
        worse = hr is None or hr > 1
        support = [x for x in kg.about(r.subject.id) if x.id != r.id and x.predicate != "associated_with_survival"][:2]
        etype = r.stats.effect_type or ""
        also = (" Also: " + "; ".join(f"{s.subject.label} {s.predicate} {s.object.label}" for s in support)) if support else ""
        covs = r.provenance.params.get("covariates") or []
        method = "Log-rank test" if r.stats.extra.get("test") == "log-rank" else "Cox model" + (f" adjusted for {', '.join(covs)}" if covs else " (unadjusted)")
        if r.subject.type == "clinical_variable" and etype.startswith("hazard_ratio_") and "_vs_" in etype:
            case, control = etype[len("hazard_ratio_"):].split("_vs_", 1)
            subject = f"{r.subject.label} = {case} (vs {control})"
            statement = (f"Patients with {subject} have {'worse' if worse else 'better'} outcome ({r.object.label}); "
                         f"the molecular differences between these groups are candidate mediators.")
            test = (f"Validate the outcome difference by {r.subject.label} in an independent cohort (Cox model with stage and age), "
                    f"and test whether the features that separate {case} from {control} carry the prognostic signal.")
        elif r.subject.type == "clinical_variable":
            statement = f"{r.subject.label} is associated with outcome ({r.object.label})."
            test = f"Validate the association of {r.subject.label} with {r.object.label} in an independent cohort (log-rank / Cox)."
        else:
            statement = (f"High {r.subject.label} is associated with {'worse' if worse else 'better'} outcome ({r.object.label})"
                         + (f" after adjusting for {', '.join(covs)}." if covs else "; the model is unadjusted, so stage or other prognostic factors may explain it."))
            test = f"Validate {r.subject.label} as a prognostic marker in an independent cohort (Cox model with stage and age as covariates)."
        out.append(
            HypothesisDraft(
                statement=statement,
                rationale=f"{method}: {_fmt(r)}." + also,
                evidence=[r.id] + [s.id for s in support],
                entities=[r.subject.id, r.object.id],
                test=test,
            )
        )
    return out


def _modules(kg: KnowledgeGraph) -> list[HypothesisDraft]:
    """The hub of interacting changed proteins, per contrast; "together" only when every member moves one way."""
    by_contrast: dict[str, list[Relation]] = defaultdict(list)
    for r in kg.by_predicate("interacts_with"):
        by_contrast[str(r.stats.extra.get("contrast", ""))].append(r)
    out = []
    for contrast, inter in sorted(by_contrast.items()):
        deg: dict[str, list[Relation]] = defaultdict(list)
        fc: dict[str, float] = {}
        for r in inter:
            deg[r.subject.label].append(r)
            deg[r.object.label].append(r)
            for lab, key in ((r.subject.label, "logFC_a"), (r.object.label, "logFC_b")):
                if r.stats.extra.get(key) is not None:
                    fc[lab] = float(r.stats.extra[key])
        if not deg:
            continue
        hub, rels = max(sorted(deg.items()), key=lambda kv: len(kv[1]))
        if len(rels) < 2:
            continue
        partners = sorted({r.object.label if r.subject.label == hub else r.subject.label for r in rels})[:6]
        members = [hub] + partners
        _, case, control = _contrast_words(contrast)
        where = f" in {case} vs {control}" if case else ""
        if all(m in fc for m in members) and directions_agree([fc[m] for m in members]):
            word = "higher" if fc[hub] > 0 else "lower"
            statement = f"{hub} and its interaction partners {', '.join(partners)} are all {word}{where}, so this complex or module changes together."
        else:
            up = [m for m in members if fc.get(m, 0) > 0]
            down = [m for m in members if fc.get(m, 0) < 0]
            statement = (f"{hub} interacts with changed proteins that move in opposite directions{where} "
                         f"(higher: {', '.join(up) or 'none'}; lower: {', '.join(down) or 'none'}), suggesting a rewired complex rather than a change in its amount.")
        out.append(
            HypothesisDraft(
                statement=statement,
                rationale=f"{hub} interacts (BioPlex) with {len(rels)} other changed proteins of {contrast}: "
                          + ", ".join(f"{m} {fc[m]:+.2f}" if m in fc else m for m in members) + " (log2FC).",
                evidence=[r.id for r in rels[:8]],
                entities=[f"protein:{hub}"] + [f"protein:{p}" for p in partners],
                test=f"Co-immunoprecipitate {hub} in both conditions and quantify {', '.join(partners[:3])}; knock down {hub} and test whether the partners' abundance follows.",
            )
        )
    return out[:2]


def _clusters(kg: KnowledgeGraph) -> list[HypothesisDraft]:
    """One hypothesis per clustering: every clinical variable its clusters are associated with (correlated
    variables are one finding), its markers, and a composition caveat when a composition score is among them.
    A clustering that is unstable or follows a technical column (:func:`~proteus.policy.claims.clustering_qc`)
    is no hypothesis: the report lists it among its QC notes."""
    assoc: dict[str, list[Relation]] = defaultdict(list)
    for r in kg.by_predicate("associated_with"):
        if r.subject.type == "sample_group" and r.object.type == "clinical_variable":
            assoc[r.subject.id].append(r)
    out = []
    for _, rels in sorted(assoc.items(), key=lambda kv: min(_rank(r) for r in kv[1])):
        rels = sorted(rels, key=_rank)
        r = rels[0]
        # cluster markers point at the cluster itself or at its one-vs-rest groups ("<grouping>: Ck vs rest")
        markers = [m for m in kg.relations.values() if m.predicate in ("higher_in", "marker_of")
                   and (m.object.id == r.subject.id or (m.object.type == r.subject.type and m.object.label.startswith(r.subject.label + ": ")))]
        if (stability := cluster_stability(rels + markers)) is not None and clustering_qc(*stability) is not None:
            continue  # unstable or technical clusters: a QC note of the report, not a hypothesis
        markers = sorted(markers, key=_rank)[:3]
        variables = [x.object.label for x in rels[:4]]
        composition = [v for v in variables if is_composition_score(v)]
        statement = (f"Clusters of {r.subject.label.removesuffix(' subtype')} samples are associated with {', '.join(variables)}"
                     + (f", defined by {', '.join(m.subject.label for m in markers)}" if markers else "")
                     + ("; they may reflect tissue composition rather than a tumour-intrinsic subtype." if composition else "."))
        out.append(
            HypothesisDraft(
                statement=statement,
                rationale="Cluster membership is associated with " + "; ".join(f"{x.object.label} ({_fmt(x)})" for x in rels[:4])
                          + (f"; markers: {'; '.join(m.subject.label + ' ' + _fmt(m) for m in markers)}" if markers else "")
                          + (f". {', '.join(composition)} measure{'s' if len(composition) == 1 else ''} tissue composition." if composition else "."),
                evidence=[x.id for x in rels[:4]] + [m.id for m in markers],
                entities=[r.subject.id] + [x.object.id for x in rels[:4]] + [m.subject.id for m in markers],
                test="Assign held-out samples to the clusters with a nearest-centroid classifier on the markers and test the association again"
                     + (f", then within strata of {composition[0]} (does the split survive?)." if composition else "."),
            )
        )
    return out[:2]


_UNSUPERVISED = {"consensus_clustering"}
"""Tools whose groups are defined from the same features they then test: their markers are descriptive
(circular as a contrast), so they feed subtype hypotheses only with a clinical association."""
_CELL_TYPES = {"cell_population", "marker"}
"""Subjects of cell-level relations: :mod:`proteus.policy.cytometry` composes those."""


def _single_changes(kg: KnowledgeGraph, changes, already: set[str], tables: ResultTables) -> list[HypothesisDraft]:
    """Strong single-layer changes not yet used, so every contrast gets at least one hypothesis; a site
    is set against its protein (a site that only follows its protein is said to). The same feature
    moving the same way in several groupings (overlapping or nested factors) is one hypothesis: the
    strongest edge states it, the others are cited."""
    picked = []
    for (contrast, stype), rels in sorted(changes.items()):
        if stype in _CELL_TYPES or stype == "mutation":  # mutation frequencies state mechanisms (_cis_in_grouping), not findings alone
            continue
        if contrast.endswith(": mutated vs wild-type"):  # carriers' changes are one finding per gene (_trans_effects)
            continue
        rels = [r for r in rels if r.provenance.tool not in _UNSUPERVISED and r.id not in already]
        picked += sorted(rels, key=_rank)[:3]
    same: dict[tuple[str, str], list[Relation]] = {}
    for r in sorted(picked, key=_rank):
        same.setdefault((r.subject.id, r.predicate), []).append(r)
    out = []
    for r, *also in same.values():
        stype = r.subject.type
        group, case, control = _contrast_words(r.object.label)
        statement = f"{r.subject.label} ({r.subject.type}) is {_direction_word(r)} in {case} than in {control} ({group})."
        rationale = f"{r.modality or stype}: {_fmt(r)}."
        if stype in _SITE_TYPES:
            verdict = site_verdict(r, tables, _gene(r), _modification(stype)[0])
            if verdict is not None and verdict.kind in ("mirrors_protein", "not_beyond_protein"):
                statement = f"{r.subject.label} is {_direction_word(r)} in {case} than in {control} ({group}) {verdict.clause}."
            if verdict is not None:
                rationale = f"{r.modality or stype}: {_fmt(r)}, {verdict.clause}."
        if also:
            rationale += (" The same feature is also " + "; ".join(f"{_direction_word(x)} in {x.object.label} ({_fmt(x)})" for x in also)
                          + ": the groupings may share samples, so this is one finding, stated for its strongest contrast.")
        out.append(
            HypothesisDraft(
                statement=statement,
                rationale=rationale[:1200],
                evidence=[r.id] + [x.id for x in also][:11],
                entities=[r.subject.id, r.object.id] + [x.object.id for x in also][:10],
                test=f"Quantify {r.subject.label} in independent {case} and {control} samples (targeted assay); predict the same direction.",
            )
        )
    return out


def _populations(kg: KnowledgeGraph, max_items: int = 3) -> list[HypothesisDraft]:
    """Cell populations and their defining markers, for descriptive cell-level studies (no contrasts).

    Only populations with at least two significant ``marker_of`` relations; skipped when the graph
    already holds condition effects on cells (those hypotheses say more).
    """
    if any(r.subject.type in _CELL_TYPES for r in kg.relations.values() if r.predicate in ("higher_in", "lower_in")):
        return []
    by_pop: dict[str, list[Relation]] = defaultdict(list)
    for r in kg.by_predicate("marker_of"):
        if r.object.type == "cell_population" and r.stats.q_else_p() < 0.05 and (r.stats.effect is None or r.stats.effect > 0):
            by_pop[r.object.label].append(r)
    ranked = sorted(((p, sorted(rs, key=lambda r: (r.stats.q_else_p(), -(r.stats.effect or 0), r.id))) for p, rs in by_pop.items() if len(rs) >= 2),
                    key=lambda t: (t[0].startswith("unassigned"), t[1][1].stats.q_else_p(), t[0]))
    out = []
    for pop, rels in ranked[:max_items]:
        top = rels[:4]
        names = ", ".join(r.subject.label for r in top)
        kind = top[0].subject.type
        unnamed = pop.startswith("unassigned")
        statement = (f"The cluster '{pop}' is a distinct cell population not matched by canonical markers, defined by high {names}."
                     if unnamed else f"{pop} in this sample are defined by high {names}, which together discriminate them from all other populations.")
        out.append(
            HypothesisDraft(
                statement=statement,
                rationale=f"{kind} markers of {pop} against all other cells: " + "; ".join(f"{r.subject.label} {_fmt(r)}" for r in top[:3]) + ".",
                evidence=[r.id for r in top],
                entities=[f"cell_population:{pop}"] + [r.subject.id for r in top],
                test=(f"Stain or sort cells on {names} (flow cytometry, or RNA FISH for genes) in an independent sample; "
                      f"the {names.split(', ')[0]}-high cells should co-express the others and match {pop} in frequency."),
            )
        )
    return out


def _axis(kg: KnowledgeGraph, d: HypothesisDraft) -> str:
    """The study axis a draft speaks to: a sample grouping (column), a mutated gene, copy number,
    a clinical variable, outcome, or a clustering."""
    r = kg.relation(d.evidence[0])
    if r is None:
        return ""
    if r.subject.type == "mutation" or r.object.label.partition(": ")[0].endswith(" mutation"):
        return f"mutation {r.subject.label if r.subject.type == 'mutation' else r.object.label.split(' mutation')[0]}"
    if r.predicate == "interacts_with":
        return str(r.stats.extra.get("contrast", "")).partition(": ")[0]
    if r.object.type == "sample_group":
        return r.object.label.partition(": ")[0]
    if r.predicate == "differs_across" or (r.stats.extra or {}).get("test") == "linear trend":
        return r.object.label  # the factor, the axis of its contrasts too
    if r.predicate in ("associated_with_survival", "associated_with", "correlates_with"):
        return f"{r.predicate} {r.object.label if r.predicate == 'correlates_with' else r.subject.label}"
    return r.predicate


def compose_hypotheses(kg: KnowledgeGraph, *, tables: ResultTables | None = None, sample_type: str | None = None,
                       limit: int = MAX_DRAFTS) -> list[HypothesisDraft]:
    """Pattern-based hypotheses, each clause checked against the full result tables (``tables``; without
    them no site-specific or composition claim is made).

    Synthesis: every study axis (a sample grouping, a mutated gene, copy number, a clinical variable,
    outcome, a clustering) leads with its most interpretable finding — a positive control first (a QC
    result, ranked below discoveries after validation); for a grouping named after a gene, that gene's
    own products; a mutation's cis effect with its downstream proteins; pathway programmes, changes
    seen in two layers or beyond a protein; a contrast's remaining changes last, curated units and
    single features by their strongest edge — and axes take
    turns, so each axis's lead comes before any axis's second finding. ``sample_type`` names the
    tumour/normal column, whose pathway differences carry a composition caveat. Findings with the same
    evidence are one; edges stated by a positive control or a unit are not restated alone.
    """
    tables = tables if tables is not None else ResultTables.empty()
    changes = _changes(kg)
    pathway_genes = _pathway_genes(kg)
    controls, controlled = spike_in_controls(kg, tables)
    in_grouping = _cis_in_grouping(kg, changes)
    leads = [controls, _gene_events(kg, changes), in_grouping, _mutations(kg, changes, {e for d in in_grouping for e in d.evidence}),
             _trans_effects(kg, changes),
             _shared_changes(changes, tables),
             _pathway_programs(kg, changes, pathway_genes, tables, sample_type)]
    families = [
        *leads,
        _multi_layer(kg, changes, pathway_genes),
        _protein_only(kg, changes, tables),
        _site_specific(kg, changes, tables),
        _cna(kg),
        _modules(kg),
        _clusters(kg),
        _correlates(kg),
        _factor_differences(kg),
        _survival(kg),
        _populations(kg),
    ]
    # a contrast's remaining changes: curated units and single features, strongest lead edge first, in one
    # family (one slot per turn, so merging members into units never pushes another finding past the limit)
    units = _units(changes, tables, controlled | {e for fam in leads for d in fam for e in d.evidence})
    used = controlled | {e for fam in families + [units] for d in fam for e in d.evidence}
    stated = {(_axis(kg, d), ent) for fam in families for d in fam for ent in d.entities}
    singles = [d for d in _single_changes(kg, changes, used, tables) if (_axis(kg, d), d.entities[0]) not in stated]
    families.append(sorted(units + singles, key=lambda d: _rank(kg.relation(d.evidence[0]))))
    # per axis: the families in order of interpretability, taking turns
    by_axis: dict[str, list[list[HypothesisDraft]]] = {}
    seen: set[frozenset] = set()
    for f, fam in enumerate(families):
        for d in fam:
            key = frozenset(d.evidence)
            if key not in seen:
                seen.add(key)
                by_axis.setdefault(_axis(kg, d), [[] for _ in families])[f].append(d)
    queues = [_take_turns(fams) for fams in by_axis.values()]
    return _name_mechanisms(kg, _take_turns(queues)[:limit])


def _take_turns(lists: list[list[HypothesisDraft]]) -> list[HypothesisDraft]:
    """First items of every list, then the second items, and so on."""
    out: list[HypothesisDraft] = []
    for i in range(max((len(v) for v in lists), default=0)):
        out += [v[i] for v in lists if i < len(v)]
    return out
