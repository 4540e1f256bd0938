"""Wording rules: each clause of a hypothesis says no more than its evidence.

Pure functions used by :mod:`proteus.policy.patterns` and :mod:`proteus.policy.cytometry` before a
sentence is written:

- :func:`site_against_protein` — a phosphosite change is claimed only beyond its protein's change
  (the site-minus-protein difference, z-test on the two independent standard errors; the usual
  "site normalised to protein" comparison of phosphoproteomics, e.g. Wu et al. 2011,
  doi:10.1074/mcp.M111.009654); "no protein change" only when the protein was tested and is
  :func:`negligible` against the site's effect, and "in step with its protein" only when the
  site-minus-protein interval lies inside the same margin (otherwise: not detected, with the interval).
- :func:`site_verdict` — the same, for a site relation read from the run's full tables.
- :func:`negligible` — "does not change" only when the 95% interval holds zero and lies within half
  the reference effect (an equivalence margin; a non-significant test alone is absence of evidence).
- :func:`directions_agree` — "together" / "as a unit" only when every member moves the same way.
- :func:`is_composition_score` (defined in :mod:`proteus.design`, with the other column semantics) — clinical columns that measure tissue composition (purity, stromal /
  immune content, deconvolution fractions): findings that track them may reflect composition.
- :func:`clustering_qc` — sample clusters that are unstable (PAC above
  :data:`proteus.confounding.UNSTABLE_PAC`) or follow a technical column are a QC observation, not a
  hypothesis: the caveat would remove the claim's content.
- :func:`stated_with_design` — a composition-confounded claim (:func:`proteus.ranking.composition_confounded`: tissue
  types compared with no composition score in the model) says what was observed and that it may reflect the groups'
  cell-type make-up, never a mechanism within cells (transcription, a change after transcription, an enzyme's
  activity on a site): a difference between tissues cannot tell regulation within a cell type from a change in
  which cells make up the sample.
- :func:`overclaims` — causal or design-dependent words ("drives", "propagates", "independent of",
  "expanded") that an association study cannot support; :func:`reword_overclaims` replaces them
  with what an association supports.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from proteus.design import is_composition_score
from proteus.policy.result_tables import Z95, Change, ResultTables
from proteus.records import Relation
from proteus.stats.units import unit_share

__all__ = [
    "SiteVerdict",
    "site_against_protein",
    "site_verdict",
    "negligible",
    "directions_agree",
    "is_composition_score",
    "clustering_qc",
    "overclaims",
    "reword_overclaims",
    "enrichment_share",
    "pathway_moves",
    "stated_with_design",
    "COMPOSITION_READING",
]

_Z_BEYOND = 2.576  # two-sided p < 0.01 for the site-minus-protein difference

SiteKind = Literal["protein_not_tested", "protein_unchanged", "beyond_protein", "mirrors_protein", "not_beyond_protein"]


@dataclass(frozen=True)
class SiteVerdict:
    """How a site change stands against its protein's change, and the clause that says so."""

    kind: SiteKind
    clause: str

    @property
    def site_specific(self) -> bool:
        return self.kind in ("protein_unchanged", "beyond_protein")


def site_against_protein(site: Change, protein: Change | None, gene: str, modification: str = "phosphorylation") -> SiteVerdict:
    """Set a site's change against its protein's change in the same contrast (``modification``: what the
    site carries, named in the clause).

    ``protein_unchanged``: protein tested and :func:`negligible` against the site's effect.
    ``beyond_protein``: the site-minus-protein difference has the site's sign and |z| > 2.576.
    ``mirrors_protein``: neither, and the difference's 95% interval lies inside +/- half the site's
    effect (an equivalence bound, as :func:`negligible`): the site follows its protein's amount.
    ``not_beyond_protein``: neither, and the interval is wider than that bound: no site-specific change
    was detected, and none is excluded either (a non-significant difference is absence of evidence).
    """
    if protein is None:
        return SiteVerdict("protein_not_tested", f"{gene} protein was not tested in this contrast")
    if negligible(protein, site.effect):
        return SiteVerdict("protein_unchanged", f"while {gene} protein does not change ({protein.text()})")
    diff = site.effect - protein.effect
    se = math.hypot(site.se, protein.se)
    z, lo, hi, margin = diff / se, diff - Z95 * se, diff + Z95 * se, abs(site.effect) / 2
    if diff * site.effect > 0 and abs(z) > _Z_BEYOND:
        return SiteVerdict("beyond_protein", f"beyond the change of {gene} protein ({protein.text()}; "
                                             f"site minus protein {diff:+.2f} log2, z={z:+.1f})")
    interval = f"site minus protein {diff:+.2f} log2, 95% CI {lo:+.2f} to {hi:+.2f}"
    if -margin < lo and hi < margin:
        return SiteVerdict("mirrors_protein", f"in step with {gene} protein ({protein.text()}; {interval}, inside +/-{margin:.2f}, half "
                                              f"the site's change): a change in protein amount, not in {modification} per molecule")
    return SiteVerdict("not_beyond_protein", f"with a change beyond {gene} protein's not detected ({protein.text()}; {interval}, "
                                             f"wider than +/-{margin:.2f}, half the site's change: neither a site-specific change nor its "
                                             "absence is shown)")


