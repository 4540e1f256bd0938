"""The data behind one knowledge-graph edge, and the statistics used to re-test it.

:func:`edge_design` turns an evidence edge into the per-sample data its tool tested, taken from
the edge's own provenance (tool and params), restricted to the edge's feature plus the *family* of
features tested alongside it (the whole layer), so that a selection-aware permutation null can be
computed without re-running the tool (an edge that records a smaller family fixed before its test,
``stats.extra["family_features"]``, e.g. a mutated gene's named paralogs, keeps that family: its q is that
family's, so is its null; set against the whole layer's smallest p, a pre-specified test at p = 0.01 meets a
null of 199 in 199):

- two-group edges (``higher_in`` / ``lower_in`` of a contrast or of a mutation, ``differs_across`` a
  multi-level factor as its highest level against the other levels, a mutation's
  ``cis_effect_on`` its own feature; a pooled case, ``case_levels``, as one group): a layer matrix and a case / control label per sample;
  statistic Student's pooled-variance t on observed values (the t of the tool's limma model before
  moderation; Welch's t is not used: a labelling that puts one group on a tie, a detection floor, leaves
  Welch's standard error to the other group alone and its p far below uniform, so over a family of
  thousands of low-count transcripts the permutation null's smallest p is set by such ties), effect the
  difference of means (log2 fold change on log data). Edges the tool found with its censored model (missing = below detection,
  ``stats.extra.method == "censored"``) are re-tested with a test that sees missingness too:
  Gehan's generalised Wilcoxon test with every missing value tied below the observed ones
  (:mod:`proteus.stats.gehan`), effect Cliff's delta.
- correlation edges (``correlates_with`` a clinical variable, ``concordant_with`` its own mRNA,
  copy number ``cis_effect_on`` its own RNA / protein): a layer matrix and a partner vector or a
  gene-matched matrix; statistic the correlation of per-layer ranks (Spearman; Pearson when the
  tool used Pearson).

A hypothesis's claim can rest on a model other than its edge's own (:class:`proteus.records.KeyEdge`):
:func:`carrier_design` rebuilds the carrier effect a ``mutation_group_enrichment`` edge states (its gene's own
feature, carriers against non-carriers over the genotyped samples of the edge's contrast, as the tool compared
them), and :func:`with_covariates` adds the sample-table columns a claim says it holds adjusted for to an edge's
design (on the samples with them recorded; its family the edge's feature alone).

A claim that a pathway programme moves (``pathway --enriched_in--> contrast``) rests on the programme, not on any one
gene: :func:`programme_design` scores it per sample (the mean of its measured members' standardised values on the
enrichment's own layer and contrast) and tests the score between the contrast's levels, its family the scores of
every set of the library the enrichment tested.

Edges this module cannot rebuild (prior knowledge, cluster labels, survival, cell-level layers) give the reason
instead of a design.

The claim's model is the model that is re-tested: where the tool adjusted for covariates (a batch,
a plex, a nesting classification), the design keeps the covariate columns the tool kept
(:func:`proteus.stats.design.usable_covariates` on the same samples, encoded by
:func:`proteus.stats.design.covariate_block`) and every re-test refits them: the two-group statistic is
the group's least-squares t in ``y ~ 1 + group + covariates`` (:func:`proteus.stats.adjusted.adjusted_t`;
Student's pooled t is its special case without covariates), a correlation the partial correlation
given the covariates; the permutation null shuffles the labels within the blocks of the finest factor
covariate (:func:`proteus.stats.design.permutation_blocks`) and refits the covariates in every
permutation. Gehan's test has no covariates: a censored edge of an adjusted model is re-tested
unadjusted (its null still permuted within the blocks), and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from proteus.records import Relation
from proteus.stats.adjusted import adjusted_t, block_permutations
from proteus.stats.distributions import t_sf
from proteus.stats.gehan import gehan_wilcoxon
from proteus.stats.welch import student_t
from proteus.study import Study

__all__ = ["EdgeDesign", "edge_design", "carrier_design", "programme_design", "levels_design", "with_covariates", "student", "gehan", "rank_correlation", "correlation_p", "family_p", "permuted_min_p", "effect_interval"]


@dataclass
class EdgeDesign:
    """Per-sample data of one edge.

    ``X`` is samples x family features (float, NaN = missing); ``column`` the edge's feature in it.
    Two-group: ``labels`` is True for case samples; ``method`` the re-test, ``student`` (pooled t on
    observed values) or ``gehan`` (missing = below detection). Correlation: ``Y`` is samples x 1 (a partner
    vector) or samples x family (gene-matched partner layer), already rank-transformed with ``X``
    when ``method`` is spearman. ``cov`` (samples x the covariate columns the tool's model kept, or
    ``None``) is the adjusted model's covariates, refitted by every re-test (``n_fixed`` design columns
    besides them); ``blocks`` the block of each sample a label permutation stays within (``None``: free).
    """

    kind: str  # "two_group" | "correlation"
    X: np.ndarray
    column: int
    samples: list[str]
    labels: np.ndarray | None = None
    Y: np.ndarray | None = None
    method: str = "spearman"
    family_key: str = ""
    columns: pd.Index | None = None
    notes: list[str] = field(default_factory=list)
    cov: pd.DataFrame | None = None
    n_fixed: int = 2
    blocks: np.ndarray | None = None
    _encoded: list[tuple[bool, np.ndarray]] | None = field(default=None, init=False, repr=False, compare=False)

    def covariates(self, mask: np.ndarray | None = None) -> np.ndarray | None:
        """Design columns of the covariates for the samples in ``mask`` (all when ``None``): those of the
        tool's covariates these samples can afford, by the tool's own rule
        (:func:`proteus.stats.design.usable_covariates`; a held-out split of a few dozen samples cannot
        afford a 17-level plex and a 9-level channel, as the tool run on it would not), encoded as
        :func:`proteus.stats.design.covariate_block` encodes them. ``None`` for an unadjusted design.

        Each column is encoded once per design (a factor as one indicator per level over all its samples, as
        on all the design's samples), and a mask only indexes the encoding: a factor keeps the levels present
        in the mask less the first (R's ``contr.treatment`` on those samples), and the rule is counted on those
        columns (``cov`` holds complete cases, so every sample of the mask counts)."""
        if self.cov is None:
            return None
        if self._encoded is None:
            from proteus.stats.design import is_factor

            self._encoded = [(True, pd.get_dummies(col.astype(str), dtype=float).to_numpy()) if is_factor(col)
                             else (False, pd.to_numeric(col, errors="coerce").to_numpy(float)[:, None]) for _, col in self.cov.items()]
        m = np.ones(len(self.cov), dtype=bool) if mask is None else np.asarray(mask, bool)
        n, kept, width = int(m.sum()), [], 0
        for factor, enc in self._encoded:
            block = enc[m]
            if factor:
                levels = np.flatnonzero(block.sum(0) > 0)
                if len(levels) < 2 or len(levels) > n / 2:  # constant, or nearly one level per sample
                    continue
                block = block[:, levels[1:]]
            elif len(np.unique(block)) < 2:
                continue
            if n - self.n_fixed - (width + block.shape[1]) < 2 * (width + block.shape[1]):  # residual df >= 2 per covariate column
                continue
            kept.append(block)
            width += block.shape[1]
        return np.column_stack(kept) if kept else None

    def key_data(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, partner) of the edge's own feature: partner = labels (two-group) or y (correlation)."""
        x = self.X[:, self.column]
        if self.kind == "two_group":
            return x, self.labels
        y = self.Y[:, 0] if self.Y.shape[1] == 1 else self.Y[:, self.column]
        return x, y

    def tested_samples(self) -> np.ndarray:
        """Samples the edge's own test uses: all of them for Gehan's test (a missing value is a
        value below detection), else those with the feature (and the partner) observed."""
        x, partner = self.key_data()
        if self.kind == "two_group":
            return np.ones(len(x), dtype=bool) if self.method == "gehan" else np.isfinite(x)
        return np.isfinite(x) & np.isfinite(partner)


# --------------------------------------------------------------------------------------------
# statistics, vectorised over columns
# --------------------------------------------------------------------------------------------


def student(X: np.ndarray, case: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Student's pooled-variance t of each column, case minus control, on observed values
    (:func:`proteus.stats.welch.student_t`).

    Returns ``(t, diff, se, df)``; all NaN where a group has fewer than two values or no variance.
    """
    X = np.asarray(X, dtype=float)
    w = student_t((X[:, None] if X.ndim == 1 else X).T, np.asarray(case, dtype=bool))
    bad = ~np.isfinite(w.t)
    return w.t, np.where(bad, np.nan, w.diff), np.where(bad, np.nan, w.se), w.df


def rank_correlation(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of each column of ``X`` with ``Y`` (one column, or column-matched)
    over rows where both are finite. On rank-transformed input this is Spearman's rho with the
    ranks taken over each layer's observed values. Returns ``(r, n)``."""
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if Y.ndim == 1:
        Y = Y[:, None]
    Y = np.broadcast_to(Y, X.shape)
    m = np.isfinite(X) & np.isfinite(Y)
    n = m.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = np.where(m, X, 0.0).sum(0) / n
        ym = np.where(m, Y, 0.0).sum(0) / n
        xc = np.where(m, X - xm, 0.0)
        yc = np.where(m, Y - ym, 0.0)
        r = (xc * yc).sum(0) / np.sqrt((xc**2).sum(0) * (yc**2).sum(0))
    return np.where(n >= 4, np.clip(r, -1, 1), np.nan), n


def _t_two_sided(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided Student-t p."""
    with np.errstate(invalid="ignore"):
        return 2 * t_sf(np.abs(t), df)


def correlation_p(r: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Two-sided p of a correlation, :math:`t = r\\sqrt{(n-2)/(1-r^2)}` on n - 2 df."""
    r, n = np.asarray(r, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(r) * np.sqrt((n - 2) / np.maximum(1 - r**2, 1e-300))
        return _t_two_sided(t, n - 2)


def gehan(X: np.ndarray, case: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Cliff's delta, two-sided p) of each column by Gehan's test, missing = below detection
    (:func:`proteus.stats.gehan.gehan_wilcoxon`); delta = 2 U / (n1 n2) - 1 is positive when the case
    group is higher (Cliff 1993, doi:10.1037/0033-2909.114.3.494)."""
    X = np.asarray(X, dtype=float)
    g = gehan_wilcoxon((X[:, None] if X.ndim == 1 else X).T, np.asarray(case, dtype=bool))
    return 2 * g.concordance - 1, g.p


def adjusted(X: np.ndarray, partner: np.ndarray, Z: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(effect, two-sided p, se, df) of every column in ``x ~ 1 + partner + Z`` (:func:`proteus.stats.adjusted.adjusted_t`):
    two-group, the covariate-adjusted difference of means; correlation, the partial correlation
    :math:`t / \\sqrt{t^2 + \\nu}` (on ranks for Spearman: ppcor's partial Spearman, Kim 2015, doi:10.5351/CSAM.2015.22.6.665)."""
    a = adjusted_t(np.asarray(X, dtype=float), np.asarray(partner, dtype=float), Z)
    coef, se, t, df = (v[:, 0] for v in (a.coef, a.se, a.t, a.df))
    effect = coef if kind == "two_group" else t / np.sqrt(t**2 + df)
    return effect, _t_two_sided(t, df), se, df


def family_p(kind: str, X: np.ndarray, partner: np.ndarray, method: str = "student", Z: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(effect, two-sided p) of every column: two-group (partner = case labels) by Student's t, or by
    Gehan's test when ``method`` is gehan; else rank correlation (partner = y or column-matched matrix).
    With covariates ``Z`` (one partner vector), the covariate-adjusted test of :func:`adjusted`."""
    if kind == "two_group" and method == "gehan":
        return gehan(X, partner)
    if Z is not None and np.asarray(partner).ndim == 1:
        return adjusted(X, partner, Z, kind)[:2]
    if kind == "two_group":
        t, diff, _, df = student(X, partner)
        return diff, _t_two_sided(t, df)
    r, n = rank_correlation(X, partner)
    return r, correlation_p(r, n)


def _standardised(X: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit sum of squares (NaN for a constant column): the Pearson r of
    two such columns is their inner product."""
    Xc = X - X.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return Xc / np.sqrt((Xc**2).sum(0))


def _min_p_by_df(stat: np.ndarray, df: np.ndarray, p_of) -> np.ndarray:
    """Smallest ``p_of(stat, df)`` per column of ``stat`` (features x permutations, NaN = untested),
    where ``df`` is fixed per feature and p falls as ``stat`` grows: only each df's largest statistic
    needs a p, so the tail function runs on (distinct df) x permutations values, not on the family."""
    stat = np.where(np.isfinite(stat), stat, -np.inf)
    order = np.argsort(df, kind="stable")
    dfs, starts = np.unique(np.asarray(df)[order], return_index=True)
    best = np.maximum.reduceat(stat[order], starts, axis=0)  # distinct df x permutations
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p_of(np.where(np.isfinite(best), best, np.nan), np.broadcast_to(dfs[:, None], best.shape).astype(float))
    p = np.where(np.isfinite(p), p, np.inf)
    return np.minimum(p.min(0), 1.0)


def permuted_min_p(design: EdgeDesign, n_perm: int, seed: int, chunk: int = 16384) -> np.ndarray:
    """Smallest p over the design's family under each of ``n_perm`` seeded label permutations.

    The null of Westfall & Young's minP step (Resampling-based multiple testing, Wiley 1993):
    an edge's null frequency is the share of permutations whose smallest family p reaches its p.
    Group sums and cross-products of all permutations are one matrix product per chunk.
    """
    n, m = design.X.shape
    perms = block_permutations(design.blocks, n, n_perm, seed)
    out = np.ones(n_perm)
    paired = design.kind == "correlation" and design.Y.shape[1] > 1
    Z = design.covariates()
    if Z is not None and not paired and design.method != "gehan":  # the adjusted model, refitted per permutation
        partner = design.labels if design.kind == "two_group" else design.Y[:, 0]
        G = np.asarray(partner, dtype=float)[perms].T  # samples x permutations
        by_pattern = np.lexsort(np.isfinite(design.X))  # features sharing a missingness pattern share a projection
        for lo in range(0, m, 8192):
            a = adjusted_t(design.X[:, by_pattern[lo:lo + 8192]], G, Z)
            df = np.nan_to_num(a.df, nan=1.0).max(1)  # one df per feature (NaN where not estimable)
            out = np.minimum(out, _min_p_by_df(np.abs(a.t), df, _t_two_sided))
        return out
    for lo in range(0, m, chunk):
        X = design.X[:, lo:lo + chunk]
        if paired:
            Y = design.Y[:, lo:lo + chunk]
            full = np.isfinite(X).all(0) & np.isfinite(Y).all(0)
            if full.any() and n >= 4:  # complete pairs: r of each labelling is one product of standardised columns
                Xs, Ys = _standardised(X[:, full]), _standardised(Y[:, full])
                best = np.array([np.nanmax(np.abs((Xs * Ys[perms[b]]).sum(0)), initial=-np.inf) for b in range(n_perm)])
                with np.errstate(invalid="ignore"):
                    pb = correlation_p(np.clip(best, 0, 1), np.full(n_perm, float(n)))
                out = np.minimum(out, np.where(np.isfinite(pb), pb, 1.0))
            if (~full).any():
                Xm, Ym = X[:, ~full], Y[:, ~full]
                for b in range(n_perm):
                    p = family_p("correlation", Xm, Ym[perms[b]])[1]
                    if np.isfinite(p).any():
                        out[b] = min(out[b], float(np.nanmin(p)))
            continue
        M = np.isfinite(X).astype(float)
        X0 = np.where(M > 0, X, 0.0)
        N, S, Q = M.sum(0), X0.sum(0), (X0**2).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            if design.kind == "two_group" and design.method == "gehan":
                p = gehan_wilcoxon(X.T, design.labels[perms].T).p.T  # ranks once, rank sums of all labellings at once
            elif design.kind == "two_group":
                w = student_t(X.T, design.labels[perms].T)  # features x permutations
                out = np.minimum(out, _min_p_by_df(np.abs(w.t), N - 2, _t_two_sided))
                continue
            else:
                P = design.Y[perms, 0]
                P = np.where(np.isfinite(P), P, 0.0)
                sy, syy, sxy = P @ M, P**2 @ M, P @ X0
                r = (sxy - S * sy / N) / np.sqrt((Q - S**2 / N) * (syy - sy**2 / N))
                r = np.where(N >= 4, np.clip(r, -1, 1), np.nan)
                out = np.minimum(out, _min_p_by_df(np.abs(r).T, N, correlation_p))
                continue
        best = np.nanmin(np.where(np.isfinite(p), p, np.inf), axis=1)
        out = np.minimum(out, best)
    return out


def effect_interval(design: EdgeDesign, level: float = 0.95) -> dict[str, Any]:
    """The edge's effect on all its samples with a ``level`` confidence interval.

    Two-group: difference of means with the pooled-variance (Student) interval; for Gehan re-tests Cliff's delta
    :math:`2A - 1` with the interval of the concordance :math:`A` by Hanley & McNeil's variance
    (Radiology 1982, doi:10.1148/radiology.143.1.7063747; A kept half a pair from 0 and 1 in the variance).
    Correlation: rho with the Fisher-z
    interval, :math:`\\tanh(\\operatorname{atanh} r \\pm z/\\sqrt{n-3})` (Fisher 1921).
    """
    x, partner = design.key_data()
    z = stats.norm.ppf(0.5 + level / 2)
    Z = design.covariates()
    if Z is not None and design.method != "gehan":  # the adjusted model's coefficient
        eff, _, se, df = (float(v[0]) for v in adjusted(x, partner, Z, design.kind))
        if not np.isfinite(eff):
            return {"effect": None, "ci": None, "effect_type": "adjusted_mean_difference" if design.kind == "two_group" else f"partial_{design.method}_r"}
        if design.kind == "two_group":
            q = stats.t.ppf(0.5 + level / 2, df)
            return {"effect": eff, "ci": [eff - q * se, eff + q * se], "effect_type": "adjusted_mean_difference", "level": level}
        zr, h = np.arctanh(np.clip(eff, -0.999999, 0.999999)), z / np.sqrt(max(df - 1, 1))  # Fisher z on n - 3 - k
        return {"effect": eff, "ci": [float(np.tanh(zr - h)), float(np.tanh(zr + h))], "effect_type": f"partial_{design.method}_r", "level": level}
    if design.kind == "two_group" and design.method == "gehan":
        delta = float(gehan(x, partner)[0][0])
        n1, n2 = int(partner.sum()), int((~partner).sum())
        if not np.isfinite(delta):
            return {"effect": None, "ci": None, "effect_type": "cliffs_delta"}
        a = min(max((delta + 1) / 2, 0.5 / (n1 * n2)), 1 - 0.5 / (n1 * n2))  # half a pair off the bound: complete separation keeps a width
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        se = 2 * np.sqrt(max(a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a), 0.0) / (n1 * n2))
        return {"effect": delta, "ci": [max(delta - z * se, -1.0), min(delta + z * se, 1.0)], "effect_type": "cliffs_delta", "level": level}
    if design.kind == "two_group":
        t, diff, se, df = (float(v[0]) for v in student(x, partner))
        if not np.isfinite(t):
            return {"effect": None, "ci": None, "effect_type": "mean_difference"}
        q = stats.t.ppf(0.5 + level / 2, df)
        return {"effect": diff, "ci": [diff - q * se, diff + q * se], "effect_type": "mean_difference", "level": level}
    r, n = rank_correlation(x, partner)
    r, n = float(r[0]), int(n[0])
    if not np.isfinite(r) or n < 4:
        return {"effect": None, "ci": None, "effect_type": f"{design.method}_r"}
    zr, h = np.arctanh(np.clip(r, -0.999999, 0.999999)), z / np.sqrt(n - 3)
    return {"effect": r, "ci": [float(np.tanh(zr - h)), float(np.tanh(zr + h))], "effect_type": f"{design.method}_r", "level": level}


# --------------------------------------------------------------------------------------------
# rebuilding an edge's data from its provenance
# --------------------------------------------------------------------------------------------


def _ranks(df: pd.DataFrame) -> np.ndarray:
    return df.rank(axis=0).to_numpy(float)


@dataclass
class _Adjustment:
    """The covariates a tool's model kept for its samples, as design columns, blocks and notes."""

    cov: pd.DataFrame | None = None
    n_fixed: int = 2
    blocks: pd.Series | None = None
    notes: list[str] = field(default_factory=list)

    def at(self, index: pd.Index) -> dict[str, Any]:
        """EdgeDesign fields for the samples ``index``."""
        if self.cov is None:
            return {"notes": list(self.notes)}
        return {"cov": self.cov.reindex(index), "n_fixed": self.n_fixed, "notes": list(self.notes),
                "blocks": None if self.blocks is None else self.blocks.reindex(index).to_numpy(str)}


def _adjustment(table: pd.DataFrame, covariates: list[str], n_fixed: int) -> tuple[_Adjustment, pd.Index]:
    """The tool's own choice of covariates for the samples of ``table`` (:func:`proteus.stats.design.usable_covariates`
    with ``n_fixed`` non-covariate design columns, then complete cases), and the samples kept."""
    from proteus.stats.design import permutation_blocks, usable_covariates

    if not covariates:
        return _Adjustment(), table.index
    covs, dropped = usable_covariates(table, [c for c in covariates if c in table.columns], n_fixed)
    notes = [f"not adjusted for {c} ({why}), as in the tool's model" for c, why in dropped.items()]
    if not covs:
        return _Adjustment(notes=notes), table.index
    tab = table.loc[table[covs].notna().all(axis=1)]
    return _Adjustment(tab[covs], n_fixed, permutation_blocks(tab, covs),
                       [f"adjusted for {', '.join(covs)} (refitted in every re-test; a held-out split keeps those it can afford)", *notes]), tab.index


def _two_group(df: pd.DataFrame, case: pd.Series, adj: _Adjustment | None = None) -> EdgeDesign:
    return EdgeDesign("two_group", df.to_numpy(float), -1, list(df.index), labels=case.reindex(df.index).fillna(False).to_numpy(bool),
                      method="student", columns=df.columns.astype(str), **(adj or _Adjustment()).at(df.index))


def _correlation(X: pd.DataFrame, Y: pd.DataFrame | pd.Series, method: str, adj: _Adjustment | None = None) -> EdgeDesign:
    Yf = Y.to_frame() if isinstance(Y, pd.Series) else Y
    xa, ya = (_ranks(X), _ranks(Yf)) if method == "spearman" else (X.to_numpy(float), Yf.to_numpy(float))
    return EdgeDesign("correlation", xa, -1, list(X.index), Y=ya, method=method, columns=X.columns.astype(str), **(adj or _Adjustment()).at(X.index))


def _mutation_groups(study: Study, p: dict[str, Any], modality: str, gene: str, feature: str | None = None
                     ) -> tuple[pd.DataFrame, pd.Series, _Adjustment]:
    """Layer values (only ``feature`` when given) of the genotyped samples, their mutation status and
    the covariates the tool's model kept (complete cases, as the tool)."""
    from proteus.tools.correlation import modality_frame, restricted_samples
    from proteus.tools.mutation import mutation_matrix

    samples = restricted_samples(study, list(study.modalities[modality].obs_names.astype(str)), p.get("restrict"))
    mat, geno = mutation_matrix(study, samples, p.get("variant_classes", "nonsilent"))
    if gene not in mat.columns:
        msg = f"{gene} is not mutated in the genotyped samples"
        raise KeyError(msg)
    adj, kept = _adjustment(study.clinical.reindex(geno), p.get("covariates") or [], 2)
    geno = [s for s in geno if s in set(kept)]
    if feature is not None:
        a = study.modalities[modality]
        study = Study(study.root, {modality: a[:, [f for f in a.var_names if f == feature]]}, study.clinical, study.mutations)
    return modality_frame(study, modality, geno), mat[gene], adj


def _contrast_design(study: Study, p: dict[str, Any], mod: str, covariates: list[str]) -> EdgeDesign:
    """The two-group design of a contrast as ``differential_abundance`` tested it (params ``p``): the layer over the
    case (a pooled case: its levels as one group) and control samples, the tool's sample normalisation, the
    covariates its model kept."""
    from proteus.tools.correlation import modality_frame
    from proteus.tools.differential import _log_intensities, resolve_normalize
    from proteus.tools.qc import normalize_layer

    group, control = p["group"], str(p["control"])
    cases = [str(v) for v in p.get("case_levels") or [p["case"]]]
    tab = study.sample_table(mod)
    tab = tab[tab[group].notna() & tab[group].astype(str).isin([*cases, control])]
    adj, kept = _adjustment(tab, covariates, 1 + len(cases))
    lab = tab.loc[kept, group].astype(str)
    frame = modality_frame(study, mod, list(lab.index))
    norm = resolve_normalize(p.get("normalize", "none"), _log_intensities(study.modalities[mod].uns, frame.to_numpy(float)))
    if norm != "none":  # the tool's own sample normalisation over the contrast's samples
        a = study.modalities[mod]
        sub = normalize_layer(a[a.obs_names.get_indexer(frame.index)], method=norm)
        frame = pd.DataFrame(np.asarray(sub.X, dtype=float), index=frame.index, columns=frame.columns)
    return _two_group(frame, lab.isin(cases), adj)


def _family(study: Study, r: Relation, mod: str, feat: str, own_layer: bool) -> tuple[str, Any] | str:
    """(cache key, builder) of the family matrix the edge's feature was tested in."""
    from proteus.tools.correlation import _paired_by_gene, modality_frame, restricted_samples

    tool, p = r.provenance.tool, dict(r.provenance.params)
    pk = json.dumps(p, sort_keys=True, default=str)
    # another layer's re-test (cross-omics) keeps no covariates: the edge's technical columns are its own layer's
    covariates = list(p.get("covariates") or []) if own_layer else []
    if tool == "differential_abundance" and r.predicate in ("higher_in", "lower_in"):
        return f"diff|{mod}|{pk}", lambda: _contrast_design(study, p, mod, covariates)
    if tool == "differential_anova" and r.predicate == "differs_across":
        # the F-test's finding as it is stated: its most distinct level (else highest level), against the design's other levels
        level = str((r.stats.extra or {}).get("level") or (r.stats.extra or {}).get("top_level"))

        def build_level() -> EdgeDesign:
            tab = study.sample_table(mod)
            lab = tab[p["group"]]
            levels = [str(v) for v in p.get("levels") or lab.dropna().astype(str).unique()]
            tab = tab[lab.notna() & lab.astype(str).isin(levels)]
            adj, kept = _adjustment(tab, covariates, len(levels))
            lab = tab.loc[kept, p["group"]].astype(str)
            return _two_group(modality_frame(study, mod, list(lab.index)), lab == level, adj)

        return f"anova|{mod}|{level}|{pk}", build_level
    if tool == "mutation_association" and r.predicate in ("higher_in", "lower_in"):
        gene = r.object.label.split(": ")[0].removesuffix(" mutation")
        if own_layer and "covariates" in (r.stats.extra or {}):  # the gene's own model (its enriched groupings added)
            p["covariates"] = list(r.stats.extra["covariates"])
        return f"mut|{mod}|{gene}|{json.dumps(p, sort_keys=True, default=str)}", lambda: _two_group(*_mutation_groups(study, p, mod, gene))
    if tool == "mutation_cis_effect" and r.predicate == "cis_effect_on":
        # the tool tested one feature per mutated gene: the family is that feature alone
        def build_cis() -> EdgeDesign:
            frame, status, _ = _mutation_groups(study, {k: v for k, v in p.items() if k != "covariates"}, mod, r.subject.label, feature=feat)
            return _two_group(frame, status)

        return f"mutcis|{mod}|{r.subject.label}|{feat}|{pk}", build_cis
    if tool == "clinical_correlation" and r.predicate == "correlates_with":
        def build_corr() -> EdgeDesign:
            samples = restricted_samples(study, list(study.modalities[mod].obs_names.astype(str)), p.get("restrict"))
            y = pd.to_numeric(study.clinical.reindex(samples)[p["variable"]], errors="coerce").dropna()
            adj, kept = _adjustment(study.clinical.reindex(y.index), covariates, 2)
            y = y.loc[kept]
            return _correlation(modality_frame(study, mod, list(y.index)), y, p.get("method", "spearman"), adj)

        return f"corr|{mod}|{pk}", build_corr
    if tool == "mrna_protein_concordance" and r.predicate == "concordant_with" and own_layer:
        def build_conc() -> EdgeDesign:
            A, B = _paired_by_gene(study, p["modality"], p["other_modality"], restricted_samples(study, study.samples(), p.get("restrict")))
            return _correlation(A, B, p.get("method", "spearman"))

        return f"conc|{pk}", build_conc
    if tool == "cna_cis_effect" and r.predicate == "cis_effect_on" and own_layer:
        target = str(r.stats.extra.get("target_modality") or r.modality)

        def build_cna() -> EdgeDesign:
            C, T = _paired_by_gene(study, p["modality"], target, restricted_samples(study, study.samples(), p.get("restrict")))
            return _correlation(T, C, p.get("method", "spearman"))

        return f"cna|{target}|{pk}", build_cna
    return f"{r.predicate} edges of {tool} are not re-tested per feature"


def _feature(r: Relation) -> str:
    if r.predicate == "cis_effect_on" and r.subject.type == "mutation":
        return r.object.label
    if r.provenance.tool in ("mrna_protein_concordance", "cna_cis_effect"):
        return r.subject.label
    return str(r.stats.extra.get("feature_id") or r.subject.label)


def edge_design(
    study: Study, r: Relation, *, modality: str | None = None, feature: str | None = None, cache: dict[str, Any] | None = None
) -> EdgeDesign | str:
    """The data edge ``r`` was tested on (see the module docstring), or why it cannot be rebuilt.

    ``modality`` / ``feature`` replace the edge's own layer and feature (cross-omics re-tests:
    the same contrast on another layer's feature of the same gene). ``cache`` keeps family
    matrices between calls (edges of one tool call share one).
    """
    mod = modality or r.modality
    if mod is None:
        return "the edge has no measured layer (a count from the mutation table or the sample table); it is not re-tested per split"
    if mod not in study.modalities:
        return f"the edge's layer {mod!r} is not in this study"
    if study.modalities[mod].uns.get("level", "sample") == "cell":
        return "cell-level edge: its populations are clusters found in this run, not re-tested per split"
    feat = feature or _feature(r)
    fam = _family(study, r, mod, feat, own_layer=modality is None)
    if isinstance(fam, str):
        return fam
    key, build = fam
    cache = {} if cache is None else cache
    if key not in cache:
        try:
            cache[key] = build()
        except (KeyError, ValueError) as e:
            cache[key] = f"its data could not be rebuilt: {type(e).__name__}: {e}"
    base = cache[key]
    if isinstance(base, str):
        return base
    fixed = (r.stats.extra or {}).get("family_features") if modality is None else None
    if fixed:  # a family fixed before the test (a mutated gene's named paralogs): the null is that family's, not the layer's
        keep = np.flatnonzero(base.columns.isin([str(f) for f in fixed]))
        base = replace(base, X=base.X[:, keep], columns=base.columns[keep])
        key = f"{key}|family|{json.dumps(sorted(map(str, fixed)))}"
    hit = np.flatnonzero(base.columns == str(feat))
    if not len(hit):
        return f"feature {feat!r} is not in the tested layer"
    if base.kind == "two_group" and modality is None and (r.stats.extra or {}).get("method") == "censored":
        notes = base.notes if base.cov is None else [*base.notes[1:], "re-tested unadjusted by Gehan's test (it has no covariates); "
                                                   "its null permuted within the covariate blocks"]
        return replace(base, column=int(hit[0]), family_key=f"{key}|gehan", method="gehan", notes=notes)
    return replace(base, column=int(hit[0]), family_key=key)


def _enrichment_frame(study: Study, r: Relation, features: list[str]) -> tuple[pd.DataFrame, pd.Series, pd.Series] | str:
    """The layer ``features`` of a ``mutation_group_enrichment`` edge's genotyped samples (those of its contrast's two
    levels, the tool's ``restrict`` and variant classes), whether each carries the edge's gene and whether it is in the
    case level; or why they cannot be rebuilt."""
    from proteus.tools.correlation import modality_frame, restricted_samples
    from proteus.tools.mutation import mutation_matrix

    p, ex, gene = dict(r.provenance.params), r.stats.extra or {}, r.subject.label
    mod = ex.get("own_modality")
    if r.provenance.tool != "mutation_group_enrichment" or r.subject.type != "mutation":
        return f"{r.predicate} edges of {r.provenance.tool} state no carrier effect"
    if mod not in study.modalities or ex.get("own_feature") is None:
        return "the edge records no measured own feature of its gene"
    lab = study.clinical[p["group"]]
    samples = [str(s) for s in lab.index[lab.notna() & lab.astype(str).isin([str(p["case"]), str(p["control"])])]]
    try:
        mat, geno = mutation_matrix(study, restricted_samples(study, samples, p.get("restrict")), p.get("variant_classes", "nonsilent"))
    except ValueError as e:  # ToolInputError: no mutation table
        return f"its carriers could not be rebuilt: {e}"
    if gene not in mat.columns:
        return f"{gene} is not mutated in the genotyped samples"
    a = study.modalities[mod]
    keep = set(map(str, features))
    frame = modality_frame(Study(study.root, {mod: a[:, [f for f in a.var_names if str(f) in keep]]}, study.clinical, study.mutations), mod, geno)
    if str(ex["own_feature"]) not in frame.columns:
        return f"feature {ex['own_feature']!r} is not in the layer {mod!r}"
    level = pd.Series(lab.astype(str).to_numpy(), index=lab.index.astype(str)).reindex(frame.index)
    return frame, mat[gene], level == str(p["case"])


def carrier_design(study: Study, r: Relation) -> EdgeDesign | str:
    """The carrier effect a ``mutation_group_enrichment`` edge states, or why it cannot be rebuilt.

    The gene's own feature (``stats.extra`` ``own_modality`` / ``own_feature``, as the tool recorded it) over the
    genotyped samples of the edge's contrast (the tool's ``restrict`` and variant classes), carriers as cases: the
    comparison behind the tool's ``own_diff_carriers``. Its family is that feature alone (the tool tested one
    feature per enriched gene)."""
    got = _enrichment_frame(study, r, [(r.stats.extra or {}).get("own_feature")])
    if isinstance(got, str):
        return got
    frame, carriers, _ = got
    d = _two_group(frame, carriers)
    p, ex = r.provenance.params, r.stats.extra
    return replace(d, column=0, family_key=f"carriers|{ex['own_modality']}|{r.subject.label}|{ex['own_feature']}|{json.dumps(p, sort_keys=True, default=str)}")


def levels_design(study: Study, r: Relation) -> EdgeDesign | str:
    """The grouping's difference in the gene's own feature that a ``mutation_group_enrichment`` edge records (the
    headline of a claim that the difference runs through the carriers), or why it cannot be rebuilt.

    The gene's own feature, the contrast's case level against its control level over the same genotyped samples as
    :func:`carrier_design`, carriers and non-carriers together: the comparison behind the tool's ``own_diff_all``.
    Its family is the own features of the genes the call found enriched (``own_family``: the features its
    ``own_q_all`` is a BH q over), so the permutation null is as selection-aware as that q; the feature alone where
    the edge records no family."""
    ex = r.stats.extra or {}
    family = [str(f) for f in ex.get("own_family") or [ex.get("own_feature")]]
    got = _enrichment_frame(study, r, family)
    if isinstance(got, str):
        return got
    frame, _, case = got
    d = _two_group(frame, case)
    return replace(d, column=int(np.flatnonzero(d.columns == str(ex["own_feature"]))[0]),
                   family_key=f"levels|{ex['own_modality']}|{json.dumps(sorted(family))}|{json.dumps(r.provenance.params, sort_keys=True, default=str)}")


PROGRAMME_TOOLS = ("enrichment_ora", "enrichment_gsea")
"""Tools whose ``enriched_in`` edges state a set over a contrast of one layer, so its programme can be scored."""
MIN_SCORED_MEMBERS = 3
"""Fewest members observed in a sample for its programme score (a mean of fewer is one or two genes, not a programme)."""


def programme_design(study: Study, r: Relation, *, cache: dict[str, Any] | None = None) -> EdgeDesign | str:
    """The programme an ``enriched_in`` edge names, scored per sample and set between its contrast's levels; or why
    it cannot be.

    Score: the mean z-score of the set's members (Lee et al. 2008, doi:10.1371/journal.pcbi.1000217; the
    single-sample score family of singscore, Foroutan et al. 2018, doi:10.1186/s12859-018-2435-4): every canonical
    feature of the enrichment's layer (:mod:`proteus.stats.features`) is standardised over the contrast's samples
    (labels unseen), a gene's sites are averaged (each protein counted once, as the enrichment counted it), and a
    sample's score is the mean over the set's genes it has observed (``NaN`` below :data:`MIN_SCORED_MEMBERS`).
    The score is tested between the contrast's levels as a ``differential_abundance`` edge of that contrast is (same
    samples, normalisation and covariates; Student's or the adjusted t): a *self-contained* test (H0: no member
    differs), the claim "the programme is higher", where the over-representation that found the set is a
    *competitive* one (its members are hits more often than other genes; Goeman & Buhlmann 2007,
    doi:10.1093/bioinformatics/btm051). Its family, for the selection-aware null, is the score of every set of the
    library with ``min_size`` .. ``max_size`` members measured (the sets the enrichment tested), computed once per
    contrast, layer and library in ``cache``."""
    from proteus.stats.contrasts import TEST_FIELDS

    ex, p = r.stats.extra or {}, dict(r.provenance.params)
    if r.predicate != "enriched_in" or r.provenance.tool not in PROGRAMME_TOOLS or not ex.get("set_id") or not ex.get("library"):
        return f"{r.predicate} edges of {r.provenance.tool} name no gene set scored over a contrast"
    if r.modality not in study.modalities:
        return f"the edge's layer {r.modality!r} is not in this study"
    if p.get("control") is None:
        return "the enrichment's contrast has no control level (one level against the rest); its programme is not re-tested per split"
    contrast = {k: p[k] for k in sorted(TEST_FIELDS) if k in p}
    sizes = (int(p.get("min_size", 10)), int(p.get("max_size", 500)))
    key = f"programme|{r.modality}|{ex['library']}|{sizes}|{json.dumps(contrast, sort_keys=True, default=str)}"
    cache = {} if cache is None else cache
    if key not in cache:
        try:
            cache[key] = _programme_scores(study, contrast, r.modality, str(ex["library"]), sizes)
        except (KeyError, ValueError) as e:
            cache[key] = f"its data could not be rebuilt: {type(e).__name__}: {e}"
    base, members = cache[key] if isinstance(cache[key], tuple) else (cache[key], None)
    if isinstance(base, str):
        return base
    hit = np.flatnonzero(base.columns == str(ex["set_id"]))
    if not len(hit):
        return f"set {ex['set_id']} has fewer than {sizes[0]} or more than {sizes[1]} members measured in {r.modality}"
    note = (f"programme score: per sample, the mean of the standardised values of the set's {members[int(hit[0])]} measured member genes "
            f"({r.modality}); its null family the {len(base.columns)} {ex['library']} sets scored alike")
    return replace(base, column=int(hit[0]), family_key=key, notes=[note, *base.notes])


def _programme_scores(study: Study, contrast: dict[str, Any], mod: str, library: str, sizes: tuple[int, int]) -> tuple[EdgeDesign, np.ndarray]:
    """(the contrast's design with one column per scored set of ``library``, each set's measured member genes):
    see :func:`programme_design`."""
    from scipy import sparse

    from proteus import genesets
    from proteus.stats.features import canonical_features, feature_genes

    d = _contrast_design(study, contrast, mod, list(contrast.get("covariates") or []))
    a = study.modalities[mod]
    cols = pd.Index(d.columns)
    canon = canonical_features(a).reindex(cols).fillna(False).to_numpy(bool)
    sym = pd.Series(genesets.to_symbols([g if isinstance(g, str) and g else None for g in feature_genes(a).reindex(cols)]), index=cols)
    X, obs = d.X, np.isfinite(d.X)
    n = obs.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(obs, X, 0.0).sum(0) / n
        sd = np.sqrt((np.where(obs, X - mean, 0.0) ** 2).sum(0) / (n - 1))
        Z = (X - mean) / sd
    use = canon & sym.notna().to_numpy() & (n >= 3) & np.isfinite(sd) & (sd > 0)
    codes, genes = pd.factorize(sym[use])
    Zu = Z[:, use]
    obs = np.isfinite(Zu)
    to_gene = sparse.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), len(genes)))
    n_obs = np.asarray(to_gene.T @ obs.T.astype(float)).T
    with np.errstate(invalid="ignore", divide="ignore"):
        G = np.asarray(to_gene.T @ np.where(obs, Zu, 0.0).T).T / n_obs  # a gene's sites averaged (NaN where none observed)
    pos = {g: i for i, g in enumerate(genes)}
    kept, rows, cols_ = [], [], []
    for set_id, mem in sorted(genesets.load(library).items()):
        idx = sorted({pos[g] for g in mem if g in pos})
        if sizes[0] <= len(idx) <= sizes[1]:
            rows += idx
            cols_ += [len(kept)] * len(idx)
            kept.append((set_id, len(idx)))
    if not kept:
        msg = f"no {library} set has {sizes[0]}..{sizes[1]} members measured in {mod}"
        raise ValueError(msg)
    to_set = sparse.csr_matrix((np.ones(len(rows)), (rows, cols_)), shape=(len(genes), len(kept)))
    g_obs = np.isfinite(G)
    n_set = np.asarray(to_set.T @ g_obs.T.astype(float)).T
    with np.errstate(invalid="ignore", divide="ignore"):
        S = np.asarray(to_set.T @ np.where(g_obs, G, 0.0).T).T / n_set
    S[n_set < MIN_SCORED_MEMBERS] = np.nan
    return replace(d, X=np.asarray(S), columns=pd.Index([s for s, _ in kept]), column=-1), np.array([m for _, m in kept])


def with_covariates(design: EdgeDesign, study: Study, columns: list[str]) -> EdgeDesign | str:
    """``design`` with the sample-table ``columns`` added to its covariates, on its samples with every one of them
    recorded (values meaning unknown count as missing, as the refit a claim quotes); or why it cannot be.

    The columns come first in the covariate order, so a held-out split keeps them before the tool's own
    covariates when it cannot afford all (:func:`proteus.stats.design.usable_covariates`); on all the design's
    samples every column must be affordable, else the claim's model cannot be rebuilt. The family is the edge's
    feature alone: the refit re-tests the feature the edge selected, a pre-specified test (the selection is the
    edge's own, set against its family's null)."""
    from proteus.design import recorded
    from proteus.stats.design import is_factor, usable_covariates

    missing = [c for c in columns if c not in study.clinical.columns]
    if missing:
        return f"{', '.join(missing)} is not a sample-table column"
    columns = list(dict.fromkeys(columns))
    tab = study.clinical.reindex(design.samples)[columns]
    tab = tab.apply(recorded)
    # a column the design already adjusts for is taken once, as the claim's
    own = None if design.cov is None else design.cov.drop(columns=[c for c in columns if c in design.cov.columns])
    cov = tab if own is None else pd.concat([tab, own.set_axis(tab.index)], axis=1)
    # a factor on all the design's samples stays one on those kept (a plex seen once among them is still a plex): as text
    cov = cov.apply(lambda col: col.astype(str).where(col.notna()) if is_factor(col) else col)
    keep = cov.notna().all(axis=1).to_numpy()
    cov = cov.loc[keep]
    kept, dropped = usable_covariates(cov, list(cov.columns), design.n_fixed)
    if not set(columns) <= set(kept):
        return "; ".join(f"{c}: {dropped.get(c, 'not affordable')}" for c in columns if c not in kept)
    idx, col = np.flatnonzero(keep), design.column
    paired = design.Y is not None and design.Y.shape[1] > 1
    return replace(design, X=design.X[idx][:, [col]], column=0, columns=None if design.columns is None else design.columns[[col]],
                   samples=[design.samples[i] for i in idx], labels=None if design.labels is None else design.labels[idx],
                   Y=None if design.Y is None else design.Y[idx][:, [col]] if paired else design.Y[idx],
                   cov=cov, blocks=None if design.blocks is None else design.blocks[idx],
                   # the refit's family is its one feature: keyed by it, so features of one call never share a null
                   family_key=f"{design.family_key}|{design.columns[col] if design.columns is not None else col}|adjusted|{','.join(columns)}",
                   notes=[f"adjusted for {', '.join(columns)} as the claim states, on the {len(idx)} samples with "
                          f"{'it' if len(columns) == 1 else 'them'} recorded", *design.notes])
