"""Typed decisions: what every decision node of the research graph asks a policy for.

The same pydantic models are the structured-output schemas an LLM must fill and the return types
of the offline :class:`~proteus.policy.heuristic.HeuristicPolicy`, so both policies drive the same
graph. Every model forbids extra keys so a model's answer is validated strictly.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic.json_schema import SkipJsonSchema

from proteus.records import HypothesisKind, KeyEdge

__all__ = [
    "call_key",
    "ObjectiveSpec",
    "ObjectivePlan",
    "StepSpec",
    "WorkflowPlan",
    "Interpretation",
    "WorkflowUpdate",
    "ObjectiveUpdate",
    "HypothesisDraft",
    "HypothesisDrafts",
    "MetricScore",
    "Judgement",
    "MAX_DRAFTS",
    "MAX_HYPOTHESES",
    "MAX_COMPOSITION_CONFOUNDED",
]

MAX_DRAFTS = 50
"""Drafts one ``propose_hypotheses`` decision may return: a pool larger than :data:`MAX_HYPOTHESES`, so the
slots that folding duplicate events (one feature, one copy-number segment, one theme or programme) and
rejecting drafts free go to the next-ranked drafts."""
MAX_HYPOTHESES = 30
"""Hypotheses a run states: the first this many drafts left after the claim checks, folding and rejections."""
MAX_COMPOSITION_CONFOUNDED = 3
"""Composition-confounded hypotheses (:func:`proteus.ranking.composition_confounded`) a run states in their drafts'
turn; further ones fill only the slots no other draft is left for. A tissue comparison without a composition score
yields many true differences that say little beyond the tissues' cell make-up (UCEC: 8 of 30 hypotheses from
tumour vs adjacent normal, read at 2-3 of 5 for logical coherence), which would otherwise crowd out other contrasts."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _decided_by: str | None = PrivateAttr(None)

    @property
    def decided_by(self) -> str | None:
        """Who made this decision: ``model``, ``repaired`` (the model, after its error was sent
        back), ``fallback`` (the offline policy, after the model failed), or ``None`` (an offline
        policy's own decision). Not part of the schema or the dump."""
        return self._decided_by

    def __eq__(self, other: object) -> bool:  # the same decision whoever made it
        return type(self) is type(other) and self.__dict__ == other.__dict__  # type: ignore[union-attr]

    __hash__ = None  # type: ignore[assignment]


class ObjectiveSpec(_Strict):
    title: str = Field(description="short title of the research objective", max_length=200)
    question: str = Field(description="the scientific question, answerable with the registered tools", max_length=600)
    family: str = Field(description="main analysis family: differential, correlation, cross_omics, survival, mutation, enrichment, subtypes, network, cytometry, qc")
    rationale: str = Field(description="why this objective fits the data profile", max_length=600)


class ObjectivePlan(_Strict):
    objectives: list[ObjectiveSpec] = Field(description="research objectives, most important first", min_length=1, max_length=12)


def call_key(tool: str, params: dict[str, Any]) -> str:
    """A step's tool and parameters as one string, unset parameters left out: equal keys run the same analysis."""
    return tool + json.dumps({k: v for k, v in params.items() if v is not None}, sort_keys=True, default=str)


class StepSpec(_Strict):
    tool: str = Field(description="name of a registered tool")
    params: dict[str, Any] = Field(description="parameters for the tool, matching its schema")
    rationale: str = Field("", description="why this step", max_length=400)


class WorkflowPlan(_Strict):
    steps: list[StepSpec] = Field(description="ordered analysis steps for the objective", min_length=1, max_length=8)


class Interpretation(_Strict):
    summary: str = Field(description="what the result means biologically, citing numbers", max_length=1200)


class WorkflowUpdate(_Strict):
    steps: list[StepSpec] = Field(description="the revised remaining steps (may be empty)", max_length=6)
    reason: str = Field("", description="why the plan changed (or not)", max_length=400)


class ObjectiveUpdate(_Strict):
    drop: list[str] = Field(default_factory=list, description="ids of remaining objectives to drop")
    add: list[ObjectiveSpec] = Field(default_factory=list, description="new objectives suggested by the findings", max_length=3)
    reason: str = Field("", description="why", max_length=400)


class HypothesisDraft(_Strict):
    statement: str = Field(description="one falsifiable sentence", max_length=500)
    rationale: str = Field(description="how the evidence supports it", max_length=1200)
    evidence: list[str] = Field(description="knowledge-graph edge ids that support it", min_length=1, max_length=12)
    entities: list[str] = Field(description="entity ids involved (type:label)", max_length=20)
    test: str = Field(description="a concrete experiment or analysis that would test it", max_length=600)
    kind: HypothesisKind = Field("discovery", description="'positive control' when it restates the design (a spiked standard, the gene a grouping names)")
    key_edges: SkipJsonSchema[list[KeyEdge]] = Field(default_factory=list, description="the evidence the claim rests on, set by the drafting "
                                                     "pattern for the kind of claim it writes (not part of a model's schema)")
    mechanism: SkipJsonSchema[str] = Field("", description="the clause of ``statement`` (verbatim) that reads the observation as regulation within cells (', consistent "
                                           "with a change in its transcription'), set by the drafting pattern: where the claim is composition-confounded "
                                           "it is replaced by what the design allows (proteus.policy.claims.stated_with_design)")


class HypothesisDrafts(_Strict):
    hypotheses: list[HypothesisDraft] = Field(max_length=MAX_DRAFTS)


class MetricScore(_Strict):
    score: int = Field(ge=1, le=5)
    reason: str = Field(max_length=500)


class Judgement(_Strict):
    reliability: MetricScore
    logical_coherence: MetricScore
    biological_plausibility: MetricScore
    novelty: MetricScore
    evaluability: MetricScore
