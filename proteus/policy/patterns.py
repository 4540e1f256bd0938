"""Hypotheses composed from knowledge-graph patterns (the offline policy's scientific reasoning).

Each pattern looks for a configuration of relations that, together, say more than any one of
them, and writes a falsifiable statement with the edge ids as evidence:

- multi-layer change: a protein changes in a contrast and so does its mRNA (or phosphosite)
- pathway program: a pathway is enriched in a contrast, carried by several changed members
- phospho-specific regulation: a site changes while its protein does not
- mutation cis effect (+ trans consequences of the same mutation)
- copy-number buffering or transmission to the protein
- clinical correlates and outcome associations backed by a second relation
- interaction modules among changed proteins
"""

from __future__ import annotations

from collections import defaultdict

from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import HypothesisDraft
from proteus.records import Relation

__all__ = ["compose_hypotheses"]


def _rank(r: Relation) -> tuple:
    """Sort key: strongest first, ties broken by label and id so the order never depends on hashing."""
    return (r.stats.q_else_p(), r.subject.label, r.id)


def _fmt(r: Relation) -> str:
    parts = []
    if r.stats.effect is not None:
        parts.append(f"{r.stats.effect_type or 'effect'} {r.stats.effect:+.2f}")
    if r.stats.q is not None:
        parts.append(f"q={r.stats.q:.1e}")
    if r.stats.n is not None:
        parts.append(f"n={r.stats.n}")
    return ", ".join(parts)


def _gene(r: Relation) -> str:
    return str(r.stats.extra.get("gene") or r.subject.label.split("-")[0])


def _direction_word(r: Relation) -> str:
    return "higher" if r.predicate == "higher_in" else "lower"


def _contrast_words(label: str) -> tuple[str, str, str]:
    group, _, rest = label.partition(": ")
    case, _, control = rest.partition(" vs ")
    return group, case, control


def _changes(kg: KnowledgeGraph) -> dict[tuple[str, str], list[Relation]]:
    """higher_in/lower_in relations keyed by (contrast label, subject type)."""
    out: dict[tuple[str, str], list[Relation]] = defaultdict(list)
    for r in kg.relations.values():
        if r.predicate in ("higher_in", "lower_in") and r.object.type == "sample_group":
            out[(r.object.label, r.subject.type)].append(r)
    return out


def _multi_layer(kg: KnowledgeGraph, changes, pathway_genes) -> list[HypothesisDraft]:
    out = []
    for (contrast, stype), prots in changes.items():
        if stype != "protein":
            continue
        rna = {r.subject.label: r for r in changes.get((contrast, "gene"), [])}
        group, case, control = _contrast_words(contrast)
        hits = [(p, rna[p.subject.label]) for p in prots if p.subject.label in rna and p.predicate == rna[p.subject.label].predicate]
        for p, g in sorted(hits, key=lambda t: _rank(t[0]))[:6]:
            gene = p.subject.label
            evidence = [p.id, g.id]
            pw = next(((pr, pname) for pname, (pr, genes) in pathway_genes.get((contrast, p.predicate), {}).items() if gene in genes), None)
            extra = ""
            if pw:
                evidence.append(pw[0].id)
                extra = f" As a member of the enriched pathway '{pw[1]}', {gene} may contribute to its {'activation' if p.predicate == 'higher_in' else 'suppression'}."
            out.append(
                HypothesisDraft(
                    statement=f"{gene} is transcriptionally {'up' if p.predicate == 'higher_in' else 'down'}regulated in {case} relative to {control} ({group}), and the change propagates to the protein level.",
                    rationale=f"Protein {gene} is {_direction_word(p)} in {case} ({_fmt(p)}) and so is its mRNA ({_fmt(g)}): two independent layers agree.{extra}",
                    evidence=evidence,
                    entities=[p.subject.id, g.subject.id, p.object.id] + ([pw[0].subject.id] if pw else []),
                    test=f"Measure {gene} mRNA (RT-qPCR) and protein (targeted MS or immunoblot) in an independent {case} vs {control} cohort; predict a {'positive' if p.predicate == 'higher_in' else 'negative'} log2 fold change at both levels.",
                )
            )
    return out


