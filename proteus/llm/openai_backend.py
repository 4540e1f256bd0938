"""OpenAI and OpenAI-compatible servers (vLLM, llama.cpp, Ollama) through the ``openai`` SDK.

Structured output per engine:

- ``openai``: ``response_format={"type": "json_schema", "json_schema": {"name", "schema", "strict": false}}``
  (strict mode would forbid the open ``params`` object of a step).
- ``vllm``: the same OpenAI ``json_schema`` response format, which vLLM's OpenAI-compatible
  server enforces with its structured-outputs backend (xgrammar / guidance).
- ``llamacpp``: ``response_format={"type": "json_object", "schema": ...}``, which
  ``llama_cpp.server`` compiles to a GBNF grammar (:func:`grammar_schema`: ``$ref`` s inlined,
  length bounds left to pydantic validation).
- ``ollama``: the OpenAI ``json_schema`` response format of Ollama's ``/v1`` endpoint.

The SDK's own retries are off (``max_retries=0``); :class:`~proteus.llm.base.ChatBackend`
retries so every attempt is bounded and counted the same way for every engine.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from proteus.llm.base import BackendError, ChatBackend, TransientError, inline_refs

__all__ = ["OpenAIBackend", "OpenAICompatBackend", "DEFAULT_BASE_URLS", "grammar_schema"]

DEFAULT_BASE_URLS = {
    "vllm": "http://127.0.0.1:8000/v1",
    "llamacpp": "http://127.0.0.1:8000/v1",
    "ollama": "http://127.0.0.1:11434/v1",
}


_UNBOUNDED = ("maxLength", "maxItems")


def grammar_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The schema as llama.cpp's JSON-schema-to-GBNF converter handles it: ``$ref`` s inlined and
    ``maxLength`` / ``maxItems`` dropped (llama-cpp-python expands a bound of n into n nested
    optional rules, and a grammar for ``maxLength: 1200`` fails to parse and kills the server).
    The bounds are still enforced: the answer is validated against the pydantic model."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not (k in _UNBOUNDED and isinstance(v, int))}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(inline_refs(schema.model_json_schema()))


def _retry_after(headers: Any) -> float | None:
    try:
        v = headers.get("retry-after") if headers is not None else None
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


class OpenAIBackend(ChatBackend):
    """OpenAI chat completions with a JSON-schema response format (needs ``OPENAI_API_KEY``)."""

    provider = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None, http_client: Any = None, **kw: Any) -> None:
        super().__init__(model, **kw)
        try:
            import openai
        except ImportError as e:  # pragma: no cover - openai is a core dependency
            e.add_note("pip install openai")
            raise
        key = api_key or self._api_key()
        self.base_url = base_url
        self._openai = openai
        self.client = openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=self.timeout_s, http_client=http_client)

    def _api_key(self) -> str:
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            msg = "openai backend needs OPENAI_API_KEY in the environment (or use --model offline)"
            raise BackendError(msg)
        return key

    def _response_format(self, schema: type[BaseModel], name: str) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema.model_json_schema(), "strict": False}}

    def _request(self, messages: list[dict[str, str]], schema: type[BaseModel], name: str) -> dict[str, Any]:
        req: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "response_format": self._response_format(schema, name),
            "temperature": self.temperature,
            "max_completion_tokens": self.max_completion_tokens,
        }
        if self.seed is not None:
            req["seed"] = self.seed
        return req

    def _call(self, messages: list[dict[str, str]], schema: type[BaseModel], name: str) -> tuple[str, int, int, dict[str, Any]]:
        oa = self._openai
        req = self._request(messages, schema, name)
        try:
            resp = self.client.chat.completions.create(**req)
        except (oa.APITimeoutError, oa.APIConnectionError) as e:
            raise TransientError(f"{type(e).__name__}: {e}") from e
        except oa.APIStatusError as e:
            if e.status_code in (408, 409, 429) or e.status_code >= 500:
                raise TransientError(f"HTTP {e.status_code}", _retry_after(getattr(e.response, "headers", None))) from e
            msg = f"{self.spec}: HTTP {e.status_code}: {e.message}"
            raise BackendError(msg) from e
        except (oa.APIResponseValidationError, ValueError) as e:  # e.g. a truncated JSON body
            raise TransientError(f"malformed response: {type(e).__name__}") from e
        try:
            choice = resp.choices[0]
            text = choice.message.content or ""
            finish = choice.finish_reason
        except (AttributeError, IndexError, TypeError) as e:
            raise TransientError(f"malformed response: {type(e).__name__}") from e
        usage = getattr(resp, "usage", None)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0) or sum(len(m["content"]) for m in messages) // 4
        ct = int(getattr(usage, "completion_tokens", 0) or 0) or len(text) // 4
        summary = {
            "model": self.model,
            "base_url": str(self.client.base_url),
            "response_format": req["response_format"]["type"],
            "max_tokens": self.max_completion_tokens,
            "finish_reason": finish,
        }
        return text, pt, ct, summary


class OpenAICompatBackend(OpenAIBackend):
    """A local OpenAI-compatible server: ``vllm``, ``llamacpp`` or ``ollama`` (cost 0).

    ``api_key`` defaults to ``PROTEUS_API_KEY`` / ``VLLM_API_KEY`` or a placeholder (local
    servers usually need none).
    """

    def __init__(self, engine: str, model: str, *, base_url: str | None = None, **kw: Any) -> None:
        if engine not in DEFAULT_BASE_URLS:
            msg = f"unknown OpenAI-compatible engine {engine!r}; choose from {sorted(DEFAULT_BASE_URLS)}"
            raise ValueError(msg)
        self.provider = engine
        super().__init__(model, base_url=base_url or DEFAULT_BASE_URLS[engine], **kw)

    def _api_key(self) -> str:
        return os.environ.get("PROTEUS_API_KEY") or os.environ.get("VLLM_API_KEY") or "not-needed"

    def _response_format(self, schema: type[BaseModel], name: str) -> dict[str, Any]:
        if self.provider == "llamacpp":
            return {"type": "json_object", "schema": grammar_schema(schema)}
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema.model_json_schema(), "strict": False}}

    def _request(self, messages: list[dict[str, str]], schema: type[BaseModel], name: str) -> dict[str, Any]:
        req = super()._request(messages, schema, name)
        # llama.cpp and older vLLM servers read ``max_tokens`` (the legacy name).
        req["max_tokens"] = req.pop("max_completion_tokens")
        return req
