"""Check a drafted hypothesis against its cited evidence, whoever wrote it (a model or a pattern).

The offline patterns word each clause with :mod:`proteus.policy.claims`; a model only reads the
rules in its prompt. :func:`check_draft` applies them to the finished sentence before the hypothesis
enters the knowledge graph:

(a) **overclaiming words** in the statement and rationale (:func:`~proteus.policy.claims.reword_overclaims`:
    "drives", "causes", "independent of" without that adjustment, "expansion", "as a unit") are
    reworded to what an association supports, and the change recorded;
(b) **directions**: a direction word ("higher", "increased", "up", "lower", ...) about a cited feature
    must agree with the sign of at least one cited edge of that feature, read in the order the
    clause names the contrast's groups ("higher in B than in A" is "lower in A"); "together" needs
    every named feature to move one way (:func:`~proteus.policy.claims.directions_agree`). A
    contradiction rejects the hypothesis;
(c) **evidence** must be about the statement: a cited edge none of whose features, populations or
    variables the statement or rationale names is dropped; with none left the hypothesis is rejected;
(d) **"no change"** about a feature: rejected when a cited significant edge says it changes in that
    contrast; otherwise kept only when the run's full table shows the change
    :func:`~proteus.policy.claims.negligible` against the cited effect, else reworded to "not shown
    to change" (a non-significant test is absence of evidence);
(e) **a site that only follows its protein** ("rather than in its phosphorylation", "not in
    phosphorylation per molecule") is an absence too: kept only when every cited site's
    site-minus-protein interval (its first cited edge's contrast) lies inside the equivalence bound of
    :func:`~proteus.policy.claims.site_against_protein`, else reworded to "a change in phosphorylation per
    molecule is not excluded".

Every change is one :class:`WordingCheck`; :func:`wording_counts` totals them for ``run.json``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Literal

from proteus.kg import KnowledgeGraph
from proteus.policy.claims import directions_agree, negligible, reword_overclaims, site_verdict
from proteus.policy.decisions import HypothesisDraft
from proteus.policy.result_tables import ResultTables
from proteus.records import Entity, Relation

__all__ = ["WordingCheck", "CheckedDraft", "check_draft", "wording_counts"]

Rule = Literal["overclaim", "direction", "evidence", "no_change"]
Action = Literal["reworded", "dropped", "rejected"]

_DIRECTED = ("higher_in", "lower_in", "enriched_in", "cis_effect_on", "correlates_with")
_UP = (r"higher|increase[sd]?|increasing|elevated|up-?regulated|up-?regulation|raised|rises?|rising|rose|"
       r"greater|larger|gains?|gained|positive(?:ly)?|(?<!make )(?<!makes )(?<!made )\bup")
_DOWN = (r"lower|decrease[sd]?|decreasing|reduced|reduction|down-?regulated|down-?regulation|depleted|"
         r"diminished|falls?|falling|fell|drops?|dropped|smaller|negative(?:ly)?|inverse(?:ly)?|anti-?correlat\w*|\bdown")
_DIRECTION = re.compile(rf"\b(?:(?P<up>{_UP})|(?P<down>{_DOWN}))\b", re.I)
_NEGATED = re.compile(r"\b(?:not|no|never|neither|nor)\s+(?:(?:significantly|consistently|detectably)\s+)?$", re.I)
_TOGETHER = re.compile(r"\btogether\b", re.I)
_NO_CHANGE = {
    r"\bdoes not change\b": "is not shown to change",
    r"\bdo not change\b": "are not shown to change",
    r"\bdid not change\b": "was not shown to change",
    r"\bnot changed\b": "not shown to change",
    r"\bunchanged\b": "not shown to change",
    r"\bno change\b": "no detected change",
    r"\bdoes not differ\b": "is not shown to differ",
    r"\bdo not differ\b": "are not shown to differ",
    r"\bno difference\b": "no detected difference",
}
_NO_CHANGE_RE = re.compile("|".join(_NO_CHANGE), re.I)
_CLAUSE = re.compile(r"[;:.](?:\s|$)|,?\s+(?:while|whereas|but|although|unlike)\s+", re.I)
_CONTRAST = re.compile(r"^(?P<group>.+): (?P<case>.+) vs (?P<control>.+)$")
_MUTATED = ("mutated", "mutant", "mutants", "mutation", "mutations", "carriers")
_WILD_TYPE = ("wild-type", "wild type", "wildtype", "non-mutated", "unmutated")
_UNMATCHABLE = {"yes", "no", "true", "false", "rest", "other", "none"}


@dataclass(frozen=True)
class WordingCheck:
    """One thing the checker changed or found: which rule, what it did, why."""

    rule: Rule
    action: Action
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class CheckedDraft:
    """A draft after the checks: the (possibly reworded, evidence-filtered) ``draft``, what changed,
    and ``rejected`` (why it may not enter the graph; ``None`` when it may)."""

    draft: HypothesisDraft
    checks: list[WordingCheck] = field(default_factory=list)
    rejected: str | None = None


# --- reading entities and edges ----------------------------------------------------------------
def _norm(text: str) -> str:
    return text.replace("_", " ").lower()


def _spans(name: str, text: str) -> list[tuple[int, int]]:
    """Where ``name`` occurs as a whole word in ``text`` (both normalised; short or generic names never match)."""
    name = _norm(name).strip()
    if len(name) < 2 or name in _UNMATCHABLE:
        return []
    return [m.span() for m in re.finditer(rf"(?<![\w-]){re.escape(name)}(?![\w-])", _norm(text))]


def _find(name: str, text: str) -> int:
    """Position of the first whole-word ``name`` in ``text``, -1 when absent."""
    hits = _spans(name, text)
    return hits[0][0] if hits else -1


def _feature(e: Entity) -> tuple[str, str | None]:
    """(feature name, cell population) of an entity; a cytometry state marker is ``marker | population``."""
    name, _, pop = e.label.partition(" | ")
    return name, (pop or None)


def _subject_feature(r: Relation) -> Entity:
    """The entity whose direction the edge states (a mutation's or copy number's cis target is the object)."""
    return r.object if r.predicate == "cis_effect_on" else r.subject


def _sign(r: Relation) -> int | None:
    d = r.stats.direction
    if d in ("up", "positive"):
        return 1
    if d in ("down", "negative"):
        return -1
    if d == "none" or r.stats.effect is None or not math.isfinite(r.stats.effect) or r.stats.effect == 0:
        return None
    if (r.stats.effect_type or "").endswith("ratio"):
        return 1 if r.stats.effect > 1 else -1 if r.stats.effect < 1 else None
    return 1 if r.stats.effect > 0 else -1


def _groups(r: Relation) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """(group column, case names, control names) the edge's sign refers to; ``None`` for a correlation."""
    if r.object.type == "sample_group":
        m = _CONTRAST.match(r.object.label)
        if m:
            return m["group"], (m["case"],), (m["control"],)
    if r.predicate == "cis_effect_on" and r.subject.type == "mutation":
        return "", _MUTATED, _WILD_TYPE
    return None