def site_verdict(site: Relation, tables: ResultTables, gene: str | None = None, modification: str = "phosphorylation") -> SiteVerdict | None:
    """:func:`site_against_protein` for a site relation, read from the run's full tables (the site's own
    row in its differential, its protein's change in the same contrast); ``gene`` defaults to the site's
    recorded gene. ``None`` when the site's row is in no table."""
    prm = site.provenance.params
    group, case, control = prm.get("group"), prm.get("case"), prm.get("control")
    if not (group and case and control and site.modality):
        return None
    gene = gene or str(site.stats.extra.get("gene") or site.subject.label.split("-")[0])
    tab = tables.table("differential_abundance", "results", modality=site.modality, group=group, case=case, control=control)
    rows = tab[tab["label"].astype(str) == site.subject.label] if tab is not None else None
    change = Change.from_row(rows.iloc[0]) if rows is not None and not rows.empty else None
    if change is None:
        return None
    return site_against_protein(change, tables.protein_change(group, case, control, gene), gene, modification)


def negligible(change: Change, reference: float) -> bool:
    """True when ``change`` is not significant (q >= 0.05) and its 95% interval holds zero and lies
    inside +/- half of ``reference`` (the effect it is contrasted with): evidence that it does not
    change, not only that no change was detected."""
    lo, hi = change.interval
    half = abs(reference) / 2
    return change.q >= 0.05 and -half < lo <= 0 <= hi < half


def directions_agree(effects: list[float]) -> bool:
    """True when every effect is non-zero and all share one sign."""
    return bool(effects) and (all(e > 0 for e in effects) or all(e < 0 for e in effects))




def clustering_qc(pac: float | None, k: int | None, technical: dict[str, dict] | None, *, alpha: float = 0.05) -> str | None:
    """Why a sample clustering is a QC observation rather than a finding, or ``None`` when it may be one.

    Unstable clusters (proportion of ambiguous clustering above :data:`~proteus.confounding.UNSTABLE_PAC`,
    Senbabaoglu et al. 2014, doi:10.1038/srep06207) are groupings of these samples, not subtypes; clusters
    that follow a technical column (batch, plate, run order; its test of the clusters at p < ``alpha``)
    may be that column. Either caveat removes what a subtype hypothesis would claim. ``technical`` maps
    each technical column to its test (``effect_type``, ``effect``, ``p``), as consensus clustering records it.
    """
    from proteus.confounding import UNSTABLE_PAC

    why = []
    if pac is not None and pac > UNSTABLE_PAC:
        why.append(f"unstable (PAC {pac:.2f} at k={k}, above {UNSTABLE_PAC}: that share of sample pairs falls together in some "
                   "resamples and apart in others)")
    batch = {c: t for c, t in (technical or {}).items() if t.get("p") is not None and t["p"] < alpha}
    if batch:
        why.append("following the technical column" + ("s " if len(batch) > 1 else " ")
                   + ", ".join(f"{c} ({t.get('effect_type', 'effect')} {t.get('effect', float('nan')):.2f}, p={t['p']:.1g})" for c, t in batch.items()))
    return "; ".join(why) or None


_ASSOCIATED = {"s": "is associated with", "p": "are associated with", "x": "associated with"}
_OVERCLAIMS: dict[str, tuple[str, dict[str, str]]] = {
    # pattern: (why, replacement of each form, keyed by the matched words in lower case; "*" any other)
    r"\b(?:is|are) (?:a|the) (?:main |major |key )?cause of\b": ("causal ('cause of') from an association", {"*": "is associated with"}),
    r"\b(?:caused by|causes?|causing)\b": ("causal ('causes') from an association",
                                         {"causes": _ASSOCIATED["s"], "cause": _ASSOCIATED["p"], "*": _ASSOCIATED["x"]}),
    r"\b(?:driven by|drives|drive|driving|driven|drove)\b": ("causal ('drives') from an association",
                                                         {"drives": _ASSOCIATED["s"], "drive": _ASSOCIATED["p"], "driven": "associated", "*": _ASSOCIATED["x"]}),
    r"\b(?:propagates|propagate|propagated|propagating|propagation)(?: to)?\b": ("causal ('propagates') from two correlations",
        {"propagates to": _ASSOCIATED["s"], "propagates": _ASSOCIATED["s"], "propagate to": _ASSOCIATED["p"], "propagate": _ASSOCIATED["p"],
         "propagation to": "association with", "propagation": "association", "*": _ASSOCIATED["x"]}),
    r"\b(?:leads|lead|led|leading) to\b": ("causal ('leads to') from an association",
                                         {"leads to": _ASSOCIATED["s"], "lead to": _ASSOCIATED["p"], "*": _ASSOCIATED["x"]}),
    r"\bresults? in\b": ("causal ('results in') from an association", {"results in": _ASSOCIATED["s"], "*": _ASSOCIATED["p"]}),
    r"\bindependent(?:ly)? of\b": ("'independent of' from an unadjusted model", {"*": "without adjustment for"}),
    r"\b(?:expansion|expanded|expands|expand|expanding)\b": ("population 'expansion' from a composition shift",
        {"expansion": "larger fraction", "expanded": "more frequent", "expands": "increases in fraction", "*": "increase in fraction"}),
    r"\bas a unit\b": ("'as a unit' needs every member to move the same way", {"*": "together"}),
}


