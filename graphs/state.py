"""Typed state of the research graph and the run-scoped context its nodes receive.

State holds only small JSON-serialisable records (checkpointed after every node); large things
live elsewhere: the study's matrices, the policy and the run directory in :class:`RunContext`
(LangGraph's runtime context, never checkpointed), tool tables and relations in the run directory,
which the state cites by path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypedDict

from proteus.kg import KnowledgeGraph
from proteus.policy.base import Policy
from proteus.profile import DataProfile
from proteus.rundir import RunDir
from proteus.study import Study

__all__ = ["ResearchState", "RunContext"]


class ResearchState(TypedDict, total=False):
    """Checkpointed state.

    objectives: every objective (dicts of :class:`~proteus.records.Objective`), in order.
    current: index of the objective being worked on.
    workflow: the workflow in progress: ``{"id", "objective", "title", "steps": [Step dicts], "planned": [StepSpec dicts]}``.
    workflows: finished workflows.
    relations: run-directory paths of the JSON-lines files holding each step's relations (Relation
    dicts), in the order found; written before the checkpoint that cites them.

    No reducers: every node returns whole values, so a compiled subgraph used as a node hands
    back its state without double-appending (a reducer would add the parent's list twice).
    hypotheses: final hypotheses (Hypothesis dicts).
    hypotheses_rejected: drafts the claim checks kept out of the graph (statement, rule, reason).
    """

    objectives: list[dict[str, Any]]
    current: int
    workflow: dict[str, Any] | None
    workflows: list[dict[str, Any]]
    relations: list[dict[str, Any]]
    hypotheses: list[dict[str, Any]]
    hypotheses_rejected: list[dict[str, Any]]


@dataclass
class RunContext:
    """Run-scoped dependencies (LangGraph runtime context)."""

    study: Study
    profile: DataProfile
    policy: Policy
    rundir: RunDir
    seed: int = 0
    max_objectives: int = 8
    max_steps_per_workflow: int = 8
    quality: dict[str, Any] | None = None
    """The run's sample-quality record (:func:`proteus.quality.study_quality`; ``qc.json``)."""
    retests: dict[Any, Any] = field(default_factory=dict)
    """Leave-outlier-out tables of the run's contrasts (:mod:`proteus.quality`), kept between the hypotheses and ``qc.json``."""
    progress: Callable[[str], None] = lambda msg: None
    _kg_cache: dict[str, Any] = field(default_factory=dict)
    _relation_files: dict[str, list[Any]] = field(default_factory=dict)

    def relations(self, state: ResearchState) -> list[Any]:
        """Every :class:`~proteus.records.Relation` the state cites, read from the run directory once per file."""
        from proteus.records import Relation

        out = []
        for ref in state.get("relations", []) or []:
            if ref not in self._relation_files:
                path = self.rundir.path / ref
                if not path.is_file():
                    msg = f"{path} is missing: the checkpoint cites relations the run directory no longer holds"
                    raise FileNotFoundError(msg)
                self._relation_files[ref] = [Relation.model_validate(r) for r in self.rundir.read_jsonl(ref)]
            out.extend(self._relation_files[ref])
        return out

    def kg(self, state: ResearchState) -> KnowledgeGraph:
        """Knowledge graph rebuilt from the checkpointed state (cached by content size)."""
        from proteus.records import Hypothesis, Objective, Step

        rels = state.get("relations", []) or []
        key = (len(rels), len(state.get("objectives", []) or []), len(state.get("workflows", []) or []), len(state.get("hypotheses", []) or []))
        if self._kg_cache.get("key") == key:
            return self._kg_cache["kg"]
        kg = KnowledgeGraph()
        kg.add_relations(self.relations(state))
        for o in state.get("objectives", []) or []:
            kg.add_objective(Objective.model_validate(o))
        wfs = list(state.get("workflows", []) or [])
        if state.get("workflow"):
            wfs.append(state["workflow"])
        for wf in wfs:
            kg.add_workflow(wf["id"], wf["objective"], wf["title"])
            for s in wf["steps"]:
                kg.add_step(Step.model_validate(s), wf["id"])
        for h in state.get("hypotheses", []) or []:
            kg.add_hypothesis(Hypothesis.model_validate(h))
        self._kg_cache = {"key": key, "kg": kg}
        return kg
