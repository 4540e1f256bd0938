"""One theme, one hypothesis: single-feature findings of one contrast that share a curated unit.

Three proteins lower in the same samples, each stated alone (one with its mRNA, one with the partners
that fall with it, ...), are one observation when their features belong to one curated unit (a Reactome /
WikiPathways / GO process or complex, :mod:`proteus.stats.units`). Drafts led by one group-comparison
edge whose cited changes all move one way in the same samples (not an enrichment result, which names its
pathway) are pooled per contrast and direction, and the units that cover their
cited features are chosen by :func:`proteus.stats.units.covering_units` (hypergeometric tail over the
measured genes of the layer, smallest first; a two-gene unit only when small). Drafts contributing a
feature to one unit fold into one hypothesis naming the unit, its members among them, and whether the
unit as a whole moves (:func:`proteus.stats.units.unit_change`, the :data:`~proteus.stats.units.MIN_UNIT_SHARE`
rule) when the contrast's full table is at hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from proteus.policy.decisions import HypothesisDraft
from proteus.policy.result_tables import ResultTables
from proteus.records import Relation
from proteus.stats.units import Unit, covering_units, unit_change, unit_genes

__all__ = ["Theme", "themes_of", "theme_draft"]


@dataclass(frozen=True)
class Theme:
    """A curated unit covering the features of several single-feature drafts of one contrast and direction."""

    unit: Unit
    drafts: tuple[int, ...]
    """Indices of the drafts it folds, best first."""
    sign: int
    lead: Relation
    """The strongest group-comparison edge among them (its contrast words the statement)."""


def themes_of(candidates: dict[int, list[tuple[str, Relation]]], measured: frozenset[str], sign: int) -> list[Theme]:
    """Themes among single-feature drafts of one contrast and direction.

    Parameters
    ----------
    candidates
        Draft index (rank order) -> its cited features as (gene, group-comparison edge), lead first.
    measured
        Genes measured in the contrast's layer (the background of the unit test).
    sign
        +1 higher, -1 lower.

    Returns
    -------
    One theme per unit covering features of at least two drafts; each draft in one theme at most.
    """
    if len(candidates) < 2:
        return []
    genes = list(dict.fromkeys(g for feats in candidates.values() for g, _ in feats))
    out: list[Theme] = []
    taken: set[int] = set()
    for unit in covering_units(genes, measured):
        inside = set(unit.members)
        drafts = tuple(i for i, feats in sorted(candidates.items()) if i not in taken and any(g in inside for g, _ in feats))
        if len(drafts) < 2:
            continue
        taken |= set(drafts)
        lead = min((r for i in drafts for _, r in candidates[i]), key=lambda r: (r.stats.q_else_p(), r.id))
        out.append(Theme(unit, drafts, sign, lead))
    return out


def _contrast(r: Relation) -> tuple[str, str, str]:
    group, _, rest = r.object.label.partition(": ")
    case, _, control = rest.partition(" vs ")
    return group, case, control


def _contrast_table(r: Relation, tables: ResultTables | None):
    """The full table of the contrast edge ``r`` comes from (a differential step's results, or the mutated gene's
    rows of a mutation association); ``None`` when not at hand."""
    if tables is None:
        return None
    p = r.provenance.params or {}
    if r.provenance.tool == "mutation_association":
        tab = tables.table(r.provenance.tool, "mutation_association", **{k: p[k] for k in ("modality", "gene") if k in p})
        gene = str((r.stats.extra or {}).get("mutation", "")).partition(":")[2]
        return tab[tab["mutated_gene"].astype(str) == gene] if tab is not None and "mutated_gene" in tab else tab
    return tables.table(r.provenance.tool, "results", **{k: p[k] for k in ("modality", "group", "case", "control") if k in p})


def _unit_clause(theme: Theme, tables: ResultTables | None) -> tuple[str, bool]:
    """Whether the unit as a whole moves in the contrast's full table, as a clause, and whether it does."""
    tab = _contrast_table(theme.lead, tables)
    word = "higher" if theme.sign > 0 else "lower"
    moved = unit_change(tab, unit_genes(theme.unit), theme.sign) if tab is not None and "gene" in tab else None
    if moved is None:
        return "whether the unit as a whole moves is not tested here", False
    k, n = len(moved.changed), moved.n_measured
    if moved.moves(theme.sign):
        return f"the unit moves as a whole ({k} of its {n} measured features {word}, none the other way, median log2FC {moved.median:+.2f})", True
    return f"the unit as a whole is not shown to move ({k} of its {n} measured features {word})", False


def theme_draft(theme: Theme, drafts: list[HypothesisDraft], features: dict[int, list[tuple[str, Relation]]],
                tables: ResultTables | None) -> HypothesisDraft:
    """One hypothesis about ``theme`` in place of its drafts (``drafts`` and their cited ``features`` by index)."""
    group, case, control = _contrast(theme.lead)
    word = "higher" if theme.sign > 0 else "lower"
    leads = list(dict.fromkeys(features[i][0][0] for i in theme.drafts))
    partners = [g for i in theme.drafts for g, _ in features[i][1:] if g not in leads]
    partners = list(dict.fromkeys(partners))
    inside = [g for g in leads + partners if g in theme.unit.members]
    clause, moves = _unit_clause(theme, tables)
    statement = (f"{', '.join(leads)} {'are' if len(leads) > 1 else 'is'} {word} in {case} than in {control} ({group})"
                 + (f", with {', '.join(partners[:6])}" if partners else "")
                 + f": one theme, as {', '.join(inside)} belong to '{theme.unit.name}' ({theme.unit.source}); {clause}.")
    edges = sorted({id(r): r for i in theme.drafts for _, r in features[i]}.values(), key=lambda r: (r.stats.q_else_p(), r.id))
    lead_edges = [features[i][0][1] for i in theme.drafts]
    evidence = list(dict.fromkeys([r.id for r in lead_edges] + [r.id for r in edges] + [e for i in theme.drafts for e in drafts[i].evidence]))[:12]
    folded = "; ".join(f"{drafts[i].statement.rstrip('.')[:150]} ({', '.join(drafts[i].evidence[:2])})" for i in theme.drafts)
    u = theme.unit
    rationale = (f"{len(theme.drafts)} findings of {case} vs {control} move {word} together and share the curated unit '{u.name}' ({u.source}, "
                 f"{u.size} genes), which covers {len(u.members)} of their cited features (hypergeometric p={u.p:.1e}, the layer's measured "
                 f"genes as background): " + "; ".join(f"{r.subject.label} {r.stats.effect_type or 'effect'} {r.stats.effect:+.2f}, "
                                                       f"q={r.stats.q_else_p():.1e}" for r in edges[:6] if r.stats.effect is not None)
                 + f". Stated once in place of: {folded}")
    entities = [f"pathway:{u.name}"] + ([f"unit:{u.library}:{u.set_id}"] if moves else []) + [r.subject.id for r in edges] + [theme.lead.object.id]
    return HypothesisDraft(
        statement=statement[:500],
        rationale=rationale[:1200],
        evidence=evidence,
        entities=list(dict.fromkeys(entities))[:20],
        test=(f"Measure {', '.join((leads + partners)[:6])} and the other members of '{u.name}' in independent {case} and {control} samples "
              f"(targeted MS panel); predict each {word} in {case}" + (" and the unit's median log2FC with them." if moves else ".")
              )[:600],
    )
