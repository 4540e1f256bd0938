"""LLMPolicy and the llamacpp backend against a real llama.cpp server (tiny random-weight GGUF),
directly and behind a fault-injecting loopback proxy."""

from __future__ import annotations

import time

import pytest
from llm_fixtures.proxy import FaultProxy
from llm_fixtures.server import llama_server, needs_llama, tiny_gguf  # noqa: F401  (fixtures)
from llm_fixtures.study import make_view

from proteus.llm import BackendError, RetryPolicy, make_backend
from proteus.policy.decisions import Interpretation, Judgement, ObjectivePlan, WorkflowPlan
from proteus.policy.llm import LLMPolicy
from proteus.records import Hypothesis, Objective, Step

pytestmark = [needs_llama, pytest.mark.llamacpp]

OBJ = Objective(id="obj_1", title="Age", question="Which proteins track Age?", family="correlation")
FAST = RetryPolicy(tries=4, base_s=0.05, max_wait_s=0.2)


def _backend(base_url, **kw):
    kw.setdefault("max_completion_tokens", 200)
    kw.setdefault("timeout_s", 120)
    kw.setdefault("retry", FAST)
    return make_backend("llamacpp:tiny", base_url, **kw)


def test_grammar_constrained_answer_is_json_for_the_schema(llama_server):  # noqa: F811
    b = _backend(llama_server.base_url, max_completion_tokens=400)
    c = b.complete([{"role": "user", "content": "Interpret."}], Interpretation, name="interpret")
    assert c.raw_request_summary["response_format"] == "json_object"
    assert c.prompt_tokens > 0 and c.completion_tokens > 0 and c.cost_usd == 0.0
    assert c.text.lstrip().startswith("{")  # the grammar forces a JSON object
    # random weights: either a valid Interpretation or a truncated/invalid one with the reason
    assert (c.parsed is not None) != (c.error is not None)


def test_policy_decisions_validate_or_fall_back(llama_server):  # noqa: F811
    events: list = []
    view = make_view(events=events)
    # the tiny GGUF tokenizes about one token per character: give it room for the full prompts
    policy = LLMPolicy(_backend(llama_server.base_url), context_tokens=16000, max_repairs=1)
    plan = policy.plan_objectives(view)
    wf = policy.plan_workflow(view, OBJ)
    step = Step(id="s_1", tool="clinical_correlation", params={"modality": "proteomics", "variable": "Age"}, status="done", summary="3 proteins correlate with Age", relation_ids=list(view.kg.relations)[:3])
    interp = policy.interpret(view, OBJ, step)
    h = Hypothesis(id="h1", statement="G0 is higher in MSI-H", rationale="r", evidence=list(view.kg.relations)[:1], entities=["protein:G0"], test="t")
    judgement = policy.judge(view, h)
    assert isinstance(plan, ObjectivePlan) and isinstance(wf, WorkflowPlan)
    assert isinstance(interp, Interpretation) and isinstance(judgement, Judgement)
    decisions = [e for e in events if e.get("kind") == "llm_decision"]
    by_decision: dict[str, list[str]] = {}
    for e in decisions:
        by_decision.setdefault(e["decision"], []).append(e["outcome"])
        assert e["backend"] == "llamacpp:tiny"
        if e["outcome"] != "fallback":
            assert e["messages"] and "completion" in e and e["prompt_tokens"] > 0 and e["latency_s"] >= 0
        if e["outcome"] == "rejected":
            assert e["reason"]
    assert set(by_decision) == {"plan_objectives", "plan_workflow", "interpret", "judge"}
    for outcomes in by_decision.values():
        # every decision ends accepted, repaired or in a fallback, after at most 1 + 1 attempts
        assert outcomes[-1] in ("accepted", "repaired", "fallback")
        assert len([o for o in outcomes if o != "fallback"]) <= 2
    # the grammar carries the run's names: even random weights name only registered tools
    assert not any("unknown tool" in e["reason"] for e in decisions)
    u = policy.usage()
    assert u["calls"] == len([e for e in decisions if e["outcome"] != "fallback"])
    assert u["cost_usd"] == 0.0 and u["prompt_tokens"] > 0


@pytest.mark.parametrize("script", [["429", "500", "drop"], ["truncate"], ["garble", "503"]])
def test_faults_are_retried_and_the_call_completes(llama_server, script):  # noqa: F811
    upstream = llama_server.base_url.removesuffix("/v1")
    with FaultProxy(upstream, script) as proxy:
        b = _backend(proxy.base_url)
        c = b.complete([{"role": "user", "content": "Interpret."}], Interpretation, name="interpret")
    assert proxy.log == [*script, "pass"]
    assert c.raw_request_summary["tries"] == len(script) + 1
    assert c.text.lstrip().startswith("{")


def test_timeouts_are_retried(llama_server):  # noqa: F811
    upstream = llama_server.base_url.removesuffix("/v1")
    with FaultProxy(upstream, ["delay:3"]) as proxy:
        b = _backend(proxy.base_url, timeout_s=1.5)
        b.timeout_s = 1.5
        t0 = time.monotonic()
        c = None
        try:
            c = b.complete([{"role": "user", "content": "Hi."}], Interpretation, name="interpret")
        except BackendError:
            pass  # the tiny model itself may need longer than the 1.5 s timeout on a busy machine
        assert time.monotonic() - t0 < 60
    assert proxy.log[0] == "delay:3" and len(proxy.log) >= 2
    if c is not None:
        assert c.raw_request_summary["tries"] >= 2


def test_persistent_failure_falls_back_within_bounds(llama_server):  # noqa: F811
    upstream = llama_server.base_url.removesuffix("/v1")
    events: list = []
    with FaultProxy(upstream, ["500"] * 20) as proxy:
        policy = LLMPolicy(_backend(proxy.base_url), max_repairs=2)
        t0 = time.monotonic()
        plan = policy.plan_workflow(make_view(events=events), OBJ)
        assert time.monotonic() - t0 < 30
    chat = [p for p in proxy.paths if p.endswith("/chat/completions")]
    assert len(chat) == 4  # one decision: 4 bounded tries, no repair after a backend failure
    assert isinstance(plan, WorkflowPlan)
    outcomes = [(e["outcome"], e["reason"][:14]) for e in events if e.get("kind") == "llm_decision"]
    assert outcomes == [("rejected", "backend error:"), ("fallback", "backend error:")]