def _first(names: tuple[str, ...], text: str, group: str = "", feature: str = "") -> int:
    """First position of any of ``names`` in ``text``, ignoring hits inside a mention of the ``group``
    column (as "Case" in a column named "Case_Control") and on a mention of the ``feature`` itself (a
    level named like the feature)."""
    outer = [(span, False) for span in (_spans(group, text) if group else [])]
    outer += [(span, True) for span in (_spans(feature, text) if feature else [])]

    def masked(a: int, b: int) -> bool:
        return any(o0 <= a and b <= o1 and (same or (o0, o1) != (a, b)) for (o0, o1), same in outer)

    hits = [a for n in names for a, b in _spans(n, text) if not masked(a, b)]
    return min(hits) if hits else -1


def _orientation(r: Relation, clause: str, statement: str, feature: str = "") -> int:
    """+1 when the clause compares the edge's case with its control (or names neither), -1 when it
    compares the control with the case: the group named first is the one the direction word is about."""
    g = _groups(r)
    if g is None:
        return 1
    group, case, control = g
    for text in (clause, statement):
        c, k = _first(case, text, group, feature), _first(control, text, group, feature)
        if c >= 0 or k >= 0:
            return 1 if k < 0 or (0 <= c < k) else -1
    return 1


def _clauses(statement: str) -> list[tuple[int, int]]:
    """(start, end) of each clause: split at ``; : .`` and at "while / whereas / but / although / unlike"."""
    spans, pos = [], 0
    for m in _CLAUSE.finditer(statement):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(statement)))
    return [(a, b) for a, b in spans if statement[a:b].strip()]


