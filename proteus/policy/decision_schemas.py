"""Per-call JSON schemas for the model's decisions, with the run's valid names as enums.

The pydantic models of :mod:`proteus.policy.decisions` say what a decision looks like; the schema
sent with one call also says what this run allows: objective families of the applicable tools,
one ``anyOf`` branch per applicable tool whose parameters name only loaded modalities, clinical
columns and (per grouping column) its levels, the objective ids that may be dropped, the evidence
edge ids offered in the prompt, scores 1-5. A grammar-constrained backend (llama.cpp GBNF, vLLM
guided decoding, OpenAI strict ``json_schema``, Anthropic tool ``input_schema``) then cannot
produce an unknown name; the pydantic model and the policy's checks still validate the answer
(data-dependent rules a schema cannot express: sample counts, ``case != control``).

:func:`answer_tokens` bounds the answer's length from the schema, so ``max_tokens`` per call is
sized from what the decision may say.
"""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator

from pydantic import BaseModel

from proteus.policy.decisions import (
    HypothesisDrafts,
    Interpretation,
    Judgement,
    ObjectivePlan,
    ObjectiveUpdate,
    WorkflowPlan,
    WorkflowUpdate,
)

__all__ = ["RunNames", "model_schema", "objective_plan_schema", "workflow_schema", "objective_update_schema", "hypotheses_schema", "judgement_schema", "interpretation_schema", "tool_step_schema", "answer_tokens", "cap_strings", "fit_answer", "long_texts", "placeholder_texts"]

_MODALITY_FIELDS = ("modality", "other_modality", "own_modality")
_GROUP_FIELDS = ("group", "block", "batch")  # categorical clinical columns
_COLUMN_FIELDS = ("variable", "time", "event")  # any clinical column
_MAX_LEVELS = 30  # a column with more levels is an identifier, not a grouping
_RATIONALE_CHARS = 400  # a step's rationale, as StepSpec bounds it


@dataclass
class RunNames:
    """The names a decision may use in this run, read from the data profile and the tools."""

    modalities: list[str]
    columns: list[str]
    levels: dict[str, list[str]] = field(default_factory=dict)
    """categorical column -> its levels (only columns with 2..30 levels)"""
    not_contrasts: set[str] = field(default_factory=set)
    """technical, block and identifier columns: a grouping for quality control, never a contrast"""

    @classmethod
    def of(cls, profile: Any) -> RunNames:
        levels = {
            v.name: sorted(map(str, v.levels))
            for v in profile.variables
            if v.kind in ("binary", "categorical", "batch") and 2 <= len(v.levels) <= _MAX_LEVELS
        }
        never = {v.name for v in profile.variables if getattr(v, "role", "") in ("technical", "block", "identifier")}
        return cls([m.name for m in profile.modalities], [v.name for v in profile.variables], levels, never)

    def groups(self, family: str) -> dict[str, list[str]]:
        """Grouping columns (with levels) a tool of ``family`` may compare."""
        return self.levels if family == "qc" else {k: v for k, v in self.levels.items() if k not in self.not_contrasts}


def _strip(node: Any) -> Any:
    """Drop ``title`` keys (noise for a model and a grammar)."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with ``$ref`` s inlined and titles dropped."""
    from proteus.llm.base import inline_refs

    return _strip(inline_refs(model.model_json_schema()))


