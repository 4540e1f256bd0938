"""Anthropic Messages API through the ``anthropic`` SDK; structured output by forced tool use.

The decision schema becomes one tool (``input_schema``) and ``tool_choice`` forces the model to
call it; the tool call's ``input`` is the answer. System messages go to the ``system`` field.
"""

from __future__ import annotations

import json
import os
from typing import Any

from proteus.llm.base import BackendError, ChatBackend, ContextOverflow, TransientError, stated_context_limit

__all__ = ["AnthropicBackend"]


class AnthropicBackend(ChatBackend):
    """Claude models (needs ``ANTHROPIC_API_KEY``)."""

    provider = "anthropic"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None, http_client: Any = None, **kw: Any) -> None:
        super().__init__(model, **kw)
        try:
            import anthropic
        except ImportError as e:  # pragma: no cover - anthropic is a core dependency
            e.add_note("pip install anthropic")
            raise
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            msg = "anthropic backend needs ANTHROPIC_API_KEY in the environment (or use --model offline)"
            raise BackendError(msg)
        self._anthropic = anthropic
        self.client = anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=0, timeout=self.timeout_s, http_client=http_client)

    def _request(self, messages: list[dict[str, str]], schema: dict[str, Any], name: str, max_tokens: int) -> dict[str, Any]:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        chat = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        tool = {
            "name": name,
            "description": f"Record the {name.replace('_', ' ')} decision. Fill every field from the context given.",
            "input_schema": schema,
        }
        req: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": chat,
            "tools": [tool],
            "tool_choice": {"type": "tool", "name": name},
        }
        if system:
            req["system"] = system
        return req

    def _call(self, messages: list[dict[str, str]], schema: dict[str, Any], name: str, max_tokens: int) -> tuple[str, int, int, dict[str, Any]]:
        an = self._anthropic
        req = self._request(messages, schema, name, max_tokens)
        try:
            resp = self.client.messages.create(**req)
        except (an.APITimeoutError, an.APIConnectionError) as e:
            raise TransientError(f"{type(e).__name__}: {e}") from e
        except an.APIStatusError as e:
            if e.status_code in (408, 409, 429, 529) or e.status_code >= 500:
                headers = getattr(e.response, "headers", None)
                ra = headers.get("retry-after") if headers is not None else None
                raise TransientError(f"HTTP {e.status_code}", float(ra) if ra and ra.replace(".", "", 1).isdigit() else None) from e
            msg = f"{self.spec}: HTTP {e.status_code}: {e.message}"
            if e.status_code == 400 and "too long" in str(e.message).lower():
                raise ContextOverflow(msg, stated_context_limit(str(e.message))) from e
            raise BackendError(msg) from e
        except (an.APIResponseValidationError, ValueError) as e:  # e.g. a truncated JSON body
            raise TransientError(f"malformed response: {type(e).__name__}") from e
        text = ""
        try:
            for block in resp.content:
                if block.type == "tool_use" and block.name == name:
                    text = json.dumps(block.input, ensure_ascii=False)
                    break
            else:
                text = "".join(getattr(b, "text", "") for b in resp.content)
            pt = int(resp.usage.input_tokens or 0)
            ct = int(resp.usage.output_tokens or 0)
        except (AttributeError, TypeError) as e:
            raise TransientError(f"malformed response: {type(e).__name__}") from e
        summary = {
            "model": self.model,
            "base_url": str(self.client.base_url),
            "response_format": "tool_use",
            "max_tokens": max_tokens,
            "finish_reason": resp.stop_reason,
        }
        return text, pt, ct, summary
