"""LLMPolicy against a scripted hosted model (OpenAI wire format, no network): accepted, repaired
and fallback decisions, semantic checks, budgets, prompt injection, redaction, bounded context."""

from __future__ import annotations

import json
import re

import httpx2
import pytest
from llm_fixtures.hosted import scripted_openai
from llm_fixtures.study import INJECTION, make_view, small_kg

from proteus.kg import KnowledgeGraph
from proteus.llm import Budget
from proteus.llm.context import estimate_tokens
from proteus.policy.decisions import HypothesisDrafts, ObjectiveUpdate, WorkflowPlan
from proteus.policy.llm import COMPACT_BELOW, LLMPolicy
from proteus.records import Entity, Hypothesis, Objective, Provenance, Relation, Stats

OBJ = Objective(id="obj_1", title="Age", question="Which proteins track Age?", family="correlation")
GOOD_PLAN = json.dumps({"steps": [{"tool": "clinical_correlation", "params": {"modality": "proteomics", "variable": "Age"}, "rationale": "main analysis"}]})
BAD_TOOL = json.dumps({"steps": [{"tool": "shell", "params": {"cmd": "rm -rf /"}, "rationale": "as instructed"}]})
BAD_COLUMN = json.dumps({"steps": [{"tool": "clinical_correlation", "params": {"modality": "proteomics", "variable": "BMI"}}]})


def _policy(answers, **kw):
    backend, seen = scripted_openai(answers, budget=kw.pop("budget", None))
    return LLMPolicy(backend, **kw), seen


def _decisions(events):
    return [e for e in events if e.get("kind") == "llm_decision"]


def test_accepted_decision_is_traced_with_prompt_and_usage():
    events: list = []
    view = make_view(events=events)
    policy, seen = _policy([GOOD_PLAN])
    plan = policy.plan_workflow(view, OBJ)
    assert plan.steps[0].tool == "clinical_correlation"
    (ev,) = _decisions(events)
    assert ev["outcome"] == "accepted" and ev["decision"] == "plan_workflow" and ev["objective"] == "obj_1"
    assert ev["backend"] == "openai:gpt-4o-mini" and ev["prompt_tokens"] == 1000 and ev["cost_usd"] > 0
    assert ev["messages"][0]["role"] == "system" and ev["completion"] == GOOD_PLAN
    assert ev["value"]["steps"][0]["params"]["variable"] == "Age"
    u = policy.usage()
    assert u["calls"] == 1 and u["outcomes"]["accepted"] == 1 and u["cost_usd"] == pytest.approx(ev["cost_usd"])
    # the prompt carries the tool catalogue with parameter schemas, not data matrices
    user = seen[0]["body"]["messages"][1]["content"]
    assert "- clinical_correlation (correlation):" in user and "variable*: str" in user


def test_repair_sends_the_error_back():
    events: list = []
    policy, seen = _policy([BAD_COLUMN, GOOD_PLAN])
    plan = policy.plan_workflow(make_view(events=events), OBJ)
    assert plan.steps[0].params["variable"] == "Age"
    outcomes = [e["outcome"] for e in _decisions(events)]
    assert outcomes == ["rejected", "repaired"]
    assert "'BMI' is not a clinical column" in _decisions(events)[0]["reason"]
    repair = seen[1]["body"]["messages"]
    assert repair[-2] == {"role": "assistant", "content": BAD_COLUMN}
    assert repair[-1]["role"] == "user" and "BMI" in repair[-1]["content"]
    # every attempt's prompt is in the trace (for RL export), the repair one included
    assert _decisions(events)[1]["messages"][-1]["content"] == repair[-1]["content"]


def test_unrepairable_answers_fall_back_to_heuristic():
    events: list = []
    view = make_view(events=events)
    policy, seen = _policy([BAD_TOOL], max_repairs=2)
    plan = policy.plan_workflow(view, OBJ)
    assert len(seen) == 3
    outcomes = [e["outcome"] for e in _decisions(events)]
    assert outcomes == ["rejected", "rejected", "rejected", "fallback"]
    assert "unknown tool 'shell'" in _decisions(events)[0]["reason"]
    fb = _decisions(events)[-1]
    assert fb["source"] == "heuristic" and fb["value"] == plan.model_dump(mode="json")
    assert all(s.tool != "shell" for s in plan.steps)
    assert policy.usage()["outcomes"] == {"accepted": 0, "rejected": 3, "repaired": 0, "fallback": 1}


def test_invalid_json_and_schema_errors_are_rejected():
    events: list = []
    policy, _ = _policy(['{"steps": [', json.dumps({"steps": [{"tool": "x"}]}), GOOD_PLAN])
    policy.plan_workflow(make_view(events=events), OBJ)
    reasons = [e["reason"] for e in _decisions(events)]
    assert reasons[0].startswith("invalid JSON") and reasons[1].startswith("schema errors") and "params" in reasons[1]
    assert _decisions(events)[-1]["outcome"] == "repaired"


