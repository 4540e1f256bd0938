"""The one small interface every model backend implements, plus retries, budgets and prices.

A :class:`ChatBackend` turns chat ``messages`` and a pydantic ``schema`` into a
:class:`Completion`: the raw text, the parsed model (``None`` when the text does not validate),
token counts, cost and latency. Transient failures (timeouts, dropped connections, HTTP 429 and
5xx, malformed response bodies) are retried with bounded exponential backoff
(:class:`RetryPolicy`); a :class:`Budget` shared by every backend of a run caps calls, tokens and
cost and raises :class:`BudgetExhausted` before a call that would exceed it.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = [
    "Completion",
    "ChatBackend",
    "RetryPolicy",
    "Budget",
    "BackendError",
    "TransientError",
    "BudgetExhausted",
    "ContextOverflow",
    "PRICES",
    "CONTEXT_LIMITS",
    "price_per_token",
    "parse_json",
    "inline_refs",
]


class BackendError(RuntimeError):
    """A model call failed for good (after retries, or a non-retryable error such as HTTP 400/401)."""


class TransientError(BackendError):
    """A failure worth retrying: timeout, dropped connection, HTTP 429 or 5xx, malformed body.

    ``retry_after`` is the server's hint in seconds, if it gave one.
    """

    def __init__(self, msg: str, retry_after: float | None = None) -> None:
        super().__init__(msg)
        self.retry_after = retry_after


class BudgetExhausted(BackendError):
    """The run's model budget (calls, tokens or cost) is spent; the caller falls back."""


class ContextOverflow(BackendError):
    """The server rejected a prompt as longer than its context; ``limit`` is the context it
    stated (``None`` if the message gave none)."""

    def __init__(self, msg: str, limit: int | None = None) -> None:
        super().__init__(msg)
        self.limit = limit


_LIMIT_PATTERNS = (
    re.compile(r"context window of (\d+)"),  # llama-cpp-python
    re.compile(r"maximum context length is (\d+)"),  # vLLM, OpenAI
    re.compile(r"['\"]?n_ctx['\"]?\s*[:=]\s*(\d+)"),  # llama.cpp server error body
    re.compile(r"> (\d+) maximum"),  # Anthropic: "prompt is too long: 250000 tokens > 200000 maximum"
    re.compile(r"context (?:size|length|window)[^0-9]{0,40}(\d{3,7})"),
)


def stated_context_limit(message: str) -> int | None:
    """The context size an HTTP 400 message states, if it states one."""
    for pat in _LIMIT_PATTERNS:
        m = pat.search(message)
        if m:
            return int(m.group(1))
    return None


@dataclass
class Completion:
    """One model answer.

    ``parsed`` is the schema instance when ``text`` is valid JSON for it, else ``None`` and
    ``error`` says why. ``raw_request_summary`` describes the request without the prompt text
    (backend, model, response format, number of messages and characters, attempts).
    """

    text: str
    parsed: BaseModel | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    raw_request_summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class RetryPolicy:
    """Bounded exponential backoff: ``tries`` attempts, waits ``base_s * 2**k`` (+ jitter), capped."""

    tries: int = 4
    base_s: float = 1.0
    max_wait_s: float = 20.0
    jitter: float = 0.1

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        w = self.base_s * (2**attempt)
        if retry_after is not None:
            w = max(w, retry_after)
        w = min(w, self.max_wait_s)
        return w * (1 + self.jitter * random.random())


