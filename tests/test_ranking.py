"""The evidence ranking of hypotheses (proteus.ranking.rank_hypotheses) on the offline UCEC run.

Real data only: the shared offline run (``ucec_run``). Which hypotheses restate a composition score and which
compare tissues only is derived here from the run's own knowledge graph, design checks and data profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proteus.design import is_composition_score
from proteus.kg import KnowledgeGraph
from proteus.policy.decisions import MAX_COMPOSITION_CONFOUNDED, MAX_HYPOTHESES
from proteus.ranking import rank_hypotheses

STATUSES = ("validated", "inconclusive", "untestable", "failed")
FEATURES = {"protein", "gene", "phosphosite", "acetylsite"}


@pytest.fixture(scope="module")
def run(ucec_run: Path):
    kg = KnowledgeGraph.from_node_link(json.loads((ucec_run / "kg.json").read_text()))
    hyps = [json.loads(x) for x in (ucec_run / "hypotheses.jsonl").read_text().splitlines() if x.strip()]
    profile = json.loads((ucec_run / "profile.json").read_text())
    return kg, hyps, profile


def _restated_score(h, kg) -> str | None:
    """The composition score all of a hypothesis's features are significantly correlated with in the run."""
    feats = {r.subject.id for e in h["evidence"] if (r := kg.relation(e)) is not None and r.subject.type in FEATURES}
    tracked = [{r.object.label for r in kg.about(f) if r.predicate == "correlates_with" and is_composition_score(r.object.label)
                and (r.stats.q if r.stats.q is not None else 1) < 0.05} for f in feats]
    common = set.intersection(*tracked) if tracked else set()
    return min(common) if common else None


def _tissue_only(h, sample_type) -> bool:
    groups = [r["contrast"].split(": ")[0] for r in h["design_checks"] if not r.get("kind") and r["contrast"] != "clinical variables of the association"]
    return bool(groups) and set(groups) == {sample_type}


def _refits(h) -> list[dict]:
    return [c for r in h["design_checks"] for c in r.get("refitted", [])]


def test_the_run_ranks_by_evidence_with_composition_restatements_and_unadjusted_tissue_contrasts_below_the_rest(ucec_run, run):
    kg, hyps, profile = run
    st = profile["sample_type_column"]
    assert st, "UCEC has tumour and normal samples"
    assert [h["rank"]["position"] for h in hyps] == list(range(1, len(hyps) + 1)), "the file is in rank order"
    assert [h["id"] for h in rank_hypotheses(hyps, kg, sample_type=st)] == [h["id"] for h in hyps], "one ranking, applied once"
    klass = {}
    for h in hyps:
        score = _restated_score(h, kg)
        if score:
            klass[h["id"]] = 2
            assert score in h["rank"]["reason"] and "restatement" in h["rank"]["reason"], h["rank"]
        elif any(c["reason"].startswith("tissue composition") and "gone" in c["reason"] for c in _refits(h)):
            klass[h["id"]] = 1
            assert "composition-driven" in h["rank"]["reason"], h["rank"]
        elif _tissue_only(h, st) and not any(c["reason"].startswith("tissue composition") and "held" in c["reason"] for c in _refits(h)):
            klass[h["id"]] = 1
            assert st in h["rank"]["reason"], h["rank"]
            # a tissue contrast where composition scores exist says it is unadjusted for them (or what the refit found)
            assert "tissue composition" in h["statement"], h["statement"]
        else:
            klass[h["id"]] = 0
            assert "ranked down" not in h["rank"]["reason"], h["rank"]
    validated = [h for h in hyps if h["kind"] == "discovery" and h["validation"]["status"] == "validated"]
    assert {klass[h["id"]] for h in validated} == {0, 1, 2}, "UCEC validates marker restatements, tissue contrasts and other findings"
    keys = [(h["kind"] == "positive control", STATUSES.index(h["validation"]["status"]), klass[h["id"]]) for h in hyps]
    assert keys == sorted(keys), "controls last; by validation status; within it restatements and tissue contrasts below the rest"
    plain = [h["validation"]["replication"]["frequency"] for h in validated if klass[h["id"]] == 0]
    assert plain == sorted(plain, reverse=True), "then by held-out replication"
    # the report keeps the order, says why, and gives positive controls their own part
    html = (ucec_run / "report.html").read_text()
    assert "Positive controls</h3>" in html and html.index("Positive controls</h3>") > html.index(f"hyp-{validated[-1]['id']}")
    assert all(h["rank"]["reason"].split(";")[0] in html for h in hyps)


def test_tissue_contrasts_without_a_composition_score_state_no_mechanism_within_cells_and_hold_a_few_slots(run):
    """A tissue comparison with no composition score in its model cannot tell regulation within a cell type from a
    change in cell-type make-up: its claims say what was observed and that it may reflect the make-up (never "a change
    in its transcription", "after transcription", an enzyme's activity on a site), and hold the first
    MAX_COMPOSITION_CONFOUNDED slots only: UCEC has more drafts from other contrasts than slots."""
    kg, hyps, profile = run
    st = profile["sample_type_column"]
    tissue = [h for h in hyps if _tissue_only(h, st) and not any(c["reason"].startswith("tissue composition") for c in _refits(h))]
    assert tissue, "UCEC states tumour-vs-normal differences"
    for h in tissue:
        assert not any(w in h["statement"] for w in ("transcription", "pointing to altered", "activity on this site")), h["statement"]
        assert "cell-type make-up" in h["statement"], h["statement"]
    assert len(tissue) <= MAX_COMPOSITION_CONFOUNDED, [h["statement"][:80] for h in tissue]
    assert len(hyps) == MAX_HYPOTHESES, "the slots they leave go to other contrasts' findings"


def test_without_a_sample_type_column_no_contrast_is_demoted_as_a_tissue_comparison(run):
    """Counter-example: the demotion follows the design (the profile's sample-type column), not the wording."""
    kg, hyps, _ = run
    for h in rank_hypotheses(hyps, kg, sample_type=None):
        assert "(tissue) contrast" not in h["rank"]["reason"], h["rank"]
