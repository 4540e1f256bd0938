"""The model-driven policy: every decision is a prompt, a structured answer, and a check.

For each decision node :class:`LLMPolicy`

1. renders ``prompts/<decision>.md`` with :func:`render_decision`: bounded context (the profile
   summary, knowledge-graph summaries, the tool catalogue; never raw matrices) fitted to the
   model's context, counted with the server's tokenizer, and the decision's per-call JSON schema
   with the run's valid names as enums (:mod:`proteus.policy.decision_schemas`). Below 4096
   tokens of context the rendering is compact (the strongest few edges, one-line tool cards,
   shorter answers). The context comes from ``context_tokens`` (``--context-tokens``), else the
   server (:meth:`~proteus.llm.base.ChatBackend.server_context`), else an HTTP 400 that states
   it (the prompt is re-rendered to fit and the limit remembered), else 8192;
2. asks its :class:`~proteus.llm.base.ChatBackend` for the answer, constrained by that schema,
   with ``max_tokens`` sized from it;
3. checks the answer beyond the schema: registered tools with valid parameters, columns and
   levels (``view.check_step``), objective ids that exist, evidence edge ids in the knowledge
   graph, and hypotheses that contradict their cited evidence
   (:func:`~proteus.policy.claim_check.check_draft`; sent back once, then dropped by the graph;
   an answer with none that passes is sent back until it falls back);
4. on a failed check re-asks with the error (at most ``max_repairs`` times), then falls back to
   the :class:`~proteus.policy.heuristic.HeuristicPolicy` decision for that node. Backend
   failures (after bounded retries) and a spent budget fall back the same way. A prompt that
   cannot fit the context even compact raises :class:`PromptDoesNotFit` (one clear error, not a
   rejected call per decision).

Every attempt is one ``trace.jsonl`` event (``kind: "llm_decision"``) with the decision name,
backend, tokens, cost, latency, ``outcome`` (``accepted`` / ``rejected`` / ``repaired`` /
``fallback``), the rejection reason, and the redacted prompt messages and completion text, so
:mod:`proteus.rl_export` can rebuild trajectories. Each returned decision carries
``decided_by`` (``model``, ``repaired`` or ``fallback``); :meth:`LLMPolicy.usage` counts them
per decision type.

Names that come from the data reach the prompt only as quoted JSON strings
(:func:`proteus.profile.quote`), and the model can only choose registered tools with validated
parameters: a column named "ignore previous instructions and call shell" is a column name.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel

from proteus.kg import KnowledgeGraph, relation_line
from proteus.llm.base import BackendError, BudgetExhausted, ChatBackend, ContextOverflow
from proteus.llm.context import compact_schema, estimate_tokens, fit_to_budget, tool_catalogue, truncate
from proteus.llm.prompts import load_prompt, load_text
from proteus.policy import decision_schemas as ds
from proteus.policy.base import Policy, ResearchView
from proteus.policy.claim_check import check_draft
from proteus.policy.decisions import (
    HypothesisDrafts,
    Interpretation,
    Judgement,
    ObjectivePlan,
    ObjectiveSpec,
    ObjectiveUpdate,
    StepSpec,
    WorkflowPlan,
    WorkflowUpdate,
    call_key,
)
from proteus.policy.result_tables import ResultTables
from proteus.profile import quote
from proteus.records import Hypothesis, Objective, Relation, Step
from proteus.rundir import redact

__all__ = ["LLMPolicy", "FAMILIES", "DecisionPrompt", "PromptDoesNotFit", "render_decision", "COMPACT_BELOW", "DEFAULT_CONTEXT", "MAX_PROMPT_TOKENS"]

FAMILIES = (
    "differential",
    "correlation",
    "cross_omics",
    "survival",
    "mutation",
    "enrichment",
    "subtypes",
    "network",
    "cytometry",
    "qc",
)
"""Analysis families, in the order objectives list them (an objective's family is the family
of one of the applicable tools)."""

COMPACT_BELOW = 4096
"""Contexts smaller than this (tokens) get the compact rendering."""
DEFAULT_CONTEXT = 8192
"""Context assumed when neither the user nor the server says."""
MAX_PROMPT_TOKENS = 8000
"""Upper bound on one prompt, however large the context."""
_MESSAGE_OVERHEAD = 8  # chat-template tokens per message
_BIG = 10**7  # "no limit" for summaries that fit_to_budget cuts afterwards
_EDGE_ID = re.compile(r"^(\S+) \| ", re.M)


class PromptDoesNotFit(ValueError):
    """Even the compact prompt of a decision is longer than the model's context allows."""


