"""Human review of a run's hypotheses, recorded as an append-only log a later run can learn from.

``Review(run_dir)`` opens a run directory in Jupyter: the hypotheses in a sortable, filterable
table, and for the selected one its statement, rationale, judge reasons, evidence subgraph,
supporting figures and the tool calls behind its evidence. A reviewer accepts, rejects, edits the
statement, gives their own five scores, or comments; every action is appended to
``reviews.jsonl`` in the run directory at once (flushed and fsynced), and opening ``Review`` again
(after a kernel restart, on another day) replays the log and shows the same state.

The logic (:func:`replay`, :class:`ReviewLog`, :func:`hypothesis_table`, :func:`filter_sort`,
:func:`evidence_details`, :class:`ReviewSession`) needs no display; only :class:`Review`'s widget
imports ``ipywidgets``.

The log format and its replay live in :mod:`proteus.reviews`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from proteus.records import METRICS
from proteus.report import (
    RunData,
    draw_evidence,
    e,
    evidence_graph,
    load_run,
    mean_score,
)
from proteus.reviews import ACTIONS, REVIEWS_FILE, STATUSES, ReviewLog, ReviewState, default_reviewer, replay

__all__ = [
    "ACTIONS",
    "STATUSES",
    "REVIEWS_FILE",
    "ReviewState",
    "ReviewLog",
    "replay",
    "hypothesis_table",
    "filter_sort",
    "evidence_details",
    "ReviewSession",
    "Review",
]

# --- the table ------------------------------------------------------------------------------------

TABLE_COLUMNS = ["id", "statement", "mean", *METRICS, "reviewer_mean", "status", "validation", "n_evidence", "entities", "judge"]
SORT_KEYS = ("mean", *METRICS, "reviewer_mean", "n_evidence", "validation", "status", "id")


def _validation_detail(v: Any) -> str:
    """The validation's own one-line reason (replication k/n, null k/n, cross-omics), else its JSON."""
    if isinstance(v, dict) and v.get("reason"):
        return str(v["reason"])
    return json.dumps(v, default=str)[:400]


def _validation_label(v: Any) -> str:
    if not v:
        return "not validated"
    if isinstance(v, dict):
        for k in ("outcome", "status", "result"):
            if v.get(k) is not None:
                return str(v[k])
        if "passed" in v:
            return "passed" if v["passed"] else "not passed"
        return "validated"
    return str(v)


def hypothesis_table(hypotheses: list[dict[str, Any]], states: dict[str, ReviewState]) -> pd.DataFrame:
    """One row per hypothesis: judge scores, their mean, review status and edits, validation.

    ``statement`` is the reviewer's edit where there is one.
    """
    rows = []
    for h in hypotheses:
        hid = str(h.get("id"))
        st = states.get(hid, ReviewState())
        scores = h.get("scores") if isinstance(h.get("scores"), dict) else {}
        row = {
            "id": hid,
            "statement": st.statement or str(h.get("statement", "")),
            "mean": mean_score(h),
        }
        for m in METRICS:
            s = scores.get(m)
            v = s.get("score") if isinstance(s, dict) else s
            row[m] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
        row["reviewer_mean"] = st.mean
        row["status"] = st.status
        row["validation"] = _validation_label(h.get("validation"))
        row["n_evidence"] = len(h.get("evidence") or [])
        row["entities"] = ", ".join(map(str, h.get("entities") or []))
        row["judge"] = str(h.get("judge") or "")
        rows.append(row)
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    for c in ("mean", "reviewer_mean", *METRICS):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def filter_sort(
    table: pd.DataFrame,
    *,
    text: str = "",
    min_score: float | None = None,
    status: str | None = None,
    sort_by: str = "mean",
    ascending: bool = False,
) -> pd.DataFrame:
    """Rows of :func:`hypothesis_table` matching the filters, sorted.

    Parameters
    ----------
    text
        case-insensitive substring of the id, statement, entities or validation.
    min_score
        keep rows whose judge mean is at least this (rows without scores are dropped).
    status
        ``"pending"``, ``"accepted"``, ``"rejected"``, or ``None``/``"all"``.
    sort_by
        any column; missing values sort last. Ties keep the id order.
    """
    df = table
    if text:
        t = text.lower()
        hay = (df["id"].astype(str) + " " + df["statement"].astype(str) + " " + df["entities"].astype(str) + " " + df["validation"].astype(str)).str.lower()
        df = df[hay.str.contains(t, regex=False)]
    if min_score is not None and min_score > 0:
        df = df[df["mean"].fillna(-1) >= min_score]
    if status and status != "all":
        if status not in STATUSES:
            msg = f"status must be one of {', '.join(STATUSES)} or 'all', got {status!r}"
            raise ValueError(msg)
        df = df[df["status"] == status]
    if sort_by not in df.columns:
        msg = f"cannot sort by {sort_by!r}; columns: {', '.join(df.columns)}"
        raise ValueError(msg)
    df = df.sort_values("id", kind="stable").sort_values(sort_by, ascending=ascending, na_position="last", kind="stable")
    return df.reset_index(drop=True)


