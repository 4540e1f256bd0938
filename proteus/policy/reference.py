"""The offline policy with its decisions recorded as a model would have seen them.

:class:`ReferencePolicy` decides exactly as :class:`~proteus.policy.heuristic.HeuristicPolicy`
(its ``fallback``), but also renders every decision's prompt with the model path's own
renderer (:func:`~proteus.policy.llm.render_decision`), so an offline run's ``trace.jsonl``
holds one ``kind: "reference_decision"`` event per decision: the messages, the decision's
per-call JSON schema (the run's names as enums), the names a valid answer may use (``allowed``: tools with their parameter schemas,
objective families and ids, knowledge-graph edge ids) and the heuristic answer. These become
prompts and reference answers for tuning a local model (:mod:`proteus.rl_export`,
:mod:`proteus.train`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from pydantic import BaseModel

from proteus.llm.base import Budget, inline_refs
from proteus.policy.base import Policy, ResearchView
from proteus.policy.decisions import MAX_DRAFTS, call_key
from proteus.policy.llm import DEFAULT_CONTEXT, LLMPolicy, PromptDoesNotFit, families, render_decision
from proteus.records import Step
from proteus.rundir import redact

__all__ = ["ReferencePolicy", "allowed_names"]

_STEP_DECISIONS = ("plan_workflow", "update_workflow")
_OBJECTIVE_DECISIONS = ("plan_objectives", "update_objectives")


class _NoModel:
    """Stands where LLMPolicy expects a chat backend; never asked (``_decide`` is replaced)."""

    spec = "none"
    seed = 0

    def __init__(self) -> None:
        self.budget = Budget()


def allowed_names(view: ResearchView, decision: str, families: list[str], done: Sequence[Step] = ()) -> dict[str, Any]:
    """The names a valid answer to ``decision`` may use, as seen in ``view`` (the per-call
    schema enumerates them too; these give a reward partial credit name by name); for a workflow
    update also the steps already ``done`` (``ran``: their :func:`~proteus.policy.decisions.call_key`,
    which the model path drops from an answer as repeats)."""
    if decision in _STEP_DECISIONS:
        names = {"tools": {t.name: inline_refs(t.schema()) for t in view.tools}, "max_steps": view.max_steps_per_workflow}
        if decision == "update_workflow":
            names["ran"] = sorted({call_key(s.tool, s.params) for s in done})
        return names
    if decision in _OBJECTIVE_DECISIONS:
        return {"families": families, "objectives": [o.id for o in view.objectives if o.status == "pending"]}
    if decision == "propose_hypotheses":
        return {"evidence": sorted(view.kg.relations)}
    return {}


class ReferencePolicy(LLMPolicy):
    """Heuristic decisions, each traced with the prompt and per-call schema of the model path.

    Parameters
    ----------
    fallback
        The policy that decides (default :class:`~proteus.policy.heuristic.HeuristicPolicy`).
    context_tokens
        Context of the model the prompts are rendered for (:func:`~proteus.policy.llm.render_decision`).
    """

    def __init__(self, fallback: Policy | None = None, *, context_tokens: int = DEFAULT_CONTEXT) -> None:
        # the heuristic policy's own cap: recording must not change what it proposes
        super().__init__(_NoModel(), fallback=fallback, context_tokens=context_tokens, max_hypotheses=MAX_DRAFTS)  # type: ignore[arg-type]
        self.name = self.fallback.name
        self.judge_name = self.fallback.judge_name

    def _decide(
        self,
        view: ResearchView,
        decision: str,
        args: tuple[Any, ...],
        check: Callable[[Any], str | None],
        fallback: Callable[[], BaseModel],
        *,
        backend: Any = None,
        context: dict[str, Any] | None = None,
        repair: Callable[[Any], Any | None] | None = None,  # LLMPolicy's answer repair; the reference answer needs none
    ) -> Any:
        value = fallback()
        with self._lock:
            self._n += 1
            decision_id = f"{decision}-{self._n:04d}"
        event: dict[str, Any] = {"kind": "reference_decision", "decision": decision, "decision_id": decision_id, "policy": self.name, **(context or {})}
        try:
            prompt = render_decision(decision, view, *args, context_tokens=self.context_tokens, max_hypotheses=self.max_hypotheses)
        except PromptDoesNotFit as e:  # recorded as such; the offline run goes on
            view.trace({**event, "reason": str(e)})
            return value
        view.trace(
            {
                **event,
                "messages": [{"role": m["role"], "content": redact(m["content"])} for m in prompt.messages],
                "schema": prompt.schema,
                "max_tokens": prompt.max_tokens,
                "allowed": allowed_names(view, decision, families(view), args[1] if decision == "update_workflow" else ()),
                "value": value.model_dump(mode="json"),
                "check": check(value),
            }
        )
        return value

    def usage(self) -> dict[str, Any]:
        return self.fallback.usage()
