"""The offline judge: checks that can fail, read from the evidence, never from the template.

Labelled ``heuristic`` in every artifact. Each score (1-5) keeps the reason of every check:

- reliability: the in-run validation (replication frequency over held-out splits, the
  permutation null), the key edge's effect size and its interval, and the number of samples. When no
  edge could be re-tested (a design too small to hold samples out) or the re-test could not tell (too little
  held-out power), the score is left to the statistics (q, effect, values seen in both groups) and the reason
  says so; a key that replicates but is not specific keeps its counts; circular statistics
  (clusters found in the same samples) and effects of features seen in one group only earn no credit.
- logical coherence: whether the statement's claims match the cited edges: direction words
  next to each entity against that entity's edge, entities and layers named without a cited edge,
  causal wording ("drives", "propagates", "independent of", ...) from associations only, "as a
  unit" over edges that move in different directions, cited edges missing from the graph.
- biological plausibility: independent prior knowledge (shipped gene sets, BioPlex interactions,
  a gene's own copy number / mutation acting on its own product) and support in a second layer. Genes
  co-annotated in one curated unit (:mod:`proteus.stats.units`) that move one way are credited as a
  unit; a single gene is credited when unit partners move its way in the same contrast. A positive
  control (the design puts the difference there) is plausible and not novel by construction.
- novelty: how expected the relation is given that prior knowledge (a cis effect or a relation
  between genes already sharing a pathway or an interaction is expected; a site change beyond its
  protein's, or genes with no prior link, is not). Never from a contrast's name.
- evaluability: whether the proposed test names a measurable quantity, a direction, a cohort and
  the hypothesis's own entities.
"""

from __future__ import annotations

import re
from functools import lru_cache

from scipy.stats import hypergeom
from itertools import combinations

from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import Judgement, MetricScore
from proteus.records import Hypothesis, Relation
from proteus.stats.units import gene_units, set_name, shared_unit, unit_genes_of
from proteus.validation import ALPHA, CLUSTER_TOOLS

__all__ = ["judge_heuristically", "entity_gene"]

_UP = r"higher|increased?|increases|up(?:regulated)?|activated|rises?|elevated|gains?|expanded|more abundant|raises?|enriched"
_DOWN = r"lower|decreased?|decreases|down(?:regulated)?|suppressed|reduced?|reduces|loss|depleted|less abundant|falls?"
_CAUSAL = r"\b(drives?|driven by|causes?|caused by|propagates?|transmitted|leads? to|mediates?|independent of|controls?|regulates?|driver)\b"
_LAYERS = {
    "protein": ("protein",),
    "mRNA": ("gene",),
    "phosphorylation": ("phosphosite",),
    "acetylation": ("acetylsite",),
    "transcript": ("gene",),
    "copy number": ("gene",),
    "mutation": ("mutation",),
}
_QUANTITY = r"measure|quantif|abundance|level|log2|fold change|correlat|hazard|score|immunoblot|ihc|qpcr|rt-qpcr|ms\b|intensity|frequency|proportion"
_DIRECTION = r"higher|lower|increase|decrease|positive|negative|more|less|worse|better|predict|up\b|down\b|sensitive|direction"
_COHORT = r"cohort|held-out|independent|samples|patients|tumou?rs|cell lines|donors|replicates"
_SITE = re.compile(r"^(.+)-[STYK]\d+[a-z]?$")


def _clip(x: float) -> int:
    return int(max(1, min(5, round(x))))


def entity_gene(entity_id: str) -> str | None:
    """Gene symbol of a protein / gene / mutation / site entity id (``"phosphosite:TP53-S15"`` -> TP53)."""
    kind, _, label = entity_id.partition(":")
    if kind in ("protein", "gene", "mutation"):
        return label
    if kind in ("phosphosite", "acetylsite"):
        m = _SITE.match(label)
        return m.group(1) if m else label.rsplit("-", 1)[0]
    return None


@lru_cache(maxsize=1)
def _interactions() -> frozenset[tuple[str, str]]:
    from proteus import genesets

    e = genesets.ppi_edges()
    return frozenset(zip(e["a"].astype(str), e["b"].astype(str)))


def _prior_links(genes: list[str]) -> tuple[int, int, int]:
    """(pairs sharing a gene set, pairs interacting in BioPlex, pairs) over distinct ``genes``."""
    ppi = _interactions()
    pairs = list(combinations(sorted(set(genes)), 2))
    shared = sum(bool(gene_units(a) & gene_units(b)) for a, b in pairs)
    inter = sum((a, b) in ppi or (b, a) in ppi for a, b in pairs)
    return shared, inter, len(pairs)