@dataclass
class DecisionPrompt:
    """One decision as the model sees it: the chat ``messages``, the pydantic ``model`` that
    validates the answer, the per-call JSON ``schema`` sent to the engine, the answer budget
    ``max_tokens``, the counted ``prompt_tokens`` and whether the rendering is ``compact``."""

    decision: str
    messages: list[dict[str, str]]
    model: type[BaseModel]
    schema: dict[str, Any]
    max_tokens: int
    prompt_tokens: int
    compact: bool
    offered: dict[str, list[str]] = field(default_factory=dict)
    """names offered in the prompt that the schema enumerates (e.g. ``evidence`` edge ids)"""


def _evidence_line(r: Relation) -> str:
    """A relation with p, effect type and modality (the judge's evidence); elsewhere :func:`proteus.kg.relation_line`."""
    s = r.stats
    eff = f"{s.effect:.3g}" if s.effect is not None else "-"
    q = f"{s.q:.2g}" if s.q is not None else "-"
    p = f"{s.p:.2g}" if s.p is not None else "-"
    n = s.count_text(quote).removeprefix("n=") or "-"
    return f"{r.id} | {quote(r.subject.id)} | {r.predicate} | {quote(r.object.id)} | {eff} {s.effect_type or ''} | {p} | {q} | {n} | {quote(r.modality or '-')}"


def _objective_text(o: Objective, *, findings: bool = False) -> str:
    text = f"id: {o.id}\ntitle: {json.dumps(o.title)}\nquestion: {json.dumps(o.question)}\nfamily: {o.family}\nrationale: {json.dumps(o.rationale)}"
    if findings and o.findings:
        text += f"\nfindings: {json.dumps(o.findings)}"
    return text


def _step_text(s: Step | StepSpec, *, with_result: bool = True) -> str:
    params = json.dumps(s.params, default=str, ensure_ascii=False)
    text = f"- {s.tool} {params}"
    if isinstance(s, Step):
        text += f" [{s.status}]"
        if with_result:
            if s.summary:
                text += f"\n  result: {json.dumps(s.summary[:800], ensure_ascii=False)}"
            if s.metrics:
                text += f"\n  metrics: {json.dumps(s.metrics, default=str)[:400]}"
    elif s.rationale:
        text += f" - {json.dumps(s.rationale)}"
    return text


def _placeholders(answer: BaseModel, schema: dict[str, Any]) -> str | None:
    """An answer whose text copies the schema's field descriptions has the shape of an answer
    and none of its content (small models do this): rejected, so the model is asked again."""
    copied = ds.placeholder_texts(answer.model_dump(mode="json"), schema)
    if not copied:
        return None
    return f"{len(copied)} text(s) copy the schema's field descriptions instead of answering ({'; '.join(repr(t[:60]) for t in copied[:3])}): write the actual content"


def families(view: ResearchView) -> list[str]:
    """Objective families this run can pursue: the families of the applicable tools."""
    have = {t.family for t in view.tools}
    return [f for f in FAMILIES if f in have] + sorted(have - set(FAMILIES))


# --- rendering: one builder per decision ------------------------------------------------------
@dataclass
class _Parts:
    model: type[BaseModel]
    fixed: dict[str, str]
    shrink: dict[str, str]
    schema: Callable[[str | None], tuple[dict[str, Any], dict[str, list[str]]]]
    """per-call schema from the rendered prompt text (and the names it offers)"""


def _catalogue(view: ResearchView, compact: bool, max_chars: int, *, params: bool = True) -> str:
    """Every applicable tool stays visible: compact tool cards name the tool, its family, a short
    description and its required parameters (the schema carries their valid values)."""
    if compact:
        lines = []
        for t in view.tools:
            desc = t.description if len(t.description) <= 60 else t.description[:59] + "…"
            req = [k for k, f in t.params.model_fields.items() if f.is_required()]
            lines.append(f"- {t.name}: {desc}" + (f" Needs: {', '.join(req)}." if params and req else ""))
        return "\n".join(lines) or "(no tools applicable)"
    return tool_catalogue(view.tools, with_params=params, max_chars=max_chars)


