"""Backends: request building and response parsing for the hosted APIs (recorded shapes from the
SDKs' own types, no network), retries, budgets, prices and the model factory."""

from __future__ import annotations

import json

import httpx2
import pytest
from llm_fixtures.hosted import chat_completion, scripted_anthropic, scripted_openai

from proteus.llm import BackendError, Budget, BudgetExhausted, make_backend, parse_model, price_per_token, resolve_model
from proteus.policy import make_policy
from proteus.llm.base import inline_refs, parse_json
from proteus.llm.openai_backend import strict_schema
from proteus.policy.decision_schemas import model_schema
from proteus.policy.decisions import Interpretation, Judgement, ObjectiveUpdate, WorkflowPlan

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "interpret"}]
GOOD = json.dumps({"summary": "G0 is 2-fold higher in MSI-H (q=1e-5)"})


def test_openai_request_uses_json_schema_and_parses_usage():
    backend, seen = scripted_openai([GOOD])
    c = backend.complete(MSGS, Interpretation, name="interpret")
    body = seen[0]["body"]
    assert seen[0]["url"] == "https://api.openai.com/v1/chat/completions"
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == MSGS
    rf = body["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["name"] == "interpret"
    # strict mode: every property required, the optional one nullable (a null is dropped before validation)
    assert rf["json_schema"]["strict"] is True
    assert rf["json_schema"]["schema"] == strict_schema(model_schema(Interpretation))
    assert rf["json_schema"]["schema"]["required"] == ["summary"]
    update = strict_schema(model_schema(ObjectiveUpdate))
    assert update["required"] == ["drop", "add", "reason"] and update["additionalProperties"] is False
    assert {"type": "null"} in update["properties"]["reason"]["anyOf"]
    assert json.loads(backend._normalise('{"drop": null, "add": [], "reason": null}')) == {"add": []}
    assert body["max_completion_tokens"] == 2048
    assert isinstance(c.parsed, Interpretation) and c.parsed.summary.startswith("G0 is 2-fold")
    assert (c.prompt_tokens, c.completion_tokens) == (1000, 100)
    assert c.cost_usd == pytest.approx(1000 * 0.15e-6 + 100 * 0.60e-6)
    assert c.raw_request_summary["response_format"] == "json_schema"
    assert "content" not in json.dumps(c.raw_request_summary)  # no prompt text in the summary


def test_anthropic_forced_tool_use():
    answer = {"summary": "nothing passed FDR"}
    backend, seen = scripted_anthropic([answer])
    c = backend.complete(MSGS, Interpretation, name="interpret")
    body = seen[0]["body"]
    assert seen[0]["url"].endswith("/v1/messages")
    assert body["system"] == "be brief"
    assert body["messages"] == [{"role": "user", "content": "interpret"}]
    assert body["tools"][0]["name"] == "interpret"
    assert body["tools"][0]["input_schema"] == inline_refs(Interpretation.model_json_schema())
    assert body["tool_choice"] == {"type": "tool", "name": "interpret"}
    assert c.parsed == Interpretation(**answer)
    assert c.cost_usd == pytest.approx(1000 * 3e-6 + 100 * 15e-6)


def test_llamacpp_and_vllm_response_formats():
    from proteus.llm.openai_backend import OpenAICompatBackend

    seen = []

    def handler(request):
        seen.append(json.loads(request.content))
        return httpx2.Response(200, json=chat_completion('{"steps": []}', model="tiny"))

    for engine in ("llamacpp", "vllm"):
        b = make_backend(f"{engine}:tiny", "http://127.0.0.1:9/v1", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
        assert isinstance(b, OpenAICompatBackend) and b.provider == engine
        c = b.complete(MSGS, WorkflowPlan, name="plan_workflow")
        assert c.cost_usd == 0.0
    llama, vllm = seen
    assert llama["response_format"]["type"] == "json_object"
    assert "$defs" not in json.dumps(llama["response_format"]["schema"])  # refs inlined for GBNF
    assert llama["max_tokens"] == 2048 and "max_completion_tokens" not in llama
    assert vllm["response_format"]["type"] == "json_schema"


def test_retries_429_and_500_then_succeeds():
    backend, seen = scripted_openai(
        [httpx2.Response(429, json={"error": {"message": "slow down"}}, headers={"retry-after": "0"}), httpx2.Response(500, json={"error": {"message": "oops"}}), GOOD]
    )
    c = backend.complete(MSGS, Interpretation, name="interpret")
    assert c.parsed is not None
    assert len(seen) == 3
    assert c.raw_request_summary["tries"] == 3
    assert backend.budget.calls == 1  # one logical call


def test_retries_are_bounded():
    backend, seen = scripted_openai([httpx2.Response(503, json={"error": {"message": "down"}})])
    with pytest.raises(BackendError, match="gave up after 4 tries"):
        backend.complete(MSGS, Interpretation, name="interpret")
    assert len(seen) == 4


def test_client_errors_are_not_retried():
    backend, seen = scripted_openai([httpx2.Response(400, json={"error": {"message": "bad schema"}})])
    with pytest.raises(BackendError, match="HTTP 400"):
        backend.complete(MSGS, Interpretation, name="interpret")
    assert len(seen) == 1


def test_budget_blocks_calls():
    backend, seen = scripted_openai([GOOD], budget=Budget(max_calls=2))
    backend.complete(MSGS, Interpretation, name="interpret")
    backend.complete(MSGS, Interpretation, name="interpret")
    with pytest.raises(BudgetExhausted, match="call budget"):
        backend.complete(MSGS, Interpretation, name="interpret")
    assert len(seen) == 2
    b2, _ = scripted_openai([GOOD], budget=Budget(max_cost_usd=1e-5))
    b2.complete(MSGS, Interpretation, name="interpret")  # costs 2.1e-4 > limit
    with pytest.raises(BudgetExhausted, match="cost budget"):
        b2.complete(MSGS, Interpretation, name="interpret")


def test_invalid_answer_is_returned_with_error():
    backend, _ = scripted_openai(['{"summary": 3'])
    c = backend.complete(MSGS, Interpretation, name="interpret")
    assert c.parsed is None and c.error.startswith("invalid JSON")
    parsed, err = parse_json('{"reliability": {"score": 9, "reason": "x"}}', Judgement)
    assert parsed is None and "reliability.score" in err and "logical_coherence" in err
    parsed, err = parse_json('```json\n{"summary": "a"}\n```', Interpretation)
    assert parsed is not None


def test_prices():
    assert price_per_token("llamacpp", "anything") == (0.0, 0.0)
    assert price_per_token("openai", "gpt-4o-mini-2024-07-18") == pytest.approx((0.15e-6, 0.6e-6))
    assert price_per_token("openai", "gpt-4o-2024-08-06") == pytest.approx((2.5e-6, 10e-6))
    assert price_per_token("openai", "some-future-model") is None


def test_inline_refs_flattens():
    flat = inline_refs(Judgement.model_json_schema())
    assert "$defs" not in json.dumps(flat) and "$ref" not in json.dumps(flat)
    assert flat["properties"]["novelty"]["properties"]["score"]["maximum"] == 5


def test_parse_model_and_resolution(tmp_path, monkeypatch):
    assert parse_model("offline") == ("offline", "")
    assert parse_model("llamacpp:tiny") == ("llamacpp", "tiny")
    assert parse_model("openai:ft:gpt-4o-mini:org::id") == ("openai", "ft:gpt-4o-mini:org::id")
    with pytest.raises(ValueError, match="PROVIDER:NAME"):
        parse_model("gpt-4o")
    monkeypatch.delenv("PROTEUS_MODEL", raising=False)
    monkeypatch.delenv("PROTEUS_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_model()["name"] == "offline"
    (tmp_path / "proteus.toml").write_text('[model]\nname = "vllm:qwen"\nbase_url = "http://127.0.0.1:9000/v1"\n[model.budget]\nmax_calls = 5\n')
    conf = resolve_model()
    assert conf["name"] == "vllm:qwen" and conf["base_url"] == "http://127.0.0.1:9000/v1"
    p = make_policy()
    assert p.name == "llm:vllm:qwen" and p.backend.budget.max_calls == 5
    monkeypatch.setenv("PROTEUS_MODEL", "llamacpp:tiny")
    assert resolve_model()["name"] == "llamacpp:tiny"
    assert resolve_model("offline")["name"] == "offline"
    assert make_policy("offline").name == "heuristic"


def test_missing_keys_say_what_to_set(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(BackendError, match="OPENAI_API_KEY"):
        make_backend("openai:gpt-4o")
    with pytest.raises(BackendError, match="ANTHROPIC_API_KEY"):
        make_backend("anthropic:claude-sonnet-4-6")


def test_judge_model_gets_its_own_backend_and_shares_budget(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-000000000000000000000000")
    p = make_policy("llamacpp:tiny", "http://127.0.0.1:9/v1", judge_model="openai:gpt-4o-mini", budget={"max_calls": 3})
    assert p.judge_name == "llm:openai:gpt-4o-mini"
    assert p.judge_backend.budget is p.backend.budget
    p2 = make_policy("llamacpp:tiny", judge_model="offline")
    assert p2.judge_name == "heuristic"
