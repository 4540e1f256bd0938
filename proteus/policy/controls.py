"""Positive and negative controls: findings that restate the design, reported as QC results.

A set of features from another organism than the layer's background (a spiked standard, a
mixed-species benchmark; :mod:`proteus.io.organism` reads each feature's organism) that changes one
way in a contrast is what the design put there. The background is the organism with the most
features; every other organism with enough features that mostly change one way gets its own
statement, kind ``"positive control"`` (three-organism mixes: LFQbench, Navarro et al. 2016,
doi:10.1038/nbt.3685), with the benchmark readout of spike-in papers (Ramus et al. 2016,
doi:10.1016/j.jprot.2015.11.011), computed once by :func:`spike_in_readouts`:

- detection: k of K features of the organism seen in the file quantified, naming those the reader
  removed (contaminant-list matches: ``excluded`` table of ``differential_abundance``) or skipped;
- true / false positives at q < 0.01 and the run's threshold, the background as the negative set,
  and the false-discovery proportion;
- where the sample table states a dose per group (``doses`` table) and one organism moves, the error
  of each observed log2 fold change against the log2 dose ratio (median, IQR), and the ratio
  compression of the low-abundance half (mean log2 intensity below the organism's median).

A gene's own mutation changing its own protein in the direction its carriers' variant classes predict
is a known mechanism, also a positive control (:func:`mutation_cis_claim`): truncating alleles lower
their protein (nonsense-mediated decay, unstable truncated products; Lindeboom et al. 2016,
doi:10.1038/ng.3664), a rule for every gene. Missense alleles predict a change only where a curated,
cited region says so (:func:`proteus.genesets.stabilising_variants`: missense variants there let the
product escape degradation, e.g. the CTNNB1 exon-3 degron); elsewhere a recurrent missense allele
(an activating hotspot) says nothing about its product's level, so a change in its carriers is an
association to test, not a control. A change against that prediction is a discovery. The wording names the carriers' variant classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import HypothesisDraft
from proteus.policy.result_tables import ResultTables

__all__ = ["SpikeReadout", "spike_in_readouts", "spike_in_controls", "CisClaim", "mutation_cis_claim"]

MIN_FOREIGN = 3
"""Fewest features of the other organism for a set-level statement."""
BENCHMARK_Q = 0.01
"""The stricter q threshold benchmark papers report beside the run's."""


def _fmt_fc(x: float) -> str:
    return f"{x:+.2f}"


@dataclass
class SpikeReadout:
    """One moving organism's benchmark readout in one two-group contrast."""

    organism: str
    background: str
    sign: int
    k_changed: int
    n_quantified: int
    n_background: int
    median_fc: float
    median_background_fc: float
    excluded: dict[str, list[str]] = field(default_factory=dict)
    """Reason -> names of this organism's features the reader removed."""
    skipped: list[str] = field(default_factory=list)
    calls: list[tuple[float, int, int]] = field(default_factory=list)
    """(q threshold, true positives: this organism's calls, false positives: background calls)."""
    expected: tuple[float, str] | None = None
    error: tuple[float, float, float] | None = None
    """Median, first and third quartile of observed - expected log2 fold change."""
    low_high: tuple[float, float] | None = None
    """Median log2 fold change of the low- and the high-abundance half."""

    @property
    def n_seen(self) -> int:
        return self.n_quantified + len(self.skipped) + sum(map(len, self.excluded.values()))

    def detection_text(self) -> str:
        gone = "; ".join(f"{len(v)} removed at load as {r.lower()} matches: {', '.join(v)}" for r, v in self.excluded.items())
        skip = f"{len(self.skipped)} not tested ({', '.join(self.skipped[:8])})" if self.skipped else ""
        more = "; ".join(x for x in (gone, skip) if x)
        return f"{self.n_quantified} of {self.n_seen} {self.organism} features in the file quantified" + (f" ({more})" if more else "")

    def calls_text(self) -> str:
        return "; ".join(f"at q < {q:g}: {tp} true and {fp} false positives (false-discovery proportion {fp / max(tp + fp, 1):.1%})"
                         for q, tp, fp in self.calls)

    def error_text(self) -> str:
        if not self.expected or not self.error:
            return ""
        med, q1, q3 = self.error
        return (f"observed minus expected log2 fold change (expected {_fmt_fc(self.expected[0])} from {self.expected[1]}): "
                f"median {_fmt_fc(med)}, IQR {_fmt_fc(q1)} to {_fmt_fc(q3)}")

    def compression_text(self) -> str:
        if not self.low_high:
            return ""
        lo, hi = self.low_high
        # compression: the low half's ratio nearer 1 than the high half's AND than the dose ratio (an overshoot is not compression)
        squeezed = abs(lo) < abs(hi) and (not self.expected or abs(lo) < abs(self.expected[0]))
        over = bool(self.expected) and min(abs(lo), abs(hi)) > abs(self.expected[0]) and lo * self.expected[0] > 0
        return (f"low-abundance half median log2FC {_fmt_fc(lo)} against {_fmt_fc(hi)} in the high-abundance half"
                + (" (ratio compression at low abundance)" if squeezed else " (both halves beyond the expected ratio)" if over else ""))