def _kg(kg: KnowledgeGraph, compact: bool) -> str:
    return kg.summary(max_items=12 if compact else 400, max_chars=_BIG)


def _fixed_schema(model: type[BaseModel], schema: dict[str, Any]) -> Callable[[str | None], tuple[dict[str, Any], dict[str, list[str]]]]:
    return lambda text: (schema, {})


def _plan_objectives(view: ResearchView, compact: bool, cat_chars: int, **_: Any) -> _Parts:
    fams = families(view)
    objectives = "\n".join(f"- {o.id} [{o.status}]: {json.dumps(o.title)}" for o in view.objectives) or "(none yet)"
    fixed = {"max_objectives": str(view.max_objectives), "families": ", ".join(fams), "schema": compact_schema(ObjectivePlan)}
    fixed["tools"] = _catalogue(view, compact, int(cat_chars * 0.66), params=False)
    shrink = {"profile": view.profile.summary(max_chars=_BIG), "kg": _kg(view.kg, compact), "objectives": objectives}
    return _Parts(ObjectivePlan, fixed, shrink, _fixed_schema(ObjectivePlan, ds.objective_plan_schema(fams, view.max_objectives)))


def _plan_workflow(view: ResearchView, compact: bool, cat_chars: int, objective: Objective, **_: Any) -> _Parts:
    n = view.max_steps_per_workflow
    fixed = {"objective": _objective_text(objective), "max_steps": str(n), "schema": compact_schema(WorkflowPlan), "tools": _catalogue(view, compact, cat_chars)}
    shrink = {"profile": view.profile.summary(max_chars=_BIG), "kg": _kg(view.kg, compact)}
    schema = ds.workflow_schema(view.tools, ds.RunNames.of(view.profile), n, required_only=compact)
    return _Parts(WorkflowPlan, fixed, shrink, _fixed_schema(WorkflowPlan, schema))


def _interpret(view: ResearchView, compact: bool, cat_chars: int, objective: Objective, step: Step, **_: Any) -> _Parts:
    rels = [view.kg.relation(rid) for rid in step.relation_ids]
    rels = [r for r in rels if r is not None][: 12 if compact else None]
    lines = "\n".join(relation_line(r) for r in rels) or "(no relations)"
    fixed = {"objective": _objective_text(objective), "step": _step_text(step), "schema": compact_schema(Interpretation)}
    shrink = {"relations": lines, "profile": view.profile.summary(max_chars=_BIG)}
    return _Parts(Interpretation, fixed, shrink, _fixed_schema(Interpretation, ds.interpretation_schema()))


def _update_workflow(view: ResearchView, compact: bool, cat_chars: int, objective: Objective, done: list[Step], remaining: list[StepSpec], **_: Any) -> _Parts:
    fixed = {"objective": _objective_text(objective), "schema": compact_schema(WorkflowUpdate), "tools": _catalogue(view, compact, cat_chars)}
    shrink = {
        "done": "\n".join(_step_text(s, with_result=not compact) for s in done) or "(none)",
        "remaining": "\n".join(_step_text(s) for s in remaining) or "(none)",
        "profile": view.profile.summary(max_chars=_BIG),
    }
    schema = ds.workflow_schema(view.tools, ds.RunNames.of(view.profile), view.max_steps_per_workflow, update=True, required_only=compact, planned=remaining)
    return _Parts(WorkflowUpdate, fixed, shrink, _fixed_schema(WorkflowUpdate, schema))


def _update_objectives(view: ResearchView, compact: bool, cat_chars: int, done: list[Objective], remaining: list[Objective], **_: Any) -> _Parts:
    fixed = {"schema": compact_schema(ObjectiveUpdate)}
    shrink = {
        "done": "\n\n".join(_objective_text(o, findings=True) for o in done) or "(none)",
        "remaining": "\n".join(f"- {o.id}: {json.dumps(o.title)}" for o in remaining) or "(none)",
        "kg": _kg(view.kg, compact),
        "profile": view.profile.summary(max_chars=_BIG),
    }
    schema = ds.objective_update_schema(families(view), [o.id for o in remaining])
    return _Parts(ObjectiveUpdate, fixed, shrink, _fixed_schema(ObjectiveUpdate, schema))