# --- evidence -------------------------------------------------------------------------------------


def evidence_details(rd: RunData, hypothesis_id: str) -> dict[str, Any]:
    """What supports a hypothesis: its evidence relations, the tool calls and figures behind them.

    Returns ``{"relations": [edge dicts], "missing": [edge ids not in kg.json], "calls":
    [{"step", "tool", "params", "status", "summary"}], "figures": [paths relative to the run]}``;
    figures come from the steps named in the evidence edges' provenance (``state.json``).
    """
    h = next((x for x in rd.hypotheses if str(x.get("id")) == str(hypothesis_id)), None)
    if h is None:
        msg = f"no hypothesis {hypothesis_id!r} in {rd.path}"
        raise KeyError(msg)
    rels = rd.relations()
    steps = rd.steps()
    out: dict[str, Any] = {"relations": [], "missing": [], "calls": [], "figures": []}
    seen_calls: set[str] = set()
    for eid in h.get("evidence") or []:
        r = rels.get(str(eid))
        if r is None:
            out["missing"].append(str(eid))
            continue
        out["relations"].append(r)
        prov = r.get("provenance") if isinstance(r.get("provenance"), dict) else {}
        sid = str(prov.get("step"))
        key = json.dumps([sid, prov.get("tool"), prov.get("params")], sort_keys=True, default=str)
        if key in seen_calls:
            continue
        seen_calls.add(key)
        s = steps.get(sid, {})
        out["calls"].append(
            {"step": prov.get("step"), "tool": prov.get("tool"), "params": prov.get("params") or {}, "status": s.get("status"), "summary": s.get("summary", "")}
        )
        for f in s.get("figures") or []:
            if f not in out["figures"]:
                out["figures"].append(f)
    return out


def evidence_png(rd: RunData, hypothesis_id: str) -> bytes | None:
    """PNG of the hypothesis's evidence subgraph (``None`` when no evidence edge is in kg.json)."""
    h = next((x for x in rd.hypotheses if str(x.get("id")) == str(hypothesis_id)), None)
    if h is None:
        return None
    return draw_evidence(evidence_graph(rd.relations(), [str(x) for x in h.get("evidence") or []]))


# --- the session (logic) --------------------------------------------------------------------------