@dataclass
class Budget:
    """Per-run limits on model use (``None`` = unlimited). Thread-safe; shared by all backends."""

    max_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def of(cls, spec: Budget | dict[str, Any] | None) -> Budget:
        if spec is None:
            return cls()
        if isinstance(spec, Budget):
            return spec
        unknown = set(spec) - {"max_calls", "max_tokens", "max_cost_usd"}
        if unknown:
            msg = f"unknown budget keys {sorted(unknown)}; use max_calls, max_tokens, max_cost_usd"
            raise ValueError(msg)
        return cls(**spec)

    def exhausted(self) -> str | None:
        """Why no further call may be made, or ``None``."""
        if self.max_calls is not None and self.calls >= self.max_calls:
            return f"call budget spent ({self.calls}/{self.max_calls} calls)"
        tokens = self.prompt_tokens + self.completion_tokens
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"token budget spent ({tokens}/{self.max_tokens} tokens)"
        if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
            return f"cost budget spent (${self.cost_usd:.4f}/${self.max_cost_usd:.4f})"
        return None

    def reserve(self) -> None:
        """Count one call, or raise :class:`BudgetExhausted`."""
        with self._lock:
            why = self.exhausted()
            if why is not None:
                raise BudgetExhausted(why)
            self.calls += 1

    def spend(self, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.cost_usd += cost_usd

    def totals(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "limits": {"max_calls": self.max_calls, "max_tokens": self.max_tokens, "max_cost_usd": self.max_cost_usd},
        }


# Rough list prices in USD per million tokens (input, output); longest matching prefix wins.
# Local engines (vLLM, llama.cpp, Ollama) cost 0. Unknown hosted models are priced at 0 and
# flagged ``price_known: false`` in the request summary.
PRICES: dict[str, tuple[float, float]] = {
    "openai:gpt-4o-mini": (0.15, 0.60),
    "openai:gpt-4o": (2.50, 10.00),
    "openai:gpt-4.1-nano": (0.10, 0.40),
    "openai:gpt-4.1-mini": (0.40, 1.60),
    "openai:gpt-4.1": (2.00, 8.00),
    "openai:gpt-5-nano": (0.05, 0.40),
    "openai:gpt-5-mini": (0.25, 2.00),
    "openai:gpt-5": (1.25, 10.00),
    "openai:o4-mini": (1.10, 4.40),
    "openai:o3-mini": (1.10, 4.40),
    "openai:o3": (2.00, 8.00),
    "anthropic:claude-3-5-haiku": (0.80, 4.00),
    "anthropic:claude-haiku-4": (1.00, 5.00),
    "anthropic:claude-opus-4-5": (5.00, 25.00),
    "anthropic:claude-opus-4-6": (5.00, 25.00),
    "anthropic:claude-opus-4-7": (5.00, 25.00),
    "anthropic:claude-3-5-sonnet": (3.00, 15.00),
    "anthropic:claude-3-7-sonnet": (3.00, 15.00),
    "anthropic:claude-sonnet-4": (3.00, 15.00),
    "anthropic:claude-opus-4": (15.00, 75.00),
}
_LOCAL = ("vllm", "llamacpp", "ollama")

# Context windows (tokens) of hosted models; longest matching prefix wins. Local servers are asked.
CONTEXT_LIMITS: dict[str, int] = {
    "openai:gpt-4o": 128_000,
    "openai:gpt-4.1": 1_047_576,
    "openai:gpt-5": 400_000,
    "openai:o3": 200_000,
    "openai:o4-mini": 200_000,
    "anthropic:claude": 200_000,
}


def price_per_token(provider: str, model: str) -> tuple[float, float] | None:
    """(input, output) USD per token for ``provider:model``; 0 for local engines; None if unknown."""
    if provider in _LOCAL:
        return (0.0, 0.0)
    key = f"{provider}:{model}"
    best = max((k for k in PRICES if key.startswith(k)), key=len, default=None)
    if best is None:
        return None
    pin, pout = PRICES[best]
    return (pin / 1e6, pout / 1e6)


def parse_json(text: str, schema: type[BaseModel]) -> tuple[BaseModel | None, str | None]:
    """Validate ``text`` against ``schema``; returns (instance, None) or (None, error message).

    Tolerates a Markdown code fence around the JSON (some models add one despite instructions)
    and raw control characters inside strings (a grammar-constrained small model writes them).
    """
    s = text.strip()
    if s.startswith("```"):
        s = s.split("\n", 1)[1] if "\n" in s else s
        s = s.rsplit("```", 1)[0]
    try:  # strict=False: a raw control character inside a string is kept, not a parse error
        data = json.loads(s, strict=False)
    except json.JSONDecodeError as e:
        return None, f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}"
    try:
        return schema.model_validate(data), None
    except ValidationError as e:
        errs = e.errors(include_url=False, include_context=False)
        parts = [f"{'.'.join(map(str, x['loc'])) or '<root>'}: {x['msg']}" for x in errs[:8]]
        more = f" (+{len(errs) - 8} more)" if len(errs) > 8 else ""
        return None, f"schema errors: {'; '.join(parts)}{more}"


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Return ``schema`` with every local ``$ref`` to ``$defs`` replaced by its definition.

    Some constrained-decoding engines (llama.cpp grammars, older vLLM backends) handle a flat
    schema more reliably than one with references. Pydantic decision models are not recursive.
    """
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                target = walk(defs[ref.split("/")[-1]])
                rest = {k: walk(v) for k, v in node.items() if k != "$ref"}
                return {**target, **rest}
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


class ChatBackend(ABC):
    """A chat model that answers with JSON for a pydantic schema.

    Subclasses implement :meth:`_call` (one HTTP request, raising :class:`TransientError` for
    retryable failures); :meth:`complete` adds budget checks, retries, parsing and costing.
    """

    provider: str = "backend"

    def __init__(
        self,
        model: str,
        *,
        budget: Budget | None = None,
        retry: RetryPolicy | None = None,
        max_completion_tokens: int = 2048,
        temperature: float = 0.2,
        timeout_s: float = 120.0,
        seed: int | None = None,
    ) -> None:
        self.model = model
        self.budget = budget if budget is not None else Budget()
        self.retry = retry if retry is not None else RetryPolicy()
        self.max_completion_tokens = max_completion_tokens
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.seed = seed

    @property
    def spec(self) -> str:
        """``provider:model``, as given to ``--model``."""
        return f"{self.provider}:{self.model}"

    # --- what fits: the server's context and its tokenizer ------------------------------------
    context_tokens: int | None = None
    """The server's context size once known (asked, stated in an HTTP 400, or set by the user)."""
    exact_tokens: bool = False
    """Whether :meth:`count_tokens` uses the model's own tokenizer (else a calibrated estimate)."""
    _chars_per_token: float = 4.0  # calibrated from the token counts servers report

    def server_context(self) -> int | None:
        """The context size in tokens: :attr:`context_tokens` if known, else asked of the server
        once (:meth:`_probe_context`; hosted models: :data:`CONTEXT_LIMITS`), else ``None``."""
        if self.context_tokens is None and not getattr(self, "_probed", False):
            self._probed = True
            self.context_tokens = self._probe_context()
        return self.context_tokens

    def _probe_context(self) -> int | None:
        key = self.spec
        best = max((k for k in CONTEXT_LIMITS if key.startswith(k)), key=len, default=None)
        return CONTEXT_LIMITS[best] if best else None

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model: the server's tokenizer where it has one
        (:meth:`_server_count`), else characters over a ratio calibrated on the prompt token
        counts the server reports (4 characters per token until the first answer)."""
        n = self._server_count(text)
        return n if n is not None else math.ceil(len(text) / self._chars_per_token)

    def _server_count(self, text: str) -> int | None:  # noqa: ARG002 - engines override
        return None

    def _normalise(self, text: str) -> str:
        """The answer text as it is validated (engines that pad answers override this)."""
        return text

    def _calibrate(self, messages: list[dict[str, str]], prompt_tokens: int) -> None:
        chars = sum(len(m["content"]) for m in messages)
        if prompt_tokens > 0 and chars > 200:
            # at most 4 characters per token: an estimate may waste room, never overfill the context
            self._chars_per_token = min(4.0, max(1.0, 0.5 * self._chars_per_token + 0.5 * chars / prompt_tokens))

    @abstractmethod
    def _call(self, messages: list[dict[str, str]], schema: dict[str, Any], name: str, max_tokens: int) -> tuple[str, int, int, dict[str, Any]]:
        """One request for an answer matching the JSON ``schema``; returns (text, prompt_tokens,
        completion_tokens, request summary). Raises :class:`ContextOverflow` for a prompt longer
        than the server's context."""

    def complete(
        self,
        messages: list[dict[str, str]],
        schema: type[BaseModel],
        *,
        name: str,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        """Ask for a ``schema`` instance; retries transient failures, parses and costs the answer.

        ``json_schema`` is the per-call schema sent to the engine (default: ``schema``'s own; see
        :mod:`proteus.policy.decision_schemas`); ``max_tokens`` caps the answer (default
        :attr:`max_completion_tokens`). Raises :class:`BudgetExhausted` when the budget is spent,
        :class:`ContextOverflow` when the prompt is longer than the server's context (its limit is
        remembered) and :class:`BackendError` when the call fails for good; an answer that does
        not validate is returned with ``parsed=None`` and ``error`` set (the caller decides
        whether to repair).
        """
        self.budget.reserve()
        wire = json_schema if json_schema is not None else inline_refs(schema.model_json_schema())
        limit = min(max_tokens or self.max_completion_tokens, self.max_completion_tokens)
        t0 = time.monotonic()
        failures: list[str] = []
        for attempt in range(self.retry.tries):
            try:
                text, pt, ct, summary = self._call(messages, wire, name, limit)
                break
            except ContextOverflow as e:
                if e.limit:
                    self.context_tokens = e.limit
                raise
            except TransientError as e:
                failures.append(str(e))
                if attempt + 1 >= self.retry.tries:
                    msg = f"{self.spec}: gave up after {self.retry.tries} tries: {' | '.join(failures)}"
                    raise BackendError(msg) from e
                time.sleep(self.retry.wait(attempt, e.retry_after))
        latency = time.monotonic() - t0
        price = price_per_token(self.provider, self.model)
        cost = 0.0 if price is None else pt * price[0] + ct * price[1]
        self.budget.spend(pt, ct, cost)
        if not self.exact_tokens:
            self._calibrate(messages, pt)
        parsed, error = parse_json(self._normalise(text), schema)
        summary = {
            "backend": self.spec,
            "schema": name,
            "n_messages": len(messages),
            "prompt_chars": sum(len(m["content"]) for m in messages),
            "tries": len(failures) + 1,
            "retried_errors": failures,
            "price_known": price is not None,
            **summary,
        }
        return Completion(text, parsed, pt, ct, cost, latency, summary, error)