def _direction_near(clause: str, pos: int) -> tuple[int, int] | None:
    """(sign, position) of the direction word nearest to character ``pos`` of ``clause`` (``None``: none)."""
    best = None
    for m in _DIRECTION.finditer(clause):
        if _NEGATED.search(clause[: m.start()]):
            continue  # "not higher" states no direction
        d = abs(m.start() - pos)
        if best is None or d < best[0]:
            best = (d, 1 if m["up"] else -1, m.start())
    return None if best is None else best[1:]


def _partner_sign(r: Relation, clause: str, word_at: int) -> int:
    """For a correlation, the direction the clause gives the other variable ("X falls as Y rises"
    claims a negative correlation): its nearest direction word when that is not the feature's own."""
    if r.predicate != "correlates_with":
        return 1
    pos = _find(_feature(r.object)[0], clause)
    near = _direction_near(clause, pos) if pos >= 0 else None
    return near[0] if near is not None and near[1] != word_at else 1


def _narrow(rels: list[Relation], clause: str, populations: set[str]) -> list[Relation]:
    """The edges the clause is about: those of a population it names (when it names one) and of a
    contrast whose groups it names (when it names any)."""
    named = {p for p in populations if _find(p, clause) >= 0}
    if named:
        rels = [r for r in rels if _feature(_subject_feature(r))[1] in named] or rels
    about = [r for r in rels if (g := _groups(r)) and g[0] != "" and _first(g[1] + g[2], clause, g[0]) >= 0]
    return about or rels


def _populations(kg: KnowledgeGraph) -> set[str]:
    """Cell populations the run knows: population entities and the population part of state markers."""
    out = set()
    for _, d in kg.g.nodes(data=True):
        if d.get("type") == "cell_population":
            out.add(str(d.get("label")))
        elif d.get("type") == "marker" and " | " in str(d.get("label")):
            out.add(str(d["label"]).partition(" | ")[2])
    return out


def _effect(r: Relation) -> str:
    e = r.stats.effect
    return f"{r.stats.effect_type or 'effect'} {e:+.3g}" if e is not None else f"direction {r.stats.direction}"


def _covariates(rels: list[Relation]) -> set[str]:
    """The covariates the cited edges' models were adjusted for."""
    out: set[str] = set()
    for r in rels:
        c = r.provenance.params.get("covariates") or []
        out.update([c] if isinstance(c, str) else map(str, c))
    return out


# --- the checks -------------------------------------------------------------------------------
def _relevant(r: Relation, text: str) -> bool:
    names = []
    for e in (r.subject, r.object):
        if e.type == "sample_group":
            continue
        names.extend(n for n in _feature(e) if n)
    return any(_find(n, text) >= 0 for n in names)


def _direction_errors(statement: str, by_feature: dict[str, list[Relation]], populations: set[str]) -> list[str]:
    errors = []
    for a, b in _clauses(statement):
        clause = statement[a:b]
        states_change = not _NO_CHANGE_RE.search(clause)
        signs = []
        for name, rels in by_feature.items():
            pos = _find(name, clause)
            if pos < 0:
                continue
            signed = [(r, s) for r in _narrow(rels, clause, populations) if (s := _sign(r)) is not None]
            signs.extend(s for _, s in signed)
            near = _direction_near(clause, pos) if states_change else None
            if near is None or not signed:
                continue
            claimed, word_at = near
            if any(claimed * _orientation(r, clause, statement, name) * _partner_sign(r, clause, word_at) == s for r, s in signed):
                continue
            r = signed[0][0]
            errors.append(f"the statement says {name} is {'higher' if claimed > 0 else 'lower'} in '{clause.strip()[:120]}', "
                          f"but cited edge {r.id} ({r.subject.label} {r.predicate} {r.object.label}, {_effect(r)}) goes the other way")
        if _TOGETHER.search(clause) and signs and not directions_agree(signs):
            errors.append(f"'together' in '{clause.strip()[:120]}', but the cited edges of the features it names move in opposite directions")
    return errors


