"""Validation that does not trust the judge: held-out replication, cross-omics corroboration, label nulls.

One implementation for both designs:

- in every run, the graph's ``validate`` node calls :func:`validate_hypotheses`: each evidence
  edge's feature re-tested on the held-out part of repeated seeded stratified splits, against a
  selection-aware label-permutation null and in other layers of the same gene, with effect-size
  intervals (data rebuilt from the edge's provenance by :mod:`proteus.edge_data`); failures kept and marked
  (the node then ranks them by their evidence, :func:`proteus.ranking.rank_hypotheses`).
- ``proteus eval`` runs on a discovery split and re-tests on the held-out samples it never saw
  (:func:`validate_run`, the full tool re-run), keeping the in-run block under ``in_run``.

The pieces, each a plain function on a :class:`~proteus.study.Study` or a run directory:

- :func:`stratified_split`: a seeded discovery / held-out split of the samples (default 60 / 40),
  stratified by the first candidate contrast of the data profile (else its sample-type column).
- :func:`permute_labels`: the null control. Clinical rows (and mutation calls, which are sample
  annotations too) are reassigned to samples by one seeded permutation, and every bulk layer but
  the primary one gets its own permutation of sample ids, so every clinical-omics, mutation-omics and
  omics-omics association is broken while each table's marginal distributions are kept.
- :func:`validate_run`: re-tests every hypothesis's evidence edges on held-out samples with the
  same tool and parameters (taken from the edge provenance), and fills the ``validation`` field of
  the run's ``hypotheses.jsonl``.

Replication rule (the one reported everywhere):

- An evidence **edge replicates** when the same subject / predicate / object is found in the
  held-out result (its relations, else the full result table, so non-significant features are
  still seen) with the **same direction** and a two-sided **p < 0.05** (``alpha``). One test per
  edge, no multiple-testing correction: a replication test of a pre-specified finding, as in
  replication cohorts of association studies. The held-out q value is reported too.
- Edges that cannot be re-tested on held-out samples (prior-knowledge edges such as BioPlex
  interactions and network-module membership; edges about clusters found de novo in the
  discovery samples, e.g. consensus-clustering subtypes "C1 vs rest", whose numbering does not
  carry over to a re-clustering; a call the held-out samples cannot support) are marked
  ``untestable`` and left out of the decision.
- A **hypothesis replicates** when its key evidence (the first testable edge) replicates **and**
  at least half of its testable edges replicate. With no testable edge, ``replicated`` is ``None``
  (not evaluable) and the hypothesis is left out of the replication rate.
- In the run (:func:`validate_hypotheses`) a hypothesis whose claim names the evidence it rests on
  (``key_edges``, :class:`~proteus.records.KeyEdge`) is decided by those keys, each re-tested with the claim's own
  model; its other evidence is reported, and a supporting edge that does not replicate does not fail it.
  The keys are what the statement asserts: a mediation ("GENE1 is lower in LEVEL1 through its carriers") asserts the
  grouping's difference (its headline) and the carriers' effect, so both are keys and a carrier effect that
  replicates does not validate a headline difference that does not (the headline is the graph's difference edge where it
  holds one, else the levels compared over the enrichment's genotyped samples, :func:`proteus.edge_data.levels_design`; a
  key the claim states that cannot be re-tested caps the verdict at inconclusive, and the reason says so); a refit the statement says the effect holds
  under is a key where its edge is one (a refit of a supporting edge is reported with it), except a refit for a
  column tied to the grouping as strongly as Cramér's V >= :data:`proteus.confounding.COLLINEAR_V`: adjustment
  cannot separate collinear columns, so that refit is not tested, and the reason says so. A statement's clause that the
  difference holds adjusted for a column (a discovery refit) is then said no more strongly than its re-tests found: where
  one did not replicate, as the discovery samples' finding with the held-out counts
  (:func:`proteus.confounding.held_out_said`).
- A **programme claim** ("pathway P is higher in G", a ``programme`` key on P's ``enriched_in`` edge) is validated as a
  programme: P's per-sample score (the mean of its measured members' standardised values on the enrichment's own
  layer) between the contrast's levels, on the same splits and against the same kind of null, its family the
  library's sets scored alike (:func:`proteus.edge_data.programme_design`; a self-contained test of the set,
  Goeman & Buhlmann 2007). The members' own edges it cites are supporting evidence: they never stand in for the
  programme, so a programme claim whose score cannot be re-tested is untestable, not decided by a gene's edge (a
  gene outside one of the stated sets once validated such a claim as its first testable edge). A refit the statement
  says the claim holds under (a member's edge adjusted for a column) is re-tested on each programme's score as well,
  as a key; the member's own refit is reported with it.
- **Each key is judged on its own** (:func:`_key_verdict`: its replication share, its null, its held-out
  power). ``failed`` is evidence against: the key fell short of replication where the held-out splits had the power to
  find its effect (beyond the splits' chance variation), or fell short with a discovery effect no stronger than permuted
  labels make the best of its family more often than not (null p >= :data:`NULL_TYPICAL`). A key that replicates but is no stronger than permuted labels make the best of its family (a
  programme no more often moved than the library's sets by chance) is ``inconclusive``, not specific; one that falls
  short with too little (or unknown) power, or by no more than chance, is ``inconclusive`` too. The hypothesis takes the worst verdict of its keys (failed, then
  inconclusive, then validated);
  the reason names each key's outcome. Keys are not required to replicate in the same split: each is a separate
  assertion re-tested on the same held-out samples, and the standard is that each replicates as stated. A joint
  count multiplies the keys' rates (five keys replicating in 90% of splits each meet in about 60%), so a claim
  that states more checks would fail for their number, not for a check that fails, and its frequency would no
  longer match the per-key power that tells a failure from an inconclusive result.

Cross-omics corroboration: for protein-level evidence (differential, clinical correlation,
survival) the same tool is re-run with the RNA layer in place of the protein layer, on the
discovery samples (a second layer the edge did not use); a hypothesis is corroborated when at
least half of its protein-level edges with a measured gene keep direction with p < 0.05 in RNA.
``None`` where the study has no RNA layer or no protein-level evidence.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scipy import stats

from proteus.kg import KnowledgeGraph
from proteus.records import Entity, Relation, ToolResult
from proteus.rundir import RunDir
from proteus.study import Study
from proteus.tools.registry import ToolContext, ToolFailed, ToolInputError, get_tool

__all__ = [
    "validate_hypotheses",
    "N_SPLITS",
    "N_PERMUTATIONS",
    "MIN_REPLICATION",
    "IN_RUN_METHOD",
    "ALPHA",
    "Split",
    "stratified_split",
    "permute_labels",
    "retest_relation",
    "validate_run",
    "wilson_ci",
    "METHOD",
    "CLUSTER_TOOLS",
]

ALPHA = 0.05
"""Two-sided p threshold of a held-out replication test (same direction required)."""

METHOD = (
    "edge replicates: same tool and params re-run on held-out samples, same subject/predicate/object "
    "found (relations, else result table) with the same direction and p < {alpha}; hypothesis replicates: "
    "first testable evidence edge replicates and >= half of testable edges replicate; untestable edges "
    "(prior knowledge, cluster labels, tool not supported by held-out samples) excluded"
)

# Edges that record prior knowledge or sample-specific labels rather than a re-testable statistic.
_PRIOR = {"interacts_with", "member_of"}
_UNSTABLE = {"associated_with", "marker_of"}
# Tools whose relations name clusters found de novo in the discovery samples ("C1 vs rest"): a
# re-run on other samples numbers its clusters afresh, so C1 there is not C1 here.
CLUSTER_TOOLS = {"consensus_clustering", "coabundance_modules", "cytometry_clustering", "singlecell_clustering"}
_SIGNED = {"up": 1, "positive": 1, "down": -1, "negative": -1}
_PROTEIN_KINDS = {"proteomics"}
_CROSS_TOOLS = {"differential_abundance", "clinical_correlation", "cox_per_feature", "mutation_association"}


# --------------------------------------------------------------------------------------------
# split and null
# --------------------------------------------------------------------------------------------


@dataclass
class Split:
    """A discovery / held-out split of sample ids."""

    discovery: list[str]
    held_out: list[str]
    stratify_by: str | None
    seed: int
    fraction: float
    strata: dict[str, list[int]] = field(default_factory=dict)
    """stratum -> [n discovery, n held-out]"""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _study_samples(study: Study) -> list[str]:
    """Samples carrying data: bulk-layer samples, cell-level sample ids, else the clinical index."""
    seen: dict[str, None] = {}
    for a in study.bulk().values():
        seen.update(dict.fromkeys(map(str, a.obs_names)))
    for a in study.cell_level().values():
        if "sample_id" in a.obs:
            seen.update(dict.fromkeys(map(str, a.obs["sample_id"].astype(str).unique())))
    if not seen:
        seen.update(dict.fromkeys(map(str, study.clinical.index)))
    return list(seen)


def stratification_column(study: Study, profile=None) -> str | None:
    """The first candidate contrast's group column, else the sample-type column, else ``None``."""
    if study.clinical.empty:
        return None
    if profile is None:
        from proteus.profile import profile_study

        profile = profile_study(study)
    if profile.contrasts:
        return profile.contrasts[0].group
    return profile.sample_type_column