def cap_strings(schema: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """A copy of ``schema`` whose free strings have ``maxLength`` at most ``max_chars`` (compact
    answers for a small context; enums and constants are untouched)."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            if out.get("type") == "string" and "enum" not in out and "const" not in out:
                out["maxLength"] = min(int(out.get("maxLength", max_chars)), max_chars)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


_PLACEHOLDER_RATIO = 0.8
"""``difflib`` similarity at which an answer's text counts as a copy of a field description."""


def _descriptions(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        if isinstance(schema.get("description"), str):
            yield schema["description"].strip().lower()
        for v in schema.values():
            yield from _descriptions(v)
    elif isinstance(schema, list):
        for v in schema:
            yield from _descriptions(v)


def long_texts(value: Any, min_chars: int = 12) -> list[str]:
    """Every string of ``value`` (nested dicts and lists) with at least ``min_chars`` characters."""
    if isinstance(value, str):
        return [value] if len(value.strip()) >= min_chars else []
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [t for v in items for t in long_texts(v, min_chars)]


def placeholder_texts(answer: Any, schema: dict[str, Any] | None) -> list[str]:
    """The texts of ``answer`` that copy a field description of ``schema`` (``difflib`` ratio
    >= 0.8, ignoring case): "why this objective fits the data profile" written as the rationale is
    a placeholder, not an answer."""
    descriptions = [d for d in set(_descriptions(schema or {})) if len(d) >= 12]
    return [t for t in long_texts(answer) if any(difflib.SequenceMatcher(None, t.strip().lower(), d).ratio() >= _PLACEHOLDER_RATIO for d in descriptions)]


def _with_enum(prop: dict[str, Any], values: list[Any]) -> dict[str, Any] | None:
    """``prop`` (a string, list of strings or nullable string) restricted to ``values``;
    ``None`` if it must have a value and none is allowed."""
    prop = {k: v for k, v in prop.items() if k != "default" or v is None}
    if prop.get("type") == "string":
        return {**prop, "enum": list(values)} if values else None
    if prop.get("type") == "array":
        return {**prop, "items": {"type": "string", "enum": list(values)}} if values else {**prop, "maxItems": 0}
    if "anyOf" in prop:
        opts = []
        for o in prop["anyOf"]:
            if o.get("type") in ("string", "array"):
                o = _with_enum(o, values)
                if o is None:
                    continue
            opts.append(o)
        return {**prop, "anyOf": opts} if opts else None
    return prop


def _small_int_ranges(props: dict[str, Any]) -> None:
    """Integers bounded to at most 20 values become enums (grammars ignore min/max)."""
    for k, p in props.items():
        if p.get("type") == "integer" and "minimum" in p and "maximum" in p and p["maximum"] - p["minimum"] < 20:
            props[k] = {"enum": list(range(int(p["minimum"]), int(p["maximum"]) + 1)), **({"default": p["default"]} if "default" in p else {})}


def _closed(p: dict[str, Any]) -> bool:
    """Whether every value ``p`` allows is valid by construction (an enum, a constant, a boolean,
    a list of those)."""
    branches = [b for b in p.get("anyOf", [p]) if b.get("type") != "null"]
    return bool(branches) and all(
        "enum" in b or "const" in b or b.get("type") == "boolean" or (b.get("type") == "array" and _closed(b.get("items", {}))) for b in branches
    )


def tool_step_schema(tool: Any, names: RunNames, rationale_chars: int = _RATIONALE_CHARS, *, required_only: bool = False) -> dict[str, Any] | None:
    """The schema of one step calling ``tool`` with parameters restricted to ``names`` (one
    branch per grouping column when the tool takes levels of ``group``); ``None`` when the data
    offers no valid value for a required parameter. With ``required_only`` (compact prompts for
    small models) the optional parameters a grammar cannot bound (free numbers, strings,
    objects) are left out, so the tool's defaults apply."""
    params = model_schema(tool.params)
    props: dict[str, Any] = params.get("properties", {})
    required = set(params.get("required", []))
    allowed = {
        **{k: names.modalities for k in _MODALITY_FIELDS},
        "modalities": names.modalities,
        "group": list(names.groups(tool.family)),
        **{k: list(names.levels) for k in _GROUP_FIELDS if k != "group"},
        **{k: names.columns for k in _COLUMN_FIELDS},
        "covariates": names.columns,
    }
    for k, values in allowed.items():
        if k in props:
            p = _with_enum(props[k], values)
            if p is None:
                if k in required:
                    return None
                props.pop(k)
            else:
                props[k] = p
    _small_int_ranges(props)
    level_fields = [k for k in ("case", "control", "levels", "case_levels") if k in props]
    if required_only:  # levels of ``group`` are closed below, one branch per grouping column
        for k in [k for k, p in props.items() if k not in required and not _closed(p) and not ("group" in props and k in level_fields)]:
            props.pop(k)
    variants = [params]
    if "group" in props and level_fields:
        variants = []
        for col, levels in names.groups(tool.family).items():
            v = copy.deepcopy(params)
            v["properties"]["group"] = {"const": col}
            for k in level_fields:
                v["properties"][k] = _with_enum(v["properties"][k], levels) or v["properties"][k]
            variants.append(v)
        if not variants:
            return None
    return _step(tool.name, variants[0] if len(variants) == 1 else {"anyOf": variants}, rationale_chars)


def _step(tool: str, params: dict[str, Any], rationale_chars: int) -> dict[str, Any]:
    """The schema of one step: ``tool``, its ``params`` schema and a bounded rationale."""
    return {
        "type": "object",
        "properties": {"tool": {"const": tool}, "params": params, "rationale": {"type": "string", "maxLength": rationale_chars}},
        "required": ["tool", "params", "rationale"],
        "additionalProperties": False,
    }


def _steps(tools: list[Any], names: RunNames, required_only: bool) -> dict[str, Any]:
    branches = [s for s in (tool_step_schema(t, names, required_only=required_only) for t in tools) if s is not None]
    return {"anyOf": branches} if len(branches) > 1 else (branches[0] if branches else {"type": "object"})


def objective_plan_schema(families: list[str], max_objectives: int) -> dict[str, Any]:
    s = model_schema(ObjectivePlan)
    s["properties"]["objectives"]["maxItems"] = max(1, max_objectives)
    s["properties"]["objectives"]["items"]["properties"]["family"] = {"enum": list(families), "description": "main analysis family"}
    return s


def workflow_schema(tools: list[Any], names: RunNames, max_steps: int, *, update: bool = False, required_only: bool = False, planned: list[Any] = ()) -> dict[str, Any]:
    """The answer schema of a workflow plan or ``update``; an update may keep each ``planned``
    step exactly as planned (its parameters may be more than a compact step schema allows)."""
    s = model_schema(WorkflowUpdate if update else WorkflowPlan)
    arr = s["properties"]["steps"]
    arr["items"] = _steps(tools, names, required_only)
    if planned:
        branches = arr["items"].get("anyOf", [arr["items"]])
        arr["items"] = {"anyOf": [_step(p.tool, {"const": p.params}, _RATIONALE_CHARS) for p in planned] + branches}  # kept as planned
    arr["maxItems"] = min(int(arr.get("maxItems", max_steps)), max_steps)
    return s


def objective_update_schema(families: list[str], remaining_ids: list[str]) -> dict[str, Any]:
    s = model_schema(ObjectiveUpdate)
    s["properties"]["drop"] = _with_enum(s["properties"]["drop"], remaining_ids)
    s["properties"]["add"]["items"]["properties"]["family"] = {"enum": list(families), "description": "main analysis family"}
    return s


def hypotheses_schema(edge_ids: list[str], entity_ids: list[str], max_hypotheses: int) -> dict[str, Any]:
    s = model_schema(HypothesisDrafts)
    s["properties"]["hypotheses"]["maxItems"] = max_hypotheses
    item = s["properties"]["hypotheses"]["items"]["properties"]
    item["evidence"] = _with_enum(item["evidence"], edge_ids)
    item["entities"] = _with_enum(item["entities"], entity_ids)
    if not edge_ids:  # nothing to cite: no hypothesis can be grounded
        s["properties"]["hypotheses"]["maxItems"] = 0
    return s


def judgement_schema() -> dict[str, Any]:
    s = model_schema(Judgement)
    for metric in s["properties"].values():
        _small_int_ranges(metric["properties"])
    return s


def interpretation_schema() -> dict[str, Any]:
    return model_schema(Interpretation)


def answer_tokens(schema: dict[str, Any], *, chars_per_token: float = 3.0, max_items: int = 12) -> int:
    """Upper bound on the tokens of an answer valid for ``schema``: strings at their
    ``maxLength`` (200 characters when unbounded), arrays at ``maxItems`` (at most ``max_items``),
    ``anyOf`` at its longest branch, plus JSON punctuation and keys."""

    def size(node: Any) -> float:  # in characters
        if not isinstance(node, dict):
            return 8
        if "const" in node:
            return len(json.dumps(node["const"]))
        if "enum" in node:
            return max((len(json.dumps(v)) for v in node["enum"]), default=4)
        if "anyOf" in node:
            return max((size(o) for o in node["anyOf"]), default=8)
        t = node.get("type")
        if t == "string":
            return int(node.get("maxLength", 200)) + 2
        if t == "array":
            n = min(int(node.get("maxItems", max_items)), max_items)
            return 2 + n * (size(node.get("items", {})) + 2)
        if t == "object":
            # optional properties count too: a model may give them all; an open object ~40 chars
            props = node.get("properties", {})
            return 2 + sum(len(k) + 4 + size(v) for k, v in props.items()) if props else 40
        return 12  # number, integer, boolean, null

    return int(size(schema) / chars_per_token) + 16


def fit_answer(schema: dict[str, Any], max_tokens: int, *, compact: bool = False) -> tuple[dict[str, Any], int]:
    """``schema`` narrowed until its longest answer fits ``max_tokens`` (free strings shortened,
    then fewer items in the top-level lists), and the answer budget: its :func:`answer_tokens`,
    at most ``max_tokens``. A compact rendering caps free strings at 160 characters first."""
    s = cap_strings(schema, 160) if compact else copy.deepcopy(schema)
    need = answer_tokens(s)
    for cap in (400, 240, 160, 100, 60):
        if need <= max_tokens:
            break
        s = cap_strings(s, cap)
        need = answer_tokens(s)
    props = s.get("properties", {})
    while need > max_tokens:
        lists = [p for p in props.values() if p.get("type") == "array" and int(p.get("maxItems", 12)) > 1]
        if not lists:
            break
        longest = max(lists, key=lambda p: int(p.get("maxItems", 12)))
        longest["maxItems"] = max(1, min(int(longest.get("maxItems", 12)), 12) // 2)
        need = answer_tokens(s)
    return s, min(need, max_tokens)