_HEDGE = re.compile(r"\b(?:can|could|may|might)\s+$", re.I)
"""A modal right before the word states a possibility to test ("which a change in expression can cause"), not a finding."""


def overclaims(text: str) -> list[str]:
    """The words of ``text`` stronger than observational evidence supports, with why."""
    return [why for pat, (why, _) in _OVERCLAIMS.items() if re.search(pat, text, re.I)]


def reword_overclaims(text: str, *, adjusted_for: set[str] | frozenset[str] = frozenset()) -> tuple[str, list[str]]:
    """``text`` with each :func:`overclaims` word replaced by what association evidence supports
    ("drives" -> "is associated with", "expansion" -> "larger fraction", "independent of" ->
    "without adjustment for"), and one note per replacement. "independent of X" stays when the model
    was adjusted for X (a name in ``adjusted_for``); a word after "can / could / may / might" stays
    (a possibility to test, not a finding)."""
    notes: list[str] = []

    def adjusted(m: re.Match[str]) -> bool:
        after = text[m.end():].strip().lower().replace("_", " ")
        return any(after.startswith(c.lower().replace("_", " ")) for c in adjusted_for if c)

    for pat, (why, forms) in _OVERCLAIMS.items():
        def sub(m: re.Match[str]) -> str:
            if (why.startswith("'independent of'") and adjusted(m)) or _HEDGE.search(text[: m.start()]):
                return m.group(0)
            word = m.group(0)
            new = forms.get(word.lower(), forms["*"])
            new = new[0].upper() + new[1:] if word[0].isupper() else new
            notes.append(f"{why}: '{word}' -> '{new}'")
            return new

        text = re.sub(pat, sub, text, flags=re.I)
    return text, notes


def enrichment_share(r: Relation) -> tuple[int, int] | None:
    """(changed, measured) members of an over-representation relation's pathway: its overlap with the hits
    and its size in the tested background; ``None`` for a rank-based test (GSEA scores the whole set)."""
    x = r.stats.extra or {}
    k, m = r.stats.n, x.get("set_size")
    return (int(k), int(m)) if x.get("test") == "hypergeometric" and k is not None and m else None


def pathway_moves(r: Relation) -> bool:
    """Whether enrichment relation ``r`` may be stated as its pathway moving: a rank-based test scores the
    whole set; an over-representation needs :data:`~proteus.stats.units.MIN_UNIT_SHARE` of the measured
    members changed (:func:`~proteus.stats.units.unit_share`), else its changed members are the finding."""
    km = enrichment_share(r)
    return km is None or unit_share(*km)


COMPOSITION_READING = ", which may reflect the groups' different cell-type make-up rather than regulation within a cell type"
"""What a composition-confounded difference may be, said in place of a mechanism within cells."""


def stated_with_design(statement: str, mechanism: str, clause: str, *, confounded: bool) -> str:
    """The statement a hypothesis makes: the draft's ``statement`` with the confounder ``clause``
    (:func:`proteus.confounding.hypothesis_checks`) before its full stop. Where the claim is ``confounded`` by
    composition (:func:`proteus.ranking.composition_confounded`) its ``mechanism`` (the clause of the statement reading
    the change as regulation within cells, :attr:`~proteus.policy.decisions.HypothesisDraft.mechanism`) is replaced by
    :data:`COMPOSITION_READING`, which is added too where the statement has no mechanism and nothing yet says that
    the difference may reflect tissue composition."""
    if confounded and mechanism and mechanism in statement:
        statement = statement.replace(mechanism, COMPOSITION_READING, 1)
    elif confounded and "may reflect tissue composition" not in statement + clause:
        statement = statement.rstrip().rstrip(".") + COMPOSITION_READING + "."
    return statement.rstrip().rstrip(".") + clause + "." if clause else statement
