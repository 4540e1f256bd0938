"""Model backends behind one small interface, and the factory that makes them.

``--model`` takes ``PROVIDER:NAME``:

============  ==========================================  =====================================
provider      server                                      structured output
============  ==========================================  =====================================
openai        api.openai.com (``OPENAI_API_KEY``)         ``response_format`` json_schema
anthropic     api.anthropic.com (``ANTHROPIC_API_KEY``)   forced tool use with ``input_schema``
vllm          ``--base-url``, default 127.0.0.1:8000/v1   json_schema (vLLM structured outputs)
llamacpp      ``--base-url``, default 127.0.0.1:8000/v1   json_object + schema (GBNF grammar)
ollama        ``--base-url``, default 127.0.0.1:11434/v1  json_schema
offline       none                                        the heuristic policy
============  ==========================================  =====================================

>>> parse_model("llamacpp:tiny")
('llamacpp', 'tiny')

The policy a ``--model`` names comes from :func:`proteus.policy.make_policy`.

Without ``--model`` the model comes from ``PROTEUS_MODEL`` (and ``PROTEUS_BASE_URL``), else from
``proteus.toml`` in the working directory::

    [model]
    name = "llamacpp:tiny"
    base_url = "http://127.0.0.1:8080/v1"
    judge = "openai:gpt-4o-mini"        # optional
    context_tokens = 8192               # optional: the model's context (default: ask the server)
    max_completion_tokens = 2048        # optional, also timeout_s, temperature
    [model.budget]                      # optional
    max_calls = 200
    max_cost_usd = 2.0

else ``offline``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from proteus.llm.base import (
    PRICES,
    BackendError,
    Budget,
    BudgetExhausted,
    ChatBackend,
    Completion,
    RetryPolicy,
    TransientError,
    price_per_token,
)

__all__ = [
    "ChatBackend",
    "Completion",
    "Budget",
    "RetryPolicy",
    "BackendError",
    "TransientError",
    "BudgetExhausted",
    "PRICES",
    "price_per_token",
    "PROVIDERS",
    "parse_model",
    "resolve_model",
    "make_backend",
]

PROVIDERS = ("openai", "anthropic", "vllm", "llamacpp", "ollama", "offline")
_OFFLINE = {"offline", "heuristic", "none"}


def parse_model(spec: str) -> tuple[str, str]:
    """Split ``PROVIDER:NAME`` (``offline`` has no name). Raises ``ValueError`` with the choices."""
    spec = spec.strip()
    if spec.lower() in _OFFLINE:
        return "offline", ""
    provider, sep, name = spec.partition(":")
    provider = provider.lower()
    if not sep or provider not in PROVIDERS or not name:
        msg = f"model {spec!r} is not PROVIDER:NAME with PROVIDER one of {', '.join(PROVIDERS[:-1])} (or 'offline')"
        raise ValueError(msg)
    return provider, name


def resolve_model(model: str | None = None, base_url: str | None = None, *, cwd: str | Path | None = None) -> dict[str, Any]:
    """Model settings from, in order: the arguments, ``PROTEUS_MODEL`` / ``PROTEUS_BASE_URL``,
    ``proteus.toml`` ``[model]`` in ``cwd``; else ``offline``. Returns a dict with ``name``,
    ``base_url``, ``source`` and any other ``[model]`` keys."""
    conf: dict[str, Any] = {}
    path = Path(cwd or Path.cwd()) / "proteus.toml"
    if path.is_file():
        with open(path, "rb") as f:
            conf = dict(tomllib.load(f).get("model", {}))
    if model:
        source = "argument"
    elif os.environ.get("PROTEUS_MODEL"):
        model, source = os.environ["PROTEUS_MODEL"], "env"
        base_url = base_url or os.environ.get("PROTEUS_BASE_URL")
    elif conf.get("name"):
        model, source = conf["name"], str(path)
    else:
        model, source = "offline", "default"
    if base_url is None and source == str(path):
        base_url = conf.get("base_url")
    if base_url is None and source != "argument":
        base_url = os.environ.get("PROTEUS_BASE_URL")
    return {**conf, "name": model, "base_url": base_url, "source": source}


def make_backend(model: str, base_url: str | None = None, *, budget: Budget | None = None, **kw: Any) -> ChatBackend:
    """The :class:`ChatBackend` for ``PROVIDER:NAME`` (keyword options go to the backend:
    ``retry``, ``max_completion_tokens``, ``temperature``, ``timeout_s``, ``seed``, ``http_client``)."""
    provider, name = parse_model(model)
    if provider == "offline":
        msg = "the offline policy has no chat backend; use proteus.policy.make_policy('offline')"
        raise ValueError(msg)
    if provider == "openai":
        from proteus.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(name, base_url=base_url, budget=budget, **kw)
    if provider == "anthropic":
        from proteus.llm.anthropic_backend import AnthropicBackend

        return AnthropicBackend(name, base_url=base_url, budget=budget, **kw)
    from proteus.llm.openai_backend import OpenAICompatBackend

    return OpenAICompatBackend(provider, name, base_url=base_url, budget=budget, **kw)
