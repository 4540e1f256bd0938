"""Node functions of the research graph: small, module-level, each returning a partial state update.

Every decision is delegated to the run's :class:`~proteus.policy.base.Policy` and traced; every
tool call goes through the registry with validated parameters (no other code ever runs).
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

from langgraph.runtime import Runtime

from proteus.graphs.state import ResearchState, RunContext
from proteus.policy.base import ResearchView
from proteus.confounding import adjusted_keys, explained_by, hypothesis_checks
from proteus.quality import quality_checks
from proteus.ranking import composition_confounded
from proteus.policy.claim_check import check_draft
from proteus.policy.claims import stated_with_design
from proteus.policy.decisions import MAX_COMPOSITION_CONFOUNDED, MAX_HYPOTHESES, StepSpec
from proteus.policy.result_tables import ResultTables
from proteus.policy.same_event import fold_same_events
from proteus.records import Hypothesis, Objective, Provenance, Score, Step, stable_id
from proteus.tools.registry import ToolContext, ToolFailed, ToolInputError, get_tool, list_tools, validate_call

__all__ = [
    "PromisedSamplesMissing",
    "plan_objectives",
    "plan_workflow",
    "choose_step",
    "run_tool",
    "interpret",
    "update_workflow",
    "finish_workflow",
    "update_objectives",
    "propose_hypotheses",
    "judge",
    "judged_by",
    "validate",
    "next_after_choose",
    "next_after_update_objectives",
]

_STRICT = os.environ.get("PROTEUS_STRICT") == "1"


class PromisedSamplesMissing(RuntimeError):
    """A tool found none of the samples the profile promised for a contrast: a bug, so the run stops."""


def _broken_promise(ctx: RunContext, params: dict) -> str | None:
    """Why a contrast step cannot see the samples the profile counted for it (``None`` when it can)."""
    if not {"group", "case", "control"} <= params.keys() or params.get("modality") not in ctx.study.bulk():
        return None
    c = next((c for c in ctx.profile.contrasts if (c.group, c.case, c.control) == (params["group"], params["case"], params["control"])), None)
    tab = ctx.study.sample_table(params["modality"])
    if c is None or min(c.n_case, c.n_control) < 2 or c.group not in tab:
        return None
    col = tab[c.group].astype(str)
    found = int((col == c.case).sum()), int((col == c.control).sum())
    if sum(found) > 0:
        return None
    return (f"the profile promised {c.n_case} {c.case!r} and {c.n_control} {c.control!r} samples of {c.group!r}, "
            f"but layer {params['modality']!r} holds {found[0]} and {found[1]}: its sample names do not reach the sample table")


# --- helpers ------------------------------------------------------------------------------------
STUDIED_PARAMS = ("group", "time", "event")
"""Tool parameters that name the sample-table column a step studies (a contrast, a survival time or
event); a technical, block or identifier column is never one of them (DESIGN.md, Judgement)."""


def check_step(ctx: RunContext, spec: StepSpec) -> str | None:
    """Why ``spec`` cannot run on this study (``None`` when it can)."""
    try:
        tool = get_tool(spec.tool)
    except ToolInputError as e:
        return str(e)
    if not tool.applicable(ctx.study):
        return f"tool {tool.name!r} needs {', '.join(tool.requires)}, which this study lacks"
    try:
        validate_call(tool, ctx.study, spec.params)
    except ToolInputError as e:
        return str(e)
    if tool.family == "qc":
        return None
    for param in STUDIED_PARAMS:
        column = spec.params.get(param)
        v = ctx.profile.variable(column) if isinstance(column, str) else None
        if v is not None and v.role in ("technical", "block", "identifier"):
            return (f"{column!r} is a {v.role} column ({v.role_reason}): never studied as biology ({param!r}); "
                    f"{'adjust for it with covariates' if v.role != 'identifier' else 'choose a biological factor'}")
    return None


def _view(state: ResearchState, ctx: RunContext) -> ResearchView:
    return ResearchView(
        profile=ctx.profile,
        kg=ctx.kg(state),
        tools=[t for t in list_tools() if t.applicable(ctx.study)],
        objectives=[Objective.model_validate(o) for o in state.get("objectives", [])],
        check_step=lambda spec: check_step(ctx, spec),
        trace=ctx.rundir.append_trace,
        read_table=ctx.rundir.read_table,
        seed=ctx.seed,
        max_objectives=ctx.max_objectives,
        max_steps_per_workflow=ctx.max_steps_per_workflow,
    )


def _decide(ctx: RunContext, decision: str, fn, *args, **info):
    t0 = time.perf_counter()
    out = fn(*args)
    ctx.rundir.append_trace(
        {
            "kind": "decision",
            "decision": decision,
            "policy": ctx.policy.name,
            "seconds": round(time.perf_counter() - t0, 4),
            "output": out.model_dump(mode="json"),
            **({"decided_by": out.decided_by} if getattr(out, "decided_by", None) else {}),
            **info,
        }
    )
    return out


def _objectives(state: ResearchState) -> list[Objective]:
    return [Objective.model_validate(o) for o in state.get("objectives", [])]


def _current(state: ResearchState) -> Objective:
    return _objectives(state)[state["current"]]


def _next_pending(objectives: list[Objective], start: int) -> int:
    for i in range(start, len(objectives)):
        if objectives[i].status == "pending":
            return i
    return len(objectives)


# --- objective level ------------------------------------------------------------------------------
def plan_objectives(state: ResearchState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    plan = _decide(ctx, "plan_objectives", ctx.policy.plan_objectives, _view(state, ctx))
    objectives = [
        Objective(id=f"O{i + 1}", title=o.title, question=o.question, family=o.family, rationale=o.rationale)
        for i, o in enumerate(plan.objectives[: ctx.max_objectives])
    ]
    ctx.progress(f"planned {len(objectives)} objectives")
    return {"objectives": [o.model_dump() for o in objectives], "current": 0, "workflow": None}


def plan_workflow(state: ResearchState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    obj = _current(state)
    plan = _decide(ctx, "plan_workflow", ctx.policy.plan_workflow, _view(state, ctx), obj, objective=obj.id)
    wf_id = f"{obj.id}.W1"
    ctx.progress(f"[{obj.id}] {obj.title}: {len(plan.steps)} steps planned")
    return {
        "workflow": {
            "id": wf_id,
            "objective": obj.id,
            "title": obj.title,
            "steps": [],
            "planned": [s.model_dump() for s in plan.steps],
            "log": [],
        }
    }


# --- step loop ----------------------------------------------------------------------------------
def choose_step(state: ResearchState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    wf = dict(state["workflow"])
    if not wf["planned"] or len(wf["steps"]) >= ctx.max_steps_per_workflow:
        return {}
    spec = StepSpec.model_validate(wf["planned"][0])
    step = Step(id=f"{wf['id']}.S{len(wf['steps']) + 1}", tool=spec.tool, params=spec.params, rationale=spec.rationale)
    wf["planned"] = wf["planned"][1:]
    wf["steps"] = wf["steps"] + [step.model_dump()]
    return {"workflow": wf}


def next_after_choose(state: ResearchState) -> str:
    wf = state["workflow"]
    return "run_tool" if wf["steps"] and wf["steps"][-1]["status"] == "pending" else "finish"


def run_tool(state: ResearchState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    wf = dict(state["workflow"])
    step = Step.model_validate(wf["steps"][-1])
    prov = Provenance(objective=wf["objective"], workflow=wf["id"], step=step.id, tool=step.tool, params=step.params)
    tctx = ToolContext(out_dir=ctx.rundir.path, seed=ctx.seed, provenance=prov, figure_prefix=f"{step.id}_")
    ctx.progress(f"[{step.id}] running {step.tool}")
    t0 = time.perf_counter()
    relations: list[dict[str, Any]] = []
    error_kind = None
    broken = _broken_promise(ctx, step.params)
    if broken:
        ctx.rundir.append_trace({"kind": "promise_broken", "step": step.id, "tool": step.tool, "params": step.params, "reason": broken})
        raise PromisedSamplesMissing(f"{step.tool} ({step.id}): {broken}")
    try:
        tool = get_tool(step.tool)
        result = tool(ctx.study, step.params, tctx)
    except ToolInputError as e:
        step.status, step.summary, error_kind = "failed", f"invalid call: {e}", "input"
    except ToolFailed as e:
        step.status, step.summary, error_kind = "failed", str(e), "failed"
    except Exception as e:  # a bug in a tool: recorded with its traceback so one tool cannot sink the run
        if _STRICT:
            raise
        step.status, step.summary, error_kind = "failed", f"internal error in {step.tool}: {type(e).__name__}: {e}", "bug"
        ctx.rundir.append_trace({"kind": "tool_bug", "step": step.id, "traceback": traceback.format_exc()[-4000:]})
    else:
        step.status = "done"
        step.summary = result.summary
        step.metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float, str, bool, type(None)))}
        step.tables = [ctx.rundir.write_table(f"{step.id}_{name}", table) for name, table in result.tables.items()]
        step.figures = [str(p.relative_to(ctx.rundir.path)) if p.is_absolute() and ctx.rundir.path in p.parents else str(p) for p in result.figures]
        relations = [r.model_dump(mode="json") for r in result.relations]
        step.relation_ids = [r["id"] for r in relations]
    seconds = round(time.perf_counter() - t0, 3)
    ctx.rundir.append_trace(
        {
            "kind": "tool_call",
            "step": step.id,
            "tool": step.tool,
            "params": step.params,
            "status": step.status,
            "error": error_kind,
            "summary": step.summary[:500],
            "metrics": step.metrics,
            "n_relations": len(relations),
            "tables": step.tables,
            "figures": step.figures,
            "seconds": seconds,
        }
    )
    wf["steps"] = wf["steps"][:-1] + [step.model_dump()]
    refs = []
    if relations:  # on disk before the checkpoint that cites them; a re-run step rewrites the same file
        refs.append(f"relations/{step.id}.jsonl.gz")
        ctx.rundir.write_jsonl(refs[0], relations)
    return {"workflow": wf, "relations": list(state.get("relations", [])) + refs}


def interpret(state: ResearchState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    wf = dict(state["workflow"])
    step = Step.model_validate(wf["steps"][-1])
    out = _decide(ctx, "interpret", ctx.policy.interpret, _view(state, ctx), _current(state), step, step=step.id)
    wf["log"] = wf.get("log", []) + [{"step": step.id, "interpretation": out.summary}]
    return {"workflow": wf}


def update_workflow(state: ResearchState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    wf = dict(state["workflow"])
    done = [Step.model_validate(s) for s in wf["steps"]]
    remaining = [StepSpec.model_validate(s) for s in wf["planned"]]
    upd = _decide(ctx, "update_workflow", ctx.policy.update_workflow, _view(state, ctx), _current(state), done, remaining, workflow=wf["id"])
    wf["planned"] = [s.model_dump() for s in upd.steps]
    wf["log"] = wf.get("log", []) + [{"update": upd.reason}]
    return {"workflow": wf}


def finish_workflow(state: ResearchState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    wf = dict(state["workflow"])
    objectives = _objectives(state)
    obj = objectives[state["current"]]
    findings = [e["interpretation"] for e in wf.get("log", []) if "interpretation" in e]
    n_done = sum(s["status"] == "done" for s in wf["steps"])
    if wf["steps"] and n_done == 0:  # said in the terminal, the objective's status and the report
        first = wf["steps"][0]
        obj.status = "failed"
        obj.findings = f"Every step failed ({len(wf['steps'])}); first: {first['tool']}: {first.get('summary', '')}"[:2000]
        ctx.progress(f"[{obj.id}] FAILED: every step failed; first: {first['tool']}: {str(first.get('summary', ''))[:200]}")
    else:
        obj.status = "done"
        obj.findings = " ".join(findings)[:2000]
        ctx.progress(f"[{obj.id}] done: {n_done}/{len(wf['steps'])} steps succeeded")
    objectives[state["current"]] = obj
    return {"workflows": list(state.get("workflows", [])) + [wf], "workflow": None, "objectives": [o.model_dump() for o in objectives]}


def update_objectives(state: ResearchState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    objectives = _objectives(state)
    done = [o for o in objectives if o.status in ("done", "failed")]
    remaining = [o for o in objectives if o.status == "pending"]
    upd = _decide(ctx, "update_objectives", ctx.policy.update_objectives, _view(state, ctx), done, remaining)
    for o in objectives:
        if o.id in upd.drop and o.status == "pending":
            o.status = "dropped"
    n_total = len(objectives)
    room = max(0, ctx.max_objectives + 2 - n_total)
    for i, spec in enumerate(upd.add[:room]):
        objectives.append(Objective(id=f"O{n_total + i + 1}", title=spec.title, question=spec.question, family=spec.family, rationale=spec.rationale))
    return {"objectives": [o.model_dump() for o in objectives], "current": _next_pending(objectives, state["current"] + 1)}


def next_after_update_objectives(state: ResearchState) -> str:
    return "objective" if state["current"] < len(state["objectives"]) else "propose_hypotheses"


# --- hypotheses -----------------------------------------------------------------------------------
def _rejection(ctx: RunContext, d, checked, drafted: dict) -> dict[str, Any]:
    """The record of a draft the claim checks rejected (also traced)."""
    rule = next((c.rule for c in checked.checks if c.action == "rejected"), "evidence")
    ctx.rundir.append_trace({"kind": "hypothesis_rejected", "statement": d.statement[:200], "rule": rule, "reason": checked.rejected[:600]})
    return {"statement": d.statement[:300], "rule": rule, "reason": checked.rejected[:600], **drafted}


def _hypothesis(ctx: RunContext, view, d, checks, tables, columns, design_cache: dict, drafted: dict, rejected: list) -> dict | None:
    """The hypothesis a kept (or folded) draft states, after the claim checks (a segment or theme stated anew from
    the drafts it folds is checked like any draft), confounders and technical quality; ``None`` when rejected
    (recorded in ``rejected`` and traced)."""
    if checks is None:
        checked = check_draft(d, view.kg, tables)
        if checked.rejected:
            rejected.append(_rejection(ctx, d, checked, drafted))
            return None
        d, checks = checked.draft, [c.as_dict() for c in checked.checks]
    # confounders before the claim: a contrast that cannot be separated from another column, or whose groups
    # differ strongly in another factor, says so in the statement (proteus.confounding)
    design, clause, why = hypothesis_checks([r for e in d.evidence if (r := view.kg.relation(e)) is not None],
                                            ctx.study.clinical, columns, design_cache, study=ctx.study)
    if (column := explained_by(design)) is not None:  # a mutation hit that follows a subtype is a claim about the subtype
        reason = f"{clause.lstrip('; ')}. {why}"[:600]
        rejected.append({"statement": d.statement[:300], "rule": "explained by another column", "reason": reason, **drafted})
        ctx.rundir.append_trace({"kind": "hypothesis_rejected", "statement": d.statement[:200], "rule": "explained by another column",
                                 "reason": reason, "column": column})
        return None
    # technical quality before the claim: a differential result whose contrast holds an outlier run is re-tested
    # without it (proteus.quality)
    qc, qc_clause, qc_why = quality_checks([r for e in d.evidence if (r := view.kg.relation(e)) is not None], ctx.quality,
                                           ctx.study, ctx.retests, seed=ctx.seed)
    design, clause, why = design + qc, clause + qc_clause, f"{why} {qc_why}".strip()
    # a composition-confounded claim says what was observed, not a mechanism within cells (proteus.policy.claims)
    confounded = composition_confounded(design, ctx.profile.sample_type_column) is not None
    statement = stated_with_design(d.statement, d.mechanism, clause, confounded=confounded)
    hid = stable_id("H_", statement, sorted(d.evidence), length=8)
    # what the claim rests on: the drafting pattern's key edges, and a refit the statement says it holds adjusted for
    keys = [k for k in d.key_edges if k.edge in d.evidence] + [k for k in adjusted_keys(design) if k.edge in d.evidence]
    return Hypothesis(id=hid, statement=statement, rationale=f"{d.rationale} {why}".strip(), evidence=d.evidence, entities=d.entities,
                      test=d.test, kind=d.kind, decided_by=drafted, key_edges=keys, wording_checks=checks, design_checks=design).model_dump()


def propose_hypotheses(state: ResearchState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Draft hypotheses (the policy) and check each against its cited evidence, whoever drafted it
    (:func:`proteus.policy.claim_check.check_draft`): overclaims reworded, evidence about nothing it
    names dropped, contradicted directions and "no change" rejected, each change recorded."""
    ctx = runtime.context
    view = _view(state, ctx)
    drafts = _decide(ctx, "propose_hypotheses", ctx.policy.propose_hypotheses, view)
    tables = ResultTables.of_view(view)
    drafted = {"drafted": drafts.decided_by} if drafts.decided_by else {}
    rejected: list[dict] = []
    columns = ctx.profile.confounder_columns()
    design_cache: dict = {}
    kept = []
    for d in drafts.hypotheses:
        checked = check_draft(d, view.kg, tables)
        checks = [c.as_dict() for c in checked.checks]
        if checked.rejected:
            rejected.append(_rejection(ctx, d, checked, drafted))
            continue
        if checks:
            ctx.rundir.append_trace({"kind": "hypothesis_reworded", "statement": checked.draft.statement[:200], "checks": checks})
        kept.append((checked.draft, checks))
    # one event, one hypothesis, folded last before the limit: the slots that folded and rejected drafts free go to the
    # next distinct drafts, until the hypotheses stated hold no two drafts that fold
    by_statement = {d.statement: c for d, c in kept}
    pool, done, t0, rounds = [d for d, _ in kept], {}, time.perf_counter(), 0
    sample_type = ctx.profile.sample_type_column
    while True:
        rounds += 1
        folded = fold_same_events(pool, view.kg, ctx.study, tables)
        hyps, stated, walked, waiting, n_confounded = [], [], 0, [], 0  # waiting: composition-confounded drafts beyond the first few
        for d in folded:
            if len(hyps) == MAX_HYPOTHESES:
                break
            walked += 1
            key = (d.statement, d.rationale, tuple(d.evidence))
            if key not in done:
                done[key] = _hypothesis(ctx, view, d, by_statement.get(d.statement), tables, columns, design_cache, drafted, rejected)
            if done[key] is None:
                continue
            confounded = composition_confounded(done[key]["design_checks"], sample_type) is not None
            if confounded and n_confounded >= MAX_COMPOSITION_CONFOUNDED:
                waiting.append(d)  # a composition-confounded claim beyond the first few waits for the slots no other draft fills
                continue
            n_confounded += confounded
            hyps.append(done[key])
            stated.append(d.model_copy(update={"evidence": done[key]["evidence"]}))  # as the claim checks left it
        for d in waiting[:MAX_HYPOTHESES - len(hyps)]:  # those left over leave the pool, as rejected drafts do
            hyps.append(done[(d.statement, d.rationale, tuple(d.evidence))])
            stated.append(d.model_copy(update={"evidence": hyps[-1]["evidence"]}))
        refolded = fold_same_events(stated, view.kg, ctx.study, tables)  # fewer drafts can share a unit anew
        if len(refolded) == len(stated) == walked:
            break
        pool = refolded + folded[walked:]
    ids = {h["id"] for h in hyps}
    held = sum(h is not None and h["id"] not in ids and composition_confounded(h["design_checks"], sample_type) is not None for h in done.values())
    ctx.rundir.append_trace({"kind": "hypotheses_folded", "seconds": round(time.perf_counter() - t0, 3), "drafts": len(kept),
                             "stated": len(hyps), "rounds": rounds, "composition_confounded_held_back": held})
    ctx.progress(f"proposed {len(hyps)} hypotheses" + (f" ({len(rejected)} rejected by the claim checks)" if rejected else ""))
    return {"hypotheses": hyps, "hypotheses_rejected": rejected}