class ReviewSession:
    """A review of one run directory without any display: state, table, actions.

    Every action validates, appends to ``reviews.jsonl`` and re-replays the whole log, so the state
    always equals what a fresh session would read.
    """

    def __init__(self, run_dir: str | Path, *, reviewer: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.data = load_run(self.run_dir)
        self.reviewer = reviewer or default_reviewer()
        self.log = ReviewLog(self.run_dir)
        self.states: dict[str, ReviewState] = {}
        self.reload()

    def reload(self) -> None:
        """Re-read ``reviews.jsonl`` (e.g. written by another session)."""
        self.states = replay(self.log.records())

    @property
    def ids(self) -> list[str]:
        return [str(h.get("id")) for h in self.data.hypotheses]

    def hypothesis(self, hid: str) -> dict[str, Any]:
        for h in self.data.hypotheses:
            if str(h.get("id")) == hid:
                return h
        msg = f"no hypothesis {hid!r}; known: {', '.join(self.ids[:20])}"
        raise KeyError(msg)

    def state(self, hid: str) -> ReviewState:
        return self.states.get(hid, ReviewState())

    def table(self, **filters: Any) -> pd.DataFrame:
        """:func:`hypothesis_table` through :func:`filter_sort` (``filters`` are its keywords)."""
        return filter_sort(hypothesis_table(self.data.hypotheses, self.states), **filters)

    def evidence(self, hid: str) -> dict[str, Any]:
        return evidence_details(self.data, hid)

    # actions ---------------------------------------------------------------------------------
    def record(self, hid: str, action: str, value: Any = None) -> dict[str, Any]:
        """Record one action on hypothesis ``hid`` (validated) and return the written record."""
        self.hypothesis(hid)
        rec = self.log.append(hid, action, value, reviewer=self.reviewer)
        self.reload()
        return rec

    def accept(self, hid: str, reason: str | None = None) -> dict[str, Any]:
        return self.record(hid, "accept", reason)

    def reject(self, hid: str, reason: str | None = None) -> dict[str, Any]:
        return self.record(hid, "reject", reason)

    def edit(self, hid: str, statement: str) -> dict[str, Any]:
        return self.record(hid, "edit", statement)

    def score(self, hid: str, **scores: int) -> dict[str, Any]:
        """Own scores, e.g. ``score(hid, reliability=4, novelty=2)``."""
        return self.record(hid, "score", scores)

    def comment(self, hid: str, text: str) -> dict[str, Any]:
        return self.record(hid, "comment", text)


# --- the widget -----------------------------------------------------------------------------------


def _html_table(df: pd.DataFrame, selected: str | None, limit: int = 200) -> str:
    cols = ["id", "mean", *METRICS, "reviewer_mean", "status", "validation", "n_evidence", "entities", "statement"]
    short = {"logical_coherence": "coherence", "biological_plausibility": "plausibility", "reviewer_mean": "reviewer", "n_evidence": "edges"}
    head = "".join(f"<th style='padding:2px 6px;border-bottom:1px solid #999'>{e(short.get(c, c))}</th>" for c in cols)
    body = []
    for _, row in df.head(limit).iterrows():
        style = "background:#e6ecf7" if row["id"] == selected else ""
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float):
                v = "" if math.isnan(v) else f"{v:.1f}"
            text = str(v)
            if c in ("statement", "entities") and len(text) > 90:
                text = text[:89] + "…"
            cells.append(f"<td style='padding:2px 6px;border-bottom:1px solid #eee'>{e(text)}</td>")
        body.append(f"<tr style='{style}'>{''.join(cells)}</tr>")
    more = f"<p>{len(df) - limit} more rows not shown; narrow the filter.</p>" if len(df) > limit else ""
    return f"<div style='max-height:320px;overflow:auto;font-size:12px'><table style='border-collapse:collapse'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{more}"


def _detail_html(sess: ReviewSession, hid: str) -> str:
    h = sess.hypothesis(hid)
    st = sess.state(hid)
    parts = [f"<h3>{e(hid)}: {e(st.statement or h.get('statement'))}</h3>"]
    if st.statement:
        parts.append(f"<p><i>Edited; original:</i> {e(h.get('statement'))}</p>")
    parts.append(f"<p><b>Rationale.</b> {e(h.get('rationale'))}</p>")
    if h.get("test"):
        parts.append(f"<p><b>Proposed test.</b> {e(h.get('test'))}</p>")
    scores = h.get("scores") if isinstance(h.get("scores"), dict) else {}
    rows = []
    for m in METRICS:
        s = scores.get(m) if isinstance(scores.get(m), dict) else {}
        rows.append(f"<tr><td>{e(m)}</td><td>{e(s.get('score', ''))}</td><td>{e(st.scores.get(m, ''))}</td><td>{e(s.get('reason', ''))}</td></tr>")
    parts.append(f"<p><b>Judge:</b> {e(h.get('judge') or 'none')}</p><table><tr><th>metric</th><th>judge</th><th>you</th><th>reason</th></tr>{''.join(rows)}</table>")
    parts.append(f"<p><b>Validation:</b> {e(_validation_label(h.get('validation')))}" + (f" — {e(_validation_detail(h.get('validation')))}" if h.get("validation") else "") + "</p>")
    parts.append(f"<p><b>Review status:</b> {e(st.status)}" + (f" ({e(st.reason)})" if st.reason else "") + "</p>")
    if st.comments:
        parts.append("<ul>" + "".join(f"<li>{e(c)}</li>" for c in st.comments) + "</ul>")
    ev = sess.evidence(hid)
    rows = []
    for r in ev["relations"]:
        stt = r.get("stats") or {}
        rows.append(
            f"<tr><td>{e((r.get('subject') or {}).get('label'))}</td><td>{e(r.get('predicate'))}</td><td>{e((r.get('object') or {}).get('label'))}</td>"
            f"<td>{e(stt.get('effect'))} {e(stt.get('effect_type') or '')}</td><td>{e(stt.get('q'))}</td><td>{e(stt.get('n'))}</td></tr>"
        )
    parts.append("<p><b>Evidence edges</b></p><table><tr><th>subject</th><th>relation</th><th>object</th><th>effect</th><th>q</th><th>n</th></tr>" + "".join(rows) + "</table>")
    if ev["missing"]:
        parts.append(f"<p>Not in kg.json: {e(', '.join(ev['missing']))}</p>")
    calls = "".join(
        f"<li><code>{e(c['tool'])}</code> ({e(c['step'])}, {e(c['status'])}): <code>{e(json.dumps(c['params'], default=str)[:500])}</code></li>" for c in ev["calls"]
    )
    parts.append(f"<p><b>Tool calls behind the evidence</b></p><ul>{calls}</ul>")
    return "".join(parts)