def _pathway_genes(kg: KnowledgeGraph) -> dict[tuple[str, str], dict[str, tuple[Relation, set[str]]]]:
    """Enriched pathways keyed by (contrast label, change predicate) -> name -> (relation, member genes)."""
    out: dict[tuple[str, str], dict[str, tuple[Relation, set[str]]]] = defaultdict(dict)
    for r in kg.by_predicate("enriched_in"):
        pred = "higher_in" if r.stats.direction in ("up", "positive") else "lower_in"
        genes = set(map(str, r.stats.extra.get("genes", []) or []))
        name = r.subject.label
        cur = out[(r.object.label, pred)].get(name)
        if cur is None or r.stats.q_else_p() < cur[0].stats.q_else_p():
            out[(r.object.label, pred)][name] = (r, genes)
    return out


def _pathway_programs(kg: KnowledgeGraph, changes, pathway_genes) -> list[HypothesisDraft]:
    out = []
    for (contrast, pred), pws in pathway_genes.items():
        group, case, control = _contrast_words(contrast)
        members = {r.subject.label: r for r in changes.get((contrast, "protein"), []) + changes.get((contrast, "gene"), []) if r.predicate == pred}
        ranked = sorted(pws.items(), key=lambda kv: _rank(kv[1][0]))
        for name, (pr, genes) in ranked[:4]:
            drivers = sorted((members[g] for g in genes if g in members), key=_rank)[:4]
            if len(drivers) < 2:
                continue
            dnames = ", ".join(d.subject.label for d in drivers)
            word = "activated" if pred == "higher_in" else "suppressed"
            out.append(
                HypothesisDraft(
                    statement=f"The '{name}' program is {word} in {case} relative to {control} ({group}), driven by {dnames}.",
                    rationale=f"'{name}' is enriched among features {'higher' if pred == 'higher_in' else 'lower'} in {case} ({_fmt(pr)}); its changed members include {dnames} ({'; '.join(_fmt(d) for d in drivers[:2])}).",
                    evidence=[pr.id] + [d.id for d in drivers],
                    entities=[pr.subject.id, pr.object.id] + [d.subject.id for d in drivers],
                    test=f"Score '{name}' activity (e.g. single-sample GSEA of its members) in held-out {case} and {control} samples and test the difference; perturb {drivers[0].subject.label} in a {case} model and measure the pathway's readouts.",
                )
            )
    return out


def _phospho_specific(kg: KnowledgeGraph, changes) -> list[HypothesisDraft]:
    out = []
    for (contrast, stype), sites in changes.items():
        if stype != "phosphosite":
            continue
        prot = {r.subject.label: r for r in changes.get((contrast, "protein"), [])}
        group, case, control = _contrast_words(contrast)
        for s in sorted(sites, key=_rank)[:20]:
            gene = _gene(s)
            if gene in prot:
                continue
            out.append(
                HypothesisDraft(
                    statement=f"Phosphorylation of {s.subject.label} is {'increased' if s.predicate == 'higher_in' else 'decreased'} in {case} relative to {control} without a matching change in {gene} protein abundance, pointing to altered upstream kinase/phosphatase activity.",
                    rationale=f"Site {s.subject.label} is {_direction_word(s)} in {case} ({_fmt(s)}), while {gene} protein is not among the significantly changed proteins of the same contrast.",
                    evidence=[s.id],
                    entities=[s.subject.id, f"protein:{gene}", s.object.id],
                    test=f"Immunoblot with a {s.subject.label}-specific antibody normalised to total {gene} in {case} vs {control}; a kinase-inhibitor screen should identify the kinase that abolishes the difference.",
                )
            )
            if len(out) >= 4:
                return out
    return out