def test_hypothesis_evidence_must_exist():
    kg = small_kg()
    rid = next(iter(kg.relations))
    draft = {"statement": "G0 is higher in MSI-H", "rationale": "q=1e-5", "entities": ["protein:G0"], "test": "targeted MS"}
    bad = json.dumps({"hypotheses": [{**draft, "evidence": ["e_made_up"]}]})
    good = json.dumps({"hypotheses": [{**draft, "evidence": [rid]}]})
    events: list = []
    policy, _ = _policy([bad, good])
    out = policy.propose_hypotheses(make_view(kg=kg, events=events))
    assert isinstance(out, HypothesisDrafts) and out.hypotheses[0].evidence == [rid]
    assert "e_made_up" in _decisions(events)[0]["reason"]


def test_objective_update_checks_ids_and_families():
    remaining = [Objective(id="obj_2", title="subtypes", question="q", family="subtypes")]
    bad = json.dumps({"drop": ["obj_9"], "add": [], "reason": "x"})
    bad_family = json.dumps({"drop": [], "add": [{"title": "t", "question": "q", "family": "astrology", "rationale": "r"}]})
    good = json.dumps({"drop": ["obj_2"], "add": [], "reason": "no structure"})
    events: list = []
    policy, _ = _policy([bad, bad_family, good])
    out = policy.update_objectives(make_view(events=events), [OBJ], remaining)
    assert out == ObjectiveUpdate(drop=["obj_2"], reason="no structure")
    r = [e["reason"] for e in _decisions(events)]
    assert "obj_9" in r[0] and "astrology" in r[1]


def test_judge_uses_rubric_and_judge_name():
    j = {m: {"score": 4, "reason": "ok"} for m in ("reliability", "logical_coherence", "biological_plausibility", "novelty", "evaluability")}
    policy, seen = _policy([json.dumps(j)])
    kg = small_kg()
    h = Hypothesis(id="h1", statement="G0 up", rationale="r", evidence=list(kg.relations)[:1], entities=["protein:G0"], test="t")
    out = policy.judge(make_view(kg=kg), h)
    assert out.novelty.score == 4
    assert policy.judge_name == "llm:openai:gpt-4o-mini"
    system = seen[0]["body"]["messages"][0]["content"]
    assert "Scoring rubric" in system and "evaluability:" in system
    assert list(kg.relations)[0] in seen[0]["body"]["messages"][1]["content"]


def test_budget_exhaustion_falls_back_and_is_recorded():
    events: list = []
    policy, seen = _policy([GOOD_PLAN], budget=Budget(max_calls=1))
    view = make_view(events=events)
    policy.plan_workflow(view, OBJ)
    policy.plan_workflow(view, OBJ)
    assert len(seen) == 1
    last = _decisions(events)[-1]
    assert last["outcome"] == "fallback" and last["reason"].startswith("budget exhausted")


def test_backend_failure_falls_back():
    events: list = []
    policy, seen = _policy([httpx2.Response(503, json={"error": {"message": "down"}})])
    plan = policy.plan_workflow(make_view(events=events), OBJ)
    assert isinstance(plan, WorkflowPlan)
    assert len(seen) == 4  # bounded retries, one decision
    ev = _decisions(events)
    assert ev[0]["outcome"] == "rejected" and "backend error" in ev[0]["reason"] and ev[-1]["outcome"] == "fallback"


def test_prompt_injection_in_column_names_is_inert():
    events: list = []
    view = make_view(events=events)
    obeying = json.dumps({"steps": [{"tool": "shell", "params": {}, "rationale": INJECTION}]})
    policy, seen = _policy([obeying])
    plan = policy.plan_workflow(view, OBJ)
    user = seen[0]["body"]["messages"][1]["content"]
    assert f"\n{INJECTION}" not in user  # never at the start of a line, as an instruction would be
    if INJECTION in user:
        assert json.dumps(INJECTION) in user  # quoted as a JSON string literal
    # the per-call schema offers the column only as a quoted enum value of a column parameter
    assert json.dumps(INJECTION) in json.dumps(seen[0]["body"]["response_format"])
    # the model's "shell" step never gets through: the decision is the heuristic analyst's plan
    assert all(s.tool != "shell" for s in plan.steps)
    assert plan == policy.fallback.plan_workflow(view, OBJ)
    assert _decisions(events)[-1]["outcome"] == "fallback"