def _no_change(statement: str, by_feature: dict[str, list[Relation]], entities: dict[str, Entity], cited: list[Relation],
               populations: set[str], tables: ResultTables | None) -> tuple[str, list[WordingCheck], str | None]:
    """Check each "no change" clause about a named feature: rejected when a cited significant edge of
    it (in the population the clause names) changes; reworded unless the full table shows it negligible."""
    checks: list[WordingCheck] = []
    names = list(dict.fromkeys([*by_feature, *(_feature(e)[0] for e in entities.values())]))
    for a, b in reversed(_clauses(statement)):
        clause = statement[a:b]
        if not _NO_CHANGE_RE.search(clause):
            continue
        named = [n for n in names if _find(n, clause) >= 0]
        if not named:
            continue
        clause_pops = {p for p in populations if _find(p, clause) >= 0}
        for name in named:
            for r in _narrow(by_feature.get(name, []), clause, populations):
                pop = _feature(_subject_feature(r))[1]
                if (r.stats.q if r.stats.q is not None else 1.0) < 0.05 and _sign(r) is not None and (not clause_pops or pop in clause_pops):
                    return statement, checks, f"the statement says {name} does not change, but cited edge {r.id} shows {_effect(r)} (q={r.stats.q:.1e})"
        if all(_negligible_in_tables(n, entities, cited, tables) for n in named):
            continue
        new = clause
        for pat, repl in _NO_CHANGE.items():
            new = re.sub(pat, repl, new, flags=re.I)
        checks.append(WordingCheck("no_change", "reworded", f"'no change' of {', '.join(named)} without a 95% interval inside half "
                                   f"the cited effect in the run's tables: '{clause.strip()[:80]}' -> '{new.strip()[:80]}'"))
        statement = statement[:a] + new + statement[b:]
    return statement, checks, None


_SITE_ABSENCE = re.compile(r",?\s*\b(?:rather than|not) (?:in )?(?:its |their )?phosphorylation(?: per molecule)?\b", re.I)


def _site_absence(statement: str, cited: list[Relation], tables: ResultTables | None) -> tuple[str, list[WordingCheck]]:
    """Rule (e): "rather than in its phosphorylation" stays only when every cited site mirrors its protein
    within the equivalence bound (:func:`~proteus.policy.claims.site_verdict`) in the contrast of its first
    cited edge (later edges of the same site are other groupings it is cited from); otherwise it is reworded."""
    if not _SITE_ABSENCE.search(statement):
        return statement, []
    first = {r.subject.label: r for r in reversed(cited) if r.subject.type == "phosphosite"}  # each site's first cited edge states it
    verdicts = [site_verdict(r, tables) for r in first.values()] if tables is not None else []
    if verdicts and all(v is not None and v.kind == "mirrors_protein" for v in verdicts):
        return statement, []
    new = _SITE_ABSENCE.sub("; a change in phosphorylation per molecule is not excluded", statement)
    why = next((v.clause for v in verdicts if v is not None and v.kind != "mirrors_protein"), "no site-minus-protein interval in the run's tables")
    return new, [WordingCheck("no_change", "reworded", f"a site said to follow its protein without an equivalence bound ({why[:200]})")]


def _negligible_in_tables(name: str, entities: dict[str, Entity], cited: list[Relation], tables: ResultTables | None) -> bool:
    if tables is None:
        return False
    for r in cited:
        g = _groups(r)
        if g is None or not g[0] or r.stats.effect is None:
            continue
        group, (case,), (control,) = g
        ents = [e for e in entities.values() if _feature(e)[0] == name]
        modalities = [r2.modality for r2 in cited if r2.modality] + list(tables.kinds)
        change = None
        if any(e.type == "protein" for e in ents):
            change = tables.protein_change(group, case, control, name)
        for m in dict.fromkeys(modalities):
            if change is not None:
                break
            change = tables.change(m, group, case, control, name)
        if change is not None and negligible(change, r.stats.effect):
            return True
    return False