def _mutations(kg: KnowledgeGraph, changes) -> list[HypothesisDraft]:
    out = []
    for r in sorted((r for r in kg.by_predicate("cis_effect_on") if r.subject.type == "mutation"), key=_rank)[:5]:
        gene = r.subject.label
        trans = []
        for (contrast, stype), rels in changes.items():
            if contrast.startswith(f"{gene} mutation"):
                trans.extend(rels)
        trans = sorted(trans, key=_rank)[:3]
        down = (r.stats.effect or 0) < 0
        tail = ""
        if trans:
            tail = " Its loss is accompanied by " + ", ".join(f"{t.subject.label} {_direction_word(t)}" for t in trans) + " in mutated tumours."
        out.append(
            HypothesisDraft(
                statement=f"Somatic {gene} mutations {'reduce' if down else 'increase'} {gene} protein abundance{' (loss of function)' if down else ''}, with downstream consequences for the proteome.",
                rationale=f"{gene} protein is {'lower' if down else 'higher'} in {gene}-mutated samples ({_fmt(r)}).{tail}",
                evidence=[r.id] + [t.id for t in trans],
                entities=[r.subject.id, r.object.id] + [t.subject.id for t in trans],
                test=f"Compare {gene} protein by IHC in mutated vs wild-type tumours of an independent cohort; restore wild-type {gene} in a mutant cell line and measure {', '.join(t.subject.label for t in trans) or 'the proteome'}.",
            )
        )
    return out


def _cna(kg: KnowledgeGraph) -> list[HypothesisDraft]:
    rels = [r for r in kg.by_predicate("cis_effect_on") if r.subject.type == "gene"]
    by_gene: dict[str, dict[str, Relation]] = defaultdict(dict)
    for r in rels:
        by_gene[r.subject.label][r.object.type] = r
    out = []
    for gene, d in sorted(by_gene.items(), key=lambda kv: (min(r.stats.q_else_p() for r in kv[1].values()), kv[0])):
        if "protein" in d and "gene" in d:
            p, g = d["protein"], d["gene"]
            out.append(
                HypothesisDraft(
                    statement=f"Copy-number changes of {gene} are transmitted to its protein, making {gene} a dosage-sensitive candidate driver.",
                    rationale=f"{gene} copy number correlates with its mRNA ({_fmt(g)}) and with its protein ({_fmt(p)}), escaping the buffering seen for most genes.",
                    evidence=[g.id, p.id],
                    entities=[f"gene:{gene}", f"protein:{gene}"],
                    test=f"Test {gene} dependency in cell lines with and without {gene} amplification (CRISPR knockout or knockdown); amplified lines should be more sensitive.",
                )
            )
        if len(out) >= 3:
            break
    return out


def _correlates(kg: KnowledgeGraph, pathway_genes) -> list[HypothesisDraft]:
    out = []
    corr = [r for r in kg.by_predicate("correlates_with") if r.object.type == "clinical_variable"]
    by_var: dict[str, list[Relation]] = defaultdict(list)
    for r in corr:
        by_var[r.object.label].append(r)
    for var, rels in by_var.items():
        top = sorted(rels, key=_rank)[:3]
        if not top:
            continue
        names = ", ".join(t.subject.label for t in top)
        sign = {t.stats.direction for t in top}
        out.append(
            HypothesisDraft(
                statement=f"{names} {'rise' if sign == {'positive'} else 'change'} with {var}, marking a biological process that tracks {var} across samples.",
                rationale="; ".join(f"{t.subject.label}: rho {t.stats.effect:+.2f}, q={t.stats.q_else_p():.1e}" for t in top if t.stats.effect is not None),
                evidence=[t.id for t in top],
                entities=[t.subject.id for t in top] + [f"clinical_variable:{var}"],
                test=f"Measure {names} in an independent cohort with {var} recorded and test the correlation (Spearman, pre-registered direction).",
            )
        )
    return out[:3]


