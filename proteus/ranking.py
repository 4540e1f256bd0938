"""The order hypotheses are reported in: the strength of the evidence each one rests on.

:func:`rank_hypotheses` is the one ranking. The graph's ``validate`` node calls it after in-run validation
(:mod:`proteus.validation`), so ``hypotheses.jsonl`` and the report follow it; each hypothesis carries its
``rank`` (position and a short reason). Two kinds of validated claim are true and still say little: a marker of
a tissue-composition score found to track that score restates the score, and a tumour-vs-normal (tissue-type)
difference with no composition term in its model may only reflect the tissues' cell make-up. Both are ranked
below the claims of the same validation status that they would otherwise crowd out. Rules read the run's own
records (validation block, design checks, knowledge-graph edges), never a dataset's names.
"""

from __future__ import annotations

from typing import Any

from proteus.design import is_composition_score
from proteus.kg import KnowledgeGraph

__all__ = ["rank_hypotheses", "verdict_words", "composition_confounded"]

_STATUS = {"validated": 0, "inconclusive": 1, "untestable": 2, "failed": 3}
_FEATURES = {"protein", "gene", "phosphosite", "acetylsite", "mirna", "feature", "marker"}
_COMPOSITION_SAID = "tissue composition"  # the start of a composition refit's reason (proteus.confounding.composition_refits)


def verdict_words(v: dict[str, Any]) -> str:
    """A validation block's verdict as said in the ranking and the report: ``"inconclusive (not specific)"``, ``"failed
    (no stronger than chance)"``, the grounds shown where one status covers several (:func:`proteus.validation._key_verdict`)."""
    status = v.get("status") or "untestable"
    return status + (f" ({v['grounds']})" if status in ("inconclusive", "failed") and v.get("grounds") else "")


def _contrasts(h: dict[str, Any]) -> list[dict[str, Any]]:
    """The design-check records of the sample-table and mutation contrasts a hypothesis compares."""
    return [r for r in h.get("design_checks") or [] if not r.get("kind") and r.get("contrast") != "clinical variables of the association"]


def _composition_adjusted(record: dict[str, Any]) -> bool:
    """Whether a contrast's claim has a composition score in its model (a covariate of the test, or a refit it holds in)."""
    return (any(c.get("decision") == "adjusted" and is_composition_score(str(c.get("column", ""))) for c in record.get("checks") or [])
            or any(str(c.get("reason", "")).startswith(_COMPOSITION_SAID) and "held" in str(c.get("reason"))
                   for c in record.get("refitted") or []))


def _composition_gone(h: dict[str, Any]) -> str | None:
    """The composition score whose refit removes the difference, if any."""
    return next((str(c["column"]) for r in _contrasts(h) for c in r.get("refitted") or []
                 if str(c.get("reason", "")).startswith(_COMPOSITION_SAID) and "gone" in str(c.get("reason"))), None)


def composition_confounded(design_checks: list[dict[str, Any]], sample_type: str | None) -> str | None:
    """Why a claim may show the groups' cell-type make-up rather than regulation within a cell type, from its
    confounder records (:func:`proteus.confounding.hypothesis_checks`); ``None`` when it need not.

    The one reading of a composition-confounded claim: the difference is gone once a composition score is added
    to its model; or every contrast it compares is the ``sample_type`` (tissue) grouping, whose levels differ in
    cell make-up by construction, with no composition score in the model (no such covariate, no composition refit
    it holds in; scores estimated for one tissue only are :func:`~proteus.confounding.composition_refits`'
    "unadjusted for tissue composition"). The ranking ranks such claims down; the statement says the observation
    without a mechanism within cells, and a run states only a few of them (``graphs.nodes.propose_hypotheses``)."""
    h = {"design_checks": design_checks}
    if gone := _composition_gone(h):
        return f"the difference is gone adjusted for {gone}: composition-driven"
    records = _contrasts(h)
    if sample_type and records and all(r["contrast"].partition(": ")[0] == sample_type and not _composition_adjusted(r) for r in records):
        return f"a {sample_type} (tissue) contrast without a composition score in the model"
    return None


def _composition_markers(kg: KnowledgeGraph) -> dict[str, set[str]]:
    """Feature entity id -> the composition scores it tracks in this run (its ``correlates_with`` edges)."""
    out: dict[str, set[str]] = {}
    for r in kg.by_predicate("correlates_with"):
        if r.subject.type in _FEATURES and r.object.type == "clinical_variable" and is_composition_score(r.object.label):
            out.setdefault(r.subject.id, set()).add(r.object.label)
    return out


