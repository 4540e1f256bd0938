"""Consensus hierarchical metaclustering of SOM codes (FlowSOM ``metaClustering_consensus``).

References
----------
Monti S. et al. (2003) Consensus clustering. Machine Learning 52:91-118, doi:10.1023/A:1023949509487.
Wilkerson M.D. & Hayes D.N. (2010) ConsensusClusterPlus. Bioinformatics 26:1572-1573,
doi:10.1093/bioinformatics/btq170.
Van Gassen S. et al. (2015) FlowSOM. Cytometry A 87:636-645, doi:10.1002/cyto.a.22625.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

__all__ = ["consensus_metaclustering"]


def consensus_metaclustering(
    codes: np.ndarray, k: int | None = 10, *, max_k: int = 20, reps: int = 100, p_item: float = 0.9, seed: int = 0
) -> tuple[np.ndarray, dict[int, float]]:
    """Consensus hierarchical metaclustering of SOM codes.

    ``reps`` times, a random ``p_item`` fraction of the codes is clustered by average-linkage
    hierarchical clustering (Euclidean) and cut into ``k`` groups; the consensus matrix
    :math:`C_{ij}` is the fraction of the subsamples holding both :math:`i` and :math:`j` that put
    them together. The final metaclusters cut the average-linkage tree of :math:`1 - C`.
    ``k=None`` chooses k in 2..``max_k`` by the relative increase in the area under the consensus
    CDF (Monti et al. 2003): the smallest k after which adding a cluster raises the area by < 10%.

    Returns
    -------
    labels : ndarray, shape (n_codes,)
        Metacluster of each code, 1..k, numbered by decreasing number of codes.
    delta_area : dict
        k -> relative change in CDF area (only when ``k`` is None).

    Raises
    ------
    ValueError
        When ``k`` is not below the number of codes.
    """
    rng = np.random.default_rng(seed)
    n = codes.shape[0]
    ks = list(range(2, min(max_k, n - 1) + 1)) if k is None else [int(k)]
    if ks[-1] >= n:
        msg = f"k={ks[-1]} metaclusters need more than {n} SOM codes"
        raise ValueError(msg)
    together = {kk: np.zeros((n, n)) for kk in ks}
    sampled = np.zeros((n, n))
    m = max(2, int(round(p_item * n)))
    for _ in range(reps):
        idx = np.sort(rng.choice(n, m, replace=False))
        Z = hierarchy.linkage(codes[idx], method="average", metric="euclidean")
        sampled[np.ix_(idx, idx)] += 1
        for kk in ks:
            lab = hierarchy.fcluster(Z, kk, criterion="maxclust")
            same = (lab[:, None] == lab[None, :]).astype(float)
            together[kk][np.ix_(idx, idx)] += same
    cons = {kk: np.divide(together[kk], sampled, out=np.zeros((n, n)), where=sampled > 0) for kk in ks}
    delta: dict[int, float] = {}
    if k is None:
        areas = {}
        iu = np.triu_indices(n, 1)
        for kk in ks:
            v = np.sort(cons[kk][iu])
            grid = np.linspace(0, 1, 101)
            cdf = np.searchsorted(v, grid, side="right") / len(v)
            areas[kk] = float(np.trapezoid(cdf, grid))
        prev = None
        for kk in ks:
            delta[kk] = areas[kk] if prev is None else (areas[kk] - prev) / max(prev, 1e-12)
            prev = areas[kk]
        flat = next((kk for kk in ks[1:] if delta[kk] < 0.1), None)
        chosen = ks[-1] if flat is None else flat - 1
    else:
        chosen = ks[0]
    D = 1.0 - cons[chosen]
    np.fill_diagonal(D, 0.0)
    Z = hierarchy.linkage(squareform(D, checks=False), method="average")
    lab = hierarchy.fcluster(Z, chosen, criterion="maxclust")
    order = pd.Series(lab).value_counts().index.tolist()
    remap = {old: i + 1 for i, old in enumerate(order)}
    return np.array([remap[x] for x in lab]), delta
