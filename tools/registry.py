"""The tool registry: one source of truth for every analysis the agent may call.

A tool is a module-level function ``fn(study, params, ctx) -> ToolResult`` decorated with
:func:`register`. Its pydantic params model (every field described) is the schema a model sees;
its docstring's first paragraph is the description a planner reads.

Three kinds of failure (as LangGraph's ToolNode and pydantic-ai distinguish them):

- :class:`ToolInputError`: bad arguments (unknown column, level, modality); the message says what
  is valid so a planner can correct itself and retry.
- :class:`ToolFailed`: the call was valid but the data cannot support it (too few samples per
  group, nothing left after filtering); recorded and shown, not retried.
- anything else is a bug and propagates.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel, ValidationError

from proteus.records import Provenance, ToolResult
from proteus.study import Study

__all__ = [
    "Tool",
    "ToolContext",
    "ToolInputError",
    "ToolFailed",
    "REGISTRY",
    "register",
    "get_tool",
    "list_tools",
    "validate_call",
]


class ToolInputError(ValueError):
    """Arguments do not fit the tool or the data; the message lists what is valid."""


class ToolFailed(RuntimeError):
    """A valid call the data cannot support."""


@dataclass
class ToolContext:
    """Run-scoped things a tool may use: where figures go, whether to draw them, the seed, and
    provenance of the call. With ``figures`` off a tool draws nothing (``ToolResult.figures`` empty);
    its tables, relations and metrics are the same."""

    out_dir: Path
    seed: int = 0
    provenance: Provenance | None = None
    figure_prefix: str = ""
    figures: bool = True

    def figure_path(self, name: str) -> Path:
        """A PNG path under ``out_dir/figures``; data-derived names are made file-safe (no ``/``, bounded)."""
        d = Path(self.out_dir) / "figures"
        d.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", name).strip("._")[:120] or "figure"
        return d / f"{self.figure_prefix}{safe}.png"

    def provenance_for(self, name: str, params: BaseModel) -> Provenance:
        base = self.provenance or Provenance(tool=name)
        return base.model_copy(update={"tool": name, "params": params.model_dump(mode="json")})

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class Tool:
    """A registered tool."""

    name: str
    family: str
    description: str
    params: type[BaseModel]
    fn: Callable[[Study, BaseModel, ToolContext], ToolResult]
    requires: tuple[str, ...] = field(default=())

    def schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()

    def applicable(self, study: Study) -> bool:
        """Whether the study has what this tool needs (see :func:`register` ``requires``)."""
        checks = {
            "bulk": lambda: bool(study.bulk()),
            "clinical": lambda: not study.clinical.empty,
            "mutations": lambda: study.mutations is not None and not study.mutations.empty,
            "cells": lambda: bool(study.cell_level()),
            "two_layers": lambda: len(study.bulk()) >= 2,
        }
        return all(checks[r]() for r in self.requires)

    def __call__(self, study: Study, params: BaseModel | dict, ctx: ToolContext) -> ToolResult:
        p = validate_call(self, study, params)
        if ctx.provenance is None:
            ctx.provenance = Provenance(tool=self.name, params=p.model_dump(mode="json"))
        return self.fn(study, p, ctx)


REGISTRY: dict[str, Tool] = {}


def register(
    name: str, *, family: str, params: type[BaseModel], requires: tuple[str, ...] = ()
) -> Callable[[Callable], Callable]:
    """Register ``fn`` as tool ``name``; ``requires`` from {bulk, clinical, mutations, cells, two_layers}."""

    def deco(fn: Callable) -> Callable:
        doc = inspect.getdoc(fn) or ""
        description = doc.split("\n\n")[0].replace("\n", " ").strip()
        if not description:
            msg = f"tool {name!r} needs a docstring: its first paragraph is the planner's description"
            raise TypeError(msg)
        if name in REGISTRY and REGISTRY[name].fn is not fn:
            msg = f"tool {name!r} registered twice"
            raise TypeError(msg)
        REGISTRY[name] = Tool(name, family, description, params, fn, tuple(requires))
        return fn

    return deco


def _load_all() -> None:
    """Import every family module (each registers its tools)."""
    for f in sorted(Path(__file__).parent.glob("[!_]*.py")):
        if f.stem != "registry":
            importlib.import_module(f"proteus.tools.{f.stem}")


def _family_module(name: str) -> str | None:
    """The family module whose source registers tool ``name`` (``@register("name"``), found by reading
    the sources as text, so that one call imports one family (and what it imports), not all twelve."""
    decorator = re.compile(rf"@register\(\s*[\"']{re.escape(name)}[\"']")
    for f in sorted(Path(__file__).parent.glob("[!_]*.py")):
        if decorator.search(f.read_text(encoding="utf-8")):
            return f"proteus.tools.{f.stem}"
    return None


def get_tool(name: str) -> Tool:
    """The registered tool ``name``, importing only the family module that defines it."""
    if name not in REGISTRY:
        module = _family_module(name)
        if module is not None:
            importlib.import_module(module)
    if name not in REGISTRY:
        _load_all()  # the error lists every tool
    if name not in REGISTRY:
        msg = f"unknown tool {name!r}; registered tools: {', '.join(sorted(REGISTRY))}"
        raise ToolInputError(msg)
    return REGISTRY[name]


def list_tools() -> list[Tool]:
    """Every registered tool, by name (imports every family)."""
    _load_all()
    return [REGISTRY[k] for k in sorted(REGISTRY)]


# --- validation of a call against the data ---------------------------------------------------

_COLUMN_FIELDS = ("group", "variable", "time", "event", "block", "batch")
_COLUMN_LIST_FIELDS = ("covariates",)


def _levels(study: Study, column: str) -> list[str]:
    return sorted(map(str, study.clinical[column].dropna().unique()))


def validate_call(tool: Tool, study: Study, params: BaseModel | dict) -> BaseModel:
    """Parse ``params`` with the tool's model, then check names against the data.

    Field-name conventions checked here so every tool gets them for free: ``modality`` /
    ``modalities`` must name loaded layers; ``group``, ``variable``, ``time``, ``event``,
    ``block``, ``covariates`` must name clinical columns; ``case`` / ``control`` must be levels
    of ``group``. Raises :class:`ToolInputError` with the valid choices.
    """
    if isinstance(params, BaseModel):
        params = params.model_dump()
    try:
        p = tool.params.model_validate(params)
    except ValidationError as e:
        msg = f"invalid parameters for {tool.name}: {e.errors(include_url=False)}"
        raise ToolInputError(msg) from None
    d = p.model_dump()
    mods = list(study.modalities)
    for key in ("modality", "other_modality"):
        if d.get(key) is not None and d[key] not in study.modalities:
            msg = f"{key} {d[key]!r} is not loaded; loaded modalities: {mods}"
            raise ToolInputError(msg)
    for m in d.get("modalities") or []:
        if m not in study.modalities:
            msg = f"modality {m!r} is not loaded; loaded modalities: {mods}"
            raise ToolInputError(msg)
    cols = list(map(str, study.clinical.columns))
    for key in _COLUMN_FIELDS:
        v = d.get(key)
        if v is None or key not in tool.params.model_fields:
            continue
        if v not in cols:
            msg = f"{key} {v!r} is not a clinical column; columns include: {cols[:40]}"
            raise ToolInputError(msg)
    for key in _COLUMN_LIST_FIELDS:
        for v in d.get(key) or []:
            if v not in cols:
                msg = f"covariate {v!r} is not a clinical column; columns include: {cols[:40]}"
                raise ToolInputError(msg)
    for v in (d.get("restrict") or {}) if isinstance(d.get("restrict"), dict) else []:
        if v not in cols:
            msg = f"restrict column {v!r} is not a clinical column; columns include: {cols[:40]}"
            raise ToolInputError(msg)
    group = d.get("group")
    if group is not None and group in cols:
        levels = _levels(study, group)
        pooled = list(d.get("case_levels") or [])
        for key, v in [("case", None if pooled else d.get("case")), ("control", d.get("control"))] + [("case_levels", lv) for lv in pooled]:
            if v is not None and str(v) not in levels:
                msg = f"{key} {v!r} is not a level of {group!r}; levels: {levels}"
                raise ToolInputError(msg)
    return p
