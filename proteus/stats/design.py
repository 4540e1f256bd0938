"""Design-matrix columns for the covariates of a linear model (limma's ``model.matrix`` for ``~ x + covariates``)."""

from __future__ import annotations

import pandas as pd

__all__ = ["is_factor", "covariate_block", "usable_covariates", "dropped_text"]


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


def covariate_block(table: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    """Covariate columns of a design (no intercept): numbers as is, factors as treatment dummies.

    A factor with levels ``a < b < c`` gives columns ``<name>_b`` and ``<name>_c`` (first level
    dropped), as R's ``contr.treatment``; rows with a missing covariate are NaN in its columns.
    """
    blocks = []
    for c in covariates:
        col = table[c]
        if is_factor(col):
            d = pd.get_dummies(col.astype(str).where(col.notna()), prefix=str(c), drop_first=True, dtype=float)
            d = d.loc[:, d.sum() > 0]
            d[col.isna().to_numpy()] = float("nan")
            blocks.append(d)
        else:
            blocks.append(pd.DataFrame({c: pd.to_numeric(col, errors="coerce").astype(float)}, index=table.index))
    if not blocks:
        return pd.DataFrame(index=table.index)
    return pd.concat(blocks, axis=1)


def usable_covariates(table: pd.DataFrame, covariates: list[str], n_fixed: int) -> tuple[list[str], dict[str, str]]:
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
    """
    kept: list[str] = []
    dropped: dict[str, str] = {}
    for c in covariates:
        col = table[c].dropna()
        if col.nunique() < 2:
            dropped[c] = f"constant over the {len(col)} samples with a value"
            continue
        if is_factor(table[c]) and col.nunique() > len(col) / 2:
            dropped[c] = f"{col.nunique()} levels over {len(col)} samples (nearly one per sample)"
            continue
        trial = kept + [c]
        block = covariate_block(table, trial).dropna()
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