def _sign(r: Relation) -> int:
    return {"up": 1, "positive": 1, "down": -1, "negative": -1}.get(r.stats.direction or "", 0)


def _clauses(text: str) -> list[str]:
    return [c for c in re.split(r"[;,.]|\band\b|\bwhile\b|\bwithout\b|\bbut\b", text) if c.strip()]


# --------------------------------------------------------------------------------------------
# the five checks
# --------------------------------------------------------------------------------------------


def _reliability(h: Hypothesis, found: list[Relation]) -> MetricScore:
    v = h.validation or {}
    ns = [r.stats.n for r in found if r.stats.n]
    n = max(ns) if ns else 0
    edges = v.get("edges") or {}
    key = next((edges[e] for e in h.evidence if (edges.get(e) or {}).get("status") == "tested"), None)
    parts, score = [], 1.0
    # the held-out counts decide where they speak: validated, failed, and a key that replicates without beating its null
    if (v.get("status") in ("validated", "failed") or v.get("grounds") == "not specific") and key is not None:
        rep, nul = v["replication"], v["null"]
        score += (rep["frequency"] >= 0.5) + (rep["frequency"] >= 0.8) + (nul.get("p", nul["frequency"]) < 0.05)
        parts.append(f"replicated in {rep['text']} held-out splits, null {nul['text']}")
        ci, eff = key.get("ci"), key.get("effect")
        big = eff is not None and abs(eff) >= (0.3 if str(key.get("effect_type", "")).endswith("_r") else 0.5)
        excl = bool(ci) and (ci[0] > 0 or ci[1] < 0)
        score += excl and big
        if eff is not None and ci:
            parts.append(f"key effect {eff:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]" + ("" if big else ", small"))
    else:
        score, said = _statistics_only(h, found)
        parts.append(said)
        nul = v.get("null") or {}
        p = nul.get("p", nul.get("frequency"))
        if v.get("status") == "inconclusive" and p is not None and p >= ALPHA and score > 3:
            # re-tested, could not tell, and permuted labels match it often: the discovery statistics alone do not earn more
            score = 3.0
            parts.append(f"at most 3: the re-test could not tell and permuted labels were as strong in {nul.get('text', p)} (null p {p:.2f})")
    if n and n < 20:
        score -= 1
    parts.append(f"n={n}")
    return MetricScore(score=_clip(score), reason="; ".join(parts)[:480])


def _statistics_only(h: Hypothesis, found: list[Relation]) -> tuple[float, str]:
    """Reliability when no edge could be re-tested on held-out samples, or the re-test could not tell (too little
    held-out power, a stated key not re-tested): the evidence score is left to the statistics (q, effect size, values
    observed in both groups), since a design too small to hold samples out says nothing against the finding. Circular
    statistics (clusters found in the same samples) and effects extrapolated for features seen in one group only earn
    no credit."""
    v = h.validation or {}
    why = (v.get("reason") or "no held-out re-test").removeprefix("no evidence edge can be re-tested on held-out samples: ")
    lead = "held-out re-test inconclusive" if v.get("status") == "inconclusive" else "not re-testable on held-out samples"
    stats = [r for r in found if r.provenance.tool not in CLUSTER_TOOLS and r.stats.q_else_p() is not None]
    if not stats:
        return 1.0 + any(r.stats.q_else_p() < 0.05 for r in found), f"{lead} ({why[:160]}); its statistics are circular (clusters found in these samples)"
    key = min(stats, key=lambda r: r.stats.q_else_p())
    q, eff = key.stats.q_else_p(), key.stats.effect
    one_group = bool((key.stats.extra or {}).get("detection"))
    big = eff is not None and abs(eff) >= (0.3 if str(key.stats.effect_type or "").endswith("_r") or key.stats.effect_type in ("spearman_r", "pearson_r", "rho") else 1.0)
    score = 2.0 + (q < 0.05) + (q < 1e-3) + (big and not one_group)
    said = (f"{lead} ({why[:160]}), so scored from the statistics: best q={q:.1e}"
            + (f", effect {eff:+.2f}" if eff is not None else "") + (" measured in both groups" if big and not one_group else ""))
    if one_group:
        score = min(score, 2.0)
        said += f"; detected in one group only ({key.stats.extra['detection']}), so its effect is extrapolated by the model"
    return score, said