def stratified_split(
    study: Study, *, seed: int = 1, fraction: float = 0.6, stratify_by: str | None = None, profile=None
) -> Split:
    """Seeded split of the samples into discovery (``fraction``) and held-out, stratified.

    Parameters
    ----------
    study
        The full study.
    seed
        Same seed, same split.
    fraction
        Share of each stratum that goes to discovery (rounded; every stratum of >= 2 samples
        contributes to both sides).
    stratify_by
        Clinical column; default :func:`stratification_column`. Missing values form a stratum.

    Returns
    -------
    :class:`Split` with sorted sample lists.
    """
    if not 0 < fraction < 1:
        msg = f"fraction must be in (0, 1), got {fraction}"
        raise ValueError(msg)
    samples = _study_samples(study)
    col = stratify_by if stratify_by is not None else stratification_column(study, profile)
    if col is not None and col not in study.clinical.columns:
        msg = f"stratify_by {col!r} is not a clinical column"
        raise ValueError(msg)
    if col is None:
        strata = pd.Series("all", index=samples)
    else:
        clin = study.clinical.copy()
        clin.index = clin.index.astype(str)
        strata = clin[col].reindex(samples).astype(object).where(lambda s: s.notna(), "NA").astype(str)
    rng = np.random.default_rng(seed)
    disc, held, counts = [], [], {}
    for level in sorted(strata.unique()):
        members = sorted(strata.index[strata == level])
        order = [members[i] for i in rng.permutation(len(members))]
        n_d = int(round(fraction * len(order)))
        if len(order) >= 2:
            n_d = min(max(n_d, 1), len(order) - 1)
        disc += order[:n_d]
        held += order[n_d:]
        counts[level] = [n_d, len(order) - n_d]
    return Split(sorted(disc), sorted(held), col, seed, fraction, counts)


def permute_labels(study: Study, *, seed: int = 1, primary: str | None = None) -> Study:
    """Null-control copy of ``study``: sample annotations reassigned at random (see module docstring).

    ``primary`` is the bulk layer whose sample ids stay fixed (default: the first bulk layer of
    kind proteomics, else the first bulk layer). Cell-level layers keep their cells; their
    ``sample_id`` links to clinical rows are broken by the clinical permutation.
    """
    rng = np.random.default_rng(seed)
    ids = list(dict.fromkeys([*map(str, study.clinical.index), *_study_samples(study)]))
    if study.mutations is not None:
        ids = list(dict.fromkeys([*ids, *map(str, study.mutations["sample"].astype(str).unique())]))
    perm = [ids[i] for i in rng.permutation(len(ids))]
    mapping = dict(zip(ids, perm))
    clin = study.clinical.copy()
    clin.index = pd.Index([mapping[str(s)] for s in clin.index], name=clin.index.name)
    muts = None
    if study.mutations is not None:
        muts = study.mutations.copy()
        muts["sample"] = muts["sample"].astype(str).map(mapping)
    bulk = study.bulk()
    if primary is None:
        primary = next((k for k, a in bulk.items() if a.uns.get("modality") == "proteomics"), next(iter(bulk), None))
    mods = {}
    for name, a in study.modalities.items():
        b = a.copy()
        if name in bulk and name != primary:
            b.obs_names = pd.Index([str(b.obs_names[i]) for i in rng.permutation(b.n_obs)])
        mods[name] = b
    return Study(study.root, mods, clin, muts, list(study.reports))


# --------------------------------------------------------------------------------------------
# re-testing one edge
# --------------------------------------------------------------------------------------------


def _sign(direction: str | None) -> int:
    return _SIGNED.get(direction or "", 0)


def _case_of(label: str) -> tuple[str, str]:
    """``"group: case vs control"`` -> (group, case)."""
    group, _, rest = label.partition(": ")
    return group, rest.split(" vs ")[0]


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _from_relations(result: ToolResult, r: Relation) -> dict[str, Any] | None:
    family = {"higher_in", "lower_in"} if r.predicate in ("higher_in", "lower_in") else {r.predicate}
    for c in result.relations:
        if c.subject.id == r.subject.id and c.object.id == r.object.id and c.predicate in family and c.modality == r.modality:
            if r.predicate == "enriched_in" and "odds_ratio" == (c.stats.effect_type or "") and c.stats.direction != r.stats.direction:
                continue
            return {"effect": c.stats.effect, "p": c.stats.p, "q": c.stats.q, "direction": c.stats.direction, "source": "relation"}
    return None


def _row_direction(r: Relation, row: pd.Series, effect_col: str) -> str:
    eff = _finite(row.get(effect_col))
    if eff is None:
        return "none"
    if effect_col == "odds_ratio":
        return str(row.get("direction")) if eff > 1 else "none"
    if effect_col == "distinct_vs_rest":  # the same level, on the same side
        same = str(row.get("distinct_level")) == str((r.stats.extra or {}).get("level"))
        return ("up" if eff > 0 else "down") if same else "none"
    if effect_col == "top_vs_rest":
        return "up" if str(row.get("top_level")) == str((r.stats.extra or {}).get("top_level")) and eff > 0 else "down"
    if effect_col == "hazard_ratio":
        eff = math.log(eff) if eff > 0 else -1.0
    if r.predicate in ("higher_in", "lower_in", "enriched_in") or (r.predicate == "cis_effect_on" and r.subject.type == "mutation"):
        return "up" if eff > 0 else "down"
    return "positive" if eff > 0 else "negative"


def _from_tables(result: ToolResult, r: Relation) -> dict[str, Any] | None:
    fid = (r.stats.extra or {}).get("feature_id")
    for df in result.tables.values():
        if df is None or df.empty:
            continue
        t = df
        if "mutated_gene" in t.columns and r.object.type == "sample_group":
            gene = _case_of(r.object.label)[0].removesuffix(" mutation")
            t = t[t["mutated_gene"].astype(str) == gene]
        if "modality" in t.columns and r.modality is not None:
            t = t[t["modality"].astype(str) == r.modality]
        if r.predicate == "enriched_in" and "odds_ratio" in t.columns and "direction" in t.columns:
            t = t[t["direction"].astype(str) == str(r.stats.direction)]
        if r.predicate == "cis_effect_on" and r.subject.type == "mutation":
            keys = [("gene", r.subject.label), ("feature", r.object.label)]
        elif fid and "feature" in t.columns:
            keys = [("feature", str(fid))]
        else:
            col = next((c for c in ("label", "name", "feature", "gene", "set_id", "variable") if c in t.columns
                        and (t[c].astype(str) == r.subject.label).any()), None)
            keys = [(col, r.subject.label)] if col else []
        if not keys:
            continue
        for c, v in keys:
            if c not in t.columns:
                t = t.iloc[0:0]
                break
            t = t[t[c].astype(str) == str(v)]
        if t.empty:
            continue
        row = t.iloc[0]
        suffix = r.modality if r.modality and f"r_{r.modality}" in t.columns else None
        if suffix:
            effect_col, p_col, q_col = f"r_{suffix}", f"p_{suffix}", f"q_{suffix}"
        else:
            effect_col = next((c for c in ("logFC", "NES", "hazard_ratio", "r", "mean_diff", "odds_ratio", "distinct_vs_rest", "top_vs_rest", "effect")
                               if c in t.columns and (c != "distinct_vs_rest" or "level" in (r.stats.extra or {}))), None)
            p_col, q_col = "p", "q"
        if effect_col is None or p_col not in t.columns:
            continue
        return {
            "effect": _finite(row.get(effect_col)),
            "p": _finite(row.get(p_col)),
            "q": _finite(row.get(q_col)) if q_col in t.columns else None,
            "direction": _row_direction(r, row, effect_col),
            "source": "table",
        }
    return None


def lookup(result: ToolResult, r: Relation) -> dict[str, Any] | None:
    """The held-out statistics of relation ``r`` in ``result``: its relations first, then its tables."""
    return _from_relations(result, r) or _from_tables(result, r)


