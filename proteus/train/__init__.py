"""Tune a local model on the agent's own decisions with rewards the data verifies, and serve it back.

- :mod:`proteus.train.rewards`: verifiable rewards of an answer to one decision (no model needed).
- :mod:`proteus.train.data`: decision prompts from ``proteus export-rl`` files, split into
  training and held-out prompts.
- :mod:`proteus.train.grpo`: GRPO (TRL ``GRPOTrainer``) with a LoRA adapter (PEFT), and the
  before / after mean reward on held-out prompts.
- :mod:`proteus.train.gguf_export`: the adapter merged and written as GGUF for llama.cpp.

Everything but the rewards and the data needs the ``[train]`` extra (:data:`INSTALL_HINT`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

__all__ = ["INSTALL_HINT", "missing_packages", "import_hf_datasets"]

INSTALL_HINT = "pip install 'proteus-discovery[train]'  (torch, transformers, trl, peft, gguf)"
"""The one line that says how to install what ``proteus train`` needs."""

_NEEDED = ("torch", "transformers", "trl", "peft", "datasets", "gguf", "jsonschema")


def missing_packages() -> list[str]:
    """The packages of the ``[train]`` extra that are not importable here."""
    return [p for p in _NEEDED if importlib.util.find_spec(p) is None]


def import_hf_datasets():
    """Hugging Face's ``datasets`` (TRL needs it), even when Python runs from a PROTEUS checkout,
    whose top-level ``datasets/`` folder (shipped as ``proteus.datasets``) would shadow it."""
    mod = sys.modules.get("datasets")
    if mod is not None and hasattr(mod, "Dataset"):
        return mod
    sys.modules.pop("datasets", None)
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if not (Path(p or ".").resolve() / "datasets" / "__init__.py").exists() or (Path(p or ".").resolve() / "datasets" / "arrow_dataset.py").exists()]
    try:
        return importlib.import_module("datasets")
    finally:
        sys.path[:] = saved