def _coherence(h: Hypothesis, rels: list[Relation | None], found: list[Relation]) -> MetricScore:
    text = h.statement
    low = text.lower()
    score, problems = 5.0, []
    missing = len(rels) - len(found)
    if missing:
        score -= 2 * missing
        problems.append(f"{missing} cited edge(s) missing")
    # direction words next to each entity against that entity's own edge
    contradictions = []
    for clause in _clauses(text):
        cl = clause.lower()
        up, down = bool(re.search(rf"\b({_UP})\b", cl)), bool(re.search(rf"\b({_DOWN})\b", cl))
        if up == down:
            continue
        for r in found:
            s = _sign(r)
            if r.subject.type == "mutation" and r.predicate != "cis_effect_on":
                continue  # how often a mutation occurs in a group, not a direction of the gene's product
            if s and r.predicate in ("higher_in", "lower_in", "cis_effect_on", "correlates_with") and re.search(rf"\b{re.escape(r.subject.label.lower())}\b", cl):
                if (s > 0) != up:
                    contradictions.append(r.subject.label)
    if contradictions:
        score -= 2
        problems.append(f"direction stated for {', '.join(sorted(set(contradictions)))} contradicts its edge")
    # entities and layers named without a cited edge
    cited = {r.subject.id for r in found} | {r.object.id for r in found}
    cited_types = {r.subject.type for r in found} | {r.object.type for r in found}
    uncited = [e for e in h.entities if e not in cited and e.split(":", 1)[0] in ("protein", "gene", "phosphosite", "mutation", "acetylsite")]
    if uncited:
        score -= 1
        problems.append(f"names {', '.join(uncited[:3])} without a cited edge")
    layers = [w for w, types in _LAYERS.items() if re.search(rf"\b{w}", low) and not set(types) & cited_types]
    if layers:
        score -= 1
        problems.append(f"speaks of {', '.join(layers)} that no cited edge measured")
    causal = sorted(set(m.group(1) for m in re.finditer(_CAUSAL, re.sub(r"\b(positive|negative) controls?\b", "", low))))
    if causal:
        score -= 1 + (len(causal) > 1)
        problems.append(f"causal wording ({', '.join(causal)}) from associations")
    if re.search(r"as a unit|together|co-?regulated", low):
        signs = {_sign(r) for r in found if r.predicate in ("higher_in", "lower_in") and _sign(r)}
        if len(signs) > 1:
            score -= 1
            problems.append("'as a unit' over edges moving in different directions")
    return MetricScore(score=_clip(score), reason=("; ".join(problems) or "statement's directions, entities and layers match the cited edges")[:480])


_GENOME = 20000
"""Protein-coding genes: the background of a co-annotation when the measured features are not at hand."""


def _co_moving_partners(kg: KnowledgeGraph, r: Relation, gene: str) -> tuple[str, list[str]] | None:
    """Other features of ``r``'s contrast that move ``r``'s way and share a curated unit with ``gene``:
    (unit name, partner genes) of the unit with the most partners, or ``None``."""
    mine = gene_units(gene)
    if not mine:
        return None
    partners: dict[tuple[str, str], list[str]] = {}
    for x in kg.relations.values():
        g = entity_gene(x.subject.id)
        if x.object.id == r.object.id and x.predicate == r.predicate and g and g != gene:
            for key in mine & gene_units(g):
                partners.setdefault(key, []).append(g)
    if not partners:
        return None
    key, genes = max(sorted(partners.items()), key=lambda kv: len(set(kv[1])))
    n_moving = len({entity_gene(x.subject.id) for x in kg.relations.values() if x.object.id == r.object.id and x.predicate == r.predicate})
    # more partners than the moving features would put in a unit of that size by chance (genome background)
    if hypergeom.sf(len(set(genes)) - 1, _GENOME, len(unit_genes_of(key)), n_moving) >= 0.01:
        return None
    return set_name(key), sorted(set(genes))


