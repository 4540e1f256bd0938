"""PROTEUS tool library: one module per analysis family, each registering its tools.

Importing this package imports every family module, which fills :data:`REGISTRY`.
"""

from __future__ import annotations

import importlib
import pkgutil

from proteus.tools.registry import (
    REGISTRY,
    Tool,
    ToolContext,
    ToolFailed,
    ToolInputError,
    get_tool,
    list_tools,
    register,
)

__all__ = ["REGISTRY", "Tool", "ToolContext", "ToolFailed", "ToolInputError", "get_tool", "list_tools", "register"]

for _m in pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_") and _m.name != "registry":
        importlib.import_module(f"{__name__}.{_m.name}")
