"""Positive and negative controls: findings that restate the design, reported as QC results.

A set of features from another organism than the layer's background (a spiked standard, a
mixed-species benchmark; :mod:`proteus.io.organism` reads each feature's organism) that changes one
way in a contrast is what the design put there. It is one set-level statement, kind ``"positive
control"``: k of K foreign features changed, their median log2 fold change and, where the sample
table states a dose for each group (``doses`` table of ``differential_abundance``), the observed
against the expected log2 ratio (ratio accuracy, as in spike-in benchmarks: Ramus et al. 2016,
doi:10.1016/j.jprot.2015.11.011). The background is the negative control: its calls among N and its
median log2 fold change.

A gene's own mutation changing its own protein in the direction its carriers' variant classes predict
is a known mechanism, also a positive control (:func:`mutation_cis_claim`): truncating alleles lower
their protein (nonsense-mediated decay, unstable truncated products; Lindeboom et al. 2016,
doi:10.1038/ng.3664), missense alleles that keep the reading frame, above all at recurrent (hotspot)
codons, raise or keep it (stabilised or retained products, Mertins et al. 2016, doi:10.1038/nature18003).
A change against that prediction is a discovery. The wording names the carriers' variant classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import HypothesisDraft
from proteus.policy.result_tables import ResultTables

__all__ = ["spike_in_controls", "CisClaim", "mutation_cis_claim"]

MIN_FOREIGN = 3
"""Fewest features of the other organism for a set-level statement."""


def _fmt_fc(x: float) -> str:
    return f"{x:+.2f}"


def spike_in_controls(kg: KnowledgeGraph, tables: ResultTables, fdr: float = 0.05) -> tuple[list[HypothesisDraft], set[str]]:
    """One positive-control statement per two-group differential whose layer mixes organisms and whose
    minority organism's features mostly change one way (see the module docstring); and the ids of every
    edge of those features in that contrast (stated by the control, so no other hypothesis restates them)."""
    out, covered = [], set()
    for params, tab in tables.tables("differential_abundance", "results"):
        if "organism" not in tab or not {"logFC", "q", "label"} <= set(tab.columns):
            continue
        org = tab["organism"].where(tab["organism"].notna(), None)
        counts = org.value_counts()
        if len(counts) < 2:
            continue
        background, foreign = str(counts.index[0]), str(counts.index[-1])
        fmask, bmask = (org == foreign).to_numpy(), (org == background).to_numpy()
        f, b = tab[fmask], tab[bmask]
        called = f[f["q"] < fdr]
        if len(f) < MIN_FOREIGN or len(called) * 2 < len(f):
            continue
        sign = 1 if (called["logFC"] > 0).sum() * 2 >= len(called) else -1
        k = int(((called["logFC"] > 0) if sign > 0 else (called["logFC"] < 0)).sum())
        if k * 2 < len(f):
            continue
        group, case, control = params.get("group"), params.get("case"), params.get("control")
        contrast = f"{group}: {case} vs {control}"
        edges = sorted((r for r in kg.relations.values() if r.object.label == contrast and r.modality == params.get("modality")
                        and r.predicate == ("higher_in" if sign > 0 else "lower_in") and r.subject.label in set(called["label"].astype(str))),
                       key=lambda r: (r.stats.q_else_p(), r.subject.label))
        if not edges:
            continue
        # the foreign features and the background's calls (the negative control's false positives) are stated here
        b_called = b[b["q"] < fdr].sort_values("q")
        covered |= {r.id for r in kg.relations.values() if r.object.label == contrast and r.modality == params.get("modality")
                    and r.subject.label in set(f["label"].astype(str)) | set(b_called["label"].astype(str))}
        med_f, med_b = float(f["logFC"].median()), float(b["logFC"].median())
        b_calls = len(b_called)
        expected = _expected(tables, params)
        word = "higher" if sign > 0 else "lower"
        ratio = (f"; observed median log2 ratio {_fmt_fc(med_f)} against {_fmt_fc(expected[0])} expected from {expected[1]}"
                 f" ({_fmt_fc(med_f - expected[0])} log2 off)" if expected else "")
        lo, hi = float(called["logFC"].min()), float(called["logFC"].max())
        strongest = "; ".join(f"{r.subject.label} {_fmt_fc(r.stats.effect or 0.0)} (q={r.stats.q_else_p():.0e})" for r in edges[:12])
        false_calls = ", ".join(f"{lab} {_fmt_fc(fc)}" for lab, fc in zip(b_called["label"].head(5), b_called["logFC"].head(5)))
        out.append(HypothesisDraft(
            statement=(f"Positive control: the {len(f)} {foreign} features of this {background} layer (a second organism, as a spiked "
                       f"standard is) are {word} in {case} than in {control} ({group}) ({k}/{len(f)} changed, median log2FC {_fmt_fc(med_f)}"
                       + (f", expected {_fmt_fc(expected[0])} from {expected[1]}" if expected else "") + "), "
                       f"while the {background} background stays flat ({b_calls} of {len(b)} called, median log2FC {_fmt_fc(med_b)}).")[:500],
            rationale=(f"Features of a second organism ({foreign}) in a {background} layer change together with the grouping{ratio}; "
                       f"range of the changed ones {_fmt_fc(lo)} to {_fmt_fc(hi)}; strongest: {strongest}. The background is the negative "
                       f"control: {b_calls} of {len(b)} {background} features pass q < {fdr} (false discovery proportion among all calls "
                       f"{b_calls / max(b_calls + k, 1):.0%})" + (f": {false_calls}" if b_calls else "") + ".")[:1200],
            evidence=[r.id for r in edges[:12]],
            entities=[r.subject.id for r in edges[:12]] + [edges[0].object.id],
            test=(f"Re-run the {case} and {control} samples and measure the {foreign} features' log2 ratio "
                  f"({', '.join(r.subject.label for r in edges[:3])}, ...): predict {k}/{len(f)} {word}"
                  + (f" near the expected {_fmt_fc(expected[0])}" if expected else "")
                  + f" and the {background} background unchanged (median log2FC near 0).")[:600],
            kind="positive control",
        ))
    return out, covered


def _expected(tables: ResultTables, params: dict) -> tuple[float, str] | None:
    """log2(case dose / control dose) of the first dose column of the contrast's ``doses`` table."""
    keys = {k: params[k] for k in ("modality", "group", "case", "control") if k in params}
    doses = tables.table("differential_abundance", "doses", **keys)
    if doses is None or doses.empty:
        return None
    row = doses.iloc[0]
    case, control = float(row["case"]), float(row["control"])
    if not (case > 0 and control > 0):
        return None
    return math.log2(case / control), f"{row['column']} {case:g} vs {control:g}"