def spike_in_readouts(tab: pd.DataFrame, fdr: float, doses: pd.DataFrame | None = None, excluded: pd.DataFrame | None = None,
                      skipped: pd.DataFrame | None = None) -> list[SpikeReadout]:
    """The readout of every non-background organism of a contrast's ``results`` table whose features
    mostly change one way at q < ``fdr`` (see the module docstring); background: the organism with the
    most features."""
    if "organism" not in tab or not {"logFC", "q", "label"} <= set(tab.columns):
        return []
    org = tab["organism"].where(tab["organism"].notna(), None)
    counts = org.value_counts()
    if len(counts) < 2:
        return []
    background = str(counts.index[0])
    b = tab[(org == background).to_numpy()]
    out = []
    for foreign in map(str, counts.index[1:]):
        f = tab[(org == foreign).to_numpy()]
        called = f[f["q"] < fdr]
        if len(f) < MIN_FOREIGN or len(called) * 2 < len(f):
            continue
        sign = 1 if (called["logFC"] > 0).sum() * 2 >= len(called) else -1
        k = int((called["logFC"] * sign > 0).sum())
        if k * 2 < len(f):
            continue
        r = SpikeReadout(organism=foreign, background=background, sign=sign, k_changed=k, n_quantified=len(f), n_background=len(b),
                         median_fc=float(f["logFC"].median()), median_background_fc=float(b["logFC"].median()))
        if excluded is not None and len(excluded):
            for reason, rows in excluded[excluded["organism"] == foreign].groupby("reason", sort=False):
                r.excluded[str(reason)] = list(map(str, rows["feature"]))
        if skipped is not None and "organism" in skipped:
            r.skipped = list(map(str, skipped.loc[skipped["organism"] == foreign, "feature"]))
        r.calls = [(q, int((f["q"] < q).sum()), int((b["q"] < q).sum())) for q in sorted({BENCHMARK_Q, fdr})]
        if "AveExpr" in f and len(f) >= 2 * MIN_FOREIGN:
            low = f["AveExpr"] < f["AveExpr"].median()
            r.low_high = float(f.loc[low, "logFC"].median()), float(f.loc[~low, "logFC"].median())
        out.append(r)
    expected = _expected(doses)
    if expected and len(out) == 1:  # a dose column names one ratio: it is the moving organism's only when one moves
        r = out[0]
        err = tab.loc[(org == r.organism).to_numpy(), "logFC"] - expected[0]
        r.expected, r.error = expected, (float(err.median()), float(err.quantile(0.25)), float(err.quantile(0.75)))
    return out


def spike_in_controls(kg: KnowledgeGraph, tables: ResultTables, fdr: float = 0.05) -> tuple[list[HypothesisDraft], set[str]]:
    """One positive-control statement per moving organism of each two-group differential whose layer
    mixes organisms (see the module docstring); and the ids of every edge of those features and of the
    background's calls in that contrast (stated by the control, so no other hypothesis restates them)."""
    out, covered = [], set()
    for params, tab in tables.tables("differential_abundance", "results"):
        keys = {k: params[k] for k in ("modality", "group", "case", "control") if k in params}
        q_run = float(params.get("fdr", fdr))
        readouts = spike_in_readouts(tab, q_run, *(tables.table("differential_abundance", n, **keys) for n in ("doses", "excluded", "skipped")))
        if not readouts:
            continue
        group, case, control = params.get("group"), params.get("case"), params.get("control")
        contrast = f"{group}: {case} vs {control}"
        in_contrast = [r for r in kg.relations.values() if r.object.label == contrast and r.modality == params.get("modality")]
        background = readouts[0].background
        b = tab[(tab["organism"] == background).to_numpy()]
        b_called = b[b["q"] < q_run].sort_values("q")
        for rd in readouts:
            f = tab[(tab["organism"] == rd.organism).to_numpy()]
            labels = set(f.loc[f["q"] < q_run, "label"].astype(str))
            edges = sorted((r for r in in_contrast if r.predicate == ("higher_in" if rd.sign > 0 else "lower_in") and r.subject.label in labels),
                           key=lambda r: (r.stats.q_else_p(), r.subject.label))
            if not edges:
                continue
            covered |= {r.id for r in in_contrast if r.subject.label in set(f["label"].astype(str)) | set(b_called["label"].astype(str))}
            out.append(_draft(rd, edges, b_called, case, control, group, q_run))
    return out, covered


