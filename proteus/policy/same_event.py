"""One event, one hypothesis: drafts about the same feature moving the same way in the same samples.

A feature lost in one group of samples shows up in every grouping and test that contains those samples
(the status column, the subtype column that refines it, the F-test across subtypes, the pathway its gene
sits in). Each is true, but together they are one observation spending several report slots. A later
draft is folded into an earlier (higher-ranked) one when its lead feature (the gene of its first
group-comparison edge) is among the earlier draft's features, moving the same way, in a comparison whose
case samples are the same ones: Jaccard overlap of the case sample sets of at least :data:`SAME_SAMPLES`
(taken from the sample table, so two columns that name one group differently still match). The earlier
draft keeps its statement and cites the folded one's statement and edges in its rationale.
"""

from __future__ import annotations

import pandas as pd

from proteus.confounding import evidence_contrast
from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import HypothesisDraft
from proteus.records import Relation

__all__ = ["SAME_SAMPLES", "fold_same_events"]

SAME_SAMPLES = 0.8
"""Jaccard overlap of two comparisons' case samples above which they compare the same samples."""

_Signal = tuple[str, int, frozenset[str]]
"""(gene, direction +1/-1, case sample ids) of one group-comparison edge."""


def _signal(r: Relation, clin: pd.DataFrame) -> _Signal | None:
    """The gene, direction and case samples of a group-comparison edge; ``None`` for any other edge."""
    if r.predicate in ("higher_in", "lower_in"):
        sign = 1 if r.predicate == "higher_in" else -1
    elif r.predicate == "differs_across" and r.stats.effect:
        sign = 1 if r.stats.effect > 0 else -1
    else:
        return None
    key = evidence_contrast(r)
    if key is None or key[0] not in clin:
        return None
    group, cases, _ = key
    samples = frozenset(map(str, clin.index[clin[group].astype(str).isin(cases)]))
    if not samples:
        return None
    return str(r.stats.extra.get("gene") or r.subject.label.split("-")[0]), sign, samples


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def fold_same_events(drafts: list[HypothesisDraft], kg: KnowledgeGraph, clin: pd.DataFrame) -> list[HypothesisDraft]:
    """``drafts`` (best first) with every draft about an earlier draft's event folded into it (see the
    module docstring); the order of the kept drafts is unchanged."""
    signals = []
    for d in drafts:
        sig = [s for e in d.evidence if (r := kg.relation(e)) is not None and (s := _signal(r, clin)) is not None]
        signals.append(sig)
    kept: list[int] = []
    folded: dict[int, list[int]] = {}
    for i, sig in enumerate(signals):
        host = None
        if sig:
            gene, sign, samples = sig[0]
            host = next((k for k in kept if any(g == gene and s == sign and _jaccard(samples, cs) >= SAME_SAMPLES
                                                for g, s, cs in signals[k])), None)
        if host is None:
            kept.append(i)
        else:
            folded.setdefault(host, []).append(i)
    out = []
    for k in kept:
        d = drafts[k]
        if k in folded:
            also = (" The same event (the same feature moving the same way in the same samples) is also seen as: "
                    + "; ".join(f"{drafts[i].statement.rstrip('.')[:160]} ({', '.join(drafts[i].evidence[:2])})" for i in folded[k]))[:600] + "."
            d = d.model_copy(update={"rationale": d.rationale[:1200 - len(also)] + also})
        out.append(d)
    return out
