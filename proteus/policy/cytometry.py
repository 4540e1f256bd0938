"""The offline playbook for cell-level studies (cytometry, single-cell RNA).

Used by :class:`~proteus.policy.heuristic.HeuristicPolicy`:

- :func:`objectives` — from the data profile: which populations exist (every cell-level layer);
  which change in abundance between conditions, and which signalling states change within which
  populations (cytometry layers, for the best two-group contrasts of the sample table).
- :func:`workflow` — the tool steps for one of those objectives (matched by title), with the
  donor column as ``block`` when the profile shows a paired design.
- :func:`hypotheses` — drafts composed from the cytometry relations in the knowledge graph:
  signalling-pathway activation in a population (two or more state markers of one pathway moving
  together), cell-type specificity of a state change (significant in one population, not in the
  others tested: "does not change" there only when the 95% interval is negligible, see
  :func:`~proteus.policy.claims.negligible`, else "not detected"), abundance shifts of named populations (a larger or smaller fraction of cells, never
  "expansion": a composition shift between conditions of the same donors' cells is not growth), and a
  marker that moves the same way in every population, stated once as a shared shift ("every" only when
  significant in every one, else "in k of n"); a population's
  shift that is mostly a shift within its parent lineage (siblings sharing a positive lineage marker
  move the other way, the lineage total barely changes) is said to be one, and one that mostly follows
  from another population's large opposite shift (compositional closure: fractions renormalised without
  it) is said to be mechanical. Evidence =
  knowledge-graph edge ids.

The relations it reads are those written by :mod:`proteus.tools.cytometry` /
:mod:`proteus.tools.singlecell` (see their module docstrings for the representation).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from importlib import resources

import numpy as np

from proteus.kg import KnowledgeGraph
from proteus.policy.claims import directions_agree, negligible
from proteus.policy.decisions import HypothesisDraft, ObjectiveSpec, StepSpec
from proteus.policy.result_tables import Change, ResultTables
from proteus.profile import Contrast, DataProfile, ModalityProfile
from proteus.records import Objective, Relation

__all__ = ["objectives", "workflow", "hypotheses", "block_column", "PATHWAYS"]

_MAX_CONTRASTS = 2

def _signalling() -> dict:
    """Phospho-epitopes by signalling pathway, lineage receptor pathways and inhibitor classes
    (general biology shipped as data with its source: ``proteus/genesets/signalling_epitopes.json``)."""
    with resources.files("proteus.genesets").joinpath("signalling_epitopes.json").open(encoding="utf-8") as fh:
        return json.load(fh)


_SIGNALLING = _signalling()
PATHWAYS: dict[str, set[str]] = {name: set(p["epitopes"]) for name, p in _SIGNALLING["pathways"].items()}
"""Signalling pathways by phospho-epitope (marker name without the leading ``p``, lower case)."""
_LINEAGE_PATHWAY: dict[str, str] = dict(_SIGNALLING["lineage_pathway"])
_INHIBITORS: dict[str, str] = {name: p["inhibitor"] for name, p in _SIGNALLING["pathways"].items()}


# ============================================================================================
# objectives and workflows
# ============================================================================================


def block_column(profile: DataProfile, group: str) -> str | None:
    """The donor/patient column of a paired design, or None.

    A column the profile gives the *block* role (:mod:`proteus.design`) whose every level holds at
    least two samples (each donor measured in more than one condition) and that is not ``group``.
    """
    best = None
    for v in profile.variables:
        if v.name == group or v.role != "block":
            continue
        if v.levels and len(v.levels) >= 2 and min(v.levels.values()) >= 2 and v.n_missing == 0:
            if best is None or len(v.levels) > len(best.levels):
                best = v
    return best.name if best is not None else None


def _cell_layers(profile: DataProfile) -> list[ModalityProfile]:
    return [m for m in profile.modalities if m.level == "cell"]


def _contrasts(profile: DataProfile) -> list[Contrast]:
    """Two-level contrasts (the cell-level tools compare one level with another; a pooled case is a bulk design)."""
    return [c for c in profile.contrasts if min(c.n_case, c.n_control) >= 2 and not c.case_levels][:_MAX_CONTRASTS]


def _pop_title(m: ModalityProfile) -> str:
    return f"Cell populations in {m.name}"


def _da_title(m: ModalityProfile, c: Contrast) -> str:
    return f"Abundance shifts of cell populations in {m.name}: {c.group} {c.case} vs {c.control}"


def _ds_title(m: ModalityProfile, c: Contrast) -> str:
    return f"Signalling states within populations in {m.name}: {c.group} {c.case} vs {c.control}"


def objectives(profile: DataProfile) -> list[ObjectiveSpec]:
    """Research objectives for the cell-level layers of a study, most important first."""
    out: list[ObjectiveSpec] = []
    contrasts = _contrasts(profile)
    for m in _cell_layers(profile):
        cyto = m.kind == "cytometry"
        n_samples = m.n_conditions or 0
        out.append(ObjectiveSpec(
            title=_pop_title(m),
            question=f"Which cell populations does {m.name} hold, which markers define them, and in what proportions per sample?",
            family="cytometry",
            rationale=(f"{m.n_samples} cells x {m.n_features} {'markers' if cyto else 'genes'} from {n_samples} sample(s); "
                       "populations are the units every later comparison uses"),
        ))
        if n_samples < 4:
            continue
        for c in contrasts:
            block = block_column(profile, c.group)
            paired = f"; paired by {block}" if block else ""
            out.append(ObjectiveSpec(
                title=_da_title(m, c),
                question=f"Which cell populations expand or contract in {c.case} compared with {c.control} ({c.group})?",
                family="cytometry",
                rationale=f"{c.n_case} vs {c.n_control} samples{paired}; the sample is the statistical unit (counts per population)",
            ))
            if cyto:
                out.append(ObjectiveSpec(
                    title=_ds_title(m, c),
                    question=(f"Which signalling (state) markers change within which populations in {c.case} compared with "
                              f"{c.control} ({c.group}), and which changes are specific to one cell type?"),
                    family="cytometry",
                    rationale=f"{c.n_case} vs {c.n_control} samples{paired}; sample x population medians of the state markers",
                ))
    return out


def _layer_and_contrast(title: str, profile: DataProfile) -> tuple[ModalityProfile | None, Contrast | None, str]:
    for m in _cell_layers(profile):
        if title == _pop_title(m):
            return m, None, "populations"
        for c in _contrasts(profile):
            if title == _da_title(m, c):
                return m, c, "abundance"
            if title == _ds_title(m, c):
                return m, c, "state"
    return None, None, ""


def _route_free_text(objective: ObjectiveSpec | Objective, profile: DataProfile) -> tuple[ModalityProfile | None, Contrast | None, str]:
    """An objective written by someone else (an LLM): pick layer, contrast and kind from its words."""
    text = f"{objective.title} {objective.question}".lower()
    layers = _cell_layers(profile)
    m = next((x for x in layers if x.name.lower() in text), layers[0] if layers else None)
    contrasts = _contrasts(profile)
    c = next((x for x in contrasts if x.group.lower() in text and x.case.lower() in text), None)
    c = c or (contrasts[0] if contrasts else None)
    if re.search(r"signal|state|phospho|activation", text):
        kind = "state"
    elif re.search(r"abundan|proportion|frequenc|expand|contract|shift", text):
        kind = "abundance"
    else:
        kind = "populations"
    return m, (c if kind != "populations" else None), kind


def workflow(objective: ObjectiveSpec | Objective, profile: DataProfile) -> list[StepSpec]:
    """Tool steps answering ``objective`` (one made by :func:`objectives`, or a free-text one)."""
    m, c, kind = _layer_and_contrast(objective.title, profile)
    if m is None:
        m, c, kind = _route_free_text(objective, profile)
    if m is None:
        return []
    cyto = m.kind == "cytometry"
    if kind == "populations" or c is None:
        if cyto:
            return [StepSpec(tool="cytometry_clustering", params={"modality": m.name},
                             rationale="arcsinh transform, FlowSOM 10x10 + consensus metaclustering on lineage markers, "
                                       "populations named from canonical markers")]
        return [StepSpec(tool="singlecell_clustering", params={"modality": m.name},
                         rationale="Leiden clusters, marker genes, populations named from canonical marker genes")]
    params = {"modality": m.name, "group": c.group, "case": c.case, "control": c.control}
    block = block_column(profile, c.group)
    if block:
        params["block"] = block
    pair = f", {block} as a blocking factor (paired design)" if block else ""
    if kind == "state" and cyto:
        return [StepSpec(tool="cytometry_differential_state", params=params,
                         rationale=f"limma on sample x population medians of state markers{pair}")]
    return [StepSpec(tool="cytometry_differential_abundance", params=params,
                     rationale=f"negative binomial GLM on sample x population counts{pair}")]


# ============================================================================================
# hypotheses
# ============================================================================================


def _epitope(marker: str) -> str:
    m = re.sub(r"[^a-z0-9]", "", marker.lower())
    return m[1:] if m.startswith("p") and len(m) > 2 else m


def _markers_of(kg: KnowledgeGraph, population: str, limit: int = 3) -> list[Relation]:
    rels = [r for r in kg.by_predicate("marker_of") if r.object.type == "cell_population" and r.object.label == population]
    return sorted(rels, key=lambda r: -(r.stats.effect or 0))[:limit]


def _fmt(x: float | None) -> str:
    return "nan" if x is None else f"{x:.2g}"


def _ds_relations(kg: KnowledgeGraph) -> list[Relation]:
    return [r for r in kg.relations.values()
            if r.predicate in ("higher_in", "lower_in") and r.subject.type == "marker"
            and "population" in r.stats.extra and "marker" in r.stats.extra]


def _da_relations(kg: KnowledgeGraph) -> list[Relation]:
    return [r for r in kg.relations.values()
            if r.predicate in ("higher_in", "lower_in") and r.subject.type == "cell_population"]


def _case_words(contrast: str) -> str:
    """``"group: case vs control"`` -> ``"case than in control"`` (``"case"`` for a case-vs-rest label)."""
    _, _, rest = contrast.partition(": ")
    case, _, control = rest.partition(" vs ")
    return f"{case} than in {control}" if control else case


_GLOBAL_Q = 0.1


def _n_significant(r: Relation) -> tuple[int, int]:
    """(populations where the marker's change has q < ``_GLOBAL_Q``, named populations tested), ``r``'s own included."""
    others = {k: v for k, v in (r.stats.extra.get("other_populations") or {}).items() if not str(k).startswith("unassigned")}
    n_sig = 1 + sum(1 for v in others.values() if v.get("q") is not None and v["q"] == v["q"] and v["q"] < _GLOBAL_Q)
    return n_sig, 1 + len(others)


def _is_global(r: Relation) -> bool:
    """A state change whose marker moves the same way in every named population tested, significantly
    (q < ``_GLOBAL_Q``) in at least half of them."""
    others = {k: v for k, v in (r.stats.extra.get("other_populations") or {}).items() if not str(k).startswith("unassigned")}
    if len(others) < 2:
        return False
    effects = [r.stats.effect or 0.0] + [float(v.get("logFC") or 0.0) for v in others.values()]
    n_sig, n = _n_significant(r)
    return directions_agree(effects) and n_sig * 2 >= n


def _change(population: str, row: dict) -> Change | None:
    """One population's row of ``other_populations`` as a :class:`Change` (SE = |logFC / t|, Student's t
    interval on limma's df); ``None`` when the relation predates these fields."""
    effect, t = float(row.get("logFC") or 0.0), row.get("t")
    if t is None or not np.isfinite(t) or t == 0:
        return None
    q = row.get("q")
    return Change(population, effect, abs(effect / t), q if q is not None and q == q else 1.0, float(row.get("df") or np.inf))


def _units(r: Relation) -> str:
    """The replication behind a state relation: ``"4 donors"`` when paired, else ``"8 samples"``."""
    blocks = r.stats.extra.get("n_blocks")
    return f"{blocks} donors" if r.stats.extra.get("paired") and blocks else f"{r.stats.n} samples"


def _positives(tables: ResultTables) -> dict[str, set[str]]:
    """Population -> the lineage markers its naming rule required positive (``CD3+ CD4- ...`` -> {CD3})."""
    out: dict[str, set[str]] = {}
    for _, tab in tables.tables("cytometry_clustering", "annotation"):
        for pop, rule in zip(tab["population"].astype(str), tab["rule"].fillna("").astype(str)):
            out.setdefault(pop, set()).update(tok[:-1] for tok in rule.split() if tok.endswith("+"))
    return out


def _da_table(r: Relation, tables: ResultTables | None):
    """The full DA table of the step that wrote ``r``, indexed by population (``None`` without tables)."""
    if tables is None:
        return None
    prm = r.provenance.params
    da = tables.table("cytometry_differential_abundance", "differential_abundance",
                      **{k: prm[k] for k in ("modality", "group", "case", "control") if prm.get(k) is not None})
    return None if da is None else da.set_index(da["population"].astype(str))


def _closure(pop: str, up: bool, r: Relation, tables: ResultTables | None) -> tuple[str, str] | None:
    """(statement clause or ``""``, rationale clause) setting ``pop``'s fraction shift against compositional
    closure: fractions sum to one, so a large significant shift of another population the other way moves
    every fraction. Mean fractions are renormalised without the population of largest opposite shift
    (q < 0.05); the statement says "mechanical" when the renormalised log2 ratio keeps less than half of
    the raw one (or flips). ``None`` when no such population or without the tables."""
    da = _da_table(r, tables)
    if da is None or pop not in da.index:
        return None
    delta = da["prop_case"] - da["prop_control"]
    other = da[(da.index != pop) & (da["q"] < 0.05) & ((delta < 0) == up)]
    if other.empty:
        return None
    x = (other["prop_case"] - other["prop_control"]).abs().idxmax()
    xc, xn = float(da.loc[x, "prop_case"]), float(da.loc[x, "prop_control"])
    case, ctrl = float(da.loc[pop, "prop_case"]), float(da.loc[pop, "prop_control"])
    rc, rn = case / (1 - xc), ctrl / (1 - xn)
    own, renorm = np.log2(case / ctrl), np.log2(rc / rn)
    note = (f"the {x} fraction goes {xn:.3f} -> {xc:.3f} of all cells; renormalised without {x}, {pop} go {rn:.3f} -> {rc:.3f} "
            f"(log2 ratio {renorm:+.2f} vs {own:+.2f} with it)")
    mechanical = renorm * own <= 0 or abs(renorm) < abs(own) / 2
    clause = (f"largely a mechanical consequence of {x} {'falling' if xc < xn else 'rising'} "
              f"({xn:.3f} -> {xc:.3f} of all cells), since fractions sum to one") if mechanical else ""
    return clause, note


def _within_parent(pop: str, up: bool, r: Relation, tables: ResultTables | None) -> tuple[str, str] | None:
    """(statement clause, rationale clause) when ``pop``'s shift is mostly a shift within its parent lineage:
    populations sharing a positive lineage marker move the other way and the lineage total changes by
    less than half as much (log2 ratio of mean fractions). ``None`` otherwise or without the tables."""
    da = _da_table(r, tables)
    if da is None:
        return None
    pos = _positives(tables)
    if not pos.get(pop):
        return None
    sibs = [s for s in da.index if s != pop and pos.get(s, set()) & pos[pop]]
    if not sibs or pop not in da.index:
        return None
    shared = sorted(set.intersection(*(pos[s] for s in sibs + [pop])))
    delta = float((da.loc[sibs, "prop_case"] - da.loc[sibs, "prop_control"]).sum())
    own = float(np.log2(da.loc[pop, "prop_case"] / da.loc[pop, "prop_control"]))
    case, control = da.loc[sibs + [pop], "prop_case"].sum(), da.loc[sibs + [pop], "prop_control"].sum()
    whole = float(np.log2(case / control))
    if (delta < 0) != up or abs(whole) >= abs(own) / 2:
        return None
    lineage = " ".join(f"{m}+" for m in shared) + " cells"
    return (f"{'mostly at the expense of' if up else 'matched by a rise in'} {', '.join(sibs)} within {lineage}: "
            "a shift between clusters of one lineage, which a change in marker expression can cause",
            f"within {lineage} ({', '.join([pop] + sibs)}) the total fraction moves only {control:.3f} -> {case:.3f}"
            + "; " + ", ".join(f"{s} {da.loc[s, 'prop_control']:.3f} -> {da.loc[s, 'prop_case']:.3f}" for s in sibs))


def hypotheses(kg: KnowledgeGraph, max_items: int = 20, tables: ResultTables | None = None) -> list[HypothesisDraft]:
    """Hypothesis drafts from cytometry relations, strongest first (see the module docstring). With the
    run's ``tables``, a population's abundance shift is set against its parent lineage."""
    drafts: list[tuple[float, HypothesisDraft]] = []
    ds = _ds_relations(kg)

    # 1. pathway activation: >= 2 state markers of one pathway move together in one population
    groups: dict[tuple[str, str, str], list[Relation]] = defaultdict(list)
    for r in ds:
        groups[(r.stats.extra["population"], r.object.id, r.predicate)].append(r)
    for (pop, _, pred), rels in groups.items():
        if pop.startswith("unassigned"):
            continue
        contrast = rels[0].object.label
        for pathway, members in PATHWAYS.items():
            hits = sorted([r for r in rels if _epitope(r.stats.extra["marker"]) in members], key=lambda r: r.stats.q_else_p())
            if len(hits) < 2:
                continue
            verb = "activated" if pred == "higher_in" else "attenuated"
            names = [h.stats.extra["marker"] for h in hits]
            lineage = _LINEAGE_PATHWAY.get(pop) == pathway
            mk = _markers_of(kg, pop)
            ev = [h.id for h in hits[:9]] + [x.id for x in mk[:3]]
            stats_txt = "; ".join(f"{h.stats.extra['marker']} {h.stats.effect:+.2f} arcsinh (q={_fmt(h.stats.q)}, n={h.stats.n} samples)" for h in hits[:6])
            statement = (f"{pathway} is {verb} in {pop} under {contrast}: {', '.join(names[:6])} "
                         f"{'rise' if pred == 'higher_in' else 'fall'} together in these cells.")
            rationale = (f"Differential state (sample medians, limma, paired by donor where available): {stats_txt}. "
                         f"{len(hits)} phospho-epitopes of {pathway} move in the same direction within {pop}"
                         + (f", defined by {', '.join(x.subject.label for x in mk)}" if mk else "")
                         + (". This is the receptor pathway of this lineage, so the change is expected if the stimulus engages it."
                            if lineage else "."))
            test = (f"Pre-treat the cells with {_INHIBITORS.get(pathway, 'a pathway inhibitor')} before {contrast.split(': ')[-1].split(' vs ')[0]} "
                    f"stimulation and measure {', '.join(names[:4])} in gated {pop} by phospho-flow/CyTOF; the rise should be "
                    f"abolished. Replicate in held-out donors.")
            entities = [f"cell_population:{pop}", rels[0].object.id] + [f"marker:{n}" for n in names[:6]]
            score = min(h.stats.q_else_p() for h in hits) / (len(hits) * (2 if lineage else 1))
            drafts.append((score, HypothesisDraft(statement=statement[:500], rationale=rationale[:1200], evidence=ev[:12],
                                                  entities=entities[:20], test=test[:600])))

    # 2. cell-type specificity: significant in one population, not in the others tested
    for r in sorted(ds, key=lambda r: r.stats.q_else_p()):
        pop, marker = r.stats.extra["population"], r.stats.extra["marker"]
        if pop.startswith("unassigned"):
            continue
        others = {k: v for k, v in (r.stats.extra.get("other_populations") or {}).items() if not str(k).startswith("unassigned")}
        if len(others) < 2:
            continue
        flat = {k: v for k, v in others.items() if (v.get("q") is None or v["q"] >= 0.1 or v["q"] != v["q"])}
        same = [k for k, v in others.items() if k not in flat and (v.get("logFC") or 0) * (r.stats.effect or 0) > 0]
        if same or len(flat) < len(others) * 0.75:
            continue
        up = r.predicate == "higher_in"
        mk = _markers_of(kg, pop)
        changes = {k: _change(k, v) for k, v in sorted(flat.items())}
        still = [k for k, c in changes.items() if c is not None and negligible(c, r.stats.effect or 0.0)]
        unseen = [k for k in changes if k not in still]
        change = f"The {'increase' if up else 'decrease'} of {marker} under {r.object.label}"
        if not unseen:
            statement = f"{change} is specific to {pop}: it does not change in {', '.join(still[:5])}."
        else:
            statement = (f"{change} was detected only in {pop}: it was not detected in {', '.join(unseen[:5])} "
                         f"({_units(r)}), which does not exclude a smaller change there"
                         + (f"; it does not change in {', '.join(still[:5])}." if still else "."))
        rationale = (f"{marker} in {pop}: {r.stats.effect:+.2f} arcsinh, q={_fmt(r.stats.q)} over {r.stats.n} samples; "
                     "in the other populations: "
                     + "; ".join(f"{k} {c.text('arcsinh')}" if c else f"{k} {flat[k]['logFC']:+.2f} (q={_fmt(flat[k]['q'])})"
                                 for k, c in list(changes.items())[:6])
                     + f". 'Does not change' needs a 95% interval that holds zero and lies within "
                       f"+/-{abs(r.stats.effect or 0.0) / 2:.2f} (half the {pop} effect). A cell-type restricted response points to a receptor or adaptor "
                       "expressed only in that lineage"
                     + (f" (marked by {', '.join(x.subject.label for x in mk)})." if mk else "."))
        test = (f"Sort {pop} and the other populations, stimulate each separately and measure {marker}; "
                f"only {pop} should respond. Check the receptor's expression across populations.")
        drafts.append((r.stats.q_else_p() * 2, HypothesisDraft(statement=statement[:500], rationale=rationale[:1200],
                                                   evidence=[r.id] + [x.id for x in mk[:3]],
                                                   entities=[r.subject.id, f"cell_population:{pop}", f"marker:{marker}", r.object.id],
                                                   test=test[:600])))

    # 3. abundance shifts of named populations
    for r in sorted(_da_relations(kg), key=lambda r: r.stats.q_else_p()):
        pop = r.subject.label
        if pop.startswith("unassigned"):
            continue
        up = r.predicate == "higher_in"
        mk = _markers_of(kg, pop)
        ex = r.stats.extra
        parent = _within_parent(pop, up, r, tables)
        closure = _closure(pop, up, r, tables)
        clauses = [c for c in (parent and parent[0], closure and closure[0]) if c]
        statement = (f"{pop} make up a {'larger' if up else 'smaller'} fraction of cells in {_case_words(r.object.label)} "
                     f"({r.object.label.partition(': ')[0]})" + (f", {'; '.join(clauses)}." if clauses else "."))
        rationale = (f"Negative binomial GLM on per-sample counts: log2FC {r.stats.effect:+.2f}, q={_fmt(r.stats.q)}, "
                     f"n={r.stats.n} samples{' (paired by donor)' if ex.get('paired') else ''}; mean fraction "
                     f"{ex.get('prop_control', float('nan')):.3f} -> {ex.get('prop_case', float('nan')):.3f}"
                     + (f"; population defined by {', '.join(x.subject.label for x in mk)}" if mk else "")
                     + (f"; {parent[1]}" if parent else "") + (f"; {closure[1]}" if closure else "")
                     + ". A composition shift between conditions of the same donors' cells is not proliferation or death: "
                       "changed marker expression can move cells between clusters.")
        test = (f"Count {pop} by a fixed manual gate on {', '.join(x.subject.label for x in mk) or 'its lineage markers'} in new samples "
                f"of both conditions (or held-out donors) and compare fractions with a paired test.")
        drafts.append((r.stats.q_else_p() * 3, HypothesisDraft(statement=statement[:500], rationale=rationale[:1200],
                                                   evidence=[r.id] + [x.id for x in mk[:3]],
                                                   entities=[r.subject.id, r.object.id] + [x.subject.id for x in mk[:3]],
                                                   test=test[:600])))

    # 4. a marker that moves the same way in every population is one global shift, stated once
    shifted: set[tuple[str, str]] = set()
    for r in sorted(ds, key=lambda r: r.stats.q_else_p()):
        key = (r.stats.extra["marker"], r.object.id)
        if key in shifted or not _is_global(r):
            continue
        shifted.add(key)
        marker, up = r.stats.extra["marker"], r.predicate == "higher_in"
        pops = {r.stats.extra["population"]: {"logFC": r.stats.effect, "q": r.stats.q},
                **{k: v for k, v in (r.stats.extra.get("other_populations") or {}).items() if not str(k).startswith("unassigned")}}
        same = [x for x in ds if (x.stats.extra["marker"], x.object.id) == key]
        n_sig, n = _n_significant(r)
        if n_sig == n:
            statement = (f"{marker} is {'higher' if up else 'lower'} in every cell population under {r.object.label}: "
                         "a global shift rather than a response of one cell type.")
        else:
            statement = (f"{marker} is {'higher' if up else 'lower'} in {n_sig} of {n} cell populations under {r.object.label} "
                         f"(q < {_GLOBAL_Q}), with the same direction in all {n}: consistent with a shift shared across "
                         "cell types rather than a response of one cell type.")
        rationale = ("Differential state (sample medians, limma) per population: "
                     + "; ".join(f"{k} {v['logFC']:+.2f} (q={_fmt(v['q'])})" for k, v in sorted(pops.items())) + ".")
        test = (f"Measure {marker} in all gated populations of held-out donors in both conditions; the shift should appear in each, "
                "and a global artefact (staining or acquisition batch) should be excluded with a bead or reference-sample control.")
        drafts.append((r.stats.q_else_p() * 2, HypothesisDraft(statement=statement[:500], rationale=rationale[:1200], evidence=[x.id for x in same][:12],
                                                   entities=[f"marker:{marker}", r.object.id] + [f"cell_population:{k}" for k in sorted(pops)][:10],
                                                   test=test[:600])))

    # 5. single state changes in named populations not used above (strongest few)
    used = {e for _, d in drafts for e in d.evidence}
    singles = [r for r in sorted(ds, key=lambda r: r.stats.q_else_p()) if r.id not in used and not r.stats.extra["population"].startswith("unassigned")
               and (r.stats.extra["marker"], r.object.id) not in shifted]
    for r in singles[:3]:
        pop, marker = r.stats.extra["population"], r.stats.extra["marker"]
        up = r.predicate == "higher_in"
        mk = _markers_of(kg, pop)
        contrast = r.object.label
        statement = f"{marker} is {'increased' if up else 'decreased'} in {pop} under {contrast}."
        rationale = (f"Differential state (sample medians, limma): {marker} in {pop} {r.stats.effect:+.2f} arcsinh, "
                     f"q={_fmt(r.stats.q)}, n={r.stats.n} samples" + (f"; {pop} defined by {', '.join(x.subject.label for x in mk)}" if mk else "") + ".")
        test = (f"Measure {marker} in gated {pop} of held-out donors in both conditions (phospho-flow/CyTOF) and test the paired difference; "
                f"predict the same direction.")
        drafts.append((r.stats.q_else_p() * 5, HypothesisDraft(statement=statement[:500], rationale=rationale[:1200],
                                                   evidence=[r.id] + [x.id for x in mk[:2]],
                                                   entities=[r.subject.id, f"cell_population:{pop}", f"marker:{marker}", r.object.id],
                                                   test=test[:600])))

    drafts.sort(key=lambda t: t[0])
    seen, out = set(), []
    for _, d in drafts:
        if d.statement not in seen:
            seen.add(d.statement)
            out.append(d)
    return out[:max_items]
