"""Recorded response shapes for the hosted APIs, built from the SDKs' own types, served through
``httpx2.MockTransport`` (no network). ``scripted_openai`` / ``scripted_anthropic`` return a backend
whose model answers with the given texts in turn, and the list of requests it received."""

from __future__ import annotations

import json
from typing import Any, Callable

import httpx2
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from proteus.llm import RetryPolicy, make_backend


def chat_completion(content: str, *, model: str = "gpt-4o-mini", prompt_tokens: int = 1000, completion_tokens: int = 100, finish: str = "stop") -> dict[str, Any]:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None, "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
        }
    ).model_dump(mode="json", exclude_none=True)


def anthropic_message(tool_name: str, tool_input: dict[str, Any], *, model: str = "claude-sonnet-4-6", input_tokens: int = 1000, output_tokens: int = 100) -> dict[str, Any]:
    return Message.model_validate(
        {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "tool_use", "id": "toolu_test", "name": tool_name, "input": tool_input}],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
    ).model_dump(mode="json", exclude_none=True)


Responder = Callable[[dict[str, Any]], httpx2.Response]


def _client(responder: Responder, seen: list[dict[str, Any]]) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        seen.append({"url": str(request.url), "headers": dict(request.headers), "body": body})
        return responder(body)

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def scripted_openai(answers: list[str | httpx2.Response], model: str = "openai:gpt-4o-mini", **kw: Any):
    """Backend answering ``answers`` in turn (a string is the message content; a Response is sent as is)."""
    seen: list[dict[str, Any]] = []
    queue = list(answers)

    def respond(body: dict[str, Any]) -> httpx2.Response:
        a = queue.pop(0) if len(queue) > 1 else queue[0]
        return a if isinstance(a, httpx2.Response) else httpx2.Response(200, json=chat_completion(a, model=body["model"]))

    kw.setdefault("retry", RetryPolicy(tries=4, base_s=0.01, max_wait_s=0.05))
    backend = make_backend(model, api_key="sk-test-0000000000000000000000", http_client=_client(respond, seen), **kw)
    return backend, seen


def scripted_anthropic(inputs: list[dict[str, Any] | httpx2.Response], model: str = "anthropic:claude-sonnet-4-6", **kw: Any):
    seen: list[dict[str, Any]] = []
    queue = list(inputs)

    def respond(body: dict[str, Any]) -> httpx2.Response:
        a = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(a, httpx2.Response):
            return a
        return httpx2.Response(200, json=anthropic_message(body["tool_choice"]["name"], a, model=body["model"]))

    kw.setdefault("retry", RetryPolicy(tries=4, base_s=0.01, max_wait_s=0.05))
    backend = make_backend(model, api_key="sk-ant-test-00000000000000000000", http_client=_client(respond, seen), **kw)
    return backend, seen
