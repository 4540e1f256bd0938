"""Core records shared by tools, policies, the knowledge graph and the run directory.

A tool returns a :class:`ToolResult` (tables, figures, relations). A :class:`Relation` is one
knowledge-graph edge between two typed :class:`Entity` objects, with statistics and provenance.
The research process itself (objectives, workflows, steps, hypotheses) is recorded with the
models below and also lands in the knowledge graph.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ENTITY_TYPES",
    "METRICS",
    "Entity",
    "Stats",
    "Provenance",
    "Relation",
    "KeyEdge",
    "ToolResult",
    "Objective",
    "Step",
    "Hypothesis",
    "Score",
    "stable_id",
    "PREDICATES",
    "MODALITY_ENTITY",
    "feature_entity",
    "contrast_entity",
]

EntityType = Literal[
    "protein",
    "gene",
    "phosphosite",
    "acetylsite",
    "mirna",
    "pathway",
    "clinical_variable",
    "sample_group",
    "mutation",
    "cell_population",
    "marker",
    "module",
    "feature",
]

ENTITY_TYPES: tuple[str, ...] = get_args(EntityType)
"""Biological entity types. Research-process node types are objective, workflow, step, hypothesis."""

METRICS = ("reliability", "logical_coherence", "biological_plausibility", "novelty", "evaluability")
"""The five judge metrics, each scored 1-5."""


PREDICATES = {
    "higher_in": "feature (or cell population) is higher in the case group of a contrast (object: sample_group)",
    "lower_in": "feature (or cell population) is lower in the case group of a contrast (object: sample_group)",
    "differs_across": "feature differs across the levels of a multi-level factor (F-test; object: clinical_variable; extra.top_level: where it is highest)",
    "correlates_with": "feature correlates with a clinical variable or another feature (direction positive/negative)",
    "concordant_with": "protein and its own mRNA correlate across samples (object: gene)",
    "cis_effect_on": "copy number or mutation of a gene changes its own RNA/protein (subject gene/mutation, object protein/gene)",
    "enriched_in": "pathway over-represented / enriched among features changed in a contrast or correlated with a variable",
    "associated_with_survival": "feature associated with hazard (effect: hazard ratio; direction positive = higher abundance, higher hazard)",
    "associated_with": "sample clusters or groups associated with a clinical variable",
    "marker_of": "feature marks a sample cluster or a cell population",
    "interacts_with": "protein-protein interaction (BioPlex) between two hits",
    "member_of": "feature belongs to a co-abundance module or network module",
}
"""Predicates used in the knowledge graph; tools use these names so hypotheses can compose them."""

MODALITY_ENTITY = {
    "proteomics": "protein",
    "phosphoproteomics": "phosphosite",
    "acetylproteomics": "acetylsite",
    "transcriptomics": "gene",
    "cna": "gene",
    "mirna": "mirna",
    "cytometry": "marker",
    "single_cell": "gene",
}
"""Entity type of a feature of each modality kind (unknown kinds map to ``feature``)."""


def feature_entity(modality_kind: str, label: str) -> "Entity":
    """Entity of a feature: proteins by gene symbol, sites as ``GENE-S123``, RNA/CNA as ``gene``."""
    return Entity(type=MODALITY_ENTITY.get(modality_kind, "feature"), label=str(label))


def contrast_entity(group: str, case: str, control: str | None = None) -> "Entity":
    """Sample-group entity of a contrast: ``"MSI_status: MSI-H vs MSS"`` (``vs rest`` without control)."""
    return Entity(type="sample_group", label=f"{group}: {case} vs {control if control is not None else 'rest'}")


def stable_id(prefix: str, *parts: Any, length: int = 10) -> str:
    """Deterministic short id: ``prefix`` + the first ``length`` hex digits of a SHA-1 of ``parts``."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return f"{prefix}{hashlib.sha1(text.encode()).hexdigest()[:length]}"


class Entity(BaseModel):
    """A typed biological entity; ``id`` is ``"{type}:{label}"`` so equal entities merge in the graph."""

    model_config = ConfigDict(frozen=True)

    type: EntityType
    label: str

    @property
    def id(self) -> str:
        return f"{self.type}:{self.label}"

    @classmethod
    def of(cls, type: str, label: Any) -> Entity:
        return cls(type=type, label=str(label))


class Stats(BaseModel):
    """Statistics of a relation. ``effect`` is the effect size in the unit named by ``effect_type``.

    ``n`` counts the samples the test was run on; ``observed`` says, per sample group of a group
    comparison, how many of them had a value: ``{"Tumor": (95, 100), "Normal": (40, 49)}`` (k of n;
    JSON lists in ``kg.json``). ``extra`` holds the tool's own numbers, among them ``feature_id`` (the
    tested feature: the subject is labelled by its gene when it is the gene's canonical feature, else
    by this id; :mod:`proteus.stats.features`), ``gene`` (where the label is not the gene),
    ``detection`` (a feature seen in one group only) and ``family_features`` (the features of a multiple-testing
    family fixed before the test and smaller than the layer, e.g. a mutated gene's named paralogs).
    """

    effect: float | None = None
    effect_type: str | None = Field(None, description="e.g. log2FC, spearman_rho, hazard_ratio, NES")
    p: float | None = None
    q: float | None = None
    n: int | None = Field(None, description="samples tested")
    observed: dict[str, tuple[int, int]] = Field(
        default_factory=dict, description="per sample group: (samples with a value, samples tested)")
    direction: Literal["up", "down", "positive", "negative", "none"] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    def q_else_p(self) -> float:
        """The relation's strength for ranking: q if known, else p, else 1 (no evidence)."""
        if self.q is not None:
            return self.q
        return self.p if self.p is not None else 1.0

    def count_text(self, group: Callable[[str], str] = str) -> str:
        """What was tested: ``"n=48 (observed in 9/35 no, 0/13 yes)"``; ``"n=48"`` without group counts.
        ``group`` writes a group's name (prompts quote it: a data value)."""
        if self.n is None:
            return ""
        seen = ", ".join(f"{k}/{n} {group(g)}" for g, (k, n) in self.observed.items())
        return f"n={self.n}" + (f" (observed in {seen})" if seen else "")


