"""OpenAI and OpenAI-compatible servers (vLLM, llama.cpp, Ollama) through the ``openai`` SDK.

Structured output per engine, always with the per-call schema of
:mod:`proteus.policy.decision_schemas` (the run's valid names as enums):

- ``openai``: ``response_format={"type": "json_schema", "json_schema": {..., "strict": true}}``
  with :func:`strict_schema` (every property required, optional ones nullable; nulls are dropped
  before validation).
- ``vllm``: the OpenAI ``json_schema`` response format, which vLLM's OpenAI-compatible server
  enforces with its structured-outputs backend (xgrammar / guidance).
- ``llamacpp``: ``response_format={"type": "json_object", "schema": ...}``, which
  ``llama_cpp.server`` compiles to a GBNF grammar (:func:`grammar_schema`).
- ``ollama``: the OpenAI ``json_schema`` response format of Ollama's ``/v1`` endpoint.

What fits: the context is asked of the server once (llama.cpp ``/props`` ``n_ctx``; vLLM
``/v1/models`` ``max_model_len``); llama-cpp-python's server reports none, but its HTTP 400 states
it (:class:`~proteus.llm.base.ContextOverflow`). Tokens are counted with the server's tokenizer
(``/tokenize`` on llama.cpp and vLLM, ``/extras/tokenize/count`` on llama-cpp-python), with
``tiktoken`` for OpenAI when it is installed, else estimated.

The SDK's own retries are off (``max_retries=0``); :class:`~proteus.llm.base.ChatBackend`
retries so every attempt is bounded and counted the same way for every engine.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any, Callable

from proteus.llm.base import BackendError, ChatBackend, ContextOverflow, TransientError, stated_context_limit

__all__ = ["OpenAIBackend", "OpenAICompatBackend", "DEFAULT_BASE_URLS", "grammar_schema", "strict_schema"]

DEFAULT_BASE_URLS = {
    "vllm": "http://127.0.0.1:8000/v1",
    "llamacpp": "http://127.0.0.1:8000/v1",
    "ollama": "http://127.0.0.1:11434/v1",
}


_GRAMMAR_BOUNDS = {"maxLength": 300, "maxItems": 16}


def grammar_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as llama.cpp's JSON-schema-to-GBNF converter handles it: ``maxLength`` above
    300 and ``maxItems`` above 16 dropped (llama-cpp-python expands a bound of n into n nested
    optional rules, and a grammar for ``maxLength: 1200`` fails to parse and kills the server).
    Dropped bounds are still enforced: the answer is validated against the pydantic model."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not (k in _GRAMMAR_BOUNDS and isinstance(v, int) and v > _GRAMMAR_BOUNDS[k])}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(schema)


_STRICT_KEYS = {"type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "description", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems", "pattern"}


def _open_object(node: dict[str, Any]) -> bool:
    branches = node.get("anyOf", [node])
    return any(b.get("type") == "object" and not b.get("properties") for b in branches)


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` in the subset OpenAI's strict mode accepts: every object closed with all its
    properties required, optional ones made nullable, optional free-form objects left out, and
    keywords strict mode rejects (``maxLength``, ``default``) dropped."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        if node.get("type") == "object" and "properties" in node:
            required = set(node.get("required", []))
            props = {}
            for k, v in node["properties"].items():
                if k not in required and _open_object(v):
                    continue
                v = walk(v)
                if k not in required and not any(o.get("type") == "null" for o in v.get("anyOf", [])):
                    v = {"anyOf": [v, {"type": "null"}]}
                props[k] = v
            out = {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}
            return {**out, **({"description": node["description"]} if "description" in node else {})}
        return {k: walk(v) for k, v in node.items() if k in _STRICT_KEYS}

    return walk(schema)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


@lru_cache(maxsize=4)
def _tiktoken(model: str) -> Callable[[str], list[int]] | None:
    try:
        import tiktoken

        try:
            return tiktoken.encoding_for_model(model).encode
        except KeyError:
            return tiktoken.get_encoding("o200k_base").encode
    except Exception:  # noqa: BLE001 - not installed, or no cached encoding offline
        return None


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

    def _response_format(self, schema: dict[str, Any], name: str) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": name, "schema": strict_schema(schema), "strict": True}}

    def _normalise(self, text: str) -> str:
        try:  # strict mode answers null for an optional field left out
            return json.dumps(_drop_nulls(json.loads(text)), ensure_ascii=False)
        except (json.JSONDecodeError, TypeError):
            return text

    def _server_count(self, text: str) -> int | None:
        enc = _tiktoken(self.model)
        if enc is None:
            return None
        self.exact_tokens = True
        return len(enc(text))

    def _request(self, messages: list[dict[str, str]], schema: dict[str, Any], name: str, max_tokens: int) -> dict[str, Any]:
        req: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "response_format": self._response_format(schema, name),
            "temperature": self.temperature,
            "max_completion_tokens": max_tokens,
        }
        if self.seed is not None:
            req["seed"] = self.seed
        return req

    def _call(self, messages: list[dict[str, str]], schema: dict[str, Any], name: str, max_tokens: int) -> tuple[str, int, int, dict[str, Any]]:
        oa = self._openai
        req = self._request(messages, schema, name, max_tokens)
        try:
            resp = self.client.chat.completions.create(**req)
        except (oa.APITimeoutError, oa.APIConnectionError) as e:
            raise TransientError(f"{type(e).__name__}: {e}") from e
        except oa.APIStatusError as e:
            if e.status_code in (408, 409, 429) or e.status_code >= 500:
                raise TransientError(f"HTTP {e.status_code}", _retry_after(getattr(e.response, "headers", None))) from e
            msg = f"{self.spec}: HTTP {e.status_code}: {e.message}"
            said = f"{e.message} {json.dumps(e.body, default=str)}"
            if e.status_code == 400 and "context" in said.lower():
                raise ContextOverflow(msg, stated_context_limit(said)) from e
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
            "max_tokens": max_tokens,
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

    def _response_format(self, schema: dict[str, Any], name: str) -> dict[str, Any]:
        if self.provider == "llamacpp":
            return {"type": "json_object", "schema": grammar_schema(schema)}
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}

    def _normalise(self, text: str) -> str:
        return text

    def _request(self, messages: list[dict[str, str]], schema: dict[str, Any], name: str, max_tokens: int) -> dict[str, Any]:
        req = super()._request(messages, schema, name, max_tokens)
        # llama.cpp and older vLLM servers read ``max_tokens`` (the legacy name).
        req["max_tokens"] = req.pop("max_completion_tokens")
        return req

    @property
    def _root(self) -> str:
        return str(self.client.base_url).rstrip("/").removesuffix("/v1")

    def _ask(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One JSON request to the server outside the chat API; ``None`` if it fails."""
        try:
            if method == "get":
                return self.client.get(path, cast_to=object)
            return self.client.post(path, cast_to=object, body=body)
        except Exception:  # noqa: BLE001 - an engine without the endpoint, or a server not up yet
            return None

    def _probe_context(self) -> int | None:
        if self.provider == "llamacpp":
            props = self._ask("get", f"{self._root}/props")
            if isinstance(props, dict):
                n = props.get("n_ctx") or (props.get("default_generation_settings") or {}).get("n_ctx")
                return int(n) if n else None
        if self.provider == "vllm":
            models = self._ask("get", f"{self._root}/v1/models")
            for m in (models or {}).get("data", []) if isinstance(models, dict) else []:
                if m.get("max_model_len"):
                    return int(m["max_model_len"])
        return None

    def _server_count(self, text: str) -> int | None:
        if getattr(self, "_tokenize", "") is None:
            return None
        routes = {
            "llamacpp": [("/tokenize", lambda t: {"content": t}, lambda r: len(r["tokens"])), ("/extras/tokenize/count", lambda t: {"input": t, "model": self.model}, lambda r: r["count"])],
            "vllm": [("/tokenize", lambda t: {"model": self.model, "prompt": t, "add_special_tokens": False}, lambda r: r["count"])],
        }.get(self.provider, [])
        known = getattr(self, "_tokenize", None)
        for route in [known] if known else routes:
            path, body, read = route
            r = self._ask("post", f"{self._root}{path}", body(text))
            try:
                n = int(read(r))
            except (KeyError, TypeError, ValueError):
                continue
            self._tokenize, self.exact_tokens = route, True
            return n
        if known is None:
            self._tokenize = None  # the server has no tokenizer endpoint: estimate from now on
        return None