def _plausibility(kg: KnowledgeGraph, h: Hypothesis, found: list[Relation]) -> tuple[MetricScore, dict]:
    genes = sorted({g for r in found for g in (entity_gene(r.subject.id), entity_gene(r.object.id)) if g}
                   | {g for e in h.entities if (g := entity_gene(e))})
    shared, inter, pairs = _prior_links(genes) if len(genes) >= 2 else (0, 0, 0)
    cis = any(r.predicate in ("cis_effect_on", "concordant_with") and entity_gene(r.subject.id) == entity_gene(r.object.id) for r in found)
    member = any(r.predicate == "enriched_in" for r in found)
    v = h.validation or {}
    cross = v.get("cross_omics")
    layers = {r.modality for r in found if r.modality}
    prior = {"shared": shared, "inter": inter, "pairs": pairs, "cis": cis, "genes": genes}
    if h.kind == "positive control":
        return MetricScore(score=5, reason="a positive control: the design or a known mechanism puts this difference there (a spiked standard, the gene a grouping names, a cis effect its variants predict)"), prior
    score, why = 1.0, []
    changes = [r for r in found if r.predicate in ("higher_in", "lower_in")]
    unit = shared_unit(genes) if len(genes) >= 2 else None
    if unit is not None and len(unit.members) * 2 >= len(genes):
        one_way = len({r.predicate for r in changes}) <= 1
        score += 2 if one_way else 1
        why.append(f"{len(unit.members)} of its {len(genes)} genes are co-annotated in '{unit.name}' ({unit.source})"
                   + (", and they move one way, as a unit would" if one_way and changes else "" if one_way else ", but they move in different directions"))
    elif pairs and shared / pairs >= 0.3:
        score += 1
        why.append(f"{shared}/{pairs} gene pairs share a curated gene set")
    elif len(genes) == 1 and changes and (co := _co_moving_partners(kg, changes[0], genes[0])):
        score += 1
        why.append(f"co-annotated in '{co[0]}' with {', '.join(co[1][:4])}, which move the same way in this contrast")
    if inter:
        score += 1
        why.append(f"{inter} BioPlex interaction(s) among its genes")
    if cis:
        score += 1
        why.append("a gene's own copy number / mutation / mRNA acting on its own product")
    if member:
        score += 0.5
        why.append("pathway membership from curated sets")
    if cross is True or len(layers) >= 2:
        score += 1
        why.append("seen in a second layer" if cross is True else f"evidence over {len(layers)} layers")
    elif cross is False:
        why.append("not corroborated in another layer")
    return MetricScore(score=_clip(score), reason=("; ".join(why) or "a statistical association without independent prior knowledge")[:480]), prior


def _novelty(h: Hypothesis, found: list[Relation], prior: dict) -> MetricScore:
    if h.kind == "positive control":
        return MetricScore(score=1, reason="a positive control restates the design or a known mechanism: low novelty by construction")
    score, why = 3.0, []
    if prior["cis"]:
        score -= 1
        why.append("a cis effect of a gene on its own product is expected")
    if prior["pairs"] and (prior["shared"] + prior["inter"]) / prior["pairs"] >= 0.5:
        score -= 1
        why.append("its genes are already linked by curated sets or interactions")
    elif prior["pairs"] and prior["shared"] + prior["inter"] == 0:
        score += 1
        why.append("no prior link between its genes")
    by_contrast: dict[str, dict[str, int]] = {}
    for r in found:
        if r.predicate in ("higher_in", "lower_in") and r.subject.type in ("phosphosite", "acetylsite", "protein"):
            by_contrast.setdefault(r.object.id, {})["protein" if r.subject.type == "protein" else "site"] = _sign(r)
    if any(d.get("site") and d.get("protein") is not None and d["protein"] != d["site"] for d in by_contrast.values()):
        score += 1
        why.append("a site change against its protein's")
    if len(prior["genes"]) <= 1 and len(found) <= 1 and not prior["cis"]:
        score -= 1
        why.append("a single-feature difference")
    return MetricScore(score=_clip(score), reason=("; ".join(why) or "relation of moderate prior expectation")[:480])


def _evaluability(h: Hypothesis) -> MetricScore:
    t = h.test.lower()
    checks = {
        "a measurable quantity": re.search(_QUANTITY, t),
        "a direction": re.search(_DIRECTION, t),
        "a cohort": re.search(_COHORT, t),
        "the hypothesis's entities": any((g := (entity_gene(e) or e.split(":", 1)[-1])) and g.lower() in t for e in h.entities),
    }
    have = [k for k, ok in checks.items() if ok]
    lack = [k for k, ok in checks.items() if not ok]
    return MetricScore(score=_clip(1 + len(have)), reason=(f"names {', '.join(have)}" if have else "names nothing testable")
                       + (f"; lacks {', '.join(lack)}" if lack else ""))


def judge_heuristically(kg: KnowledgeGraph, h: Hypothesis) -> Judgement:
    """Score ``h`` on the five metrics from its cited edges, its validation and shipped prior knowledge."""
    rels = [kg.relation(e) for e in h.evidence]
    found = [r for r in rels if r is not None]
    if not found:
        low = MetricScore(score=1, reason="none of the cited evidence edges exist in the knowledge graph")
        return Judgement(reliability=low, logical_coherence=low, biological_plausibility=low, novelty=low, evaluability=low)
    plausibility, prior = _plausibility(kg, h, found)
    return Judgement(
        reliability=_reliability(h, found),
        logical_coherence=_coherence(h, rels, found),
        biological_plausibility=plausibility,
        novelty=_novelty(h, found, prior),
        evaluability=_evaluability(h),
    )
