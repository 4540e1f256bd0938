"""The offline judge: transparent rules that score a hypothesis on the five metrics from its evidence.

Labelled ``heuristic`` in every artifact. Rules (each score 1-5, with the reason spelled out):

- reliability: strength (best q), sample size and number of independent evidence edges / layers.
- logical coherence: the evidence edges exist and agree in direction with each other.
- biological plausibility: support from a second mechanism (pathway, interaction, second omics
  layer, cis effect) beyond a single statistical association.
- novelty: composite and regulatory findings (phosphosite-specific, cross-layer discordance,
  dosage transmission, subtype structure) over single well-trodden differences.
- evaluability: a concrete, directional test on named entities.
"""

from __future__ import annotations

from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import Judgement, MetricScore
from proteus.records import Hypothesis

__all__ = ["judge_heuristically"]


def _clip(x: float) -> int:
    return int(max(1, min(5, round(x))))


def judge_heuristically(kg: KnowledgeGraph, h: Hypothesis) -> Judgement:
    rels = [kg.relation(e) for e in h.evidence]
    found = [r for r in rels if r is not None]
    if not found:
        low = MetricScore(score=1, reason="none of the cited evidence edges exist in the knowledge graph")
        return Judgement(reliability=low, logical_coherence=low, biological_plausibility=low, novelty=low, evaluability=low)
    qs = [r.stats.q_else_p() for r in found]
    best_q = min(qs)
    ns = [r.stats.n for r in found if r.stats.n]
    n = max(ns) if ns else 0
    layers = {r.modality for r in found if r.modality}
    predicates = {r.predicate for r in found}

    rel = 1 + (best_q < 0.05) + (best_q < 1e-4) + (n >= 20) + (len(found) >= 2 or len(layers) >= 2)
    reliability = MetricScore(
        score=_clip(rel),
        reason=f"best q={best_q:.1e}, n={n}, {len(found)} evidence edge(s) over {len(layers) or 1} layer(s)",
    )

    missing = len(rels) - len(found)
    dirs = {r.stats.direction for r in found if r.predicate in ("higher_in", "lower_in") and r.stats.direction}
    contrasts = {r.object.label for r in found if r.object.type == "sample_group"}
    coherent = 5 - 2 * missing - (1 if len(dirs) > 1 and len(contrasts) <= 1 and "enriched_in" not in predicates else 0)
    logical = MetricScore(
        score=_clip(coherent),
        reason=("all cited edges exist" if not missing else f"{missing} cited edge(s) missing")
        + ("; directions agree" if len(dirs) <= 1 else "; mixed directions across evidence"),
    )

    mech = {"enriched_in", "interacts_with", "cis_effect_on", "concordant_with"} & predicates
    plaus = 2 + len(mech) + (len(layers) >= 2)
    plausibility = MetricScore(
        score=_clip(plaus),
        reason=("supported by " + ", ".join(sorted(mech)) if mech else "a statistical association without a second mechanism")
        + (f"; seen in {len(layers)} layers" if len(layers) >= 2 else ""),
    )

    kinds = {r.subject.type for r in found} | {r.object.type for r in found}
    nov = 2 + ("phosphosite" in kinds or "acetylsite" in kinds) + (len(predicates) >= 2) + ("cis_effect_on" in predicates or "associated_with" in predicates)
    if contrasts and all("normal" in c.lower() for c in contrasts) and len(predicates) == 1:
        nov -= 1
    novelty = MetricScore(
        score=_clip(nov),
        reason=f"combines {len(predicates)} relation type(s) over {', '.join(sorted(kinds))}"
        + ("; tumour-vs-normal differences are often already known" if contrasts and all("normal" in c.lower() for c in contrasts) else ""),
    )

    concrete = 2 + (len(h.test) > 60) + any(w in h.test.lower() for w in ("predict", "immunoblot", "ihc", "knock", "crispr", "independent", "held-out", "cohort")) + (len(h.entities) <= 6)
    evaluability = MetricScore(score=_clip(concrete), reason="a concrete, directional test on named entities" if concrete >= 4 else "the test is generic")
    return Judgement(
        reliability=reliability,
        logical_coherence=logical,
        biological_plausibility=plausibility,
        novelty=novelty,
        evaluability=evaluability,
    )