def check_draft(draft: HypothesisDraft, kg: KnowledgeGraph, tables: ResultTables | None = None) -> CheckedDraft:
    """Apply the wording rules (a)-(e) of this module to ``draft`` against ``kg`` (and the run's full
    result ``tables`` for "no change"). Returns the reworded draft, what changed, and why it is
    rejected (``None`` when it may enter the graph)."""
    checks: list[WordingCheck] = []
    cited = [r for e in draft.evidence if (r := kg.relation(e)) is not None]
    missing = [e for e in draft.evidence if kg.relation(e) is None]
    if missing:
        checks.append(WordingCheck("evidence", "dropped", f"cited ids absent from the knowledge graph: {', '.join(missing[:5])}"))
    statement, changes = reword_overclaims(draft.statement, adjusted_for=_covariates(cited))
    rationale, why = reword_overclaims(draft.rationale, adjusted_for=_covariates(cited))
    checks.extend(WordingCheck("overclaim", "reworded", c) for c in changes + [f"rationale: {c}" for c in why])
    text = statement + " " + rationale
    relevant = [r for r in cited if _relevant(r, text)]
    off = [r.id for r in cited if r not in relevant]
    if off:
        checks.append(WordingCheck("evidence", "dropped", f"cited edges about nothing the hypothesis names: {', '.join(off[:5])}"))
    out = draft.model_copy(update={"statement": statement, "rationale": rationale, "evidence": [r.id for r in relevant]})
    if not relevant:
        return CheckedDraft(out, checks, "no cited evidence edge exists in the knowledge graph and is about what the statement names")
    by_feature: dict[str, list[Relation]] = {}
    for r in relevant:
        # a mutation's own edge to a group states how often it occurs there, not a direction of the gene's product
        if r.predicate in _DIRECTED and _subject_feature(r).type not in ("sample_group", "clinical_variable", "mutation"):
            by_feature.setdefault(_feature(_subject_feature(r))[0], []).append(r)
    populations = _populations(kg)
    entities = {r.subject.id: r.subject for r in relevant} | {r.object.id: r.object for r in relevant}
    for eid in draft.entities:
        typ, _, label = eid.partition(":")
        try:
            entities.setdefault(eid, Entity.of(typ, label))
        except ValueError:
            continue
    entities = {k: e for k, e in entities.items() if e.type not in ("sample_group", "clinical_variable", "pathway")}
    errors = _direction_errors(statement, by_feature, populations)
    if errors:
        checks.append(WordingCheck("direction", "rejected", "; ".join(errors)))
        return CheckedDraft(out, checks, "; ".join(errors))
    statement, nc_checks, reason = _no_change(statement, by_feature, entities, relevant, populations, tables)
    checks.extend(nc_checks)
    if reason is None:
        statement, site_checks = _site_absence(statement, relevant, tables)
        checks.extend(site_checks)
    if reason:
        checks.append(WordingCheck("no_change", "rejected", reason))
        return CheckedDraft(out, checks, reason)
    return CheckedDraft(out.model_copy(update={"statement": statement}), checks)


def wording_counts(hypotheses: list[dict], rejected: list[dict]) -> dict[str, object]:
    """``run.json`` totals: hypotheses checked, kept with a rewording or dropped evidence, rejected, and per rule."""
    by_rule: dict[str, int] = {}
    for h in hypotheses:
        for c in h.get("wording_checks") or []:
            key = f"{c['rule']}_{c['action']}"
            by_rule[key] = by_rule.get(key, 0) + 1
    for r in rejected:
        key = f"{r.get('rule', 'evidence')}_rejected"
        by_rule[key] = by_rule.get(key, 0) + 1
    return {
        "checked": len(hypotheses) + len(rejected),
        "changed": sum(bool(h.get("wording_checks")) for h in hypotheses),
        "rejected": len(rejected),
        "by_rule": dict(sorted(by_rule.items())),
    }
