"""Design-matrix columns for the covariates of a linear model (limma's ``model.matrix`` for ``~ x + covariates``)."""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd

__all__ = ["is_factor", "covariate_block", "usable_covariates", "dropped_text", "permutation_blocks"]


def is_factor(col: pd.Series) -> bool:
    """Whether a covariate enters the model as a factor (dummy columns) rather than as a number.

    Text is a factor. Numbers are a factor when they are codes: at most two distinct values, or
    integers whose every value repeats (batch 1..5, plex 1..17, replicate 1..3, donor 1..10); a
    measurement (age, BMI, run order) has singletons or fractions and stays numeric.
    """
    x = col.dropna()
    num = pd.to_numeric(x, errors="coerce")
    if num.isna().any() or x.empty:
        return True
    if num.nunique() <= 2:
        return True
    integer = bool((num == num.round()).all())
    return integer and int(num.value_counts().min()) >= 2 and num.nunique() <= len(num) / 2


def covariate_block(table: pd.DataFrame, covariates: list[str], factors: Collection[str] | None = None) -> pd.DataFrame:
    """Covariate columns of a design (no intercept): numbers as is, factors as treatment dummies.

    A factor with levels ``a < b < c`` gives columns ``<name>_b`` and ``<name>_c`` (first level
    dropped), as R's ``contr.treatment``; rows with a missing covariate are NaN in its columns.
    ``factors`` names the factor columns when the encoding was decided on a larger table (a subset of
    a design's samples keeps its factors: a plex seen once in a held-out split is still a plex);
    default :func:`is_factor` on ``table``.
    """
    blocks = []
    for c in covariates:
        col = table[c]
        if (c in factors) if factors is not None else is_factor(col):
            d = pd.get_dummies(col.astype(str).where(col.notna()), prefix=str(c), drop_first=True, dtype=float)
            d = d.loc[:, d.sum() > 0]
            d[col.isna().to_numpy()] = float("nan")
            blocks.append(d)
        else:
            blocks.append(pd.DataFrame({c: pd.to_numeric(col, errors="coerce").astype(float)}, index=table.index))
    if not blocks:
        return pd.DataFrame(index=table.index)
    return pd.concat(blocks, axis=1)


def usable_covariates(table: pd.DataFrame, covariates: list[str], n_fixed: int,
                      factors: Collection[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Covariates that a model of the samples in ``table`` can afford, and why each other one is dropped.

    ``table`` holds the samples actually tested; ``n_fixed`` counts the design columns that are not
    covariates (intercept and the tested variable's columns). Two rules keep an adjustment from eating
    the residual degrees of freedom (a saturated model fits every sample exactly: r = 1, p = 0), after
    a covariate constant over these samples is dropped (nothing to adjust):

    - a factor whose distinct levels exceed half of its observed samples is nearly a sample id
      (TMT channel, run file) and is dropped;
    - covariates are admitted in the order given while the residual df of the whole design stays at
      least twice the covariate columns admitted (``n - n_fixed - p_cov >= 2 p_cov``, the
      events-per-parameter idea of Harrell, *Regression Modeling Strategies*, 4.4), counted on the
      samples complete for every covariate admitted.

    ``factors``: as in :func:`covariate_block`.
    """
    kept: list[str] = []
    dropped: dict[str, str] = {}
    for c in covariates:
        col = table[c].dropna()
        if col.nunique() < 2:
            dropped[c] = f"constant over the {len(col)} samples with a value"
            continue
        factor = (c in factors) if factors is not None else is_factor(table[c])
        if factor and col.nunique() > len(col) / 2:
            dropped[c] = f"{col.nunique()} levels over {len(col)} samples (nearly one per sample)"
            continue
        trial = kept + [c]
        block = covariate_block(table, trial, factors).dropna()
        n, p_cov = len(block), block.shape[1]
        resid = n - n_fixed - p_cov
        if resid < 2 * p_cov:
            dropped[c] = (f"would leave {resid} residual df for {p_cov} covariate columns over {n} samples "
                          f"(need >= {2 * p_cov})")
            continue
        kept = trial
    return kept, dropped


def dropped_text(dropped: dict[str, str]) -> str:
    """One sentence naming the covariates left out of a model and why ('' when none)."""
    if not dropped:
        return ""
    return " Not adjusted for " + "; ".join(f"{c} ({why})" for c, why in dropped.items()) + "."


def permutation_blocks(table: pd.DataFrame, covariates: list[str]) -> pd.Series | None:
    """The blocks a label permutation keeps to: the levels of the factor covariate with the most levels
    (the finest technical block, a plex within a batch), ``None`` when no covariate is a factor.

    Permuting labels only within these blocks keeps each block's share of cases, so a null does not
    reward a difference that the block itself makes (Winkler et al. 2014, exchangeability blocks,
    doi:10.1016/j.neuroimage.2014.01.060); the other covariates stay in the model of every permutation.
    """
    factors = [c for c in covariates if is_factor(table[c])]
    if not factors:
        return None
    finest = max(factors, key=lambda c: table[c].nunique())
    return table[finest].astype(str)