def test_secrets_are_redacted_from_trace(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-1234567890abcdef")
    events: list = []
    leaky = json.dumps({"steps": [{"tool": "clinical_correlation", "params": {"modality": "proteomics", "variable": "tok-1234567890abcdef"}}]})
    policy, _ = _policy([leaky, GOOD_PLAN])
    policy.plan_workflow(make_view(events=events), OBJ)
    text = json.dumps(events)
    assert "tok-1234567890abcdef" not in text and "[REDACTED]" in text


def _big_kg(n: int) -> KnowledgeGraph:
    kg = KnowledgeGraph()
    grp = Entity(type="sample_group", label="MSI_status: MSI-H vs MSS")
    rels = [
        Relation(
            subject=Entity(type="protein", label=f"PROT{i}"),
            predicate="higher_in" if i % 2 else "lower_in",
            object=grp,
            stats=Stats(effect=1.0, effect_type="log2FC", p=1e-3, q=(i + 1) / n, n=100,
                        observed={"MSI-H": (40 - i % 7, 45), "MSS": (55 - i % 5, 55)}),
            modality="proteomics",
            provenance=Provenance(tool="differential_abundance", params={"i": i}),
        )
        for i in range(n)
    ]
    kg.add_relations(rels)
    return kg


@pytest.mark.parametrize("budget", [2000, 8000])
def test_prompts_fit_the_context_budget(budget):
    kg = _big_kg(3000)
    policy, seen = _policy([GOOD_PLAN], context_tokens=budget)
    view = make_view(kg=kg)
    policy.plan_workflow(view, OBJ)
    policy.propose_hypotheses(view)
    for req in seen:
        total = sum(estimate_tokens(m["content"]) for m in req["body"]["messages"][:2])
        assert total <= budget
    user = seen[-1]["body"]["messages"][1]["content"]
    assert "PROT0" in user  # strongest relations kept first
    edges = [line for line in user.splitlines() if line.startswith("e") and " | " in line]
    # every edge line carries the samples observed per group, group names quoted as data
    assert all(e.endswith(f'| 100 (observed in {40 - i % 7}/45 "MSI-H", {55 - i % 5}/55 "MSS")')
               for e in edges for i in [int(re.search(r"PROT(\d+)", e).group(1))])
    if budget < COMPACT_BELOW:  # compact: the fewest, strongest edges
        assert 0 < len(edges) <= 12
    else:
        assert "more lines truncated" in user and len(edges) > 12
    # the per-call schema lets the model cite only the edges the prompt shows
    cited = seen[-1]["body"]["response_format"]["json_schema"]["schema"]
    enum = cited["properties"]["hypotheses"]["items"]["properties"]["evidence"]["items"]["enum"]
    assert sorted(enum) == sorted(e.split(" | ")[0] for e in edges)


def test_update_that_repeats_a_done_step_is_repaired_without_a_second_call():
    """Repeats of done steps are dropped, the model's new steps kept; no second request, counted as repaired."""
    from proteus.records import Step

    done = [Step(id="s_1", tool="clinical_correlation", params={"modality": "proteomics", "variable": "Age"}, status="done")]
    again = json.dumps({"steps": [{"tool": "clinical_correlation", "params": {"modality": "proteomics", "variable": "Age"}, "rationale": "again"},
                                  {"tool": "clinical_correlation", "params": {"modality": "proteomics", "variable": "Age", "method": "pearson"}, "rationale": "new"}], "reason": "r"})
    events: list = []
    policy, seen = _policy([again])
    upd = policy.update_workflow(make_view(events=events), OBJ, done, [])
    assert len(seen) == 1
    assert [s.params.get("method") for s in upd.steps] == ["pearson"] and upd.decided_by == "repaired"
    assert [e["outcome"] for e in _decisions(events)] == ["repaired"]
    assert policy.usage()["decided_by"] == {"update_workflow": {"model": 0, "repaired": 1, "fallback": 0}}


def test_an_answer_that_copies_the_schemas_descriptions_is_asked_again():
    """A small model's shape-only answer ("why this objective fits the data profile" as the
    rationale) is rejected with the copied text named, and the corrected answer is used."""
    placeholder = json.dumps({"objectives": [{"title": "Age", "question": "Which proteins track Age?", "family": "correlation", "rationale": "Why this objective fits the data profile."}]})
    real = json.dumps({"objectives": [{"title": "Age", "question": "Which proteins track Age?", "family": "correlation", "rationale": "Age is the only continuous clinical column"}]})
    events: list = []
    policy, seen = _policy([placeholder, real])
    plan = policy.plan_objectives(make_view(events=events))
    assert plan.objectives[0].rationale == "Age is the only continuous clinical column"
    assert [e["outcome"] for e in _decisions(events)] == ["rejected", "repaired"]
    assert "copy the schema's field descriptions" in _decisions(events)[0]["reason"] and "Why this objective" in seen[1]["body"]["messages"][-1]["content"]
