"""The offline default policy: an experienced analyst's autopilot, no model needed.

Plans come from :mod:`proteus.policy.playbooks` (bulk) or :mod:`proteus.policy.cytometry`
(cell-level studies); workflows are revised from results (no hits -> no hit-list enrichment,
rank-based enrichment instead; hits -> corroborate in a second layer); objectives are revised
from findings (drop what the data cannot support, add phosphosignalling or mutation follow-ups);
hypotheses are composed from knowledge-graph patterns (:mod:`proteus.policy.patterns`) and judged
by transparent rules (:mod:`proteus.policy.heuristic_judge`). Every artifact labels it
``heuristic``.
"""

from __future__ import annotations

from proteus.policy.base import Policy, ResearchView
from proteus.policy.decisions import (
    MAX_DRAFTS,
    HypothesisDrafts,
    Interpretation,
    Judgement,
    ObjectivePlan,
    ObjectiveSpec,
    ObjectiveUpdate,
    StepSpec,
    WorkflowPlan,
    WorkflowUpdate,
)
from proteus.policy.heuristic_judge import judge_heuristically
from proteus.policy.patterns import compose_hypotheses
from proteus.policy.result_tables import ResultTables
from proteus.policy.playbooks import Play, bulk_plays, followup_plays
from proteus.records import Hypothesis, Objective, Step
from proteus.stats.contrasts import TEST_FIELDS

__all__ = ["HeuristicPolicy"]

_HIT_TOOLS = {"enrichment_ora", "ppi_network"}


def _is_cell_study(view: ResearchView) -> bool:
    return any(m.level == "cell" for m in view.profile.modalities) and not any(
        m.level == "sample" for m in view.profile.modalities
    )


def _contrast_key(params: dict) -> tuple:
    return (params.get("modality"), params.get("group"), params.get("case"), params.get("control"))


class HeuristicPolicy(Policy):
    """Offline policy. Deterministic given the data and the seed."""

    name = "heuristic"
    judge_name = "heuristic"

    def _plays(self, view: ResearchView) -> list[Play]:
        plays: list[Play] = []
        if any(m.level == "cell" for m in view.profile.modalities):
            from proteus.policy import cytometry

            plays += [Play(o, cytometry.workflow(o, view.profile)) for o in cytometry.objectives(view.profile)]
        if not _is_cell_study(view):
            plays += bulk_plays(view.profile)
        return plays

    def _valid_steps(self, view: ResearchView, steps: list[StepSpec]) -> list[StepSpec]:
        ok = []
        for s in steps:
            err = view.check_step(s)
            if err is None:
                ok.append(s)
            else:
                view.trace({"kind": "plan_check", "policy": self.name, "tool": s.tool, "outcome": "rejected", "reason": err})
        return ok

    # --- decisions --------------------------------------------------------------------------
    def plan_objectives(self, view: ResearchView) -> ObjectivePlan:
        plays = [p for p in self._plays(view) if self._valid_steps(view, p.steps)]
        if not plays:
            plays = [
                Play(
                    ObjectiveSpec(
                        title="Describe the data",
                        question="What does the data hold, and how complete is it?",
                        family="qc",
                        rationale="no comparison is supported by the data profile",
                    )
                )
            ]
        return ObjectivePlan(objectives=[p.objective for p in plays[: view.max_objectives]])

    def plan_workflow(self, view: ResearchView, objective: Objective) -> WorkflowPlan:
        for p in self._plays(view) + followup_plays(view.profile, view.kg):
            if p.objective.title == objective.title:
                steps = self._valid_steps(view, p.steps)[: view.max_steps_per_workflow]
                if steps:
                    return WorkflowPlan(steps=steps)
        fallback = [StepSpec(tool="missingness_report", params={"modality": m.name}, rationale="describe completeness") for m in view.profile.modalities if m.level == "sample"][:1]
        steps = self._valid_steps(view, fallback)
        return WorkflowPlan(steps=steps or [StepSpec(tool="missingness_report", params={}, rationale="describe the data")])

    def interpret(self, view: ResearchView, objective: Objective, step: Step) -> Interpretation:
        if step.status != "done":
            return Interpretation(summary=f"{step.tool} did not run: {step.summary}")
        m = step.metrics
        parts = [step.summary]
        if "n_significant" in m and "n_tested" in m:
            parts.append(f"{m['n_significant']} of {m['n_tested']} tests significant.")
        return Interpretation(summary=" ".join(p for p in parts if p)[:1200])

    def update_workflow(self, view: ResearchView, objective: Objective, done: list[Step], remaining: list[StepSpec]) -> WorkflowUpdate:
        last = done[-1] if done else None
        if last is None:
            return WorkflowUpdate(steps=remaining, reason="nothing ran yet")
        steps = list(remaining)
        reason = "plan unchanged"
        if last.tool in ("differential_abundance", "mutation_association") and last.status == "done":
            n_sig = int(last.metrics.get("n_significant", 0) or 0)
            key = _contrast_key(last.params)
            if n_sig == 0:
                dropped = [s for s in steps if s.tool in _HIT_TOOLS and _contrast_key(s.params) == key]
                steps = [s for s in steps if s not in dropped]
                if dropped and not any(s.tool == "enrichment_gsea" and _contrast_key(s.params) == key for s in steps):
                    # a differential step's full test parameters, so the ranking is that step's table
                    fields = TEST_FIELDS if last.tool == "differential_abundance" else ("modality", "group", "case", "control", "covariates")
                    test = {k: v for k, v in last.params.items() if k in fields}
                    steps.insert(0, StepSpec(tool="enrichment_gsea", params=test | {"library": "reactome"}, rationale="no single feature passed FDR; rank-based enrichment can still find coordinated shifts"))
                reason = f"no significant features in {last.params.get('modality')}: dropped {len(dropped)} hit-list step(s), rank-based enrichment instead"
            elif n_sig < 5:
                dropped = [s for s in steps if s.tool == "ppi_network" and _contrast_key(s.params) == key]
                steps = [s for s in steps if s not in dropped]
                reason = f"only {n_sig} hits: too few for a network" if dropped else reason
        elif last.status == "failed":
            reason = f"{last.tool} failed ({last.summary[:120]}); continuing with the rest"
        return WorkflowUpdate(steps=self._valid_steps(view, steps)[:6], reason=reason)

    def update_objectives(self, view: ResearchView, done: list[Objective], remaining: list[Objective]) -> ObjectiveUpdate:
        drop, add = [], []
        titles = {o.title for o in done} | {o.title for o in remaining}
        for p in followup_plays(view.profile, view.kg):
            if p.objective.title not in titles and self._valid_steps(view, p.steps) and len(add) < 2:
                add.append(p.objective)
        for o in remaining:
            if o.family == "survival" and not view.profile.survival:
                drop.append(o.id)
        return ObjectiveUpdate(drop=drop, add=add, reason=("follow-up: " + "; ".join(a.title for a in add)) if add else "no change")

    def propose_hypotheses(self, view: ResearchView) -> HypothesisDrafts:
        tables = ResultTables.of_view(view)
        drafts = compose_hypotheses(view.kg, tables=tables, sample_type=view.profile.sample_type_column)
        if any(m.level == "cell" for m in view.profile.modalities):
            from proteus.policy import cytometry

            drafts = cytometry.hypotheses(view.kg, tables=tables) + drafts
        return HypothesisDrafts(hypotheses=drafts[:MAX_DRAFTS])

    def judge(self, view: ResearchView, hypothesis: Hypothesis) -> Judgement:
        return judge_heuristically(view.kg, hypothesis)
