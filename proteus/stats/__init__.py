"""Statistics used by the tools: limma-style moderated tests, multiple testing, preprocessing, and the
cytometry statistics (FlowSOM map, consensus metaclustering, sample-level summaries, NB GLM
differential abundance, differential state)."""

from proteus.stats.cell_summaries import arcsinh_transform, population_counts, population_medians
from proteus.stats.differential_state import differential_state
from proteus.stats.limma import (
    EBayesResult,
    LinearModelFit,
    contrasts_fit,
    ebayes,
    lm_fit,
    moderated_test,
    squeeze_var,
    top_table,
)
from proteus.stats.metaclustering import consensus_metaclustering
from proteus.stats.multitest import bh
from proteus.stats.nb_glm import nb_glm_da, nb_glm_fit
from proteus.stats.som import flowsom_codes

__all__ = [
    "EBayesResult",
    "LinearModelFit",
    "arcsinh_transform",
    "bh",
    "consensus_metaclustering",
    "contrasts_fit",
    "differential_state",
    "ebayes",
    "flowsom_codes",
    "lm_fit",
    "moderated_test",
    "nb_glm_da",
    "nb_glm_fit",
    "population_counts",
    "population_medians",
    "squeeze_var",
    "top_table",
]
