"""Design-matrix columns for the covariates of a linear model (limma's ``model.matrix`` for ``~ x + covariates``)."""

from __future__ import annotations

import pandas as pd

__all__ = ["is_factor", "covariate_block"]


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
