"""Gehan's generalised Wilcoxon test (proteus.stats.gehan) against scipy on real label-free features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from proteus.edge_data import gehan
from proteus.stats.gehan import gehan_wilcoxon


@pytest.fixture(scope="module")
def layer(nafld_dir):
    """Samples x features of the nafld-plasma proteomics layer (NaN = not detected) and the profile's
    first two-level contrast as case labels over its samples."""
    from proteus.io import load_study
    from proteus.profile import profile_study

    study = load_study(nafld_dir)
    c = next(c for c in profile_study(study).contrasts if not c.case_levels)  # two levels, not a pooled case
    mod = next(k for k, a in study.bulk().items() if a.uns.get("modality") == "proteomics")
    lab = study.sample_table(mod)[c.group]
    lab = lab[lab.astype(str).isin([c.case, c.control])].astype(str)
    a = study.modalities[mod]
    X = np.asarray(a[a.obs_names.get_indexer(lab.index)].X, dtype=float)
    return X, (lab == c.case).to_numpy()


def _scipy(X: np.ndarray, case: np.ndarray):
    """Tie-corrected asymptotic Mann-Whitney of each column with NaN as -inf (below every value)."""
    Y = np.where(np.isfinite(X), X, -np.inf)
    return stats.mannwhitneyu(Y[case], Y[~case], use_continuity=False, method="asymptotic", axis=0)


def test_rank_test_equals_mann_whitney_with_missing_values_lowest(layer):
    X, case = layer
    partly = np.flatnonzero(np.isnan(X).any(0) & (np.isfinite(X).sum(0) >= 3))
    assert len(partly) >= 50, "the label-free layer has features with values missing in some samples"
    ref = _scipy(X[:, partly], case)
    delta, p = gehan(X[:, partly], case)
    np.testing.assert_allclose(p, ref.pvalue, rtol=1e-10)
    n1, n2 = case.sum(), (~case).sum()
    np.testing.assert_allclose(delta, 2 * ref.statistic / (n1 * n2) - 1, rtol=1e-10)
    # the direction: positive delta where the case group ranks higher
    means = np.array([np.mean(stats.rankdata(np.where(np.isfinite(x), x, -np.inf))[case]) for x in X[:, partly].T])
    assert np.all(np.sign(delta) == np.sign(means - (len(case) + 1) / 2))


def test_rank_sums_of_many_labellings_match_one_at_a_time(layer):
    X, case = layer
    rng = np.random.default_rng(3)
    L = np.stack([rng.permutation(case) for _ in range(6)], axis=1)
    g = gehan_wilcoxon(X.T, L)  # features x labellings, one matrix product
    for b in range(L.shape[1]):
        ok = np.isfinite(g.p[:, b])
        np.testing.assert_allclose(g.p[ok, b], _scipy(X[:, ok], L[:, b]).pvalue, rtol=1e-10)
    # features never observed tie everywhere: no statistic rather than p = 1
    assert not np.isfinite(g.p[np.isnan(X).all(0)]).any()