class Provenance(BaseModel):
    """Where a relation came from: the research-process node ids and the exact tool call."""

    objective: str | None = None
    workflow: str | None = None
    step: str | None = None
    tool: str
    params: dict[str, Any] = Field(default_factory=dict)


class Relation(BaseModel):
    """One knowledge-graph edge: ``subject --predicate--> object`` with statistics and provenance."""

    id: str = ""
    subject: Entity
    predicate: str
    object: Entity
    stats: Stats = Field(default_factory=Stats)
    modality: str | None = None
    provenance: Provenance

    def model_post_init(self, __context: Any) -> None:
        if not self.id:
            self.id = stable_id(
                "e_",
                self.subject.id,
                self.predicate,
                self.object.id,
                self.modality,
                self.provenance.tool,
                self.provenance.step,
                self.provenance.params,
            )


@dataclass
class ToolResult:
    """What a tool returns: a one-paragraph summary, named tables, figure files, KG relations.

    ``metrics`` holds small numbers a planner may read (n_tested, n_significant, n_skipped, ...).
    """

    summary: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


class Objective(BaseModel):
    """A top-level research objective."""

    id: str
    title: str
    question: str
    family: str = Field(description="analysis family, e.g. differential, correlation, survival")
    rationale: str = ""
    status: Literal["pending", "done", "failed", "dropped"] = "pending"
    findings: str = ""


class Step(BaseModel):
    """One planned or executed tool call within a workflow."""

    id: str
    tool: str
    params: dict[str, Any] = Field(default_factory=dict)
    rationale: str = ""
    status: Literal["pending", "done", "failed", "skipped"] = "pending"
    summary: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)
    tables: list[str] = Field(default_factory=list)
    figures: list[str] = Field(default_factory=list)
    relation_ids: list[str] = Field(default_factory=list)


class Score(BaseModel):
    score: int = Field(ge=1, le=5)
    reason: str


HypothesisKind = Literal["discovery", "positive control"]
"""What a hypothesis is for: a finding to pursue, or a check that the data show what the design put there."""


class KeyEdge(BaseModel):
    """An evidence edge a hypothesis's claim rests on, and the model that re-tests it (:mod:`proteus.validation`).

    ``model``: ``edge`` re-tests the edge as its tool tested it; ``carriers`` compares the edge's gene's own
    feature between its mutation carriers and non-carriers on the edge's samples (a ``mutation_group_enrichment``
    edge: the claim that a grouping's difference runs through the carriers); ``levels`` compares that feature between
    the edge's grouping levels on the same samples (the grouping's difference such a claim opens with, where the
    graph holds no difference edge of it: :func:`proteus.edge_data.levels_design`); ``adjusted`` refits the edge's
    test with the ``adjusted_for`` sample-table columns added (the claim that it holds adjusted for them);
    ``programme`` scores the gene set an ``enriched_in`` edge names per sample and tests the score between its
    contrast's levels (the claim that the programme moves: :func:`proteus.edge_data.programme_design`).
    """

    model_config = ConfigDict(extra="forbid")

    edge: str
    role: str = Field(description="what the claim says with it, e.g. 'carrier effect', 'adjusted for PMS2'")
    model: Literal["edge", "carriers", "levels", "adjusted", "programme"] = "edge"
    adjusted_for: list[str] = Field(default_factory=list)


class Hypothesis(BaseModel):
    """A hypothesis grounded in knowledge-graph evidence (edge ids)."""

    id: str
    statement: str
    rationale: str
    evidence: list[str]
    entities: list[str]
    test: str
    kind: HypothesisKind = Field("discovery", description="'positive control': restates the design (a spiked standard, the gene a grouping names); "
                                                       "reported as a QC result, ranked below discoveries")
    scores: dict[str, Score] = Field(default_factory=dict)
    judge: str = ""
    decided_by: dict[str, str] = Field(default_factory=dict, description="who drafted and who judged it (model, repaired or fallback); empty for an offline run")
    key_edges: list[KeyEdge] = Field(default_factory=list, description="the evidence its claim rests on, chosen by the kind of claim "
                                      "(a mediation's carrier effect, an adjusted refit); empty: the first testable edge")
    validation: dict[str, Any] | None = None
    rank: dict[str, Any] | None = Field(None, description="its place in the evidence ranking: position (1 = strongest) and the reason "
                                                       "(proteus.ranking.rank_hypotheses)")
    wording_checks: list[dict[str, str]] = Field(default_factory=list, description="what the claim checker changed before it entered the graph (rule, action, detail; proteus.policy.claim_check)")
    design_checks: list[dict[str, Any]] = Field(default_factory=list, description="confounder checks of each contrast its evidence compares: "
                                                "every other biological / covariate column tested, the decision and why (proteus.confounding); "
                                                "records with a 'kind' are sample-quality checks (proteus.quality: 'outlier runs', 'sample contamination')")