def _survival(kg: KnowledgeGraph) -> list[HypothesisDraft]:
    """Outcome associations: a feature (Cox per feature, or a high/low split) or a clinical grouping
    (Kaplan-Meier strata), with the feature's other relations as support."""
    out = []
    for r in sorted(kg.by_predicate("associated_with_survival"), key=_rank)[:3]:
        hr = r.stats.effect
        worse = hr is None or hr > 1
        support = [x for x in kg.about(r.subject.id) if x.id != r.id and x.predicate != "associated_with_survival"][:2]
        etype = r.stats.effect_type or ""
        also = (" Also: " + "; ".join(f"{s.subject.label} {s.predicate} {s.object.label}" for s in support)) if support else ""
        method = "Log-rank test" if r.stats.extra.get("test") == "log-rank" else "Cox model"
        if r.subject.type == "clinical_variable" and etype.startswith("hazard_ratio_") and "_vs_" in etype:
            case, control = etype[len("hazard_ratio_"):].split("_vs_", 1)
            subject = f"{r.subject.label} = {case} (vs {control})"
            statement = (f"Patients with {subject} have {'worse' if worse else 'better'} outcome ({r.object.label}); "
                         f"the molecular differences between these groups are candidate mediators.")
            test = (f"Validate the outcome difference by {r.subject.label} in an independent cohort (Cox model with stage and age), "
                    f"and test whether the features that separate {case} from {control} carry the prognostic signal.")
        elif r.subject.type == "clinical_variable":
            statement = f"{r.subject.label} is associated with outcome ({r.object.label})."
            test = f"Validate the association of {r.subject.label} with {r.object.label} in an independent cohort (log-rank / Cox)."
        else:
            statement = (f"High {r.subject.label} is associated with {'worse' if worse else 'better'} outcome ({r.object.label}), "
                         "independent of the cohort's other differences.")
            test = f"Validate {r.subject.label} as a prognostic marker in an independent cohort (Cox model with stage and age as covariates)."
        out.append(
            HypothesisDraft(
                statement=statement,
                rationale=f"{method}: {_fmt(r)}." + also,
                evidence=[r.id] + [s.id for s in support],
                entities=[r.subject.id, r.object.id],
                test=test,
            )
        )
    return out


def _modules(kg: KnowledgeGraph) -> list[HypothesisDraft]:
    inter = kg.by_predicate("interacts_with")
    if len(inter) < 2:
        return []
    deg: dict[str, list[Relation]] = defaultdict(list)
    for r in inter:
        deg[r.subject.label].append(r)
        deg[r.object.label].append(r)
    hub, rels = max(sorted(deg.items()), key=lambda kv: len(kv[1]))
    if len(rels) < 2:
        return []
    partners = sorted({r.object.label if r.subject.label == hub else r.subject.label for r in rels})[:6]
    return [
        HypothesisDraft(
            statement=f"{hub} is the hub of an interacting protein module ({', '.join(partners)}) that changes as a unit.",
            rationale=f"{hub} interacts (BioPlex) with {len(rels)} other changed proteins: {', '.join(partners)}.",
            evidence=[r.id for r in rels[:8]],
            entities=[f"protein:{hub}"] + [f"protein:{p}" for p in partners],
            test=f"Co-immunoprecipitate {hub} in the relevant condition and quantify {', '.join(partners[:3])}; knock down {hub} and test whether the partners' abundance follows.",
        )
    ]


def _clusters(kg: KnowledgeGraph) -> list[HypothesisDraft]:
    out = []
    for r in sorted((r for r in kg.by_predicate("associated_with") if r.subject.type == "sample_group"), key=_rank)[:2]:
        # cluster markers point at the cluster itself or at its one-vs-rest groups ("<grouping>: Ck vs rest")
        markers = [m for m in kg.relations.values() if m.predicate in ("higher_in", "marker_of")
                   and (m.object.id == r.subject.id or (m.object.type == r.subject.type and m.object.label.startswith(r.subject.label + ": ")))]
        markers = sorted(markers, key=_rank)[:3]
        out.append(
            HypothesisDraft(
                statement=f"The data-driven subtype {r.subject.label} corresponds to {r.object.label}, defined by {', '.join(m.subject.label for m in markers) or 'its marker features'}.",
                rationale=f"Cluster membership is associated with {r.object.label} ({_fmt(r)})" + (f"; markers: {'; '.join(m.subject.label + ' ' + _fmt(m) for m in markers)}" if markers else "."),
                evidence=[r.id] + [m.id for m in markers],
                entities=[r.subject.id, r.object.id] + [m.subject.id for m in markers],
                test="Assign held-out samples to the subtypes with a nearest-centroid classifier on the markers and test the association with the clinical variable again.",
            )
        )
    return out


_UNSUPERVISED = {"consensus_clustering"}
"""Tools whose groups are defined from the same features they then test: their markers are descriptive
(circular as a contrast), so they feed subtype hypotheses only with a clinical association."""
_CELL_TYPES = {"cell_population", "marker"}
"""Subjects of cell-level relations: :mod:`proteus.policy.cytometry` composes those."""