class _Runner:
    """Runs tool calls on one study, once per (tool, params)."""

    def __init__(self, study: Study, scratch: Path, seed: int) -> None:
        self.study, self.scratch, self.seed = study, Path(scratch), seed
        self.cache: dict[str, ToolResult | Exception] = {}

    def __call__(self, tool: str, params: dict[str, Any], provenance=None) -> ToolResult | Exception:
        key = json.dumps([tool, params], sort_keys=True, default=str)
        if key not in self.cache:
            try:
                ctx = ToolContext(out_dir=self.scratch, seed=self.seed, provenance=provenance, figure_prefix=f"v{len(self.cache)}_")
                self.cache[key] = get_tool(tool)(self.study, params, ctx)
            except (ToolInputError, ToolFailed) as e:
                self.cache[key] = e
        return self.cache[key]


def _outcome(r: Relation, found: dict[str, Any] | None, alpha: float) -> dict[str, Any]:
    if found is None:
        return {"status": "untestable", "reason": "not tested in the held-out result (feature filtered or absent)", "replicated": None}
    p = found.get("p")
    same = _sign(found.get("direction")) != 0 and _sign(found.get("direction")) == _sign(r.stats.direction)
    return {**found, "status": "tested", "replicated": bool(same and p is not None and p < alpha)}


def retest_relation(r: Relation, runner: _Runner, *, alpha: float = ALPHA) -> dict[str, Any]:
    """Re-test one evidence edge with its own tool and params on ``runner``'s study."""
    if r.predicate in _PRIOR:
        return {"status": "untestable", "reason": f"{r.predicate} is prior knowledge, not a re-testable statistic", "replicated": None}
    if r.predicate in _UNSTABLE or r.provenance.tool in CLUSTER_TOOLS:
        return {"status": "untestable", "reason": f"{r.predicate} refers to sample-specific cluster labels", "replicated": None}
    res = runner(r.provenance.tool, dict(r.provenance.params), r.provenance)
    if isinstance(res, Exception):
        return {"status": "untestable", "reason": f"{type(res).__name__}: {str(res)[:200]}", "replicated": None}
    return _outcome(r, lookup(res, r), alpha)


def _rna_layer(study: Study) -> str | None:
    return next((k for k, a in study.bulk().items() if a.uns.get("modality") == "transcriptomics"), None)


def cross_omics_relation(r: Relation, runner: _Runner, rna: str, *, alpha: float = ALPHA) -> dict[str, Any] | None:
    """Re-test a protein-level edge in the RNA layer ``rna``; ``None`` when it does not apply."""
    params = dict(r.provenance.params)
    kind = runner.study.modalities[r.modality].uns.get("modality") if r.modality in runner.study.modalities else None
    if kind not in _PROTEIN_KINDS or r.provenance.tool not in _CROSS_TOOLS or params.get("modality") != r.modality:
        return None
    params["modality"] = rna
    res = runner(r.provenance.tool, params, None)
    if isinstance(res, Exception):
        return {"status": "untestable", "reason": f"{type(res).__name__}: {str(res)[:200]}", "replicated": None}
    gene_rel = r.model_copy(update={"subject": Entity(type="gene", label=r.subject.label), "modality": rna,
                                    "stats": r.stats.model_copy(update={"extra": {}})})
    return _outcome(r, lookup(res, gene_rel), alpha)


# --------------------------------------------------------------------------------------------
# a whole run
# --------------------------------------------------------------------------------------------


def _decide(outcomes: list[dict[str, Any]]) -> bool | None:
    tested = [o for o in outcomes if o.get("status") == "tested"]
    if not tested:
        return None
    n_rep = sum(bool(o["replicated"]) for o in tested)
    return bool(tested[0]["replicated"]) and n_rep >= len(tested) / 2


def validate_run(
    run_dir: str | Path,
    held_out: Study,
    *,
    cross_study: Study | None = None,
    alpha: float = ALPHA,
    seed: int = 0,
    scratch: str | Path | None = None,
    write: bool = True,
) -> list[dict[str, Any]]:
    """Validate every hypothesis of a finished run on ``held_out`` samples.

    Parameters
    ----------
    run_dir
        A finished run directory (``kg.json``, ``hypotheses.jsonl``).
    held_out
        The samples the run did not see (:meth:`Study.subset_samples`).
    cross_study
        Study on which protein-level evidence is re-tested in the RNA layer (usually the
        discovery samples); ``None`` skips cross-omics corroboration.
    alpha
        Two-sided p threshold of a replication test.
    scratch
        Folder for the re-run tools' figures (a temporary folder by default, removed after).
    write
        Rewrite ``hypotheses.jsonl`` atomically with each hypothesis's ``validation`` filled.

    Returns
    -------
    The hypotheses (dicts) with ``validation`` = ``{"replicated", "held_out": {edge_id: {effect, p,
    q, direction, replicated, status, source|reason}}, "cross_omics", "cross_omics_edges", "method"}``.
    """
    rd = RunDir(run_dir)
    kg = KnowledgeGraph.from_node_link(rd.read_json("kg.json"))
    hyps = rd.read_jsonl("hypotheses.jsonl")
    tmp = tempfile.TemporaryDirectory(prefix="proteus-validate-") if scratch is None else None
    scratch_dir = Path(tmp.name) if tmp else Path(scratch)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    try:
        held = _Runner(held_out, scratch_dir / "held_out", seed)
        rna = _rna_layer(cross_study) if cross_study is not None else None
        cross = _Runner(cross_study, scratch_dir / "cross_omics", seed) if rna else None
        edge_cache: dict[str, dict[str, Any]] = {}
        cross_cache: dict[str, dict[str, Any] | None] = {}
        out = []
        for h in hyps:
            outcomes: dict[str, dict[str, Any]] = {}
            cross_out: dict[str, dict[str, Any]] = {}
            for eid in h.get("evidence", []):
                r = kg.relation(eid)
                if r is None:
                    outcomes[eid] = {"status": "untestable", "reason": "edge missing from kg.json", "replicated": None}
                    continue
                if eid not in edge_cache:
                    edge_cache[eid] = retest_relation(r, held, alpha=alpha)
                outcomes[eid] = edge_cache[eid]
                if cross is not None:
                    if eid not in cross_cache:
                        cross_cache[eid] = cross_omics_relation(r, cross, rna, alpha=alpha)
                    if cross_cache[eid] is not None:
                        cross_out[eid] = cross_cache[eid]
            ordered = [outcomes[e] for e in h.get("evidence", []) if e in outcomes]
            cross_tested = [o for o in cross_out.values() if o.get("status") == "tested"]
            cross_ok = None
            if cross_tested:
                cross_ok = sum(bool(o["replicated"]) for o in cross_tested) >= len(cross_tested) / 2
            h = dict(h)
            in_run = h.get("validation") if isinstance(h.get("validation"), dict) and "edges" in (h.get("validation") or {}) else None
            h["validation"] = {
                "replicated": _decide(ordered),
                "held_out": outcomes,
                "n_tested": sum(o.get("status") == "tested" for o in ordered),
                "cross_omics": cross_ok,
                "cross_omics_edges": cross_out,
                "cross_omics_layer": rna,
                "alpha": alpha,
                "method": METHOD.format(alpha=alpha),
                **({"in_run": in_run} if in_run else {}),
            }
            out.append(h)
        if write:
            rd.write_jsonl("hypotheses.jsonl", out)
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()


def wilson_ci(k: int, n: int, z: float = 1.959963984540054) -> tuple[float | None, float | None]:
    """Wilson score interval for a binomial proportion ``k / n`` (95% by default).

    .. math:: \\frac{\\hat p + z^2/2n \\pm z\\sqrt{\\hat p(1-\\hat p)/n + z^2/4n^2}}{1 + z^2/n}

    References
    ----------
    Wilson E.B. Probable inference, the law of succession, and statistical inference.
    J Am Stat Assoc 22:209-212 (1927). doi:10.1080/01621459.1927.10502953
    """
    if n <= 0:
        return None, None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# --------------------------------------------------------------------------------------------
# in-run validation (the graph's validate node)
# --------------------------------------------------------------------------------------------

N_SPLITS = 20
"""Seeded stratified splits per run; an edge's replication frequency is out of this many."""
N_PERMUTATIONS = 199
"""Label permutations per tested family (layer x contrast) for the selection-aware null. Its p is
:math:`(b + 1) / (m + 1)` for ``b`` of ``m`` permutations as strong (Phipson & Smyth 2010,
doi:10.2202/1544-6115.1585): with 199 the smallest p is 0.005 and up to 8 permuted hits stay below 0.05,
so one chance hit cannot veto a finding (as 1 of 20 did)."""
MIN_HELD_PER_GROUP = 2
"""Fewest samples per group a held-out split must keep for its two-group test to be computed."""
MIN_REPLICATION = 0.8
"""A key edge is validated when it replicates in at least this share of splits (and its null is rare), and a
hypothesis when every key of its claim is. It is also the power the held-out splits need for a key's observed effect:
below it, too few replications are what a true effect gives too, and the verdict is ``inconclusive``, not ``failed``
(:func:`_key_verdict`)."""
NULL_TYPICAL = 0.5
"""Null p from which a key that falls short of replication is failed whatever its held-out power: permuted labels make a
member of its family as strong more often than not, so its discovery effect is no stronger than selection gives by chance."""

