"""PROTEUS tool library: one module per analysis family, each registering its tools.

Importing this package imports no family module: :func:`get_tool` imports the one module that
defines the tool asked for, :func:`list_tools` every module (each fills :data:`REGISTRY` as it is
imported).
"""

from __future__ import annotations

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

