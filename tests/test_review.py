"""Review: the log format, replay, table filtering/sorting, evidence lookup, and the widget builds."""

from __future__ import annotations

import json

import pytest

from proteus.records import METRICS
from proteus.review import (
    Review,
    ReviewLog,
    ReviewSession,
    evidence_details,
    filter_sort,
    hypothesis_table,
    replay,
)
from test_report import HOSTILE, HOSTILE_IMG, make_synthetic_run


@pytest.fixture
def run(tmp_path):
    return make_synthetic_run(tmp_path / "run")


def test_actions_are_appended_at_once_in_the_documented_format(run):
    rv = ReviewSession(run, reviewer="ada")
    rv.accept("H_mlh1", "convincing")
    lines = (run / "reviews.jsonl").read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert set(rec) == {"time", "hypothesis", "action", "value", "reviewer"}
    assert rec["hypothesis"] == "H_mlh1" and rec["action"] == "accept" and rec["value"] == "convincing" and rec["reviewer"] == "ada"
    assert rec["time"].endswith("+00:00")
    rv.edit("H_bad", "  TP53 is higher in MSI-H  ")
    rv.score("H_bad", reliability=2, novelty=5)
    rv.score("H_bad", novelty=4)
    rv.comment("H_bad", "check the antibody")
    rv.comment("H_bad", HOSTILE)
    rv.reject("H_bad")
    rv.accept("H_bad")
    assert len((run / "reviews.jsonl").read_text().splitlines()) == 8
    st = rv.state("H_bad")
    assert st.status == "accepted"
    assert st.statement == "TP53 is higher in MSI-H"
    assert st.scores == {"reliability": 2, "novelty": 4}
    assert st.mean == 3.0
    assert st.comments == ["check the antibody", HOSTILE]
    assert rv.state("H_ghost").status == "pending"


def test_reopening_replays_the_same_state(run):
    a = ReviewSession(run, reviewer="ada")
    a.reject("H_mlh1", "confounded by purity")
    a.score("H_mlh1", **{m: 2 for m in METRICS})
    a.edit("H_bad", "new")
    b = Review(run)  # a fresh session, as after a kernel restart
    assert b.state("H_mlh1").status == "rejected"
    assert b.state("H_mlh1").reason == "confounded by purity"
    assert b.state("H_mlh1").scores == {m: 2 for m in METRICS}
    assert b.states.keys() == a.states.keys()
    assert b.table().equals(a.table())


@pytest.mark.parametrize(
    ("action", "value"),
    [("like", None), ("edit", ""), ("edit", 3), ("comment", "  "), ("score", {}), ("score", {"novelty": 6}),
     ("score", {"novelty": 2.5}), ("score", {"charm": 3}), ("score", {"novelty": True}), ("accept", 5)],
)
def test_invalid_actions_are_refused_and_not_written(run, action, value):
    rv = ReviewSession(run)
    with pytest.raises(ValueError):
        rv.record("H_mlh1", action, value)
    assert not (run / "reviews.jsonl").exists()


def test_unknown_hypothesis_is_refused(run):
    with pytest.raises(KeyError):
        ReviewSession(run).accept("H_nope")


def test_replay_skips_malformed_and_torn_lines(run):
    log = ReviewLog(run)
    log.append("H_mlh1", "accept", reviewer="x")
    with open(log.path, "a") as f:
        f.write('{"hypothesis": "H_mlh1", "action": "explode", "value": 1}\n')
        f.write('["not", "a", "dict"]\n')
        f.write('{"hypothesis": "H_mlh1", "action": "reject", "val')  # torn by a crash
    log.append("H_mlh1", "comment", "after the crash", reviewer="x")
    recs = log.records()
    assert [r.get("action") for r in recs] == ["accept", "explode", "comment"]
    st = replay(recs)["H_mlh1"]
    assert st.status == "accepted" and st.comments == ["after the crash"]


