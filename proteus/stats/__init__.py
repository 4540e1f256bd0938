"""Statistics used by the tools: limma-style moderated tests, multiple testing, preprocessing."""

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
from proteus.stats.multitest import bh

__all__ = [
    "EBayesResult",
    "LinearModelFit",
    "bh",
    "contrasts_fit",
    "ebayes",
    "lm_fit",
    "moderated_test",
    "squeeze_var",
    "top_table",
]