class Review(ReviewSession):
    """Interactive review of a run's hypotheses in Jupyter (``ipywidgets``).

    >>> rv = Review("runs/ucec")  # doctest: +SKIP
    >>> rv                        # shows the table, the selected hypothesis and the actions
    >>> rv.accept(rv.ids[0])      # programmatic actions land in reviews.jsonl just the same
    """

    def __init__(self, run_dir: str | Path, *, reviewer: str | None = None) -> None:
        super().__init__(run_dir, reviewer=reviewer)
        self._w: dict[str, Any] = {}
        self._png: dict[str, bytes | None] = {}
        self._box = None
        self.selected: str | None = None

    def record(self, hid: str, action: str, value: Any = None) -> dict[str, Any]:
        rec = super().record(hid, action, value)
        if self._box is not None:
            self._refresh_table()
            if hid == self.selected:
                self._show(hid)
        return rec

    @property
    def widget(self):
        """The ``ipywidgets`` layout (built on first use)."""
        if self._box is None:
            self._box = self._build()
        return self._box

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # layout ----------------------------------------------------------------------------------
    def _build(self):
        try:
            import ipywidgets as W
        except ImportError as ex:
            ex.add_note("the review widget needs ipywidgets: pip install 'proteus-discovery[review]'")
            raise
        w = self._w
        w["text"] = W.Text(placeholder="filter: gene, pathway, words…", description="Search")
        w["min"] = W.FloatSlider(value=0.0, min=0.0, max=5.0, step=0.5, description="Min score")
        w["status"] = W.Dropdown(options=["all", *STATUSES], value="all", description="Status")
        w["sort"] = W.Dropdown(options=list(SORT_KEYS), value="mean", description="Sort by")
        w["asc"] = W.ToggleButton(value=False, description="ascending", icon="sort")
        w["table"] = W.HTML()
        w["select"] = W.Select(options=[], rows=6, description="Hypothesis", layout=W.Layout(width="100%"))
        w["detail"] = W.HTML()
        w["graph"] = W.Image(format="png", layout=W.Layout(max_width="700px"))
        w["figures"] = W.VBox()
        w["reviewer"] = W.Text(value=self.reviewer, description="Reviewer")
        w["reason"] = W.Text(placeholder="optional reason", description="Reason")
        w["accept"] = W.Button(description="Accept", button_style="success", icon="check")
        w["reject"] = W.Button(description="Reject", button_style="danger", icon="times")
        w["edit"] = W.Textarea(description="Statement", layout=W.Layout(width="100%", height="70px"))
        w["save_edit"] = W.Button(description="Save statement")
        w["scores"] = {m: W.BoundedIntText(value=3, min=1, max=5, description=m.replace("_", " ")[:14], style={"description_width": "110px"}, layout=W.Layout(width="180px")) for m in METRICS}
        w["save_scores"] = W.Button(description="Save my scores")
        w["comment"] = W.Textarea(placeholder="comment", description="Comment", layout=W.Layout(width="100%", height="60px"))
        w["save_comment"] = W.Button(description="Add comment")
        w["msg"] = W.HTML()

        for k in ("text", "min", "status", "sort", "asc"):
            w[k].observe(lambda _ch: self._refresh_table(), names="value")
        w["select"].observe(self._on_select, names="value")
        w["reviewer"].observe(lambda ch: setattr(self, "reviewer", ch["new"] or default_reviewer()), names="value")
        w["accept"].on_click(lambda _b: self._act("accept", w["reason"].value or None))
        w["reject"].on_click(lambda _b: self._act("reject", w["reason"].value or None))
        w["save_edit"].on_click(lambda _b: self._act("edit", w["edit"].value))
        w["save_scores"].on_click(lambda _b: self._act("score", {m: int(x.value) for m, x in w["scores"].items()}))
        w["save_comment"].on_click(lambda _b: self._act("comment", w["comment"].value, clear="comment"))

        filters = W.HBox([w["text"], w["min"], w["status"], w["sort"], w["asc"]], layout=W.Layout(flex_flow="row wrap"))
        actions = W.VBox(
            [
                W.HBox([w["reviewer"], w["reason"], w["accept"], w["reject"]], layout=W.Layout(flex_flow="row wrap")),
                W.HBox([w["edit"], w["save_edit"]]),
                W.HBox([*w["scores"].values(), w["save_scores"]], layout=W.Layout(flex_flow="row wrap")),
                W.HBox([w["comment"], w["save_comment"]]),
                w["msg"],
            ]
        )
        tabs = W.Tab(children=[w["detail"], w["graph"], w["figures"]])
        for i, t in enumerate(("Hypothesis", "Evidence graph", "Supporting figures")):
            tabs.set_title(i, t)
        box = W.VBox([W.HTML(f"<h2>Review: {e(self.run_dir.name)}</h2>"), filters, w["table"], w["select"], tabs, actions])
        self._box = box
        self._refresh_table()
        return box

    def _current_table(self) -> pd.DataFrame:
        w = self._w
        return self.table(text=w["text"].value, min_score=w["min"].value, status=w["status"].value, sort_by=w["sort"].value, ascending=w["asc"].value)

    def _refresh_table(self) -> None:
        w = self._w
        df = self._current_table()
        w["table"].value = _html_table(df, self.selected)
        options = [(f"{r.id} | {'' if pd.isna(r.mean) else f'{r.mean:.1f}'} | {r.status} | {r.statement[:80]}", r.id) for r in df.itertuples()]
        keep = self.selected if self.selected in {v for _, v in options} else (options[0][1] if options else None)
        w["select"].options = options
        w["select"].value = keep
        if keep is not None and keep != self.selected:
            self._show(keep)
        elif keep is None:
            self.selected = None
            w["detail"].value = "<p>No hypothesis matches.</p>" if self.data.hypotheses else "<p>This run has no hypotheses.</p>"
            w["graph"].value = b""
            w["figures"].children = ()

    def _on_select(self, change: dict[str, Any]) -> None:
        if change["new"] is not None and change["new"] != self.selected:
            self._show(change["new"])
            self._w["table"].value = _html_table(self._current_table(), self.selected)

    def _show(self, hid: str) -> None:
        import ipywidgets as W

        w = self._w
        self.selected = hid
        w["detail"].value = _detail_html(self, hid)
        if hid not in self._png:
            self._png[hid] = evidence_png(self.data, hid)
        w["graph"].value = self._png[hid] or b""
        figs = []
        for rel in self.evidence(hid)["figures"][:12]:
            p = self.data.artifact_path(rel)
            if p is None:
                figs.append(W.HTML(f"<p>missing figure {e(rel)}</p>"))
                continue
            figs.append(W.VBox([W.HTML(f"<small>{e(rel)}</small>"), W.Image(value=p.read_bytes(), format="png", layout=W.Layout(max_width="640px"))]))
        w["figures"].children = tuple(figs) or (W.HTML("<p>No figures from the evidence steps.</p>"),)
        st = self.state(hid)
        w["edit"].value = st.statement or str(self.hypothesis(hid).get("statement", ""))
        for m, x in w["scores"].items():
            x.value = st.scores.get(m, 3)

    def _act(self, action: str, value: Any, clear: str | None = None) -> None:
        w = self._w
        if self.selected is None:
            w["msg"].value = "<span style='color:#a33'>Select a hypothesis first.</span>"
            return
        try:
            rec = self.record(self.selected, action, value)
        except ValueError as ex:
            w["msg"].value = f"<span style='color:#a33'>{e(ex)}</span>"
            return
        if clear:
            w[clear].value = ""
        w["msg"].value = f"<span style='color:#185c27'>Saved: {e(rec['action'])} {e(rec['hypothesis'])} at {e(rec['time'])}</span>"