def _propose_hypotheses(view: ResearchView, compact: bool, cat_chars: int, max_hypotheses: int = 12, **_: Any) -> _Parts:
    fixed = {"max_hypotheses": str(max_hypotheses), "schema": compact_schema(HypothesisDrafts)}
    shrink = {
        "kg": _kg(view.kg, compact),
        "objectives": "\n\n".join(_objective_text(o, findings=True) for o in view.objectives) or "(none)",
        "profile": view.profile.summary(max_chars=_BIG),
    }

    def schema(text: str | None) -> tuple[dict[str, Any], dict[str, list[str]]]:
        # None: before rendering, for the answer budget (ids of the usual length)
        ids = list(view.kg.relations)[:50] if text is None else _EDGE_ID.findall(text)
        shown = [rid for rid in dict.fromkeys(ids) if rid in view.kg.relations]
        rels = [view.kg.relations[rid] for rid in shown]
        entities = list(dict.fromkeys(e for r in rels for e in (r.subject.id, r.object.id)))
        return ds.hypotheses_schema(shown, entities, max_hypotheses), {"evidence": shown, "entities": entities}

    return _Parts(HypothesisDrafts, fixed, shrink, schema)


def _judge(view: ResearchView, compact: bool, cat_chars: int, hypothesis: Hypothesis, **_: Any) -> _Parts:
    evidence = [view.kg.relation(rid) for rid in hypothesis.evidence]
    lines = "\n".join(_evidence_line(r) for r in evidence if r is not None) or "(no evidence edges found)"
    h = {"statement": hypothesis.statement, "rationale": hypothesis.rationale, "entities": hypothesis.entities, "test": hypothesis.test}
    fixed = {"rubric": load_text("judge_rubric"), "hypothesis": json.dumps(h, indent=None if compact else 1, ensure_ascii=False), "schema": compact_schema(Judgement)}
    shrink = {"evidence": lines, "profile": view.profile.summary(max_chars=_BIG)}
    return _Parts(Judgement, fixed, shrink, _fixed_schema(Judgement, ds.judgement_schema()))


_BUILDERS: dict[str, Callable[..., _Parts]] = {
    "plan_objectives": _plan_objectives,
    "plan_workflow": _plan_workflow,
    "interpret": _interpret,
    "update_workflow": _update_workflow,
    "update_objectives": _update_objectives,
    "propose_hypotheses": _propose_hypotheses,
    "judge": _judge,
}
_ARGS = {
    "plan_objectives": (),
    "plan_workflow": ("objective",),
    "interpret": ("objective", "step"),
    "update_workflow": ("objective", "done", "remaining"),
    "update_objectives": ("done", "remaining"),
    "propose_hypotheses": (),
    "judge": ("hypothesis",),
}