IN_RUN_METHOD = (
    "in-run validation: {n_splits} seeded stratified splits ({held:.0%} held out); an evidence edge replicates in a "
    "split when its feature, re-tested on the held-out samples only (group differences: Student's pooled-variance t on observed values, "
    "or, for edges the tool found with its censored model (missing = below detection), Gehan's generalised Wilcoxon "
    "test with missing values tied below every observed value, in the splits and the null alike; rank correlation "
    "otherwise; same contrast, samples and variables as its tool call; where the tool adjusted for covariates, the same "
    "covariates refitted: the group's least-squares t in y ~ group + covariates, or the partial correlation), "
    "keeps its direction with p < {alpha}. A hypothesis rests on the key edges its claim states, each re-tested with the model the "
    "claim used (a mediation through mutation carriers: the grouping's difference, its difference edge or else the gene's own feature "
    "between the levels on the genotyped samples, and the gene's own feature, carriers against non-carriers on those samples; "
    "a stated key that cannot be re-tested leaves the claim inconclusive; a claim that holds adjusted for a column: the edge's model refitted with that column, "
    "on the samples with it recorded, a key where its edge is one, not tested where the column is collinear with the grouping, "
    "Cramér's V >= 0.7; a claim that a pathway programme moves: the programme's per-sample score, the mean of its measured members' "
    "standardised values on the enrichment's layer, between the contrast's levels, a self-contained test whose family is every "
    "set of the library scored alike, refitted with each column the claim says it holds adjusted for, and never a single gene's edge); a hypothesis without a chosen key rests on its first testable edge, which counts as replicated in a split only where at least half of its "
    "testable edges replicate too. Evidence a claim-chosen key does not rest on (and a refit of it) is reported, and a supporting "
    "edge that does not replicate does not fail the hypothesis. Each key is judged on its own splits and the hypothesis takes the worst "
    "verdict of its keys. Null: {n_perm} label permutations of each key edge's family "
    "(every feature of the layer tested in the same call; for an adjusted model the labels are permuted within the blocks of its "
    "finest factor covariate (exchangeability blocks, Winkler et al. 2014) and the covariates refitted in every permutation); "
    "its null p is (b + 1) / ({n_perm} + 1) for the b permutations in "
    "which any feature of the family reaches a p as small as the edge's (Westfall-Young minP; Phipson & Smyth 2010); a carrier or "
    "adjusted key's family is its one feature (a pre-specified re-test of the feature its edge selected, which is a key too or was "
    "selected by mutation frequency alone), a levels key's the own features of the genes its call found enriched (the family of "
    "the tool's q); an edge its tool tested in a smaller family fixed before the test, a mutated gene's named "
    "paralogs, keeps that family). "
    "A key is validated at replication >= {min_rep:.0%} of splits and null p < {alpha}; inconclusive where it replicates as often but "
    "its null p is not below {alpha} (stable, but not specific: permuted labels make a member of its family as strong), or where "
    "replication falls short and the held-out splits' power for its observed effect is below "
    "{min_rep:.0%} too (a true effect of that size would fall short as often), or could not be computed, or where it falls short with "
    "adequate power by no more than the splits vary by chance (the Wilson 95% interval of its share reaches {min_rep:.0%}); failed "
    "(evidence against) where replication falls short with adequate held-out power and its interval below {min_rep:.0%}, or falls short "
    "where permuted labels make a member of its family as strong more often than not (null p >= {null_typical}: no stronger than chance). Cross-omics: the same test on another layer's "
    "feature of the same gene, all samples (unadjusted: the edge's technical columns belong to its own layer). The splits divide the samples the run itself tested, so replication "
    "measures stability across subsamples and the permutation null guards against selection; an unseen cohort "
    "is `proteus eval`'s discovery / held-out design. Two-group edges whose groups leave fewer than two samples per "
    "group in a held-out split, or allow too few labellings for a permutation null below the level, are untestable "
    "in the run, not failed."
)

_GENE_LEVEL = {"proteomics", "transcriptomics"}


def _split_masks(labels: np.ndarray | None, n: int, n_splits: int, fraction: float, seed: int) -> list[np.ndarray]:
    """Held-out masks of ``n_splits`` seeded splits, stratified by ``labels`` (None: one stratum)."""
    strata = np.zeros(n, dtype=int) if labels is None else np.asarray(labels).astype(int)
    out = []
    for s in range(n_splits):
        rng = np.random.default_rng([seed, s])
        held = np.zeros(n, dtype=bool)
        for level in np.unique(strata):
            idx = np.flatnonzero(strata == level)
            idx = idx[rng.permutation(len(idx))]
            n_d = int(round(fraction * len(idx)))
            if len(idx) >= 2:
                n_d = min(max(n_d, 1), len(idx) - 1)
            held[idx[n_d:]] = True
        out.append(held)
    return out


def design_too_small(labels: np.ndarray | None, ok: np.ndarray, held: list[np.ndarray], alpha: float,
                     blocks: np.ndarray | None = None) -> str | None:
    """Why a two-group edge cannot be validated in this run, or None when it can.

    A held-out two-group test needs at least two samples per group (:data:`MIN_HELD_PER_GROUP`; ``ok``
    marks the samples the edge's test uses), and a
    label-permutation null can only fall below ``alpha`` when the groups allow at least
    ``2 / alpha`` distinct labellings (a labelling and its mirror give the same two-sided p;
    Phipson & Smyth 2010, doi:10.2202/1544-6115.1585); labels permuted within ``blocks`` allow the
    product over blocks of each block's labellings. Below either, a true finding would be
    marked failed for the design's size alone, so the edge is untestable instead.
    """
    if labels is None:
        return None
    lab = np.asarray(labels, bool)
    n_case, n_ctrl = int((lab & ok).sum()), int((~lab & ok).sum())
    smallest = min(min(int((lab & ok & m).sum()), int((~lab & ok & m).sum())) for m in held)
    if smallest < MIN_HELD_PER_GROUP:
        return (f"{n_case} vs {n_ctrl} samples leave {smallest} per group in a held-out split; "
                f"a held-out test needs {MIN_HELD_PER_GROUP}")
    if blocks is None:
        n_lab = math.comb(n_case + n_ctrl, n_case)
    else:
        b = np.asarray(blocks).astype(str)
        n_lab = math.prod(math.comb(int((b == v).sum()), int((lab & (b == v)).sum())) for v in np.unique(b))
    if n_lab < 2 / alpha:
        return (f"{n_case} vs {n_ctrl} samples allow {n_lab} labellings{' within the covariate blocks' if blocks is not None else ''}; "
                f"a permutation null below {alpha} needs {math.ceil(2 / alpha)}")
    return None