def test_table_filter_and_sort(run):
    rv = ReviewSession(run)
    rv.accept("H_bad")
    t = rv.table()
    assert list(t["id"]) == ["H_mlh1", "H_bad", "H_ghost"]  # mean score descending, unscored last
    assert t.loc[0, "mean"] == pytest.approx(4.2)
    assert t.loc[0, "validation"] == "supported"
    assert list(rv.table(ascending=True)["id"]) == ["H_bad", "H_mlh1", "H_ghost"]
    assert list(rv.table(sort_by="novelty")["id"]) == ["H_bad", "H_mlh1", "H_ghost"]
    for m in (*METRICS, "reviewer_mean", "n_evidence", "validation", "status", "id"):
        assert len(rv.table(sort_by=m)) == 3
    assert list(rv.table(min_score=4)["id"]) == ["H_mlh1"]
    assert list(rv.table(status="accepted")["id"]) == ["H_bad"]
    assert list(rv.table(status="pending")["id"]) == ["H_mlh1", "H_ghost"]
    assert list(rv.table(text="mismatch REPAIR")["id"]) == ["H_mlh1"]  # entities are searched
    assert list(rv.table(text="MSI-H <script>")["id"]) == ["H_mlh1"]
    assert len(rv.table(text="alert('x'")) == 2  # plain substring, not a regex (unbalanced paren)
    assert rv.table(text="zzz").empty
    with pytest.raises(ValueError):
        rv.table(sort_by="charm")
    with pytest.raises(ValueError):
        rv.table(status="maybe")


def test_table_of_no_hypotheses():
    t = hypothesis_table([], {})
    assert t.empty and "mean" in t.columns
    assert filter_sort(t, text="x", min_score=3, status="pending").empty


def test_evidence_details(run):
    rv = ReviewSession(run)
    ev = evidence_details(rv.data, "H_mlh1")
    assert [r["predicate"] for r in ev["relations"]] == ["lower_in", "enriched_in"]
    assert [c["tool"] for c in ev["calls"]] == ["differential_abundance", "enrichment_ora"]
    assert ev["calls"][0]["params"]["case"] == "MSI-H"
    assert ev["calls"][0]["status"] == "done"
    assert ev["figures"][:2] == ["figures/O1.W1.S1_volcano.png", "figures/O1.W1.S2_dotplot.png"]
    ghost = evidence_details(rv.data, "H_ghost")
    assert ghost["missing"] == ["e_missing"] and not ghost["relations"]
    with pytest.raises(KeyError):
        evidence_details(rv.data, "H_nope")


def test_widget_builds_and_buttons_record(run):
    pytest.importorskip("ipywidgets")
    rv = Review(run, reviewer="bob")
    box = rv.widget
    w = rv._w
    assert box is rv.widget  # built once
    assert rv.selected == "H_mlh1"  # best first
    assert [v for _, v in w["select"].options] == ["H_mlh1", "H_bad", "H_ghost"]
    assert w["graph"].value[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(w["figures"].children) >= 2
    assert "differential_abundance" in w["detail"].value
    # hostile text is escaped in every HTML widget
    w["select"].value = "H_bad"
    assert rv.selected == "H_bad"
    for k in ("table", "detail"):
        assert HOSTILE not in w[k].value and HOSTILE_IMG not in w[k].value
    # actions through the buttons
    w["reason"].value = "weak"
    w["reject"].click()
    w["edit"].value = "Edited by bob"
    w["save_edit"].click()
    for m, x in w["scores"].items():
        x.value = 2
    w["save_scores"].click()
    w["comment"].value = "a comment"
    w["save_comment"].click()
    assert w["comment"].value == ""
    recs = ReviewLog(run).records()
    assert [r["action"] for r in recs] == ["reject", "edit", "score", "comment"]
    assert all(r["reviewer"] == "bob" and r["hypothesis"] == "H_bad" for r in recs)
    assert "Saved" in w["msg"].value
    # an invalid edit is shown, not raised, and not written
    w["edit"].value = "   "
    w["save_edit"].click()
    assert "non-empty" in w["msg"].value and len(ReviewLog(run).records()) == 4
    # filters drive the table and the selection
    w["status"].value = "rejected"
    assert [v for _, v in w["select"].options] == ["H_bad"]
    w["status"].value = "all"
    w["text"].value = "MLH1"
    assert [v for _, v in w["select"].options] == ["H_mlh1"] and rv.selected == "H_mlh1"
    w["text"].value = "nothing matches this"
    assert w["select"].options == () and "No hypothesis matches" in w["detail"].value
    # programmatic actions refresh the widget too
    w["text"].value = ""
    rv.accept("H_ghost")
    assert "accepted" in w["table"].value
    # a reopened review shows the same state
    again = Review(run)
    assert again.state("H_bad").status == "rejected" and again.state("H_bad").statement == "Edited by bob"
    assert again.widget is not None


def test_widget_on_empty_run_dir(tmp_path):
    pytest.importorskip("ipywidgets")
    rv = Review(tmp_path)
    rv.widget
    assert rv.selected is None
    assert "no hypotheses" in rv._w["detail"].value