def _draft(rd: SpikeReadout, edges: list, b_called: pd.DataFrame, case: str, control: str, group: str, q_run: float) -> HypothesisDraft:
    word = "higher" if rd.sign > 0 else "lower"
    b_calls = len(b_called)
    strongest = "; ".join(f"{r.subject.label} {_fmt_fc(r.stats.effect or 0.0)} (q={r.stats.q_else_p():.0e})" for r in edges[:6])
    false_calls = ", ".join(f"{lab} {_fmt_fc(fc)}" for lab, fc in zip(b_called["label"].head(5), b_called["logFC"].head(5)))
    readout = "; ".join(x for x in (rd.calls_text(), rd.error_text(), rd.compression_text()) if x)
    exp = rd.expected
    return HypothesisDraft(
        statement=(f"Positive control: {rd.detection_text()} (a second organism in this {rd.background} layer, as a spiked standard), "
                   f"{word} in {case} than in {control} ({group}) ({rd.k_changed}/{rd.n_quantified} changed, median log2FC "
                   f"{_fmt_fc(rd.median_fc)}" + (f", expected {_fmt_fc(exp[0])} from {exp[1]}" if exp else "") + "); "
                   f"the {rd.background} background stays flat ({b_calls} of {rd.n_background} called, median log2FC "
                   f"{_fmt_fc(rd.median_background_fc)}).")[:500],
        rationale=(f"Benchmark readout ({rd.background} background as the negative set): {readout}. Strongest: {strongest}. "
                   f"False positives at q < {q_run:g}" + (f": {false_calls}" if b_calls else ": none") + ".")[:1200],
        evidence=[r.id for r in edges[:12]],
        entities=[r.subject.id for r in edges[:12]] + [edges[0].object.id],
        test=(f"Re-run the {case} and {control} samples and measure the {rd.organism} features' log2 ratio "
              f"({', '.join(r.subject.label for r in edges[:3])}, ...): predict {rd.k_changed}/{rd.n_quantified} {word}"
              + (f" near the expected {_fmt_fc(exp[0])}" if exp else "")
              + f" and the {rd.background} background unchanged (median log2FC near 0).")[:600],
        kind="positive control",
    )


def _expected(doses: pd.DataFrame | None) -> tuple[float, str] | None:
    """log2(case dose / control dose) of the first dose column of a contrast's ``doses`` table."""
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

    The majority class decides. Truncating carriers predict lower protein (a rule for any gene).
    Missense / in-frame carriers predict higher protein only for a gene of the curated stabilising list
    (:func:`proteus.genesets.stabilising_variants`) when most of them carry a residue of its region;
    otherwise they predict no direction, and the change is stated as an association. A direction the
    variants predict is ``expected`` (a positive control); the other direction is stated against them
    ("although ..."). Without class counts the direction alone is stated, as a discovery.
    """
    from proteus.genesets import stabilising_variants

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
    region = stabilising_variants().get(gene)
    residues = [int(x) for x in str(variants.get("missense_residues") or "").split(",") if x.strip().isdigit()]
    n_in = sum(region.holds(x) for x in residues) if region else 0
    if region and residues and n_in * 2 >= len(residues):
        clause += f"; {n_in} of {len(residues)} in the {region.name} (residues {region.start}-{region.end})"
        if not down:
            return CisClaim(phrase, clause, f"consistent with the known mechanism: {region.mechanism} ({region.ref})", True)
        return CisClaim(phrase, clause, f"although missense variants of the {region.name} usually raise the protein ({region.mechanism})", False)
    if down:
        return CisClaim(phrase, clause, "an association: these variants keep the reading frame, so they may destabilise the product, "
                        "which no curated mechanism predicts", False)
    return CisClaim(phrase, clause, "an association: no curated mechanism predicts a higher level from these variants "
                    "(activating hotspots need not change their product's abundance)", False)
