"""Statistics used by the tools: limma-style moderated tests, multiple testing, preprocessing, the
contrast-table service, and the cytometry statistics (FlowSOM map, consensus metaclustering,
sample-level summaries, NB GLM differential abundance, differential state), and curated units (gene sets
small enough to name one function) with their coherence test.

The names below are imported from their modules when first used (PEP 562), so that importing one
module of this package (``proteus.stats.limma``) does not import the others (and scipy.stats).
"""

from __future__ import annotations

import importlib

# imported now: the function shares its module's name, so a lazy attribute would return the module
from proteus.stats.differential_state import differential_state  # noqa: F401 (re-exported: __all__)

_HOME = {
    "arcsinh_transform": "cell_summaries", "population_counts": "cell_summaries", "population_medians": "cell_summaries",
    "EBayesResult": "limma", "LinearModelFit": "limma", "contrasts_fit": "limma", "ebayes": "limma", "lm_fit": "limma",
    "moderated_test": "limma", "squeeze_var": "limma", "top_table": "limma", "two_group_moderated": "limma",
    "consensus_metaclustering": "metaclustering",
    "bh": "multitest",
    "nb_glm_da": "nb_glm", "nb_glm_fit": "nb_glm",
    "flowsom_codes": "som",
}

__all__ = sorted([*_HOME, "differential_state"])


def __getattr__(name: str):
    if name not in _HOME:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