def _single_changes(kg: KnowledgeGraph, changes, already: set[str]) -> list[HypothesisDraft]:
    """Strong single-layer changes not yet used, so every contrast gets at least one hypothesis."""
    out = []
    for (contrast, stype), rels in sorted(changes.items()):
        if stype in _CELL_TYPES:
            continue
        group, case, control = _contrast_words(contrast)
        rels = [r for r in rels if r.provenance.tool not in _UNSUPERVISED]
        for r in sorted(rels, key=_rank)[:3]:
            if r.id in already:
                continue
            out.append(
                HypothesisDraft(
                    statement=f"{r.subject.label} ({r.subject.type}) is {_direction_word(r)} in {case} than in {control} ({group}).",
                    rationale=f"{r.modality or stype}: {_fmt(r)}.",
                    evidence=[r.id],
                    entities=[r.subject.id, r.object.id],
                    test=f"Quantify {r.subject.label} in independent {case} and {control} samples (targeted assay); predict the same direction.",
                )
            )
    return out


def _populations(kg: KnowledgeGraph, max_items: int = 3) -> list[HypothesisDraft]:
    """Cell populations and their defining markers, for descriptive cell-level studies (no contrasts).

    Only populations with at least two significant ``marker_of`` relations; skipped when the graph
    already holds condition effects on cells (those hypotheses say more).
    """
    if any(r.subject.type in _CELL_TYPES for r in kg.relations.values() if r.predicate in ("higher_in", "lower_in")):
        return []
    by_pop: dict[str, list[Relation]] = defaultdict(list)
    for r in kg.by_predicate("marker_of"):
        if r.object.type == "cell_population" and r.stats.q_else_p() < 0.05 and (r.stats.effect is None or r.stats.effect > 0):
            by_pop[r.object.label].append(r)
    ranked = sorted(((p, sorted(rs, key=lambda r: (r.stats.q_else_p(), -(r.stats.effect or 0), r.id))) for p, rs in by_pop.items() if len(rs) >= 2),
                    key=lambda t: (t[0].startswith("unassigned"), t[1][1].stats.q_else_p(), t[0]))
    out = []
    for pop, rels in ranked[:max_items]:
        top = rels[:4]
        names = ", ".join(r.subject.label for r in top)
        kind = top[0].subject.type
        unnamed = pop.startswith("unassigned")
        statement = (f"The cluster '{pop}' is a distinct cell population not matched by canonical markers, defined by high {names}."
                     if unnamed else f"{pop} in this sample are defined by high {names}, which together discriminate them from all other populations.")
        out.append(
            HypothesisDraft(
                statement=statement,
                rationale=f"{kind} markers of {pop} against all other cells: " + "; ".join(f"{r.subject.label} {_fmt(r)}" for r in top[:3]) + ".",
                evidence=[r.id for r in top],
                entities=[f"cell_population:{pop}"] + [r.subject.id for r in top],
                test=(f"Stain or sort cells on {names} (flow cytometry, or RNA FISH for genes) in an independent sample; "
                      f"the {names.split(', ')[0]}-high cells should co-express the others and match {pop} in frequency."),
            )
        )
    return out


def compose_hypotheses(kg: KnowledgeGraph, *, limit: int = 30) -> list[HypothesisDraft]:
    """Pattern-based hypotheses, taken round-robin over pattern families so that every kind of
    finding is represented, most composite families first; de-duplicated by evidence set."""
    changes = _changes(kg)
    pathway_genes = _pathway_genes(kg)
    families = [
        _multi_layer(kg, changes, pathway_genes),
        _pathway_programs(kg, changes, pathway_genes),
        _mutations(kg, changes),
        _cna(kg),
        _phospho_specific(kg, changes),
        _modules(kg),
        _correlates(kg, pathway_genes),
        _survival(kg),
        _clusters(kg),
        _populations(kg),
    ]
    used = {e for fam in families for d in fam for e in d.evidence}
    families.append(_single_changes(kg, changes, used))
    seen: set[frozenset] = set()
    out: list[HypothesisDraft] = []
    depth = max((len(f) for f in families), default=0)
    for i in range(depth):
        for fam in families:
            if i < len(fam) and len(out) < limit:
                key = frozenset(fam[i].evidence)
                if key not in seen:
                    seen.add(key)
                    out.append(fam[i])
    return out
