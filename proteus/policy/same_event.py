"""One event, one hypothesis: drafts about the same feature moving the same way in the same samples.

A feature lost in one group of samples shows up in every grouping and test that contains those samples
(the status column, the subtype column that refines it, the gene mutation that marks the same tumours,
the F-test across subtypes, the pooled contrast of several levels, the pathway its gene sits in). Each is
true, but together they are one observation spending several report slots. Two drafts are one event when
a feature that leads one of them (the gene of its first group-comparison edge) is among the other's
features, moving the same way, and either

- the two comparisons' case samples are the same ones: Jaccard overlap of at least :data:`SAME_SAMPLES`
  (only the later draft's lead is looked up in the earlier one); or
- one is a pooled contrast (several levels against one reference) and the other compares samples inside
  it: at least :data:`SAME_SAMPLES` of its case samples are pooled cases and its control samples are the
  pooled control (Jaccard at least :data:`SAME_SAMPLES`); the pooled statement states each level's own
  effect, so the level's change is part of it.

Sample sets come from whatever defines the grouping (:func:`comparison_samples`): a sample-table column or
a gene's mutation status (the genotyped samples of the tool call), so a subtype column and a mutation that
marks the same samples match. The draft with the
most features states the event (the earlier one on a tie), at the best rank of the drafts it folds; its
rationale cites the others' statements and edges.
"""

from __future__ import annotations

from typing import NamedTuple

from proteus.confounding import evidence_contrast
from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import HypothesisDraft
from proteus.records import Relation
from proteus.study import Study

__all__ = ["SAME_SAMPLES", "comparison_samples", "fold_same_events"]

SAME_SAMPLES = 0.8
"""Overlap of two comparisons' samples (Jaccard; share inside, for a pooled contrast) above which they compare the same samples."""


class _Signal(NamedTuple):
    """One group-comparison edge: its gene, direction (+1/-1), case and control samples, and whether it pools levels."""

    gene: str
    sign: int
    cases: frozenset[str]
    controls: frozenset[str]
    pooled: bool


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
    gene = r.object.label if r.predicate == "cis_effect_on" else str(r.stats.extra.get("gene") or r.subject.label.split("-")[0])
    return _Signal(gene, sign, *samples, bool((r.provenance.params or {}).get("case_levels")))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def _inside(part: _Signal, pooled: _Signal) -> bool:
    """Whether ``part`` compares samples inside the pooled contrast ``pooled`` (its cases among the pooled
    cases, its controls the pooled control)."""
    return (pooled.pooled and not part.pooled and len(part.cases & pooled.cases) >= SAME_SAMPLES * len(part.cases)
            and _jaccard(part.controls, pooled.controls) >= SAME_SAMPLES)


def _same_event(later: list[_Signal], earlier: list[_Signal]) -> bool:
    """Whether a draft with signals ``later`` is about the event of an earlier one (see the module docstring)."""
    if not later or not earlier:
        return False
    lead = later[0]
    if any(e.gene == lead.gene and e.sign == lead.sign and _jaccard(lead.cases, e.cases) >= SAME_SAMPLES for e in earlier):
        return True
    return any(a.gene == b.gene and a.sign == b.sign and (_inside(a, b) or _inside(b, a))
               for a, b in [(lead, e) for e in earlier] + [(earlier[0], x) for x in later])


def fold_same_events(drafts: list[HypothesisDraft], kg: KnowledgeGraph, study: Study) -> list[HypothesisDraft]:
    """``drafts`` (best first) with the drafts about one event folded into one (see the module
    docstring), each event at the rank of its best draft."""
    cache: dict = {}
    signals = [[s for e in d.evidence if (r := kg.relation(e)) is not None and (s := _signal(r, study, cache)) is not None]
               for d in drafts]
    events: list[list[int]] = []
    for i, sig in enumerate(signals):
        event = next((ev for ev in events if _same_event(sig, signals[ev[0]])), None)  # its first draft: no chains through members
        if event is None:
            events.append([i])
        else:
            event.append(i)
    out = []
    for event in events:
        head = max(event, key=lambda i: (len({s.gene for s in signals[i]}), -i))
        d = drafts[head]
        others = [i for i in event if i != head]
        if others:
            also = (" The same event (the same feature moving the same way in the same samples) is also seen as: "
                    + "; ".join(f"{drafts[i].statement.rstrip('.')[:160]} ({', '.join(drafts[i].evidence[:2])})" for i in others))[:600] + "."
            d = d.model_copy(update={"rationale": d.rationale[:1200 - len(also)] + also})
        out.append(d)
    return out