def held_out_power(design, ok: np.ndarray, held: list[np.ndarray], alpha: float) -> float | None:
    """Mean power, over the held-out splits, of the edge's re-test to find its own observed effect
    (all tested samples) again with the same direction at two-sided ``alpha``: the replication
    frequency a true effect of that size is expected to reach (optimistic: the observed effect of a
    selected finding is inflated). ``None`` where the effect is undefined.

    - Student's t: noncentral t with :math:`\\delta = d\\sqrt{n_1 n_2/(n_1+n_2)}` on :math:`n_1+n_2-2`
      df, :math:`d` the effect over the pooled SD (:func:`proteus.stats.power.t_power`; Cohen 1988).
    - Gehan / Wilcoxon: :math:`\\Phi\\big(|A - \\tfrac12|\\sqrt{12 n_1 n_2/(N+1)} - z_{1-\\alpha/2}\\big)` for the
      concordance :math:`A` (Noether 1987, doi:10.1080/01621459.1987.10478478).
    - Correlation: :math:`\\Phi\\big(|\\operatorname{atanh} r|\\sqrt{n-3} - z_{1-\\alpha/2}\\big)` (Fisher z).

    An adjusted design (covariates, ``k`` covariate df) uses its adjusted effect: the group's coefficient
    over the adjusted model's residual SD, times :math:`\\sqrt{1-R^2}` of the group on the covariates (its variance
    inflation: the t of the adjusted coefficient is that effect times :math:`\\sqrt{n_1 n_2/(n_1+n_2)}`), on
    :math:`n_1+n_2-2-k` df; or the partial correlation on :math:`n-3-k`.
    """
    from proteus.edge_data import adjusted, gehan, rank_correlation
    from proteus.stats.power import t_power

    x, partner = design.key_data()
    z = stats.norm.ppf(1 - alpha / 2)
    powers = []
    Z = design.covariates() if design.method != "gehan" else None

    def k_of(m: np.ndarray) -> int:  # covariate df of the model a held-out split affords
        Zm = design.covariates(m) if Z is not None else None
        return 0 if Zm is None else int(np.linalg.matrix_rank(np.column_stack([np.ones(int(ok[m].sum())), Zm[ok[m]]]))) - 1

    k = k_of(np.ones(len(ok), dtype=bool))
    if design.kind == "two_group":
        lab = np.asarray(partner, bool)
        if design.method == "gehan":
            size = abs((float(gehan(x[ok], lab[ok])[0][0]) + 1) / 2 - 0.5)
        elif Z is not None:  # the adjusted coefficient over the residual SD of the adjusted model, shrunk by the group's
            # share of variance the covariates explain (a covariate tied to the groups leaves the group less to estimate it from)
            X = np.column_stack([np.ones(int(ok.sum())), lab[ok], Z[ok]])
            beta, *_ = np.linalg.lstsq(X, x[ok], rcond=None)
            resid_df = int(ok.sum()) - k - 2
            if resid_df < 1:
                return None
            sd = math.sqrt(float(((x[ok] - X @ beta) ** 2).sum()) / resid_df)
            g = lab[ok].astype(float)
            Z1 = np.column_stack([np.ones(len(g)), Z[ok]])
            rg = g - Z1 @ np.linalg.lstsq(Z1, g, rcond=None)[0]
            kept = float((rg**2).sum() / ((g - g.mean()) ** 2).sum())  # 1 - R^2 of the group on the covariates
            size = abs(float(beta[1])) * math.sqrt(kept) / sd if sd > 0 else math.inf
        else:
            a, b = x[ok & lab], x[ok & ~lab]
            if len(a) < 2 or len(b) < 2:
                return None
            sp = math.sqrt((((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()) / (len(a) + len(b) - 2))
            size = abs(a.mean() - b.mean()) / sp if sp > 0 else math.inf
        if not math.isfinite(size) and design.method == "gehan":
            return None
        for m in held:
            n1, n2 = int((lab & ok & m).sum()), int((~lab & ok & m).sum())
            if n1 < 2 or n2 < 2:
                powers.append(0.0)
            elif design.method == "gehan":
                powers.append(float(stats.norm.sf(z - size * math.sqrt(12 * n1 * n2 / (n1 + n2 + 1)))))
            else:
                powers.append(t_power(size, n1, n2, alpha, k_of(m)))
    else:
        r = float(rank_correlation(x[ok], partner[ok])[0][0] if Z is None else adjusted(x[ok], partner[ok], Z[ok], "correlation")[0][0])
        if not math.isfinite(r):
            return None
        size = math.atanh(min(abs(r), 0.999999))
        for m in held:
            n = int((ok & m).sum()) - k_of(m)
            powers.append(float(stats.norm.sf(z - size * math.sqrt(n - 3))) if n > 3 else 0.0)
    return float(np.mean(powers)) if powers else None


def _key_test(design, mask: np.ndarray | None = None) -> tuple[float, float]:
    """(effect, two-sided p) of the edge's own feature on the samples in ``mask``."""
    from proteus.edge_data import family_p

    x, partner = design.key_data()
    if mask is not None:
        x, partner = x[mask], partner[mask]
    effect, p = family_p(design.kind, x, partner, design.method, design.covariates(mask))
    return float(effect[0]), float(p[0])


def _unit_of(h: dict[str, Any]) -> frozenset[str] | None:
    """The genes of the curated unit a unit hypothesis claims about (its ``unit:<library>:<set id>`` entity)."""
    from proteus.stats.units import unit_genes_of

    key = next((e.split(":", 2)[1:] for e in h.get("entities", []) if e.startswith("unit:")), None)
    try:
        return unit_genes_of(tuple(key)) if key and len(key) == 2 else None
    except KeyError:
        return None


def _genes_of_layer(study: Study, layer: str | None, gene_maps: dict[str, pd.Series]) -> pd.Series:
    """The gene of each canonical feature of ``layer`` (:mod:`proteus.stats.features`), cached in ``gene_maps``."""
    from proteus.stats.features import canonical_features, feature_genes

    if layer not in gene_maps:
        a = study.modalities[layer]
        gene_maps[layer] = feature_genes(a)[canonical_features(a)]
    return gene_maps[layer]


def _unit_replicates(d, genes: pd.Series, unit: frozenset[str], sign: int, held: list[np.ndarray], alpha: float) -> np.ndarray:
    """Per held-out split, whether a unit moves ``sign``-wards as a whole on those samples: every measured
    member re-tested with the family (Welch / Gehan, as the edge), no member significant the other way
    (BH q < ``alpha``), the members' median effect on that side and their signed statistics ranking beyond
    the other features' (one-sided rank-sum, as :func:`proteus.stats.units.unit_change`)."""
    from scipy.stats import mannwhitneyu

    from proteus.edge_data import family_p
    from proteus.stats.multitest import bh

    if d.kind != "two_group" or d.columns is None or not sign:
        return np.zeros(len(held), dtype=bool)
    member = np.array([str(genes.get(c)) in unit for c in d.columns])
    out = []
    for m in held:
        eff, p = family_p(d.kind, d.X[m], d.labels[m], d.method, d.covariates(m))
        ok = np.isfinite(eff) & np.isfinite(p)
        if (member & ok).sum() < 2 or (~member & ok).sum() < 1:
            out.append(False)
            continue
        z = np.sign(eff[ok]) * stats.norm.isf(np.clip(p[ok], 1e-300, 1) / 2)
        q = bh(p[ok])
        mem = member[ok]
        against = bool((mem & (q < alpha) & (np.sign(eff[ok]) == -sign)).any())
        rank_p = mannwhitneyu(z[mem], z[~mem], alternative="greater" if sign > 0 else "less").pvalue
        out.append(not against and float(np.median(eff[ok][mem])) * sign > 0 and rank_p < alpha)
    return np.array(out, dtype=bool)


def _cross_layers(study: Study, r: Relation, gene_maps: dict[str, pd.Series]) -> dict[str, str]:
    """Other gene-level layers measuring the gene of ``r``'s feature: layer -> its feature of that gene."""
    def genes_of(layer: str) -> pd.Series:
        return _genes_of_layer(study, layer, gene_maps)

    if r.modality not in study.modalities or r.predicate not in ("higher_in", "lower_in", "correlates_with", "cis_effect_on"):
        return {}
    if r.provenance.tool not in ("differential_abundance", "mutation_association", "clinical_correlation", "mutation_cis_effect"):
        return {}
    feat = r.object.label if r.predicate == "cis_effect_on" else str(r.stats.extra.get("feature_id") or r.subject.label)
    gene = str(r.stats.extra.get("gene") or genes_of(r.modality).get(feat) or feat)
    out = {}
    for name, a in study.bulk().items():
        if name == r.modality or a.uns.get("modality") not in _GENE_LEVEL:
            continue
        g = genes_of(name)
        hit = g.index[g.to_numpy() == gene]
        if len(hit):
            out[name] = str(hit[0])
    return out


def validate_hypotheses(
    study: Study,
    kg: KnowledgeGraph,
    hypotheses: list[dict[str, Any]],
    *,
    n_splits: int = N_SPLITS,
    n_perm: int = N_PERMUTATIONS,
    fraction: float = 0.6,
    alpha: float = ALPHA,
    min_replication: float = MIN_REPLICATION,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Validate every hypothesis inside the run.

    For each evidence edge its feature is re-tested on the held-out part of ``n_splits`` seeded
    stratified splits, against a selection-aware label-permutation null of its family and, where
    another layer measures the same gene, in that layer; its effect gets a 95% confidence interval
    (see :data:`IN_RUN_METHOD`). Only the evidence features are re-tested (the family matrix is
    read once per tool call for the null). The verdict is the worst of the verdicts of the key edges the
    claim states, each judged on its own (module docstring); ``key_edges`` gives each key's ``verdict``.

    Returns copies of ``hypotheses`` with ``validation`` = ``{"status": "validated" | "inconclusive" |
    "failed" | "untestable", "grounds" (the deciding key's, :func:`_key_verdict`: "replicated" | "not specific" | "no stronger than chance" |
    "power unknown" | "low power" | "borderline" | "did not replicate", or "stated key not re-tested"; absent when untestable), "replicated",
    "replication": {"k", "n", "frequency"}, "null": {"k", "n",
    "frequency", "p"}, "held_out_power", "edges": {edge_id: ...}, "cross_omics", "cross_omics_edges", "reason", "method"}``,
    in the input order (:func:`proteus.ranking.rank_hypotheses` orders them); nothing is dropped.
    """
    from proteus.confounding import held_out_said

    cache: dict[str, Any] = {}
    gene_maps: dict[str, pd.Series] = {}
    nulls: dict[str, np.ndarray] = {}
    edges: dict[str, dict[str, Any]] = {}
    flags: dict[str, np.ndarray] = {}
    designs: dict[str, Any] = {}
    keyed: dict[str, tuple[dict[str, Any], np.ndarray | None]] = {}

    def retest(d, sign: int, r: Relation | None) -> tuple[dict[str, Any], np.ndarray | None]:
        """Design ``d`` re-tested on held-out splits, against the permutation null of its family, with its interval
        and (for ``r``, an edge tested as its tool tested it) in the other layers of its gene."""
        from proteus.edge_data import edge_design, effect_interval, permuted_min_p

        effect, p = _key_test(d)
        sign = sign or int(np.sign(effect or 0))
        labels = d.labels if d.kind == "two_group" else None
        ok = d.tested_samples()
        held = _split_masks(labels, len(ok), n_splits, fraction, seed)
        too_small = design_too_small(labels, ok, held, alpha, d.blocks)
        if too_small:
            return {"status": "untestable", "reason": too_small}, None
        reps = []
        for m in held:
            e_, p_ = _key_test(d, m & ok)
            reps.append(bool(math.isfinite(p_) and p_ < alpha and np.sign(e_) == sign))
        if d.family_key not in nulls:
            nulls[d.family_key] = permuted_min_p(d, n_perm, seed)
        k_null = int((nulls[d.family_key] <= p).sum()) if math.isfinite(p) else n_perm
        power = held_out_power(d, ok, held, alpha)
        ci = effect_interval(d)
        cross = {}
        for layer, feat in (_cross_layers(study, r, gene_maps).items() if r is not None else ()):
            one = Study(study.root, {**study.modalities, layer: study.modalities[layer][:, [feat]]}, study.clinical, study.mutations)
            dx = edge_design(one, r, modality=layer, feature=feat)
            if isinstance(dx, str):
                continue
            ex, px = _key_test(dx)
            cross[layer] = {"feature": feat, "effect": _finite(ex), "p": _finite(px),
                            "corroborated": bool(math.isfinite(px) and px < alpha and np.sign(ex) == sign)}
        return {
            "status": "tested",
            "test": (d.method if d.kind == "two_group" else f"{d.method} correlation") + (" adjusted for covariates" if d.cov is not None and d.method != "gehan" else ""),
            "replicated_splits": int(sum(reps)),
            "n_splits": n_splits,
            "null_k": k_null,
            "n_permutations": n_perm,
            "null_p": (k_null + 1) / (n_perm + 1),
            "held_out_power": None if power is None else round(power, 3),
            "p": _finite(p),
            **{k: (_finite(v) if k == "effect" else v) for k, v in ci.items()},
            "direction_agrees": bool(np.sign(effect) == sign) if effect is not None and math.isfinite(effect) else False,
            "n": int(ok.sum()),
            "family_size": int(d.X.shape[1]),
            "cross_omics": cross,
            "notes": d.notes,
        }, np.array(reps)

    def edge(eid: str) -> dict[str, Any]:
        if eid in edges:
            return edges[eid]
        from proteus.edge_data import edge_design

        r = kg.relation(eid)
        if r is None:
            edges[eid] = {"status": "untestable", "reason": "edge missing from the knowledge graph"}
            return edges[eid]
        if r.predicate in _PRIOR:
            edges[eid] = {"status": "untestable", "reason": f"{r.predicate} is prior knowledge, not a re-testable statistic"}
            return edges[eid]
        if r.predicate in _UNSTABLE or r.provenance.tool in CLUSTER_TOOLS:
            edges[eid] = {"status": "untestable", "reason": f"{r.predicate} of {r.provenance.tool} refers to sample clusters found in this run"}
            return edges[eid]
        d = edge_design(study, r, cache=cache)
        if isinstance(d, str):
            edges[eid] = {"status": "untestable", "reason": d}
            return edges[eid]
        designs[eid] = d
        edges[eid], reps = retest(d, _sign(r.stats.direction), r)
        if reps is not None:
            flags[eid] = reps
        return edges[eid]

    def key_test(k: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray | None]:
        """The re-test of one key edge with the model its claim used (:class:`proteus.records.KeyEdge`)."""
        from proteus.edge_data import carrier_design, levels_design, programme_design, with_covariates

        model, eid = k.get("model", "edge"), k["edge"]
        if model == "edge":
            return edge(eid), flags.get(eid)
        name = json.dumps([eid, model, k.get("adjusted_for") or []])
        if name not in keyed:
            r = kg.relation(eid)
            if model == "carriers":
                d = carrier_design(study, r) if r is not None else "edge missing from the knowledge graph"
                sign = int(np.sign((r.stats.extra or {}).get("own_diff_carriers") or 0)) if r is not None else 0
            elif model == "programme":  # the programme's score, never a member's edge (programme_design), refitted as the claim says
                d = programme_design(study, r, cache=cache) if r is not None else "edge missing from the knowledge graph"
                if k.get("adjusted_for") and not isinstance(d, str):
                    d = with_covariates(d, study, list(k["adjusted_for"]))
                sign = _sign(r.stats.direction) if r is not None else 0
            elif model == "levels":
                d = levels_design(study, r) if r is not None else "edge missing from the knowledge graph"
                sign = int(np.sign((r.stats.extra or {}).get("own_diff_all") or 0)) if r is not None else 0
            else:
                base = edge(eid)
                d = base.get("reason", "") if base["status"] != "tested" else with_covariates(designs[eid], study, list(k.get("adjusted_for") or []))
                sign = _sign(r.stats.direction) if r is not None else 0
            if model != "carriers":
                tied = None if isinstance(d, str) else _collinear(d, list(k.get("adjusted_for") or []))
                if tied is not None:
                    keyed[name] = ({"status": "untestable", "collinear": tied,
                                    "reason": f"{tied['column']} is collinear with the grouping (Cramér's V {tied['v']:.2f} >= {tied['threshold']} on the "
                                              f"{tied['n']} samples of the refit): adjustment cannot separate the two, so the refit does not decide "
                                              "the verdict"}, None)
                    return keyed[name]
            keyed[name] = ({"status": "untestable", "reason": d}, None) if isinstance(d, str) else retest(d, sign, None)
        return keyed[name]

    out = []
    for h in hypotheses:
        ev = list(h.get("evidence", []))
        per = {e: edge(e) for e in ev}
        tested = [e for e in ev if per[e]["status"] == "tested"]
        v: dict[str, Any] = {"edges": per, "n_tested": len(tested), "alpha": alpha,
                             "method": IN_RUN_METHOD.format(n_splits=n_splits, held=1 - fraction, alpha=alpha, n_perm=n_perm, min_rep=min_replication,
                                                                  null_typical=NULL_TYPICAL)}
        cross = [c for e in tested for c in per[e]["cross_omics"].values()]
        v["cross_omics"] = (sum(c["corroborated"] for c in cross) >= len(cross) / 2) if cross else None
        v["cross_omics_edges"] = {e: per[e]["cross_omics"] for e in tested if per[e]["cross_omics"]}
        # the key edges the claim rests on, each re-tested with the claim's model; without a claim-chosen key, the first testable edge
        specs = [k for k in h.get("key_edges") or [] if k.get("edge") in ev]
        programme = any(k.get("model") == "programme" for k in specs)
        if programme:  # a refit the statement says the claim holds under is re-tested on each programme's score too
            specs += list({json.dumps([p["edge"], a["adjusted_for"]]): {"edge": p["edge"], "role": f"{p['role']} {a['role']}", "model": "programme",
                                                                         "adjusted_for": list(a["adjusted_for"])}
                           for p in specs if p.get("model") == "programme" and not p.get("adjusted_for")
                           for a in specs if a.get("model") == "adjusted" and a.get("adjusted_for")}.values())
        results = [(k, *key_test(k)) for k in specs]
        keys = [(k, res, f) for k, res, f in results if res["status"] == "tested" and f is not None]
        lost = [(k, res) for k, res, _ in results if res["status"] != "tested"]
        primary = [x for x in keys if x[0].get("model", "edge") != "adjusted"]
        claimed = bool(primary)
        if not claimed and tested and not programme:  # a programme claim never falls back to a member's (or another gene's) edge
            primary = [({"edge": tested[0], "role": "first testable edge", "model": "edge", "adjusted_for": []}, per[tested[0]], flags[tested[0]])]
        # a refit the statement says holds is a key where its edge is one; a refit of a supporting edge is reported with it
        anchors = {k["edge"] for k, _, _ in primary}
        side = [x for x in keys if x[0].get("model") == "adjusted" and x[0]["edge"] not in anchors]
        keys = primary + [x for x in keys if x[0].get("model") == "adjusted" and x[0]["edge"] in anchors]
        side_lost = [(k, res) for k, res in lost if k.get("model") == "adjusted" and k["edge"] not in anchors]
        lost = [x for x in lost if x not in side_lost]
        if not keys:
            v.update(status="untestable", replicated=None, replication=None, null=None,
                     reason="no evidence edge can be re-tested on held-out samples: " + "; ".join(sorted({per[e]["reason"] for e in ev}
                                                                                                        | {res["reason"] for _, res in lost}))[:300])
        else:
            base = np.ones(n_splits, dtype=bool)
            if not claimed:  # no key chosen by the claim: at least half of the testable edges must replicate too
                base &= np.array([flags[e] for e in tested]).sum(0) >= len(tested) / 2
            unit = _unit_of(h)
            whole = None
            if unit is not None and tested:  # a unit claim replicates only where the unit as a whole does, not only its members
                r0, d0 = kg.relation(tested[0]), designs[tested[0]]
                whole = _unit_replicates(d0, _genes_of_layer(study, r0.modality, gene_maps), unit, _sign(r0.stats.direction),
                                         _split_masks(d0.labels if d0.kind == "two_group" else None, len(d0.tested_samples()),
                                                      n_splits, fraction, seed), alpha)
                base &= whole
            outcomes = [_key_verdict(res, int((f if kk.get("model") == "adjusted" else f & base).sum()), n_splits, min_replication, alpha)
                        for kk, res, f in keys]
            judged, i = _worst_key(outcomes)
            (low_k, low_res, _), low = keys[i], outcomes[i]
            # a key the claim states (not a refit) that could not be re-tested leaves the claim unvalidated: capped
            untested = [kk["role"] for kk, _ in lost if kk.get("model", "edge") != "adjusted"]
            status = "inconclusive" if judged == "validated" and untested else judged
            key = max((res for _, res, _ in keys), key=lambda res: res["null_p"])  # the weakest key against the null
            k, power, grounds = low["k"], low["power"], low["grounds"]
            null_freq = key["null_k"] / n_perm
            v["key_edges"] = [{**kk, **{x: res.get(x) for x in ("status", "test", "replicated_splits", "n_splits", "null_k", "n_permutations", "null_p", "held_out_power", "p",
                                                                   "effect", "ci", "effect_type", "n", "notes")}, "verdict": o["status"], "grounds": o["grounds"]}
                              for (kk, res, _), o in zip(keys, outcomes)]
            v["key_edges"] += [{**kk, "status": "untestable", "reason": res["reason"], **({"collinear": res["collinear"]} if "collinear" in res else {})}
                               for kk, res in lost]
            v["supporting_refits"] = [{**kk, **{x: res.get(x) for x in ("status", "test", "replicated_splits", "n_splits", "null_k", "n_permutations",
                                                                           "null_p", "held_out_power", "p", "effect", "ci", "n")},
                                       "verdict": o["status"], "grounds": o["grounds"]}
                                      for kk, res, f in side for o in [_key_verdict(res, int(f.sum()), n_splits, min_replication, alpha)]]
            v["supporting_refits"] += [{**kk, "status": "untestable", "reason": res["reason"]} for kk, res in side_lost]
            which = "" if len(keys) == 1 else f"its {'weakest' if judged == 'validated' else 'deciding'} key ({low_k['role']}) "
            v.update(
                status=status,
                grounds=grounds if status == judged else "stated key not re-tested",
                replicated=None if status == "inconclusive" else status == "validated",
                replication={"k": k, "n": n_splits, "frequency": round(k / n_splits, 3), "text": f"{k}/{n_splits}"},
                null={"k": key["null_k"], "n": n_perm, "frequency": round(null_freq, 3), "p": round(key["null_p"], 4),
                      "text": f"{key['null_k']}/{n_perm}"},
                held_out_power=power,
                reason=(_rests_on(kg, keys, outcomes, lost) if claimed or len(keys) > 1 or lost else "")
                        + (f"{which}replicated in {k}/{n_splits} held-out splits"
                        + (f", where the held-out splits have power {power:.2f} for the "
                           + (f"{low_k['role']} key's" if len(keys) > 1 else "key edge's") + " observed effect: a true effect of "
                           f"that size replicates as rarely, so the held-out test is inconclusive, not evidence against"
                           if grounds == "low power" and judged == "inconclusive" else "")
                        + (_unspecific_said(low_k, low_res) if grounds == "not specific" and judged == "inconclusive" else "")
                        + (_short_said(grounds, k, n_splits, power, low_res) if grounds in _SHORT and status == judged else "")
                        + (f"; permuted labels gave an edge as strong as the key edge"
                           + (f" ({[kk for kk, res, _ in keys if res is key][0]['role']})" if len(keys) > 1 else "")
                           + f" in {key['null_k']}/{n_perm} permutations (null p {key['null_p']:.3f})"
                           if not (grounds in ("not specific", "no stronger than chance") and key is low_res) else "")
                        + (f"; cross-omics {'corroborated' if v['cross_omics'] else 'not corroborated'}" if v["cross_omics"] is not None else "")
                        + (f"; the unit as a whole (every measured member's median and rank-sum against the other features, "
                           f"held-out samples) moved in {int(whole.sum())}/{n_splits} splits" if whole is not None else ""))
                        + (_supporting_said(kg, per, {kk["edge"] for kk, _, _ in keys if kk.get("model", "edge") == "edge"},
                                            [(kk, res) for kk, res, _ in side], min_replication, alpha) if claimed else "")
                        + (f"; not validated, as the claim states {' and '.join(untested)}, which could not be re-tested"
                           if status != judged else ""),
            )
        # a refit the statement says holds is said no more strongly than its held-out re-test found
        out.append({**h, "statement": held_out_said(h.get("statement", ""), h.get("design_checks") or [], v), "validation": _plain(v)})
    return out


def _collinear(design, columns: list[str]) -> dict[str, Any] | None:
    """The first of ``columns`` a refit of a two-group ``design`` cannot separate from the grouping (``column``, ``v``,
    ``n``, ``threshold``), or ``None``: a factor column tied to the grouping as strongly as Cramér's V >=
    :data:`proteus.confounding.COLLINEAR_V` on the refit's tested samples (:func:`proteus.confounding.collinear_v`, the
    rule the statement's wording follows too).
    Adjustment cannot separate two collinear columns (the group's coefficient is estimated from the few samples where
    they disagree), so the refit's failure to replicate says nothing about the claim, and its success little."""
    from proteus.confounding import COLLINEAR_V, collinear_v

    if design.kind != "two_group" or design.cov is None:
        return None
    ok = design.tested_samples()
    groups = pd.Series(design.labels[ok])
    for c in columns:
        v = collinear_v(groups, pd.Series(design.cov[c].to_numpy()[ok]))
        if v is not None:
            return {"column": c, "v": v, "n": int(ok.sum()), "threshold": COLLINEAR_V}
    return None


def _key_verdict(res: dict[str, Any], k: int, n: int, min_replication: float, alpha: float) -> dict[str, Any]:
    """One key's verdict from its ``k`` held-out replications in ``n`` splits, its null p and its held-out power, with its
    ``grounds``. ``failed`` is evidence against; where the held-out test cannot tell, the key is ``inconclusive``:

    - validated (``replicated``): it replicates in at least ``min_replication`` of the splits and its null p is below
      ``alpha``;
    - inconclusive (``not specific``): it replicates as often, but permuted labels make a member of its family (a
      feature of the layer, a set of the library) as strong (null p >= ``alpha``): stable, yet no more than the family's
      chance best, which is no evidence against the claim either;
    - failed (``no stronger than chance``): it falls short, and permuted labels make a member of its family as strong
      more often than not (null p >= :data:`NULL_TYPICAL`): its discovery effect is what selection from the family gives
      by chance, whatever the held-out power;
    - inconclusive (``power unknown``): it falls short where its held-out power could not be computed;
    - inconclusive (``low power``): it falls short where the held-out splits' power for its observed effect is below
      ``min_replication`` too (a true effect of that size falls short as often);
    - inconclusive (``borderline``): it falls short with adequate power, but by no more than the splits vary by chance: the
      Wilson 95% interval of its replication share (:func:`wilson_ci`) reaches ``min_replication``;
    - failed (``did not replicate``): it falls short with adequate held-out power, its interval below ``min_replication``."""
    power = res["held_out_power"]
    if k / n >= min_replication:
        status, grounds = ("validated", "replicated") if res["null_p"] < alpha else ("inconclusive", "not specific")
    elif res["null_p"] >= NULL_TYPICAL:
        status, grounds = "failed", "no stronger than chance"
    elif power is None:
        status, grounds = "inconclusive", "power unknown"
    elif power < min_replication:
        status, grounds = "inconclusive", "low power"
    elif wilson_ci(k, n)[1] >= min_replication:
        status, grounds = "inconclusive", "borderline"
    else:
        status, grounds = "failed", "did not replicate"
    return {"status": status, "grounds": grounds, "k": k, "power": power}


_WORST = {"failed": 0, "inconclusive": 1, "validated": 2}


def _worst_key(outcomes: list[dict[str, Any]]) -> tuple[str, int]:
    """The hypothesis's verdict, the worst of its keys' (failed, then inconclusive, then validated), and the key that
    decides it (of those with that verdict, the fewest replications)."""
    status = min((o["status"] for o in outcomes), key=_WORST.__getitem__)
    i = min((i for i, o in enumerate(outcomes) if o["status"] == status), key=lambda i: (outcomes[i]["k"], outcomes[i]["power"] or 0.0))
    return status, i


def _unspecific_said(k: dict[str, Any], res: dict[str, Any]) -> str:
    """``", but no more strongly than the best of its family by chance: with the labels permuted, one of the 1,234
    reactome sets scored alike was as strong in 150/199 permutations (null p 0.755), so it is stable but not specific:
    inconclusive, not evidence against"``: the words of a key that replicates without beating its family's null."""
    family = next((n.split("its null family the ", 1)[1] for n in res.get("notes") or [] if "its null family the " in n), None)
    m = int(res.get("family_size") or 1)
    who = (f"one of the {family}" if family else f"one of the {m:,} features tested with it" if m > 1 else "its feature")
    than = "the best of its family by chance" if m > 1 else "chance"
    return (f", but no more strongly than {than}: with the labels permuted, {who} was as strong in {res['null_k']}/"
            f"{res['n_permutations']} permutations (null p {res['null_p']:.3f}), so it is stable but not specific: inconclusive, "
            "not evidence against")


def _edge_words(r: Relation) -> str:
    """An edge as a clause names it: ``"the COLUMN difference in GENE1"``, else subject, predicate and object."""
    if r.predicate in ("higher_in", "lower_in") and r.object.type == "sample_group":
        return f"the {r.object.label.split(': ')[0]} difference in {r.subject.label}"
    return f"{r.subject.label} {r.predicate.replace('_', ' ')} {r.object.label}"


_SAID = {"replicated": "replicated", "not specific": "replicated, but permuted labels make one of its family as strong: not specific",
         "no stronger than chance": "did not replicate, and permuted labels make one of its family as strong more often than not: "
                                    "no stronger than chance",
         "power unknown": "fell short of replication, its held-out power unknown",
         "low power": "fell short of replication, with too little held-out power to tell",
         "borderline": "fell short of replication by no more than the splits vary by chance",
         "did not replicate": "did not replicate"}
"""A key's outcome in words, by its grounds (:func:`_key_verdict`)."""

_SHORT = ("no stronger than chance", "power unknown", "borderline")
"""Grounds of a key that fell short whose reason :func:`_short_said` gives."""


def _short_said(grounds: str, k: int, n: int, power: float | None, res: dict[str, Any]) -> str:
    """Why a key that fell short of replication is failed or inconclusive (:func:`_key_verdict`), said after its count:
    ``", and permuted labels made a feature of its family as strong in 138/199 permutations (null p 0.695): its
    discovery effect is no stronger than chance, evidence against"``; ``", where its held-out power could not be
    computed: inconclusive, not evidence against"``; ``", short of replication by no more than the splits vary by chance
    (Wilson 95% interval 0.53-0.89 of the share), at held-out power 0.91: inconclusive, not evidence against"``."""
    if grounds == "no stronger than chance":
        return (f", and permuted labels made a feature of its family as strong in {res['null_k']}/{res['n_permutations']} permutations "
                f"(null p {res['null_p']:.3f}): its discovery effect is no stronger than chance, evidence against")
    if grounds == "power unknown":
        return ", where its held-out power could not be computed: inconclusive, not evidence against"
    lo, hi = wilson_ci(k, n)
    return (f", short of replication by no more than the splits vary by chance (Wilson 95% interval {lo:.2f}-{hi:.2f} of the share), "
            f"at held-out power {power:.2f}: inconclusive, not evidence against")


def _rests_on(kg: KnowledgeGraph, keys: list[tuple[dict, dict, Any]], outcomes: list[dict[str, Any]], lost: list[tuple[dict, dict]]) -> str:
    """``"rests on the COLUMN difference (..., 11/20 splits, null 138/199: did not replicate) and the carrier effect
    (GENE1 ..., student: 19/20 splits, null 0/199: replicated); "``: which edges and tests the verdict stands on, each
    key's own outcome where there are several, and the keys not re-tested, with why."""
    said = []
    for (k, res, _), o in zip(keys, outcomes):
        r = kg.relation(k["edge"])
        what = (f"{r.subject.label} carriers against non-carriers in {r.object.label.split(': ')[0]}" if k.get("model") == "carriers"
                else f"the {r.object.label.split(': ')[0]} difference in the '{r.subject.label}' programme score" if k.get("model") == "programme"
                else f"{r.subject.label} in {r.object.label.split(': ', 1)[-1].replace(' vs ', ' against ')}, on the samples genotyped for "
                     "the mutation enrichment" if k.get("model") == "levels"
                else _edge_words(r)) if r is not None else k["edge"]
        said.append(f"{k['role']} ({what}, {res['test']}: {o['k']}/{res['n_splits']} "
                    f"splits, null {res['null_k']}/{res['n_permutations']}" + (f": {_SAID[o['grounds']]})" if len(keys) > 1 else ")"))
    gone = [f"{k['role']} could not be re-tested ({res['reason'][:120]})" for k, res in lost if "collinear" not in res]
    tied = [(k, res["collinear"]) for k, res in lost if "collinear" in res]
    if tied:
        gone.append("not re-tested, as adjustment cannot separate a column this collinear with the grouping (Cramér's V >= "
                    f"{tied[0][1]['threshold']}): " + ", ".join(f"{k['role']} (V {c['v']:.2f} on {c['n']} samples)" for k, c in tied))
    return "rests on " + " and ".join(said) + "; " + ("".join(f"{g}; " for g in gone))


def _supporting_said(kg: KnowledgeGraph, per: dict[str, dict], keys: set[str], refits: list[tuple[dict, dict]],
                     min_replication: float, alpha: float) -> str:
    """The tested evidence the claim does not rest on that did not validate, said as its outcome (:data:`_SAID`; a weak
    supporting edge does not fail a hypothesis whose key edge replicates): ``"; the COLUMN difference in GENE1 itself
    did not replicate (q = 0.0496 at discovery; 11/20 splits, null 138/199)"``."""
    def said(res: dict[str, Any]) -> str | None:  # its outcome in words, None where it replicated
        grounds = _key_verdict(res, res["replicated_splits"], res["n_splits"], min_replication, alpha)["grounds"]
        return None if grounds == "replicated" else _SAID[grounds]

    out = []
    for eid, res in per.items():
        if eid in keys or res["status"] != "tested" or (words := said(res)) is None:
            continue
        r = kg.relation(eid)
        if r is None:
            continue
        q = r.stats.q_else_p()
        out.append(f"{_edge_words(r)} itself {words} ({'q' if r.stats.q is not None else 'p'} = {q:.2g} at discovery; "
                   f"{res['replicated_splits']}/{res['n_splits']} splits, null {res['null_k']}/{res['n_permutations']}), and the claim does not rest on it")
    for k, res in refits:  # a refit of a supporting edge (it holds adjusted for a column)
        r = kg.relation(k["edge"])
        if r is None or (words := said(res)) is None:
            continue
        out.append(f"{_edge_words(r)} {k['role']} {words} on its {res['n']} samples ({res['replicated_splits']}/{res['n_splits']} "
                   f"splits, null {res['null_k']}/{res['n_permutations']}), and the claim does not rest on it")
    return "".join(f"; {x}" for x in out)


def _plain(x: Any) -> Any:
    """JSON-native copy (numpy scalars to Python, non-finite floats to None): checkpointed state."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x
