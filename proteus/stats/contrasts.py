"""The contrast-table service: one differential table per study, contrast and full test parameters.

A two-group contrast's table (one row per tested feature: logFC, t, p, q, ...) is asked for by the
differential tool and by every step that builds on it (pathway enrichment, interaction networks).
They all describe the test with :class:`ContrastTest`, the complete set of parameters that change
the table, and get it through :func:`cached_table`, which computes it once per study, parameters and
seed and keeps it in ``Study.cache``. So a pathway step that names the differential step's
parameters uses exactly that step's hit list, and a step that names other parameters (a different
``impute``, ``min_valid``, ``method``, ``normalize`` or ``variance_prior``) gets its own table,
never a table computed for other parameters. Settings that do not change the table (the FDR cut of
relations, gene-set libraries) are not part of the key.

The computation itself is ``proteus.tools.differential.differential_table``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ContrastTest", "ContrastTable", "TEST_FIELDS", "test_key", "cached_table"]


class ContrastTest(BaseModel):
    """Every parameter of a two-group differential test that changes its table."""

    model_config = ConfigDict(extra="forbid")

    modality: str = Field(description="name of the bulk layer to test, e.g. 'proteomics'")
    group: str = Field(description="clinical column holding the sample groups")
    case: str = Field(description="level of `group` tested (numerator of the fold change)")
    control: str | None = Field(None, description="reference level of `group` (denominator of the fold change); "
                                "None = all other samples with a value")
    case_levels: list[str] = Field(
        default_factory=list,
        description="levels of `group` pooled as the case (then `case` is the pool's label, e.g. 'all non-<control>'): "
        "the mean of their level means vs `control`, a contrast of the full design ~ group in which every level keeps "
        "its own mean (limma / censored); empty = the level named by `case`",
    )
    covariates: list[str] = Field(
        default_factory=list,
        description="clinical columns adjusted for in the limma design (numeric as is, others as factors); "
        "samples with a missing covariate are dropped",
    )
    method: Literal["auto", "limma", "censored", "welch", "mann_whitney"] = Field(
        "auto", description="'auto' (default) picks 'censored' for log intensities whose missing values depend on "
        "abundance, else 'limma'; 'limma' moderated t on observed values; 'censored' moderated test that models "
        "missing values as dropouts below a detection curve (tests proteins detected in one group only); Welch t "
        "(SAM-style with s0 > 0); Mann-Whitney"
    )
    normalize: Literal["auto", "none", "median", "quantile", "vsn"] = Field(
        "auto", description="sample normalisation on the log scale before testing: 'auto' = 'vsn' for MS "
        "intensities on a log2 scale, 'none' for other values (log ratios); 'quantile' as limma; 'vsn' "
        "variance-stabilising generalised log of intensities, then median centring"
    )
    variance_prior: Literal["auto", "constant", "peptide_count"] = Field(
        "auto", description="limma/censored prior variance: 'constant' (limma), 'peptide_count' (DEqMS: prior "
        "variance a loess function of the peptides per protein); 'auto' uses counts when the layer has them"
    )
    min_valid: int = Field(
        2, ge=1, description="minimum non-missing values per group for a feature to be tested (censored: in at least "
        "one group) (2 = limma as is; 3 = Perseus 'in each group')"
    )
    lfc: Annotated[float, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="TREAT fold-change threshold (limma, censored): test |log2FC| > lfc instead of != 0 "
        "(McCarthy & Smyth 2009); 0 = ordinary test; 'auto' (default) = log2(1.5) when the replicates of label-free "
        "intensities are repeat measurements of one sample (within-group CV below 15 %), else 0"
    )
    s0: float = Field(0.0, ge=0, description="SAM fudge factor added to the Welch standard error (welch only; "
                      "Perseus default 0, 0.1 common)")
    impute: Literal["none", "downshift"] = Field(
        "none", description="'none' tests observed values (limma as is); 'downshift' (Perseus, for label-free data with "
        "abundance-dependent missingness) keeps features with >= min_valid values in at least one group and fills the "
        "rest from N(mean - 1.8 sd, (0.3 sd)^2) per sample, so proteins detected in one group only are tested too"
    )


    @model_validator(mode="after")
    def _pool_label(self):
        """A pooled case names its pool: a ``case`` that is one of ``case_levels`` (a level, not a label)
        becomes ``"pooled <levels>"``, so no relation of the pool is labelled as one of its levels."""
        if self.case_levels and self.case in self.case_levels:
            self.case = f"pooled {' + '.join(self.case_levels)}"
        return self


TEST_FIELDS = frozenset(ContrastTest.model_fields)
"""The parameters that make up a contrast table's key."""


@dataclass
class ContrastTable:
    """A contrast's differential table and what a tool needs to report it.

    ``table``: one row per tested feature (``feature``, ``gene``, ``logFC``, ``t``, ``p``, ``q``, ...),
    sorted by p; ``skipped``: features not tested and why; ``method``: the test run; ``details``: the
    test's numbers and choices for metrics and summaries; ``values``: the tested values of the table's
    first rows (features x samples) with ``groups`` per sample, for a heatmap.
    """

    table: pd.DataFrame
    skipped: pd.DataFrame
    method: str
    details: dict[str, Any] = field(default_factory=dict)
    values: pd.DataFrame | None = None
    groups: pd.Series | None = None


def test_key(params: BaseModel | dict) -> str:
    """The key of a test: its :data:`TEST_FIELDS` as sorted JSON (defaults filled in by the caller's model)."""
    d = params.model_dump(mode="json") if isinstance(params, BaseModel) else dict(params)
    return json.dumps({k: d.get(k) for k in sorted(TEST_FIELDS)}, sort_keys=True, default=str)


def cached_table(study, params: BaseModel, seed: int, compute: Callable[[], ContrastTable]) -> ContrastTable:
    """The table of ``params`` on ``study``: ``compute()`` the first time, the same object after.

    Keyed on :func:`test_key` and ``seed`` (imputation and permutation p-values draw from it) in
    ``study.cache``; a failed computation is not kept. A study's layers and sample table are not
    changed in place (tools add layers under new names; subsets and permutations are new studies),
    so a key always names the same data.
    """
    key = ("contrast_table", test_key(params), int(seed))
    if key not in study.cache:
        study.cache[key] = compute()
    return study.cache[key]
