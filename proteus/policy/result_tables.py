"""The full result tables of a run's steps, found by tool and parameters.

The knowledge graph keeps only significant relations (and at most a few hundred per step), so "X did
not change" or "the protein moved as much as its site" cannot be read from it. Every tool step
writes its whole table (``tables/<step>_<name>.tsv``); a :class:`ResultTables` finds a step by tool
and parameters through the step nodes of the knowledge graph and reads its table once.

A :class:`Change` is one feature's row of a two-group table with its 95% interval:
the standard error is ``|logFC / t|`` (limma's moderated t, or the Welch / rank-sum statistic read
the same way), the interval ``logFC +/- 1.96 se`` (normal approximation, for limma's large residual
plus prior degrees of freedom in a cohort), or Student's t quantile when the test's ``df`` is given
(a few donors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd
from scipy.stats import t as student_t

from proteus.kg import KnowledgeGraph

__all__ = ["Change", "ResultTables"]

Z95 = 1.959964


@dataclass(frozen=True)
class Change:
    """One feature's effect in one contrast, with its standard error and q-value."""

    label: str
    effect: float
    se: float
    q: float
    df: float = math.inf
    """Degrees of freedom of the test (limma ``df_total``); the 95% interval uses Student's t with them."""
    n: tuple[int, int] | None = None
    """Samples tested in the case and control groups, where the table records them."""

    @property
    def interval(self) -> tuple[float, float]:
        z = Z95 if not math.isfinite(self.df) else float(student_t.ppf(0.975, self.df))
        return self.effect - z * self.se, self.effect + z * self.se

    def text(self, what: str = "log2FC") -> str:
        lo, hi = self.interval
        return f"{what} {self.effect:+.2f} (95% CI {lo:+.2f} to {hi:+.2f}, q={self.q:.1e})"

    @classmethod
    def from_row(cls, row: pd.Series) -> Change | None:
        effect, t = float(row.get("logFC", math.nan)), float(row.get("t", math.nan))
        if not (math.isfinite(effect) and math.isfinite(t)) or t == 0:
            return None
        q = float(row.get("q", math.nan))
        n = (float(row.get("n_case", math.nan)), float(row.get("n_control", math.nan)))
        return cls(label=str(row.get("label", row.get("feature", ""))), effect=effect, se=abs(effect / t),
                   q=q if math.isfinite(q) else 1.0, n=(int(n[0]), int(n[1])) if all(map(math.isfinite, n)) else None)


def _is_table(path: str, name: str) -> bool:
    """Whether run-relative ``path`` is a step's ``name`` table (``tables/<step>_<name>.tsv[.gz]``)."""
    return path.endswith((f"_{name}.tsv", f"_{name}.tsv.gz"))


class ResultTables:
    """Result tables of the steps recorded in ``kg``, read with ``read`` (a run-relative path -> table).

    ``kinds`` maps a modality name to its kind (``proteomics``, ``phosphoproteomics``, ...), so a
    site's contrast can be looked up in the protein layer of the same study.
    """

    def __init__(self, kg: KnowledgeGraph, read: Callable[[str], pd.DataFrame | None], kinds: dict[str, str] | None = None):
        self._steps = [d for _, d in kg.g.nodes(data=True) if d.get("type") == "step" and d.get("status", "done") == "done"]
        self._read = read
        self._cache: dict[str, pd.DataFrame | None] = {}
        self.kinds = dict(kinds or {})

    @classmethod
    def of_view(cls, view) -> ResultTables:
        """The tables of a :class:`~proteus.policy.base.ResearchView`'s run, with its modalities' kinds."""
        return cls(view.kg, view.read_table, {m.name: m.kind for m in view.profile.modalities})

    @classmethod
    def empty(cls) -> ResultTables:
        return cls(KnowledgeGraph(), lambda path: None)

    def table(self, tool: str, name: str, **params) -> pd.DataFrame | None:
        """The ``name`` table of the first step of ``tool`` whose parameters include ``params``."""
        for d in self._steps:
            p = d.get("params") or {}
            if d.get("label") != tool or any(p.get(k) != v for k, v in params.items()):
                continue
            path = next((t for t in d.get("tables") or [] if _is_table(t, name)), None)
            if path is None:
                continue
            if path not in self._cache:
                self._cache[path] = self._read(path)
            if self._cache[path] is not None:
                return self._cache[path]
        return None

    def tables(self, tool: str, name: str) -> list[tuple[dict, pd.DataFrame]]:
        """Every ``name`` table of ``tool`` with the parameters of its step."""
        out = []
        for d in self._steps:
            if d.get("label") != tool:
                continue
            for path in d.get("tables") or []:
                if _is_table(path, name):
                    if path not in self._cache:
                        self._cache[path] = self._read(path)
                    if self._cache[path] is not None:
                        out.append((dict(d.get("params") or {}), self._cache[path]))
        return out

    def change(self, modality: str, group: str, case: str, control: str, gene: str) -> Change | None:
        """The protein-level (gene-keyed) change of ``gene`` in a two-group differential of ``modality``
        (its canonical feature, :mod:`proteus.stats.features`, where the table marks one); ``None`` when that contrast was not tested in that layer or the gene was not tested in it."""
        tab = self.table("differential_abundance", "results", modality=modality, group=group, case=case, control=control)
        if tab is None or tab.empty:
            return None
        key = "gene" if "gene" in tab else "label"
        rows = tab[tab[key].astype(str) == gene]
        if rows.empty:
            rows = tab[tab["label"].astype(str) == gene]
        if rows.empty:
            return None
        if "canonical" in rows and rows["canonical"].astype(str).eq("True").any():  # the gene's main protein group
            rows = rows[rows["canonical"].astype(str).eq("True")]
        return Change.from_row(rows.sort_values("p", kind="stable").iloc[0])

    def protein_layers(self) -> list[str]:
        """Modalities of kind proteomics (the layer a site or mRNA change is set against)."""
        return [m for m, k in self.kinds.items() if k == "proteomics"]

    def protein_change(self, group: str, case: str, control: str, gene: str) -> Change | None:
        """``gene``'s protein change in the contrast, from the first protein layer that tested it."""
        for m in self.protein_layers():
            c = self.change(m, group, case, control, gene)
            if c is not None:
                return c
        return None