@dataclass(frozen=True)
class CisClaim:
    """How a mutation's effect on its own protein is stated: the verb phrase ("have lower X protein"),
    the carriers' variants as a clause, the mechanism the classes point to, and whether that mechanism
    predicts the observed direction (``expected``: a positive control, not a discovery)."""

    phrase: str
    variants: str
    mechanism: str
    expected: bool


def mutation_cis_claim(gene: str, effect: float, variants: dict) -> CisClaim:
    """State a cis effect from its carriers' variants (``variants``: the counts of
    :func:`proteus.tools.mutation.carrier_variants`, as a cis-effect relation carries them).

    The majority class decides: truncating carriers predict lower protein, missense / in-frame carriers
    higher or unchanged protein (most of them at recurrent codons: hotspot alleles). A direction the
    majority predicts is ``expected``; the other direction is stated against the classes ("although
    most carriers hold ..."). Without class counts the direction alone is stated, as a discovery.
    """
    down = effect < 0
    phrase = f"{'lower' if down else 'higher'} {gene} protein"
    n_trunc, n_mis = variants.get("n_truncating"), variants.get("n_missense_only")
    if n_trunc is None or n_mis is None or n_trunc + n_mis == 0:
        return CisClaim(phrase, "", "", False)
    total, n_hot = n_trunc + n_mis, int(variants.get("n_recurrent_missense") or 0)
    recurrent = str(variants.get("recurrent") or "")
    if n_trunc * 2 >= total:
        clause = f"{n_trunc} of {total} carriers hold a truncating variant" + (f"; recurrent codons {recurrent}" if recurrent else "")
        if down:
            return CisClaim(phrase, clause, "consistent with truncated alleles being removed (nonsense-mediated decay or unstable products)", True)
        return CisClaim(phrase, clause, "although truncating alleles usually lower their product", False)
    clause = (f"{n_mis} of {total} carriers hold only missense or in-frame variants"
              + (f", {n_hot} of them at recurrent codons: {recurrent}" if n_hot else ", none at a recurrent codon"))
    if down:
        return CisClaim(phrase, clause, "although these variants keep the reading frame, so they may destabilise the product", False)
    kind = "hotspot missense products" if n_hot * 2 >= n_mis else "missense products"
    return CisClaim(phrase, clause, f"consistent with stabilised or retained {kind}", True)