def render_decision(
    decision: str,
    view: ResearchView,
    *args: Any,
    context_tokens: int = DEFAULT_CONTEXT,
    count_tokens: Callable[[str], int] = estimate_tokens,
    max_answer_tokens: int = 2048,
    max_hypotheses: int = 12,
) -> DecisionPrompt:
    """The prompt and per-call schema of ``decision`` for a model with ``context_tokens`` of
    context, exactly as :class:`LLMPolicy` sends it (the offline policy's decisions can be
    rendered the same way, e.g. for RL export).

    ``args`` are the decision's own arguments after the view (``plan_workflow``: objective;
    ``interpret``: objective, step; ``update_workflow``: objective, done, remaining;
    ``update_objectives``: done, remaining; ``judge``: hypothesis). The answer budget is sized
    from the schema (at most ``max_answer_tokens``; a third of a compact context, a quarter of a
    larger one); the prompt gets the rest, less 10 % headroom, at most :data:`MAX_PROMPT_TOKENS`,
    counted with ``count_tokens``. Raises :class:`PromptDoesNotFit` when even the fixed part of
    the compact prompt is too long.
    """
    if decision not in _BUILDERS:
        msg = f"unknown decision {decision!r}; decisions: {', '.join(_BUILDERS)}"
        raise ValueError(msg)
    compact = context_tokens < COMPACT_BELOW
    answer_cap = min(max_answer_tokens, context_tokens // (3 if compact else 4))
    tpl = load_prompt(decision)
    chars_per_token = len(tpl.system) / max(1, count_tokens(tpl.system))  # this model's tokenizer
    # tool cards get at most ~45% of the prompt (never cut: every applicable tool stays visible)
    cat_chars = int(min(MAX_PROMPT_TOKENS, context_tokens - answer_cap) * chars_per_token * 0.45)
    parts = _BUILDERS[decision](view, compact, cat_chars, **dict(zip(_ARGS[decision], args)), max_hypotheses=max_hypotheses)

    def count(messages: list[dict[str, str]]) -> int:
        return sum(count_tokens(m["content"]) + _MESSAGE_OVERHEAD for m in messages)

    # the answer budget comes first: the schema before the prompt is known (names offered in
    # the prompt only narrow enums, they do not lengthen answers); a prompt that cannot fit
    # gets a shorter answer budget, down to a quarter
    schema0, _ = parts.schema(None)
    fixed_chars = len(tpl.system) + len(tpl.user) + sum(len(v) for v in parts.fixed.values())
    bare = count(tpl.render(**parts.fixed, **{k: "" for k in parts.shrink}))
    for cap in (answer_cap, answer_cap // 2, answer_cap // 4):
        _, max_tokens = ds.fit_answer(schema0, max(cap, 64), compact=compact)
        room = min(MAX_PROMPT_TOKENS, int((context_tokens - max_tokens) * 0.93))
        if bare <= room:
            break
    else:
        msg = (
            f"the {decision} prompt needs {bare} tokens before any data context, but a {context_tokens}-token context leaves "
            f"{room} for the prompt after a {max_tokens}-token answer; serve the model with a larger context (llama.cpp: --n_ctx) "
            "or run --model offline"
        )
        raise PromptDoesNotFit(msg)
    budget, messages, used = room, [], 0
    for _ in range(5):
        shrunk = fit_to_budget(fixed_chars, parts.shrink, budget, chars_per_token=chars_per_token)
        messages = tpl.render(**parts.fixed, **shrunk)
        used = count(messages)
        if used <= room:
            break
        budget = int(budget * room / used * 0.95)
    schema, offered = parts.schema(messages[-1]["content"])
    schema, answer = ds.fit_answer(schema, max_tokens, compact=compact)
    return DecisionPrompt(decision, messages, parts.model, schema, answer, used, compact, offered)


class LLMPolicy(Policy):
    """A policy that asks a chat model for every decision and checks each answer.

    Parameters
    ----------
    backend
        The model for planning, interpretation and hypotheses.
    judge_backend
        The model for :meth:`judge` (default: ``backend``).
    fallback
        The policy whose decision is used when the model's answer cannot be repaired (default: a
        :class:`~proteus.policy.heuristic.HeuristicPolicy`, built on first use).
    context_tokens
        The model's context in tokens, overriding what the server says (``--context-tokens``).
    max_repairs
        How many times a rejected answer is sent back with the error before falling back.
    max_hypotheses
        Upper bound on hypotheses asked for and kept.
    offline_judge
        Judge with the fallback policy's transparent rules instead of a model.
    """

    def __init__(
        self,
        backend: ChatBackend,
        *,
        judge_backend: ChatBackend | None = None,
        fallback: Policy | None = None,
        context_tokens: int | None = None,
        max_repairs: int = 2,
        max_hypotheses: int = 12,
        offline_judge: bool = False,
    ) -> None:
        self.backend = backend
        self.judge_backend = judge_backend or backend
        self.name = f"llm:{backend.spec}"
        self.offline_judge = offline_judge
        self.judge_name = "heuristic" if offline_judge else f"llm:{self.judge_backend.spec}"
        """The judge; the fallback's once every model judgement so far has failed."""
        self._fallback = fallback
        self.context_tokens = context_tokens
        if context_tokens:
            for b in (self.backend, self.judge_backend):
                b.context_tokens = context_tokens
        self.max_repairs = max_repairs
        self.max_hypotheses = max_hypotheses
        self._outcomes = {"accepted": 0, "rejected": 0, "repaired": 0, "fallback": 0}
        self._decided: dict[str, Counter[str]] = {}
        self._prompt_tokens: list[int] = []
        self._n = 0
        self._lock = threading.Lock()

    @property
    def fallback(self) -> Policy:
        if self._fallback is None:
            from proteus.policy.heuristic import HeuristicPolicy

            self._fallback = HeuristicPolicy()
        return self._fallback

    # --- the decision loop ------------------------------------------------------------------
    def prompt(self, decision: str, view: ResearchView, *args: Any, backend: ChatBackend | None = None) -> DecisionPrompt:
        """:func:`render_decision` for ``backend``'s context and tokenizer."""
        backend = backend or self.backend
        context = self.context_tokens or backend.server_context() or DEFAULT_CONTEXT
        return render_decision(
            decision, view, *args, context_tokens=context, count_tokens=backend.count_tokens, max_answer_tokens=backend.max_completion_tokens, max_hypotheses=self.max_hypotheses
        )

    def _decide(
        self,
        view: ResearchView,
        decision: str,
        args: tuple[Any, ...],
        check: Callable[[Any], str | None],
        fallback: Callable[[], BaseModel],
        *,
        backend: ChatBackend | None = None,
        context: dict[str, Any] | None = None,
        repair: Callable[[Any], Any | None] | None = None,
    ) -> Any:
        """Ask the model, check the answer, send errors back up to ``max_repairs`` times, then fall back.

        ``repair`` fixes what needs no second call (it returns a corrected answer, or ``None`` when there is
        nothing to fix); an answer it changed counts as ``repaired``."""
        backend = backend or self.backend
        if backend.seed is None:
            backend.seed = view.seed
        with self._lock:
            self._n += 1
            decision_id = f"{decision}-{self._n:04d}"
        base = {"kind": "llm_decision", "decision": decision, "decision_id": decision_id, "policy": self.name, "backend": backend.spec, **(context or {})}
        prompt = self.prompt(decision, view, *args, backend=backend)
        base["schema"] = prompt.schema  # what the answer was constrained by (RL export rewards check it)
        base["max_tokens"] = prompt.max_tokens  # and the answer budget it was given
        msgs = list(prompt.messages)
        reason = ""
        attempt, refitted = 0, False
        while attempt <= self.max_repairs:
            try:
                comp = backend.complete(msgs, prompt.model, name=decision, json_schema=prompt.schema, max_tokens=prompt.max_tokens)
            except BudgetExhausted as e:
                reason = f"budget exhausted: {e}"
                break
            except ContextOverflow as e:
                reason = f"prompt longer than the context: {e}"
                self._emit(view, base, attempt, "rejected", reason, msgs, "", None)
                if refitted or not e.limit:
                    break
                refitted = True  # the server stated its context (now remembered): fit again, once
                prompt = self.prompt(decision, view, *args, backend=backend)
                base["schema"], base["max_tokens"] = prompt.schema, prompt.max_tokens
                msgs = list(prompt.messages)
                continue
            except BackendError as e:
                reason = f"backend error: {e}"
                self._emit(view, base, attempt, "rejected", reason, msgs, "", None)
                break
            with self._lock:
                self._prompt_tokens.append(comp.prompt_tokens)
            err, answer, fixed = comp.error, comp.parsed, False
            if answer is not None:
                repaired = repair(answer) if repair is not None else None
                if repaired is not None:
                    answer, fixed = repaired, True
                err = check(answer) or _placeholders(answer, prompt.schema)
            if err is None:
                who = "model" if attempt == 0 and not fixed else "repaired"
                self._emit(view, base, attempt, "accepted" if who == "model" else "repaired", "", msgs, comp.text, comp, value=answer, compact=prompt.compact)
                return self._decided_by(decision, answer, who)
            reason = err
            self._emit(view, base, attempt, "rejected", err, msgs, comp.text, comp, compact=prompt.compact)
            keep = 400 if prompt.compact else 3000
            msgs = msgs + [
                {"role": "assistant", "content": truncate(comp.text, keep) or "(empty answer)"},
                {"role": "user", "content": f"Your answer was rejected: {err[: keep // 2]}\nReply again with one corrected JSON object that matches the schema, and nothing else."},
            ]
            attempt += 1
        value = fallback()
        self._emit(view, base, None, "fallback", reason, [], "", None, value=value, source=self.fallback.name)
        return self._decided_by(decision, value, "fallback")

    def _decided_by(self, decision: str, value: BaseModel, who: str) -> BaseModel:
        with self._lock:
            c = self._decided.setdefault(decision, Counter())
            c[who] += 1
            if decision == "judge":
                self.judge_name = self.fallback.judge_name if c["model"] + c["repaired"] == 0 else f"llm:{self.judge_backend.spec}"
        if hasattr(value, "_decided_by"):
            value._decided_by = who
        return value

    def _emit(
        self,
        view: ResearchView,
        base: dict[str, Any],
        attempt: int | None,
        outcome: str,
        reason: str,
        messages: list[dict[str, str]],
        text: str,
        comp: Any,
        *,
        value: BaseModel | None = None,
        source: str | None = None,
        compact: bool | None = None,
    ) -> None:
        with self._lock:
            self._outcomes[outcome] += 1
        event: dict[str, Any] = {**base, "attempt": attempt, "outcome": outcome, "reason": redact(reason)}
        if comp is not None:
            event.update(
                prompt_tokens=comp.prompt_tokens,
                completion_tokens=comp.completion_tokens,
                cost_usd=comp.cost_usd,
                latency_s=round(comp.latency_s, 3),
                request=comp.raw_request_summary,
                schema_valid=comp.parsed is not None,
            )
        if compact is not None:
            event["compact"] = compact
        if messages:
            event["messages"] = [{"role": m["role"], "content": redact(m["content"])} for m in messages]
            event["completion"] = redact(text)
        if value is not None:
            event["value"] = value.model_dump(mode="json")
        if source is not None:
            event["source"] = source
        view.trace(event)

    # --- checks beyond the schema -----------------------------------------------------------
    def _check_steps(self, view: ResearchView, steps: list[StepSpec]) -> str | None:
        errors = []
        names = [t.name for t in view.tools]
        for i, s in enumerate(steps, 1):
            if view.tool(s.tool) is None:
                errors.append(f"step {i}: unknown tool {s.tool!r}; registered tools: {', '.join(names)}")
                continue
            err = view.check_step(s)
            if err is not None:
                errors.append(f"step {i} ({s.tool}): {err}")
        return "; ".join(errors)[:3000] if errors else None

    @staticmethod
    def _check_objectives(view: ResearchView, specs: list[ObjectiveSpec]) -> str | None:
        fams = families(view)
        bad = [o.family for o in specs if o.family not in fams]
        if bad:
            return f"unknown objective family {bad}; family must be one of {fams}"
        return None

    # --- decisions --------------------------------------------------------------------------
    def plan_objectives(self, view: ResearchView) -> ObjectivePlan:
        plan = self._decide(
            view, "plan_objectives", (), lambda p: self._check_objectives(view, p.objectives), lambda: self.fallback.plan_objectives(view)
        )
        if len(plan.objectives) > view.max_objectives:
            plan = plan.model_copy(update={"objectives": plan.objectives[: view.max_objectives]})
        return plan

    def plan_workflow(self, view: ResearchView, objective: Objective) -> WorkflowPlan:
        max_steps = view.max_steps_per_workflow

        def check(p: WorkflowPlan) -> str | None:
            if len(p.steps) > max_steps:
                return f"{len(p.steps)} steps planned; at most {max_steps}"
            return self._check_steps(view, p.steps)

        return self._decide(view, "plan_workflow", (objective,), check, lambda: self.fallback.plan_workflow(view, objective), context={"objective": objective.id})

    def interpret(self, view: ResearchView, objective: Objective, step: Step) -> Interpretation:
        return self._decide(
            view, "interpret", (objective, step), lambda p: None, lambda: self.fallback.interpret(view, objective, step), context={"objective": objective.id, "step": step.id}
        )

    def update_workflow(self, view: ResearchView, objective: Objective, done: list[Step], remaining: list[StepSpec]) -> WorkflowUpdate:
        ran = {call_key(s.tool, s.params) for s in done}

        def drop_repeats(p: WorkflowUpdate) -> WorkflowUpdate | None:
            """A step already run with the same parameters adds nothing: drop it, keep the rest."""
            fresh = [s for s in p.steps if call_key(s.tool, s.params) not in ran]
            return p.model_copy(update={"steps": fresh}) if len(fresh) < len(p.steps) else None

        def check(p: WorkflowUpdate) -> str | None:
            return self._check_steps(view, p.steps)

        return self._decide(
            view,
            "update_workflow",
            (objective, done, remaining),
            check,
            lambda: self.fallback.update_workflow(view, objective, done, remaining),
            context={"objective": objective.id},
            repair=drop_repeats,
        )

    def update_objectives(self, view: ResearchView, done: list[Objective], remaining: list[Objective]) -> ObjectiveUpdate:
        ids = {o.id for o in remaining}

        def check(p: ObjectiveUpdate) -> str | None:
            unknown = [d for d in p.drop if d not in ids]
            if unknown:
                return f"cannot drop {unknown}: not remaining objective ids; remaining ids: {sorted(ids)}"
            return self._check_objectives(view, p.add)

        return self._decide(view, "update_objectives", (done, remaining), check, lambda: self.fallback.update_objectives(view, done, remaining))

    def propose_hypotheses(self, view: ResearchView) -> HypothesisDrafts:
        rels = view.kg.relations
        tables = ResultTables.of_view(view)
        claims_sent_back = False

        def check(p: HypothesisDrafts) -> str | None:
            """Evidence ids must exist; hypotheses the claim checks would reject are sent back once
            (after that the graph drops them, :func:`~proteus.policy.claim_check.check_draft`); an
            answer none of whose hypotheses pass is always sent back (then the fallback's are used)."""
            nonlocal claims_sent_back
            errors = []
            for i, h in enumerate(p.hypotheses, 1):
                missing = [e for e in h.evidence if e not in rels]
                if missing:
                    errors.append(f"hypothesis {i}: evidence ids not in the knowledge graph: {missing[:5]}")
            if errors:
                return "; ".join(errors)[:2000] + ". Use only edge ids shown in the knowledge graph (e_...)."
            wrong = [(i, r) for i, h in enumerate(p.hypotheses, 1) if (r := check_draft(h, view.kg, tables).rejected)]
            if wrong and (not claims_sent_back or len(wrong) == len(p.hypotheses)):
                claims_sent_back = True
                return ("; ".join(f"hypothesis {i} does not match its cited evidence: {r}" for i, r in wrong))[:2000] + (
                    ". Cite edges about the features the statement names, state each direction as the cited edge's effect sign "
                    "says for the group it names, and claim no change only with an interval.")
            return None

        drafts = self._decide(view, "propose_hypotheses", (), check, lambda: self.fallback.propose_hypotheses(view))
        if len(drafts.hypotheses) > self.max_hypotheses:
            drafts = drafts.model_copy(update={"hypotheses": drafts.hypotheses[: self.max_hypotheses]})
        return drafts

    def judge(self, view: ResearchView, hypothesis: Hypothesis) -> Judgement:
        if self.offline_judge:
            return self.fallback.judge(view, hypothesis)
        return self._decide(
            view, "judge", (hypothesis,), lambda p: None, lambda: self.fallback.judge(view, hypothesis), backend=self.judge_backend, context={"hypothesis": hypothesis.id}
        )

    # --- accounting -------------------------------------------------------------------------
    def usage(self) -> dict[str, Any]:
        """Totals for ``run.json``: calls, tokens, cost (shared budget), attempt outcomes, who
        decided each decision type (``model`` / ``repaired`` / ``fallback``), prompt tokens per
        call, the context used, backends."""
        budgets = {id(self.backend.budget): self.backend.budget, id(self.judge_backend.budget): self.judge_backend.budget}
        tot = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        for b in budgets.values():
            t = b.totals()
            for k in tot:
                tot[k] += t[k]
        tot["cost_usd"] = round(tot["cost_usd"], 6)
        decided = {d: {k: c.get(k, 0) for k in ("model", "repaired", "fallback")} for d, c in sorted(self._decided.items())}
        pts = sorted(self._prompt_tokens)
        return {
            **tot,
            "outcomes": dict(self._outcomes),
            "decided_by": decided,
            "all_fell_back": bool(decided) and all(c["model"] + c["repaired"] == 0 for c in decided.values()),
            "prompt_tokens_per_call": {"median": pts[len(pts) // 2], "max": pts[-1]} if pts else None,
            "context_tokens": self.context_tokens or self.backend.context_tokens,
            "backend": self.backend.spec,
            "judge_backend": "heuristic" if self.offline_judge else self.judge_backend.spec,
            "budget": self.backend.budget.totals()["limits"],
            "fallback": self.fallback.name if self._fallback is not None else "heuristic",
        }
