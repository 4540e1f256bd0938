"""The policy interface: every decision node of the research graph asks a :class:`Policy`.

A policy sees a :class:`ResearchView` (the data profile, the knowledge graph, the applicable
tools, the objectives so far) — never raw matrices — and returns the typed decisions of
:mod:`proteus.policy.decisions`. Two policies implement it: the offline
:class:`~proteus.policy.heuristic.HeuristicPolicy` and :class:`~proteus.policy.llm.LLMPolicy`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import (
    HypothesisDrafts,
    Interpretation,
    Judgement,
    ObjectivePlan,
    ObjectiveUpdate,
    StepSpec,
    WorkflowPlan,
    WorkflowUpdate,
)
from proteus.profile import DataProfile
from proteus.records import Hypothesis, Objective, Step
from proteus.tools.registry import Tool

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ResearchView", "Policy"]


@dataclass
class ResearchView:
    """What a policy may look at when it decides.

    ``check_step`` validates a proposed step against the registry and the data and returns an
    error message (``None`` when valid); ``trace`` appends an event to ``trace.jsonl``;
    ``read_table`` reads a step's full result table by its run-relative path (``None`` when absent).
    """

    profile: DataProfile
    kg: KnowledgeGraph
    tools: list[Tool]
    objectives: list[Objective]
    check_step: Callable[[StepSpec], str | None]
    trace: Callable[[dict[str, Any]], None] = lambda event: None
    read_table: Callable[[str], pd.DataFrame | None] = lambda path: None
    seed: int = 0
    max_objectives: int = 8
    max_steps_per_workflow: int = 8

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)


class Policy(ABC):
    """Decides what the research graph does next. ``name`` labels every artifact."""

    name: str = "policy"
    judge_name: str = "judge"

    @abstractmethod
    def plan_objectives(self, view: ResearchView) -> ObjectivePlan: ...

    @abstractmethod
    def plan_workflow(self, view: ResearchView, objective: Objective) -> WorkflowPlan: ...

    @abstractmethod
    def interpret(self, view: ResearchView, objective: Objective, step: Step) -> Interpretation: ...

    @abstractmethod
    def update_workflow(
        self, view: ResearchView, objective: Objective, done: list[Step], remaining: list[StepSpec]
    ) -> WorkflowUpdate: ...

    @abstractmethod
    def update_objectives(
        self, view: ResearchView, done: list[Objective], remaining: list[Objective]
    ) -> ObjectiveUpdate: ...

    @abstractmethod
    def propose_hypotheses(self, view: ResearchView) -> HypothesisDrafts: ...

    @abstractmethod
    def judge(self, view: ResearchView, hypothesis: Hypothesis) -> Judgement: ...

    def usage(self) -> dict[str, Any]:
        """Token/cost totals (zero for policies that use no model)."""
        return {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
