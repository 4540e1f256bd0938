"""Self-organising map of cells, as FlowSOM builds it.

References
----------
Van Gassen S. et al. (2015) FlowSOM: using self-organizing maps for visualization and interpretation of
cytometry data. Cytometry A 87:636-645, doi:10.1002/cyto.a.22625.
Kohonen T. (2013) Essentials of the self-organizing map. Neural Networks 37:52-65 (the batch map).
"""

from __future__ import annotations

import numpy as np

__all__ = ["flowsom_codes"]


def _grid(xdim: int, ydim: int) -> np.ndarray:
    return np.array([(i, j) for j in range(ydim) for i in range(xdim)], dtype=float)


def _nearest(X: np.ndarray, codes: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(X.shape[0], dtype=np.int64)
    cc = (codes**2).sum(1)
    for s in range(0, X.shape[0], chunk):
        x = X[s : s + chunk]
        d = cc[None, :] - 2.0 * x @ codes.T
        out[s : s + chunk] = d.argmin(1)
    return out


def flowsom_codes(
    X: np.ndarray, *, xdim: int = 10, ydim: int = 10, rlen: int = 10, seed: int = 0, max_train: int = 200_000
) -> tuple[np.ndarray, np.ndarray]:
    """Self-organising map of the rows of ``X`` (FlowSOM's ``BuildSOM`` as a batch SOM).

    The grid distance is Chebyshev (as FlowSOM), the neighbourhood a bubble whose radius shrinks
    linearly from the 0.67 quantile of grid distances to 0 over ``rlen`` epochs; codes start at
    randomly chosen cells (seeded). Each epoch every cell goes to its nearest code (Euclidean) and
    each code becomes the mean of the cells mapped within its neighbourhood; the last epoch
    (radius 0) is a k-means step. At most ``max_train`` cells (random, seeded) train the map.

    Returns
    -------
    codes : ndarray, shape (xdim * ydim, n_markers)
    mapping : ndarray, shape (n_cells,)
        Index of each cell's code.
    """
    rng = np.random.default_rng(seed)
    X = np.asarray(X, dtype=np.float64)
    n_codes = xdim * ydim
    train = X if X.shape[0] <= max_train else X[rng.choice(X.shape[0], max_train, replace=False)]
    codes = train[rng.choice(train.shape[0], n_codes, replace=train.shape[0] < n_codes)].copy()
    g = _grid(xdim, ydim)
    gd = np.abs(g[:, None, :] - g[None, :, :]).max(-1)
    r0 = np.quantile(gd, 0.67)
    for e in range(max(rlen, 2)):
        radius = r0 * (1 - e / (max(rlen, 2) - 1))
        H = (gd <= radius + 1e-9).astype(float)
        bmu = _nearest(train, codes)
        counts = np.bincount(bmu, minlength=n_codes).astype(float)
        sums = np.zeros_like(codes)
        np.add.at(sums, bmu, train)
        num, den = H @ sums, H @ counts
        ok = den > 0
        codes[ok] = num[ok] / den[ok, None]
    return codes, _nearest(X, codes)