def _marked_score(h: dict[str, Any], kg: KnowledgeGraph, markers: dict[str, set[str]]) -> str | None:
    """The composition score every feature the claim names tracks (``markers``, :func:`_composition_markers`): the
    features are that score's markers, so the claim restates it."""
    features = {r.subject.id for e in h.get("evidence", []) if (r := kg.relation(e)) is not None and r.subject.type in _FEATURES}
    shared = set.intersection(*(markers.get(f, set()) for f in features)) if features else set()
    return min(shared) if shared else None


def _points(h: dict[str, Any], kg: KnowledgeGraph) -> tuple[int, list[str]]:
    """Evidence points beyond replication, and what earned them."""
    v = h.get("validation") or {}
    rels = [r for e in h.get("evidence", []) if (r := kg.relation(e)) is not None]
    said, points = [], 0
    if v.get("cross_omics") is True:
        points, said = points + 1, said + ["a second omics layer agrees"]
    if any(r.predicate == "cis_effect_on" or r.provenance.tool == "mutation_group_enrichment" for r in rels):
        points, said = points + 1, said + ["a genetic cause measured in the run"]
    records = _contrasts(h)
    lost = [c["column"] for r in records for c in r.get("refitted") or []
            if "gone adjusted" in str(c.get("reason")) and not str(c.get("reason")).startswith(_COMPOSITION_SAID)]
    lost += [c["column"] for r in records for c in r.get("checks") or [] if c.get("decision") == "cannot be separated"]
    lost += [c["column"] for r in records for c in r.get("refitted") or [] if c.get("collinear_v") is not None]
    if lost:
        points, said = points - 1, said + [f"not separated from {lost[0]}"]
    return points, said


def _interval_distance(v: dict[str, Any]) -> float:
    """The key edge's 95% interval distance from zero in half-widths (0 when it spans zero or is missing): the first key
    edge the claim rests on (validation's ``key_edges``), else the first tested evidence edge."""
    key = next((o for o in [*(v.get("key_edges") or []), *(v.get("edges") or {}).values()] if o.get("status") == "tested"), {})
    ci = key.get("ci")
    if not ci or None in ci or ci[0] * ci[1] <= 0 or ci[1] == ci[0]:
        return 0.0
    return min(abs(ci[0]), abs(ci[1])) / ((ci[1] - ci[0]) / 2)


def rank_hypotheses(hypotheses: list[dict[str, Any]], kg: KnowledgeGraph, *, sample_type: str | None = None) -> list[dict[str, Any]]:
    """Hypotheses in the order of their evidence, copies each with ``rank = {"position": 1.., "reason": str}``.

    Order (each criterion breaks the ties of the one before):

    1. discoveries before positive controls (a control checks the pipeline; it is no finding);
    2. in-run validation: validated, inconclusive (replicated but not specific, or fell short where the held-out test
       cannot tell), untestable, failed (fell short with the power to find it, or no stronger than chance);
    3. demotions: none first; then composition-confounded claims (:func:`composition_confounded`); last trivial
       restatements, whose every feature is a marker of a composition score it tracks in this run (a
       ``correlates_with`` edge to the score);
    4. held-out replication frequency, higher first;
    5. evidence points, more first: +1 a second omics layer corroborates, +1 a genetic cause is measured in the
       run (a cis effect of the gene's own copy number or mutation, or the carriers that carry a group
       difference), -1 the effect is gone once adjusted for another column the groups differ in (or cannot be
       separated from it: the contrast, or a refit's samples, collinear with it);
    6. the key edge's 95% interval: its distance from zero in half-widths, larger first;
    7. rarer under the permuted-label null; then the input order.

    Nothing is dropped.
    """
    keyed, markers = [], _composition_markers(kg)
    for i, h in enumerate(hypotheses):
        v = h.get("validation") or {}
        status = v.get("status") or "untestable"
        control = h.get("kind") == "positive control"
        marked = _marked_score(h, kg, markers)
        demotion, why = 0, ""
        if marked:
            demotion, why = 2, f"its features are markers of {marked}, which they track: a restatement of that score"
        elif confounded := composition_confounded(h.get("design_checks") or [], sample_type):
            demotion, why = 1, confounded
        rep = (v.get("replication") or {}).get("frequency") or 0.0
        points, said = _points(h, kg)
        nul = (v.get("null") or {}).get("frequency")
        reason = ("positive control (checks the pipeline); " if control else "") + verdict_words(v)
        reason += f", {(v.get('replication') or {}).get('text')} held-out splits" if v.get("replication") else ""
        reason += "".join(f"; {s}" for s in said) + (f"; ranked down: {why}" if why else "")
        keyed.append(((control, _STATUS.get(status, 3), demotion, -rep, -points, -_interval_distance(v), 1.0 if nul is None else nul, i), h, reason))
    keyed.sort(key=lambda t: t[0])
    return [{**h, "rank": {"position": n, "reason": reason}} for n, (_, h, reason) in enumerate(keyed, 1)]
