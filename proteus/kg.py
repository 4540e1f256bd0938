"""The knowledge graph: biological entities, the relations tools found, and the research process.

A :class:`networkx.MultiDiGraph`. Entity nodes are keyed ``"{type}:{label}"``; research-process
nodes (objective, workflow, step, hypothesis) by their ids. Every edge has an ``id`` and a
``predicate``; relation edges also carry ``stats``, ``modality`` and ``provenance``. Saved as
networkx node-link JSON (``kg.json``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable

import networkx as nx

from proteus.records import Hypothesis, Objective, Relation, Step
from proteus.profile import quote

__all__ = ["KnowledgeGraph", "relation_line"]


RELATION_COLUMNS = "edge id | subject | predicate | object | effect | q | n"
"""Columns of :func:`relation_line` (prompts name them)."""


def relation_line(r: Relation) -> str:
    """One relation as a prompt line (:data:`RELATION_COLUMNS`): names quoted as data, ``n`` with the
    samples observed per group, ``48 (observed in 9/35 "no", 0/13 "yes")`` (:meth:`Stats.count_text`)."""
    s = r.stats
    eff = f"{s.effect:.3g}" if s.effect is not None else "-"
    q = f"{s.q:.2g}" if s.q is not None else "-"
    n = s.count_text(quote).removeprefix("n=") or "-"
    return f"{r.id} | {quote(r.subject.id)} | {r.predicate} | {quote(r.object.id)} | {eff} | {q} | {n}"


class KnowledgeGraph:
    """Entity-relation graph plus research-process nodes."""

    def __init__(self) -> None:
        self.g = nx.MultiDiGraph()
        self._relations: dict[str, Relation] = {}

    # --- building ---------------------------------------------------------------------------
    def add_relation(self, r: Relation) -> None:
        if r.id in self._relations:
            return
        self._relations[r.id] = r
        for e in (r.subject, r.object):
            if e.id not in self.g:
                self.g.add_node(e.id, id=e.id, type=e.type, label=e.label)
        self.g.add_edge(
            r.subject.id,
            r.object.id,
            key=r.id,
            id=r.id,
            predicate=r.predicate,
            subject=r.subject.model_dump(),
            object=r.object.model_dump(),
            stats=r.stats.model_dump(),
            modality=r.modality,
            provenance=r.provenance.model_dump(mode="json"),
        )
        if r.provenance.step and r.provenance.step in self.g:
            self._process_edge(r.provenance.step, r.id, "produced", relation=r.id)

    def add_relations(self, rels: Iterable[Relation]) -> None:
        for r in rels:
            self.add_relation(r)

    def _process_edge(self, u: str, v: str, predicate: str, **attrs: Any) -> None:
        eid = f"p_{u}_{predicate}_{v}"
        if not self.g.has_edge(u, v, key=eid) and v in self.g:
            self.g.add_edge(u, v, key=eid, id=eid, predicate=predicate, **attrs)

    def add_objective(self, o: Objective) -> None:
        self.g.add_node(o.id, id=o.id, type="objective", label=o.title, question=o.question, family=o.family, status=o.status)

    def add_workflow(self, workflow_id: str, objective_id: str, title: str) -> None:
        self.g.add_node(workflow_id, id=workflow_id, type="workflow", label=title)
        if objective_id in self.g:
            self._process_edge(objective_id, workflow_id, "has_workflow")

    def add_step(self, s: Step, workflow_id: str) -> None:
        self.g.add_node(s.id, id=s.id, type="step", label=s.tool, params=s.params, status=s.status, summary=s.summary, tables=s.tables)
        self._process_edge(workflow_id, s.id, "has_step")
        for rid in s.relation_ids:
            r = self._relations.get(rid)
            if r is not None:
                self._process_edge(s.id, r.subject.id, "produced", relation=rid)

    def add_hypothesis(self, h: Hypothesis) -> None:
        self.g.add_node(h.id, id=h.id, type="hypothesis", label=h.statement)
        for rid in h.evidence:
            r = self._relations.get(rid)
            if r is not None:
                self._process_edge(h.id, r.subject.id, "supported_by", relation=rid)
                self._process_edge(h.id, r.object.id, "supported_by", relation=rid)

    # --- reading ----------------------------------------------------------------------------
    @property
    def relations(self) -> dict[str, Relation]:
        return self._relations

    def relation(self, rid: str) -> Relation | None:
        return self._relations.get(rid)

    def by_predicate(self, predicate: str) -> list[Relation]:
        return [r for r in self._relations.values() if r.predicate == predicate]

    def about(self, entity_id: str) -> list[Relation]:
        return [r for r in self._relations.values() if entity_id in (r.subject.id, r.object.id)]

    def by_label(self) -> dict[str, list[Relation]]:
        """Relations indexed by the subject label (e.g. gene symbol across protein/gene/site)."""
        idx: dict[str, list[Relation]] = defaultdict(list)
        for r in self._relations.values():
            idx[r.subject.label].append(r)
        return idx

    def summary(self, max_items: int = 40, max_chars: int = 6000) -> str:
        """Bounded text summary for prompts: counts by predicate and the strongest relations."""
        rels = list(self._relations.values())
        if not rels:
            return "Knowledge graph is empty."
        counts = Counter(r.predicate for r in rels)
        lines = [f"{len(rels)} relations, {self.g.number_of_nodes()} nodes. By predicate: " + ", ".join(f"{k} {v}" for k, v in counts.most_common())]

        def strength(r: Relation) -> float:
            return r.stats.q_else_p()

        lines.append(f"Strongest relations ({RELATION_COLUMNS}):")
        lines += [relation_line(r) for r in sorted(rels, key=strength)[:max_items]]
        text = "\n".join(lines)
        return text if len(text) <= max_chars else text[: max_chars - 20] + "\n[... truncated]"

    # --- persistence ------------------------------------------------------------------------
    def to_node_link(self) -> dict[str, Any]:
        return nx.node_link_data(self.g, edges="edges")

    @classmethod
    def from_node_link(cls, data: dict[str, Any]) -> KnowledgeGraph:
        kg = cls()
        kg.g = nx.node_link_graph(data, directed=True, multigraph=True, edges="edges")
        for _, _, d in kg.g.edges(data=True):
            if "stats" in d and "provenance" in d:
                r = Relation(
                    id=d["id"],
                    subject=d["subject"],
                    predicate=d["predicate"],
                    object=d["object"],
                    stats=d["stats"],
                    modality=d.get("modality"),
                    provenance=d["provenance"],
                )
                kg._relations[r.id] = r
        return kg