def validate(state: ResearchState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Re-test every hypothesis on held-out splits, against a permutation null and in other layers
    (:func:`proteus.validation.validate_hypotheses`), and rank them by their evidence (:func:`proteus.ranking.rank_hypotheses`)."""
    from proteus.ranking import rank_hypotheses
    from proteus.validation import validate_hypotheses

    ctx = runtime.context
    t0 = time.perf_counter()
    kg = ctx.kg(state)
    hyps = rank_hypotheses(validate_hypotheses(ctx.study, kg, list(state.get("hypotheses", [])), seed=ctx.seed), kg,
                           sample_type=ctx.profile.sample_type_column)
    counts = {s: sum((h["validation"] or {}).get("status") == s for h in hyps) for s in ("validated", "inconclusive", "failed", "untestable")}
    ctx.rundir.append_trace({"kind": "validation", "seconds": round(time.perf_counter() - t0, 3), "counts": counts})
    ctx.progress(f"validated {counts['validated']} of {len(hyps)} hypotheses ({counts['inconclusive']} inconclusive, {counts['failed']} failed, {counts['untestable']} not testable)")
    return {"hypotheses": hyps}


def judged_by(policy, judgement) -> str:
    """Who actually scored ``judgement``: the policy's fallback judge when the model's answer was
    unusable (``decided_by == "fallback"``), else the policy's own judge."""
    if getattr(judgement, "decided_by", None) == "fallback" and getattr(policy, "fallback", None) is not None:
        return policy.fallback.judge_name
    return policy.judge_name


def judge(state: ResearchState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Score every hypothesis; ``judge`` names who actually scored it (a model, or the heuristic
    judge it fell back to)."""
    ctx = runtime.context
    view = _view(state, ctx)
    out = []
    for h in state.get("hypotheses", []):
        hyp = Hypothesis.model_validate(h)
        j = _decide(ctx, "judge", ctx.policy.judge, view, hyp, hypothesis=hyp.id)
        hyp.scores = {k: Score(**v) for k, v in j.model_dump().items()}
        hyp.judge = judged_by(ctx.policy, j)
        if j.decided_by:
            hyp.decided_by = {**hyp.decided_by, "judged": j.decided_by}
        out.append(hyp.model_dump())
    by = {}
    for h in out:
        by[h["judge"]] = by.get(h["judge"], 0) + 1
    ctx.progress(f"judged {len(out)} hypotheses ({', '.join(f'{n} by {k}' for k, n in sorted(by.items()))})")
    return {"hypotheses": out}
