"""Bounded prompt context: token estimates, a compact tool catalogue and budget fitting.

A prompt never carries raw matrices: it carries the data profile's summary, knowledge-graph
summaries and the tool catalogue, each cut to fit a token budget (default 8000) with
:func:`fit_to_budget`. Tokens are counted with ``tiktoken`` when it is installed and its
encoding is cached locally, otherwise estimated as characters / 4.
"""

from __future__ import annotations

import json
import math
import typing
from functools import lru_cache
from typing import Any, Callable

from pydantic import BaseModel

__all__ = ["estimate_tokens", "truncate", "fit_to_budget", "tool_catalogue", "compact_schema"]


@lru_cache(maxsize=1)
def _encoder() -> Callable[[str], list[int]] | None:
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base").encode
    except Exception:  # noqa: BLE001 - not installed, or no cached encoding offline
        return None


def estimate_tokens(text: str) -> int:
    """Token count of ``text`` (tiktoken ``cl100k_base`` if available, else ``ceil(chars / 4)``)."""
    enc = _encoder()
    if enc is not None:
        return len(enc(text))
    return math.ceil(len(text) / 4)


def truncate(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` at a line boundary, saying how much was left out."""
    if len(text) <= max_chars:
        return text
    if max_chars < 40:
        return text[: max(0, max_chars)]
    lines = text.splitlines()
    kept: list[str] = []
    size = 0
    budget = max_chars - 40
    for line in lines:
        if size + len(line) + 1 > budget:
            if not kept:  # one huge line: cut inside it
                kept.append(line[:budget])
            break
        kept.append(line)
        size += len(line) + 1
    left = len(lines) - len(kept)
    return "\n".join(kept) + f"\n[... {left} more lines truncated]"


def fit_to_budget(fixed_chars: int, parts: dict[str, str], budget_tokens: int, *, chars_per_token: float = 4.0) -> dict[str, str]:
    """Shrink the texts in ``parts`` so the whole prompt fits ``budget_tokens``.

    ``fixed_chars`` is the size of everything that cannot shrink (template text, schema). The
    remaining room is shared by water-filling: parts smaller than an equal share keep their full
    text and their unused share goes to the larger ones, which are cut at line boundaries.
    """
    room = max(0, int(budget_tokens * chars_per_token) - fixed_chars)
    if sum(map(len, parts.values())) <= room:
        return dict(parts)
    out: dict[str, str] = {}
    pending = sorted(parts, key=lambda k: len(parts[k]))
    while pending:
        share = room // len(pending)
        k = pending[0]
        if len(parts[k]) <= share:
            out[k] = parts[k]
            room -= len(parts[k])
            pending.pop(0)
            continue
        for k in pending:
            out[k] = truncate(parts[k], share)
        break
    return out


def _type_name(ann: Any) -> str:
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Literal:
        return "|".join(json.dumps(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        names = [_type_name(a) for a in args if a is not type(None)]
        return "|".join(names) + ("?" if type(None) in args else "")
    if origin in (list, tuple, set):
        return f"list[{', '.join(_type_name(a) for a in args if a is not Ellipsis)}]"
    if origin is dict:
        return "dict"
    return getattr(ann, "__name__", str(ann)).replace("typing.", "")


def _param_lines(params: type[BaseModel], *, desc_chars: int = 80, optional_desc: bool = True) -> list[str]:
    lines = []
    for fname, f in params.model_fields.items():
        req = "*" if f.is_required() else ""
        default = "" if f.is_required() else f"={json.dumps(f.get_default(call_default_factory=True), default=str)}"
        desc = (f.description or "").replace("\n", " ")
        if len(desc) > desc_chars:
            desc = desc[: desc_chars - 1] + "…"
        if not f.is_required() and not optional_desc:
            desc = ""
        lines.append(f"    {fname}{req}: {_type_name(f.annotation)}{default}" + (f" - {desc}" if desc else ""))
    return lines


def tool_catalogue(tools: list[Any], *, with_params: bool = True, max_chars: int | None = None) -> str:
    """One entry per tool: ``name (family): description`` and, with ``with_params``, one line per
    parameter (``name*: type=default - description``; ``*`` = required). Built from the registry.

    With ``max_chars`` the catalogue is made more compact until it fits (shorter descriptions,
    then optional parameters without descriptions, then no parameter lines), so that every tool
    stays visible rather than cutting the list.
    """
    levels = [(300, 80, True), (200, 60, False), (160, 40, False)] if with_params else []
    levels.append((200, 0, None))
    text = ""
    for tool_chars, desc_chars, optional_desc in levels:
        out = []
        for t in tools:
            desc = t.description if len(t.description) <= tool_chars else t.description[: tool_chars - 1] + "…"
            out.append(f"- {t.name} ({t.family}): {desc}")
            if optional_desc is not None:
                out.extend(_param_lines(t.params, desc_chars=desc_chars, optional_desc=optional_desc))
        text = "\n".join(out) if out else "(no tools applicable)"
        if max_chars is None or len(text) <= max_chars:
            return text
    return text


def compact_schema(schema: type[BaseModel]) -> str:
    """The decision's JSON schema, ``$ref`` s inlined and ``title`` keys dropped, as compact JSON."""
    from proteus.llm.base import inline_refs

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return json.dumps(strip(inline_refs(schema.model_json_schema())), separators=(",", ":"))
