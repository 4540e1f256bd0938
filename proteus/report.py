"""The run report: one self-contained ``report.html`` a biologist can read, archive and mail.

:func:`write_report` reads a run directory (see :mod:`proteus.rundir`) and writes
``report.html`` next to it. The page has no external resources: figures are embedded as base64
PNG ``data:`` URIs, CSS is inline, and the only script is a few inline lines that count the
loaded images (a Content-Security-Policy forbids every other script and every network request).
Every data-derived string (file names, column names, gene labels, statements, summaries) is
HTML-escaped, so hostile text in the data cannot inject markup.

Sections, in reading order:

1. **Summary**: the data (inputs, modalities, samples), the objectives, the top hypotheses in the
   run's evidence ranking (:func:`proteus.ranking.rank_hypotheses`), each with the reason for its place.
2. **Objectives and workflows**: per objective, what each workflow did (each step's tool, key
   parameters, status, summary and interpretation, the workflow updater's notes) and found (the
   top rows of its result tables, its figures).
3. **Hypotheses**, in rank order, positive controls in their own part at the end: statement, rank and why, rationale, the five judge scores with reasons, the judge's label,
   validation, reviewer status (from ``reviews.jsonl``, see :mod:`proteus.reviews`) and a picture
   of the evidence subgraph drawn from ``kg.json``.
4. **Large effects without significance**: per two-group differential, the largest effects that missed
   the FDR, each with the power the design had for it and the smallest effect it could have called
   (:func:`proteus.stats.power.underpowered_effects`): suggestive, never findings.
5. **QC notes**: what the run found about the data rather than its biology (sample clusterings that
   are unstable or follow a technical column, :func:`proteus.policy.claims.clustering_qc`).
6. **Methods and conventions**: the statistics each tool used, the policy/model label, package
   versions, seed, the number of fingerprinted input files.

The report renders whatever exists: an empty, partial or failed run directory gives a shorter
page, never an exception.

>>> from proteus.report import write_report
>>> write_report("runs/ucec")  # doctest: +SKIP
PosixPath('runs/ucec/report.html')
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable

import networkx as nx
import pandas as pd
import typer

from proteus import genesets
from proteus.ranking import verdict_words
from proteus.records import METRICS
from proteus.reviews import replay
from proteus.rundir import read_jsonl

__all__ = [
    "RunData",
    "load_run",
    "mean_score",
    "evidence_graph",
    "draw_evidence",
    "tool_method",
    "write_report",
    "report_cli",
]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# --- reading a run directory ---------------------------------------------------------------------


@dataclass
class RunData:
    """Everything a report or review needs from a run directory; missing parts are empty.

    ``problems`` lists artifacts that exist but could not be read (shown in the report).
    """

    path: Path
    run: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    hypotheses: list[dict[str, Any]] = field(default_factory=list)
    kg: dict[str, Any] | None = None
    reviews: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def objectives(self) -> list[dict[str, Any]]:
        return [o for o in _as_list(self.state.get("objectives")) if isinstance(o, dict)]

    @property
    def workflows(self) -> list[dict[str, Any]]:
        return [w for w in _as_list(self.state.get("workflows")) if isinstance(w, dict)]

    def steps(self) -> dict[str, dict[str, Any]]:
        """Every step of every workflow by step id."""
        return {str(s.get("id")): s for w in self.workflows for s in _as_list(w.get("steps")) if isinstance(s, dict)}

    def relations(self) -> dict[str, dict[str, Any]]:
        """Relation edges of ``kg.json`` (those with stats and provenance) by edge id."""
        out: dict[str, dict[str, Any]] = {}
        for e in _as_list((self.kg or {}).get("edges")):
            if isinstance(e, dict) and "provenance" in e and e.get("id") is not None:
                out[str(e["id"])] = e
        return out

    def artifact_path(self, rel: str) -> Path | None:
        """Absolute path of a figure named relative to the run directory, if it lies inside it and exists."""
        try:
            p = (self.path / str(rel)).resolve()
            root = self.path.resolve()
        except (OSError, ValueError):
            return None
        if root not in p.parents or not p.is_file():
            return None
        return p


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else []


def _read_json(path: Path, problems: list[str]) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        problems.append(f"{path.name}: unreadable ({type(e).__name__})")
        return None


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory tolerantly: absent or unreadable artifacts become empty values."""
    path = Path(run_dir)
    d = RunData(path=path)
    d.run = _read_json(path / "run.json", d.problems) or {}
    d.profile = _read_json(path / "profile.json", d.problems) or {}
    d.state = _read_json(path / "state.json", d.problems) or {}
    d.quality = _read_json(path / "qc.json", d.problems) or {}
    kg = _read_json(path / "kg.json", d.problems)
    d.kg = kg if isinstance(kg, dict) else None
    d.hypotheses = read_jsonl(path / "hypotheses.jsonl", d.problems)
    d.reviews = read_jsonl(path / "reviews.jsonl", d.problems)
    for name in ("run", "profile", "state", "quality"):
        if not isinstance(getattr(d, name), dict):
            d.problems.append(f"{name}.json: not a JSON object")
            setattr(d, name, {})
    return d


def mean_score(h: dict[str, Any], scores: dict[str, Any] | None = None) -> float | None:
    """Mean of the five judge scores of hypothesis ``h`` (``None`` when it has none)."""
    scores = scores if scores is not None else (h.get("scores") or {})
    vals = []
    for m in METRICS:
        s = scores.get(m) if isinstance(scores, dict) else None
        v = s.get("score") if isinstance(s, dict) else s
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            vals.append(float(v))
    return sum(vals) / len(vals) if vals else None


# --- evidence subgraph ----------------------------------------------------------------------------

TYPE_COLOURS = {
    "protein": "#4C72B0",
    "gene": "#64B5CD",
    "phosphosite": "#8172B3",
    "acetylsite": "#937860",
    "mirna": "#DA8BC3",
    "pathway": "#55A868",
    "clinical_variable": "#C44E52",
    "sample_group": "#DD8452",
    "mutation": "#8C1C13",
    "cell_population": "#CCB974",
    "marker": "#A6761D",
    "module": "#66A61E",
    "feature": "#8C8C8C",
}


def evidence_graph(relations: dict[str, dict[str, Any]], edge_ids: Iterable[str]) -> nx.MultiDiGraph:
    """The subgraph of the evidence edges: their subjects and objects, typed, with predicates."""
    g = nx.MultiDiGraph()
    for eid in edge_ids:
        e = relations.get(str(eid))
        if e is None:
            continue
        ends = []
        for key in ("subject", "object"):
            ent = e.get(key) if isinstance(e.get(key), dict) else {}
            etype = str(ent.get("type", "feature"))
            label = str(ent.get("label", e.get("source" if key == "subject" else "target", "?")))
            nid = f"{etype}:{label}"
            g.add_node(nid, type=etype, label=label)
            ends.append(nid)
        g.add_edge(ends[0], ends[1], key=str(eid), predicate=str(e.get("predicate", "")))
    return g


def _mpl_text(s: str, limit: int = 28) -> str:
    """Label text safe for matplotlib (no mathtext), shortened."""
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return s.replace("\\", "\\\\").replace("$", r"\$")


def draw_evidence(g: nx.MultiDiGraph, *, title: str | None = None) -> bytes | None:
    """PNG bytes of an evidence subgraph (nodes coloured by entity type); ``None`` when empty."""
    if g.number_of_nodes() == 0:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    n = g.number_of_nodes()
    size = min(9.0, 4.0 + 0.35 * n)
    fig, ax = plt.subplots(figsize=(size + 2.2, size * 0.72))
    try:
        simple = nx.DiGraph(g)
        pos = nx.spring_layout(simple, seed=0, k=1.6 / math.sqrt(max(n, 1))) if n > 1 else {next(iter(g)): (0.0, 0.0)}
        types = [g.nodes[v].get("type", "feature") for v in g]
        colours = [TYPE_COLOURS.get(t, "#8C8C8C") for t in types]
        nx.draw_networkx_edges(simple, pos, ax=ax, arrows=True, arrowsize=12, edge_color="#777777", width=1.2, node_size=700)
        nx.draw_networkx_nodes(simple, pos, ax=ax, nodelist=list(g), node_color=colours, node_size=700, alpha=0.9)
        nx.draw_networkx_labels(
            simple, pos, ax=ax, labels={v: _mpl_text(str(g.nodes[v].get("label", v))) for v in g}, font_size=8
        )
        elabels: dict[tuple[str, str], str] = {}
        for u, v, d in g.edges(data=True):
            elabels.setdefault((u, v), _mpl_text(str(d.get("predicate", "")), 22))
        nx.draw_networkx_edge_labels(simple, pos, ax=ax, edge_labels=elabels, font_size=7, font_color="#333333")
        present = sorted(set(types))
        handles = [
            Line2D([0], [0], marker="o", linestyle="", markersize=8, markerfacecolor=TYPE_COLOURS.get(t, "#8C8C8C"), markeredgecolor="none", label=t.replace("_", " "))
            for t in present
        ]
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
        if title:
            ax.set_title(_mpl_text(title, 80), fontsize=9)
        ax.margins(0.18)
        ax.axis("off")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        return buf.getvalue()
    finally:
        plt.close(fig)


# --- methods --------------------------------------------------------------------------------------

_METHODS = {
    "differential_abundance": "Moderated t-test (limma empirical Bayes; Smyth 2004, doi:10.2202/1544-6115.1027) per feature, log2 fold change case vs control, Benjamini-Hochberg q.",
    "clinical_correlation": "Spearman rank correlation (or a moderated regression for covariate-adjusted tests) of each feature with a clinical variable; Benjamini-Hochberg q.",
    "mrna_protein_concordance": "Per-gene Spearman correlation of protein abundance with its own mRNA across shared samples; Benjamini-Hochberg q.",
    "cna_cis_effect": "Per-gene Spearman correlation of copy number with the gene's own RNA/protein (cis effect); Benjamini-Hochberg q.",
    "coabundance_modules": "Co-abundance modules by clustering feature-feature correlations; module eigengenes tested against clinical variables.",
    "enrichment_ora": "Over-representation of pathway members among hits: one-sided hypergeometric (Fisher) test against the measured background; Benjamini-Hochberg q.",
    "enrichment_gsea": "Pre-ranked gene-set enrichment (GSEA; Subramanian et al. 2005, doi:10.1073/pnas.0506580102): normalised enrichment score (NES) with permutation p; Benjamini-Hochberg q.",
    "cox_per_feature": "Cox proportional-hazards regression per feature (hazard ratio per SD), Wald p; Benjamini-Hochberg q.",
    "kaplan_meier": "Kaplan-Meier survival curves by group, log-rank test.",
    "cluster_clinical_association": "Association of sample clusters/groups with clinical variables (chi-squared / Fisher for categorical, Kruskal-Wallis for continuous).",
    "mutation_association": "Feature abundance in mutated vs wild-type samples (moderated t / Mann-Whitney); Benjamini-Hochberg q.",
    "ppi_network": "Protein-protein interactions (BioPlex) among hits.",
}


def tool_method(name: str) -> str:
    """What statistics tool ``name`` uses: its registry description (the tool's own docstring),
    else a short fallback for tools this installation does not register."""
    try:
        from proteus.tools.registry import get_tool

        return get_tool(name).description
    except Exception:  # an unregistered or unimportable tool: the report still renders
        return _METHODS.get(name, "(no description available)")


_METHOD_PARAMS = ("method", "test", "correlation", "library", "fdr", "q_threshold", "alpha", "n_perm", "permutations", "covariates", "block", "pair_by", "min_fraction", "transform")


def _params_used(steps: list[dict[str, Any]]) -> str:
    """Statistics-relevant parameters across a tool's calls, e.g. ``method=spearman; fdr=0.05``."""
    seen: dict[str, list[str]] = {}
    for s in steps:
        params = dict(s.get("params")) if isinstance(s.get("params"), dict) else {}
        try:  # the tool's defaults complete the parameters the planner left out
            from proteus.tools.registry import get_tool

            params = {**get_tool(str(s.get("tool"))).params.model_validate(params).model_dump(mode="json"), **params}
        except Exception:  # unregistered tool or params that no longer validate: show what was recorded
            pass
        metrics = s.get("metrics") if isinstance(s.get("metrics"), dict) else {}
        found = [(k, params.get(k)) for k in _METHOD_PARAMS]
        found += [(k, v) for k, v in metrics.items() if k.endswith("method") or k in ("permutations", "n_perm")]
        for k, v in found:
            if v in (None, [], {}, ""):
                continue
            txt = _short(v, 90)
            if txt not in seen.setdefault(k, []):
                seen[k].append(txt)
    return "; ".join(f"{k}={', '.join(v)}" for k, v in seen.items())


# --- HTML helpers ---------------------------------------------------------------------------------


def e(x: Any) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape("" if x is None else str(x), quote=True)


def _fmt_num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.2e}"
        return f"{v:.3g}"
    return str(v)


def _short(x: Any, limit: int = 120) -> str:
    s = x if isinstance(x, str) else json.dumps(x, default=str, ensure_ascii=False)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _params_text(params: Any, limit: int = 8) -> str:
    if not isinstance(params, dict) or not params:
        return "—"
    items = [(k, v) for k, v in params.items() if v not in (None, [], {}, "")]
    parts = [f"{k}={_short(v, 60)}" for k, v in items[:limit]]
    if len(items) > limit:
        parts.append(f"… (+{len(items) - limit})")
    return ", ".join(parts) or "—"


def _img(data: bytes, alt: str, cls: str = "fig") -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img class="{cls}" alt="{e(alt)}" src="data:image/png;base64,{b64}">'


def _figure(rd: RunData, rel: str) -> str:
    p = rd.artifact_path(rel)
    if p is None:
        return f'<p class="missing">figure {e(rel)} is missing</p>'
    try:
        data = p.read_bytes()
    except OSError:
        return f'<p class="missing">figure {e(rel)} is unreadable</p>'
    if not data.startswith(PNG_MAGIC):
        return f'<p class="missing">figure {e(rel)} is not a PNG</p>'
    return f'<figure>{_img(data, Path(rel).stem)}<figcaption>{e(Path(rel).name)}</figcaption></figure>'


_LABEL_COLS = re.compile(r"^(feature|gene|protein|site|pathway|term|name|label|id|entity|module|marker|cluster|population|group|level|variable|subject|object)s?$", re.I)
_EFFECT_COLS = re.compile(r"(log2?fc|logfc|fold|effect|rho|^r$|corr|hazard|^hr$|nes|^es$|odds|coef|beta|diff|estimate)", re.I)
_Q_COLS = re.compile(r"^(q|q_?value|qval|fdr|padj|p_?adj|adj_?p(_?val(ue)?)?|fdr_bh|p\.adjust)$", re.I)
_P_COLS = re.compile(r"^(p|p_?value|pval|p\.value)$", re.I)
_N_COLS = re.compile(r"^(n|n_samples|overlap|set_size|size|count|n_.*)$", re.I)
_N_PRIORITY = ("n", "n_samples", "overlap", "set_size", "size", "count")
_DIR_COLS = re.compile(r"^(direction|sign)$", re.I)


def _table_columns(df: pd.DataFrame, max_cols: int = 8) -> list[str]:
    cols = [str(c) for c in df.columns]
    chosen: list[str] = []
    for pat, k in ((_LABEL_COLS, 2), (_DIR_COLS, 1), (_N_COLS, 2), (_EFFECT_COLS, 2), (_P_COLS, 1), (_Q_COLS, 1)):
        hits = [c for c in cols if pat.search(c) and c not in chosen]
        if pat is _N_COLS:
            hits.sort(key=lambda c: _N_PRIORITY.index(c.lower()) if c.lower() in _N_PRIORITY else len(_N_PRIORITY))
        chosen += hits[:k]
    if not chosen or not any(_LABEL_COLS.search(c) for c in chosen):
        first = cols[0] if cols else None
        if first is not None and first not in chosen:
            chosen.insert(0, first)
    for c in cols:
        if len(chosen) >= max_cols:
            break
        if c not in chosen:
            chosen.append(c)
    order = {c: i for i, c in enumerate(cols)}
    return sorted(chosen[:max_cols], key=lambda c: order.get(c, 0))


def _result_table(rd: RunData, rel: str, max_rows: int = 8) -> str:
    p = rd.artifact_path(rel)
    if p is None:
        return f'<p class="missing">table {e(rel)} is missing</p>'
    try:
        df = pd.read_csv(p, sep="\t", nrows=20000)
    except Exception as ex:  # any unparsable table is reported, not raised
        return f'<p class="missing">table {e(rel)} could not be read ({e(type(ex).__name__)})</p>'
    n_rows = len(df)
    if df.empty:
        return f'<p class="tablecap">{e(Path(rel).name)}: no rows</p>'
    qcol = next((c for c in df.columns if _Q_COLS.search(str(c))), None) or next((c for c in df.columns if _P_COLS.search(str(c))), None)
    if qcol is not None and pd.api.types.is_numeric_dtype(df[qcol]):
        df = df.sort_values(qcol, na_position="last", kind="stable")
    cols = _table_columns(df)
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = []
    for _, row in df.head(max_rows).iterrows():
        cells = []
        for c in cols:
            v = row[c]
            v = v.item() if hasattr(v, "item") else v
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f'<td class="{"num" if num else ""}">{e(_fmt_num(v) if num else _short(v, 60) if v == v else "")}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    shown = min(max_rows, n_rows)
    cap = f"{e(Path(rel).name)} — top {shown} of {n_rows}{'+' if n_rows >= 20000 else ''} rows" + (f", sorted by {e(qcol)}" if qcol is not None else "")
    return f'<div class="tablewrap"><p class="tablecap">{cap}</p><table class="res"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _status_badge(status: Any) -> str:
    s = str(status or "unknown")
    cls = {"done": "ok", "finished": "ok", "accepted": "ok", "failed": "bad", "rejected": "bad", "skipped": "muted", "dropped": "muted"}.get(s, "neutral")
    return f'<span class="badge {cls}">{e(s)}</span>'


def _policy_label(run: dict[str, Any]) -> str:
    policy = str(run.get("policy") or "unknown")
    model = run.get("model")
    if policy == "heuristic":
        return "offline heuristic policy (rule-based analyst autopilot, no language model)"
    return f"{policy} policy" + (f", model {model}" if model else "")


def _judge_label(judge: Any) -> str:
    j = str(judge or "")
    if not j:
        return "not judged"
    if j == "heuristic":
        return "heuristic judge (transparent rules, no language model)"
    return f"{j} judge"


# --- sections -------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.5 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#222;margin:0;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:24px 32px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{border-bottom:2px solid #4C72B0;padding-bottom:4px;margin-top:36px}
h3{margin-top:28px}h4{margin:18px 0 6px}
.sub{color:#555;margin:0 0 12px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f8}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.tablewrap{overflow-x:auto}.tablecap{font-size:12px;color:#555;margin:10px 0 0}
figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top}
img.fig{max-width:100%;max-height:720px;height:auto;border:1px solid #eee}
figcaption{font-size:11px;color:#666}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;background:#eee}
.badge.ok{background:#d8f0dc;color:#185c27}.badge.bad{background:#f7d9d9;color:#8a1c1c}
.badge.muted{background:#eee;color:#777}.badge.neutral{background:#e6ecf7;color:#2b4a80}
.step{border-left:3px solid #c9d5ea;padding:2px 0 2px 14px;margin:14px 0}
.step.failed{border-left-color:#e3a3a3}
.hyp{border:1px solid #dde3ee;border-radius:6px;padding:10px 16px;margin:16px 0}
.scores td:first-child{white-space:nowrap}.missing{color:#a33;font-size:13px}
.note{background:#f6f8fb;border-radius:4px;padding:6px 10px;margin:6px 0;font-size:14px}
code,.params{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-word}
nav a{margin-right:14px}ul.compact{margin:4px 0;padding-left:20px}
"""

# Counts loaded images into <body data-images-loaded> (checked by the render test); the only script.
_SCRIPT = (
    "window.addEventListener('load',function(){var i=document.images,n=0;"
    "for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0){n++;}}"
    "document.body.setAttribute('data-images-loaded',String(n));"
    "document.body.setAttribute('data-images-total',String(i.length));});"
)


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    return f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"


def _section_data(rd: RunData) -> str:
    run, prof = rd.run, rd.profile
    out = ["<h3>The data</h3>"]
    facts = []
    if run.get("data"):
        facts.append(f"Data folder: <code>{e(run['data'])}</code>")
    if prof.get("n_samples"):
        facts.append(f"{e(prof['n_samples'])} samples")
    if facts:
        out.append(f"<p>{'; '.join(facts)}.</p>")
    inputs = _as_list(run.get("inputs")) or _as_list(prof.get("files"))
    if inputs:
        out.append("<h4>Input files</h4><ul class='compact'>" + "".join(f"<li><code>{e(x)}</code></li>" for x in inputs[:60]) + "</ul>")
        if len(inputs) > 60:
            out.append(f"<p>… and {len(inputs) - 60} more.</p>")
    matching = _as_list(run.get("sample_matching"))
    if matching:
        out.append("<h4>Samples matched to the sample table</h4><ul class='compact'>" + "".join(f"<li>{e(x)}</li>" for x in matching) + "</ul>")
    mods = [m for m in _as_list(prof.get("modalities")) if isinstance(m, dict)]
    if mods:
        rows = "".join(
            f"<tr><td>{e(m.get('name'))}</td><td>{e(m.get('kind'))}</td><td>{e(m.get('level'))}</td>"
            f"<td class='num'>{e(m.get('n_features'))}</td><td class='num'>{e(m.get('n_samples'))}</td>"
            f"<td class='num'>{e(_fmt_pct(m.get('missing_fraction')))}</td><td>{e(m.get('id_type'))}</td><td>{e(_organism(m.get('organism')))}</td></tr>"
            for m in mods
        )
        out.append(
            "<h4>Modalities</h4><table><thead><tr><th>layer</th><th>kind</th><th>level</th><th>features</th>"
            f"<th>samples/cells</th><th>missing</th><th>identifiers</th><th>organism</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    out += _section_design(prof)
    surv = _as_list(prof.get("survival"))
    if surv:
        out.append("<p>Survival endpoints (time, event): " + ", ".join(e(" / ".join(map(str, s)) if isinstance(s, (list, tuple)) else s) for s in surv) + "</p>")
    if len(out) == 1:
        out.append("<p class='missing'>No data profile was recorded for this run.</p>")
    return "\n".join(out)


def _section_quality(rd: RunData) -> str:
    """Sample quality (qc.json, :func:`proteus.quality.study_quality`): the outlier runs of each layer with their numbers."""
    layers = rd.quality.get("layers") if isinstance(rd.quality.get("layers"), dict) else {}
    if not layers:
        return ""
    out = ["<h3 id='qc'>Sample quality</h3>", f"<p class='note'>{e(rd.quality.get('method', ''))}"
           + (f"; groups: {e(rd.quality['grouping'])}" if rd.quality.get("grouping") else "") + ".</p>"]
    for name, layer in layers.items():
        if not isinstance(layer, dict):
            continue
        flagged = [o for o in _as_list(layer.get("outliers")) if isinstance(o, dict)]
        if not flagged:
            out.append(f"<p>{e(name)}: no outlier run among {len(_as_list(layer.get('samples')))} samples.</p>")
            continue
        by = {str(r.get("sample")): r for r in _as_list(layer.get("samples")) if isinstance(r, dict)}
        rows = "".join(
            f"<tr><td>{e(o.get('sample'))}</td>" + "".join(f"<td class='num'>{e(_fmt_num(by.get(str(o.get('sample')), {}).get(k)))}</td>"
                                                         for k in ("missing_fraction", "median_value", "median_correlation"))
            + f"<td>{e(o.get('reason'))}</td></tr>" for o in flagged)
        out.append(f"<h4>{e(name)}: {len(flagged)} outlier run{'s' if len(flagged) > 1 else ''}</h4><table><thead><tr><th>sample</th>"
                   f"<th>missing</th><th>median</th><th>correlation to group</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>")
    retests = [r for r in _as_list(rd.quality.get("leave_outlier_out")) if isinstance(r, dict)]
    if retests:
        rows = "".join(
            f"<tr><td>{e(r.get('contrast'))}</td><td>{e(r.get('modality'))}</td><td>{e(', '.join(map(str, _as_list(r.get('outliers')))))}</td>"
            + (f"<td class='num'>{e(r.get('n_hold'))} of {e(r.get('n_significant'))}</td><td>{e(r.get('decision'))}</td>"
               f"<td>{e(', '.join(map(str, _as_list(r.get('lost'))[:8])))}</td></tr>" if r.get("n_significant") is not None else
               f"<td></td><td>not re-tested</td><td>{e(str(r.get('why', ''))[:200])}</td></tr>") for r in retests)
        out.append("<h4>Leave-outlier-out re-test of every differential contrast</h4><p class='note'>Each contrast whose groups hold an "
                   "outlier run is re-tested without it: of the features it calls (q below its FDR), how many still pass in the same "
                   "direction.</p><table><thead><tr><th>contrast</th><th>layer</th><th>left out</th><th>calls that hold</th><th>decision</th>"
                   f"<th>calls lost (first 8)</th></tr></thead><tbody>{rows}</tbody></table>")
    cont = rd.quality.get("contamination") if isinstance(rd.quality.get("contamination"), dict) else {}
    if cont:
        members = cont.get("members") if isinstance(cont.get("members"), dict) else {}
        out.append(f"<h4>Contamination of {e(cont.get('matrix'))} samples ({e(cont.get('source'))})</h4>"
                   f"<p>{e(cont.get('method'))}; panels measured: " + "; ".join(f"{e(k)} ({e(', '.join(map(str, _as_list(v))))})" for k, v in members.items()) + ".</p>")
        rows = "".join(f"<tr><td>{e(t.get('panel'))}</td><td>{e(t.get('grouping'))}</td><td class='num'>{e(_num(t.get('p')))}</td>"
                       f"<td class='num'>{e(_num(t.get('q')))}</td><td>{e(', '.join(f'{k} {v:+.2f}' for k, v in (t.get('means') or {}).items()))}</td></tr>"
                       for t in _as_list(cont.get("tests")) if isinstance(t, dict))
        if rows:
            out.append("<table><thead><tr><th>panel</th><th>grouping</th><th>p (Kruskal-Wallis)</th><th>q</th><th>mean index per group</th></tr></thead>"
                       f"<tbody>{rows}</tbody></table>")
    return "\n".join(out)


_SPIKE_TABLES = ("results", "doses", "excluded", "skipped")


def _section_benchmark(rd: RunData) -> str:
    """Spike-in benchmark readout of each two-group differential whose layer mixes organisms
    (:func:`proteus.policy.controls.spike_in_readouts`: detection, true / false positives with the
    background as the negative set, fold-change error against the dose ratio, low-abundance compression)."""
    from proteus.policy.controls import spike_in_readouts

    rows = []
    for s in rd.steps().values():
        if s.get("tool") != "differential_abundance" or s.get("status", "done") != "done":
            continue
        tabs: dict[str, pd.DataFrame] = {}
        for rel in map(str, _as_list(s.get("tables"))):
            name = next((n for n in _SPIKE_TABLES if rel.endswith((f"_{n}.tsv", f"_{n}.tsv.gz"))), None)
            p = rd.artifact_path(rel) if name else None
            if p is not None:
                try:
                    tabs[name] = pd.read_csv(p, sep="\t")
                except Exception:  # an unreadable table: no readout for this step
                    continue
        prm = s.get("params") if isinstance(s.get("params"), dict) else {}
        if "results" not in tabs:
            continue
        for r in spike_in_readouts(tabs["results"], float(prm.get("fdr", 0.05)), *(tabs.get(n) for n in _SPIKE_TABLES[1:])):
            contrast = f"{prm.get('group')}: {prm.get('case')} vs {prm.get('control')}"
            rows.append(f"<tr><td>{e(contrast)}</td><td>{e(r.organism)} in {e(r.background)}</td><td>{e(r.detection_text())}</td>"
                        f"<td>{e(r.calls_text())}</td><td>{e(r.error_text() or 'no dose ratio stated')}</td><td>{e(r.compression_text())}</td></tr>")
    if not rows:
        return ""
    return ("<h3 id='benchmark'>Spike-in benchmark</h3><p class='note'>Features of a second organism that move with the grouping, read as "
            "a benchmark (Ramus et al. 2016): the most frequent organism is the negative set; its calls are false positives.</p>"
            "<table><thead><tr><th>contrast</th><th>organism</th><th>detection</th><th>true / false positives</th>"
            "<th>fold-change error</th><th>abundance</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _organism(organism: object) -> str:
    """The layer's organism as the annotation or ids say, and whether the shipped gene sets apply."""
    if not organism:
        return "not stated"
    if genesets.organism_problem(str(organism)):
        return f"{organism}: no shipped gene sets, so no pathway or network analysis"
    return str(organism)


def _section_design(prof: dict[str, Any]) -> list[str]:
    """Study design: each biological factor's test plan and adjustment, the contrasts, every column's role and why."""
    out = []
    factors = [f for f in _as_list(prof.get("factors")) if isinstance(f, dict)]
    if factors:
        rows = "".join(
            f"<tr><td>{e(f.get('name'))}</td><td>{e(', '.join(f'{k} ({n})' for k, n in (f.get('n_per_level') or {}).items()))}"
            f"{' <i>ordered</i>' if f.get('ordered') else ''}</td><td>{e(', '.join(f.get('references') or []))}"
            f"<div class='sub'>{e(f.get('reference_reason'))}</div></td><td>{e(', '.join(f.get('covariates') or []) or '-')}"
            f"<div class='sub'>{e('; '.join(f.get('notes') or []))}</div></td><td class='num'>{_fmt_num(f.get('power'))}</td></tr>"
            for f in factors[:15]
        )
        out.append("<h4>Study design</h4><p class='sub'>Biological factors in planning order: the sample-type factor first, then power weighted by how clearly the column name "
                   "announces a study question (power: effective n of the whole design, N (1 - sum of squared level shares) / 2, which is n1 n2 / (n1 + n2) for two levels). More than two levels: moderated F-test, a linear trend when ordered, each level vs the "
                   "reference (or all pairs). Technical columns that cross a comparison are adjusted for.</p>"
                   "<table><thead><tr><th>factor</th><th>levels (n)</th><th>reference</th><th>adjusted for</th><th>power</th></tr></thead>"
                   f"<tbody>{rows}</tbody></table>")
    contrasts = [c for c in _as_list(prof.get("contrasts")) if isinstance(c, dict)]
    if contrasts:
        out.append(
            "<h4>Candidate contrasts</h4><ul class='compact'>"
            + "".join(f"<li>{e(c.get('group'))}: {e(c.get('case'))} (n={e(c.get('n_case'))}) vs {e(c.get('control'))} (n={e(c.get('n_control'))})"
                      + (f" (pooled: the mean of {e(', '.join(c['case_levels']))})" if c.get("case_levels") else "")
                      + (f"; adjusted for {e(', '.join(c['covariates']))}" if c.get("covariates") else "")
                      + (f" ({e(', '.join(c['confounders']))}: the classification its case samples are nested in)" if c.get("confounders") else "")
                      + (f"; <b>confounded with</b> {e(', '.join(c['confounded']))}" if c.get("confounded") else "") + "</li>" for c in contrasts[:8])
            + "</ul>"
        )
    variables = [v for v in _as_list(prof.get("variables")) if isinstance(v, dict) and v.get("role")]
    if variables:
        rows = "".join(f"<tr><td>{e(v.get('name'))}</td><td>{e(v.get('role'))}</td><td>{e(v.get('kind'))}</td><td>{e(v.get('role_reason'))}</td></tr>"
                       for v in variables)
        counts: dict[str, int] = {}
        for v in variables:
            counts[v["role"]] = counts.get(v["role"], 0) + 1
        out.append(f"<details><summary>Column roles ({e(', '.join(f'{n} {r}' for r, n in counts.items()))})</summary>"
                   f"<table><thead><tr><th>column</th><th>role</th><th>values</th><th>why</th></tr></thead><tbody>{rows}</tbody></table></details>")
    return out


def _fmt_num(v: Any) -> str:
    return f"{v:.1f}" if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else ""


def _fmt_pct(v: Any) -> str:
    return f"{100 * v:.0f}%" if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else ""


def _section_objectives_list(rd: RunData) -> str:
    objs = rd.objectives
    if not objs:
        return "<h3>Objectives</h3><p class='missing'>No objectives were recorded.</p>"
    rows = "".join(
        f"<tr><td><a href='#obj-{e(o.get('id'))}'>{e(o.get('id'))}</a></td><td>{e(o.get('title'))}<div class='sub'>{e(o.get('question'))}</div></td>"
        f"<td>{e(o.get('family'))}</td><td>{_status_badge(o.get('status'))}</td></tr>"
        for o in objs
    )
    return f"<h3>Objectives</h3><table><thead><tr><th>id</th><th>objective</th><th>family</th><th>status</th></tr></thead><tbody>{rows}</tbody></table>"


def _ranked(rd: RunData) -> list[dict[str, Any]]:
    """The run's hypotheses in the order of their evidence (their ``rank`` position, set by
    :func:`proteus.ranking.rank_hypotheses` in the validate node); a run without ranks keeps its file order."""

    def position(h: dict[str, Any]) -> float:
        pos = h.get("rank").get("position") if isinstance(h.get("rank"), dict) else None
        return float(pos) if isinstance(pos, (int, float)) else math.inf

    return sorted(rd.hypotheses, key=position)


def _rank_text(h: dict[str, Any]) -> str:
    r = h.get("rank") if isinstance(h.get("rank"), dict) else {}
    return f"{r.get('position')}. {r.get('reason', '')}" if r.get("position") is not None else ""


def _validation_text(v: Any) -> str:
    if not v:
        return "not validated"
    if isinstance(v, dict) and v.get("status") and v.get("reason"):
        return f"{verdict_words(v)}: {v['reason']}"
    if isinstance(v, dict):
        outcome = v.get("outcome") or v.get("status") or v.get("result")
        if outcome is None and "passed" in v:
            outcome = "passed" if v.get("passed") else "not passed"
        detail = v.get("method") or v.get("summary") or v.get("detail") or v.get("reason") or ""
        text = ", ".join(f"{k}={_short(x, 50)}" for k, x in v.items() if k not in ("outcome", "status", "result", "passed", "method", "summary", "detail", "reason"))
        parts = [str(outcome) if outcome is not None else "validated", str(detail), text]
        return "; ".join(p for p in parts if p)
    return str(v)


def _section_top_hypotheses(rd: RunData, states: dict[str, Any]) -> str:
    hyps = _ranked(rd)[:5]
    if not hyps:
        return "<h3>Top hypotheses</h3><p>No hypotheses were proposed in this run.</p>"
    rows = []
    for h in hyps:
        m = mean_score(h)
        rev = states.get(str(h.get("id")))
        rows.append(
            f"<tr><td><a href='#hyp-{e(h.get('id'))}'>{e(h.get('id'))}</a></td><td>{e(_statement(h, rev))}</td>"
            f"<td class='num'>{e(f'{m:.1f}' if m is not None else '')}</td><td>{e(_rank_text(h))}</td>"
            f"<td>{_status_badge(rev.status) if rev is not None else ''}</td></tr>"
        )
    return (
        f"<h3>Top hypotheses</h3><p class='sub'>Ranked by evidence: discoveries before positive controls; validated, then inconclusive, "
        "then not testable, then failed; restatements of a composition score and tissue contrasts without a composition term below the "
        f"rest; then held-out replication, a second layer, a measured cause, the effect's interval; {len(rd.hypotheses)} in all.</p>"
        "<table><thead><tr><th>id</th><th>statement</th><th>mean score</th><th>rank and why</th><th>review</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _statement(h: dict[str, Any], rev: Any) -> str:
    if rev is not None and getattr(rev, "statement", None):
        return rev.statement
    tag = "[positive control] " if h.get("kind") == "positive control" else ""
    return tag + str(h.get("statement", ""))


def _section_workflows(rd: RunData) -> str:
    out = ["<h2 id='workflows'>Objectives and workflows</h2>"]
    objs = rd.objectives
    wfs = rd.workflows
    by_obj: dict[str, list[dict[str, Any]]] = {}
    for w in wfs:
        by_obj.setdefault(str(w.get("objective")), []).append(w)
    known = {str(o.get("id")) for o in objs}
    orphan = [w for w in wfs if str(w.get("objective")) not in known]
    if not objs and not wfs:
        out.append("<p class='missing'>No workflow was run.</p>")
    for o in objs:
        oid = str(o.get("id"))
        out.append(f"<h3 id='obj-{e(oid)}'>{e(oid)}. {e(o.get('title'))} {_status_badge(o.get('status'))}</h3>")
        if o.get("question"):
            out.append(f"<p><b>Question.</b> {e(o.get('question'))}</p>")
        if o.get("rationale"):
            out.append(f"<p><b>Why.</b> {e(o.get('rationale'))}</p>")
        ws = by_obj.get(oid, [])
        interps = [str(x.get("interpretation")) for w in ws for x in _as_list(w.get("log")) if isinstance(x, dict) and x.get("interpretation")]
        if o.get("findings") and not (interps and str(o["findings"]).startswith(interps[0][:200])):
            out.append(f"<p class='note'><b>Findings.</b> {e(o.get('findings'))}</p>")
        if not ws and o.get("status") != "dropped":
            out.append("<p class='sub'>No workflow recorded for this objective.</p>")
        for w in ws:
            out.append(_workflow(rd, w))
    for w in orphan:
        out.append(f"<h3>Workflow {e(w.get('id'))} (objective {e(w.get('objective'))})</h3>")
        out.append(_workflow(rd, w))
    return "\n".join(out)


def _workflow(rd: RunData, w: dict[str, Any]) -> str:
    out = [f"<h4>Workflow {e(w.get('id'))}: {e(w.get('title'))}</h4>"]
    log = [x for x in _as_list(w.get("log")) if isinstance(x, dict)]
    interp: dict[str, list[str]] = {}
    for x in log:
        if "step" in x and x.get("interpretation"):
            interp.setdefault(str(x["step"]), []).append(str(x["interpretation"]))
    steps = [s for s in _as_list(w.get("steps")) if isinstance(s, dict)]
    if not steps:
        out.append("<p class='sub'>No steps were run.</p>")
    for i, s in enumerate(steps, 1):
        status = str(s.get("status", ""))
        out.append(f"<div class='step {e(status)}'>")
        out.append(f"<p><b>Step {i} ({e(s.get('id'))}): <code>{e(s.get('tool'))}</code></b> {_status_badge(status)}</p>")
        out.append(f"<p class='params'>{e(_params_text(s.get('params')))}</p>")
        if s.get("rationale"):
            out.append(f"<p><i>Why:</i> {e(s.get('rationale'))}</p>")
        notes = interp.get(str(s.get("id")), [])
        summary = str(s.get("summary") or "")
        if summary and not any(t.startswith(summary[:200]) for t in notes):
            out.append(f"<p><i>Result:</i> {e(summary)}</p>")
        for t in notes:
            out.append(f"<p class='note'><b>Interpretation.</b> {e(t)}</p>")
        metrics = s.get("metrics") if isinstance(s.get("metrics"), dict) else {}
        if metrics:
            out.append("<p class='sub'>" + ", ".join(f"{e(k)}: {e(_fmt_num(v) if isinstance(v, (int, float)) else _short(v, 60))}" for k, v in list(metrics.items())[:12]) + "</p>")
        for t in _as_list(s.get("tables"))[:4]:
            out.append(_result_table(rd, str(t)))
        figs = _as_list(s.get("figures"))
        if figs:
            out.append("<div>" + "".join(_figure(rd, str(f)) for f in figs[:8]) + "</div>")
        out.append("</div>")
    updates: list[list[Any]] = []
    for x in log:
        if x.get("update"):
            if updates and updates[-1][0] == str(x["update"]):
                updates[-1][1] += 1
            else:
                updates.append([str(x["update"]), 1])
    if updates:
        items = "".join(f"<li>{e(u)}{f' (×{k})' if k > 1 else ''}</li>" for u, k in updates)
        out.append(f"<p><b>Workflow updater.</b></p><ul class='compact'>{items}</ul>")
    return "\n".join(out)


def _section_hypotheses(rd: RunData, states: dict[str, Any]) -> str:
    out = ["<h2 id='hypotheses'>Hypotheses</h2>"]
    hyps = _ranked(rd)
    if not hyps:
        out.append("<p>No hypotheses were proposed in this run.</p>")
        return "\n".join(out)
    rels = rd.relations()
    controls_said = False
    for h in hyps:
        hid = str(h.get("id"))
        rev = states.get(hid)
        m = mean_score(h)
        if h.get("kind") == "positive control" and not controls_said:
            controls_said = True
            out.append("<h3 id='positive-controls'>Positive controls</h3><p class='sub'>Expected effects that check the pipeline "
                       "(a spiked standard, a gene's own mutation on its protein); QC results, not findings.</p>")
        out.append(f"<div class='hyp' id='hyp-{e(hid)}'>")
        out.append(f"<h3>{e(hid)}: {e(_statement(h, rev))}</h3>")
        if _rank_text(h):
            out.append(f"<p class='sub'><b>Rank</b> {e(_rank_text(h))}</p>")
        if rev is not None and rev.statement and rev.statement != h.get("statement"):
            out.append(f"<p class='sub'>Edited by a reviewer; original: {e(h.get('statement'))}</p>")
        if h.get("rationale"):
            out.append(f"<p><b>Rationale.</b> {e(h.get('rationale'))}</p>")
        if h.get("test"):
            out.append(f"<p><b>Proposed test.</b> {e(h.get('test'))}</p>")
        ents = _as_list(h.get("entities"))
        if ents:
            out.append(f"<p><b>Entities.</b> {e(', '.join(map(str, ents[:30])))}</p>")
        scores = h.get("scores") if isinstance(h.get("scores"), dict) else {}
        if scores:
            rows = []
            for k in METRICS:
                s = scores.get(k)
                sc = s.get("score") if isinstance(s, dict) else s
                reason = s.get("reason", "") if isinstance(s, dict) else ""
                own = rev.scores.get(k) if rev is not None else None
                rows.append(f"<tr><td>{e(k.replace('_', ' '))}</td><td class='num'>{e(sc)}</td><td class='num'>{e('' if own is None else own)}</td><td>{e(reason)}</td></tr>")
            out.append(
                f"<p><b>Judge.</b> {e(_judge_label(h.get('judge')))}; mean score {e(f'{m:.2f}' if m is not None else 'n/a')}.</p>"
                "<table class='scores'><thead><tr><th>metric</th><th>judge</th><th>reviewer</th><th>reason</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>"
            )
        else:
            out.append(f"<p><b>Judge.</b> {e(_judge_label(h.get('judge')))}.</p>")
        out.append(f"<p><b>Validation.</b> {e(_validation_text(h.get('validation')))}</p>")
        out.append(_validation_table(rels, h.get("validation")))
        out.append(_design_checks_html(h.get("design_checks")))
        checks = [c for c in _as_list(h.get("wording_checks")) if isinstance(c, dict)]
        if checks:
            items = "".join(f"<li>{e(c.get('rule', ''))} {e(c.get('action', ''))}: {e(c.get('detail', ''))}</li>" for c in checks)
            out.append(f"<p><b>Claim checks.</b> Changed before it entered the graph:</p><ul class='compact'>{items}</ul>")
        if rev is not None:
            comments = "".join(f"<li>{e(c)}</li>" for c in rev.comments)
            who = ", ".join(sorted(rev.reviewers))
            out.append(f"<p><b>Review.</b> {_status_badge(rev.status)} by {e(who or 'unknown')}</p>" + (f"<ul class='compact'>{comments}</ul>" if comments else ""))
        ev = [str(x) for x in _as_list(h.get("evidence"))]
        if ev:
            out.append(_evidence_table(rels, ev))
            png = draw_evidence(evidence_graph(rels, ev))
            if png is not None:
                out.append(f"<figure>{_img(png, f'evidence subgraph of {hid}')}<figcaption>evidence subgraph (nodes coloured by entity type)</figcaption></figure>")
            elif rels or rd.kg is None:
                out.append("<p class='missing'>The evidence edges are not in kg.json.</p>")
        out.append("</div>")
    return "\n".join(out)


def _section_underpowered(rd: RunData, per_contrast: int = 3) -> str:
    """Per two-group differential step, its large effects that missed the FDR with the power this sample size
    had for them and the effect it could have called with 80% power (:mod:`proteus.stats.power`)."""
    from proteus.stats.power import underpowered_effects

    items = []
    for sid, st in rd.steps().items():
        prm, metrics = st.get("params") or {}, st.get("metrics") or {}
        rel = next((t for t in _as_list(st.get("tables")) if str(t).endswith(("_results.tsv", "_results.tsv.gz"))), None)
        if st.get("tool") != "differential_abundance" or rel is None or (p := rd.artifact_path(str(rel))) is None:
            continue
        try:
            tab = pd.read_csv(p, sep="\t")
        except Exception:  # an unreadable table is shown where its step is, not here
            continue
        fdr = float(metrics.get("fdr") or 0.05)
        for r in underpowered_effects(tab, fdr=fdr).head(per_contrast).itertuples():
            items.append(
                f"<li><b>{e(r.label)}</b> {r.logFC:+.2f} log2 in {e(prm.get('case'))} vs {e(prm.get('control'))} ({e(prm.get('group'))}; "
                f"q={r.q:.2g}, {r.n_case} vs {r.n_control} samples; step {e(sid)}): suggestive, underpowered. At the p this table's "
                f"calls needed (p &le; {r.alpha:.1e}) the design had power {r.power:.2f} for an effect this size; 80% power needs "
                f"|log2FC| &ge; {r.detectable:.2f} (within-group SD {r.sd:.2f}). Not a finding: the effect is neither shown nor excluded.</li>")
    if not items:
        return ""
    return ("<h2 id='power'>Large effects without significance</h2><p class='sub'>Effects of at least a two-fold change, "
            "observed in most samples of both groups, that missed the FDR; power by the noncentral t at this sample size "
            "(computed for an observed effect it restates its p: it describes the design, not the effect).</p>"
            "<ul class='compact'>" + "".join(items) + "</ul>")


def _section_qc_notes(rd: RunData) -> str:
    """Sample clusterings whose caveats remove a subtype claim (unstable, or following a technical column):
    listed here, never as hypotheses (:func:`proteus.policy.claims.clustering_qc`)."""
    from proteus.policy.claims import clustering_qc

    found: dict[str, tuple[float, Any, dict, str, dict[str, float]]] = {}
    for r in rd.relations().values():
        prov, st = r.get("provenance") or {}, r.get("stats") or {}
        x = st.get("extra") or {}
        if prov.get("tool") != "consensus_clustering" or x.get("pac") is None:
            continue
        step = str(prov.get("step") or "")
        variables = found[step][4] if step in found else {}
        if r.get("predicate") == "associated_with":
            variables[str((r.get("object") or {}).get("label"))] = float(st.get("q") if st.get("q") is not None else st.get("p") or 1.0)
        found[step] = (float(x["pac"]), x.get("k"), x.get("technical") or {}, str(r.get("modality") or ""), variables)
    notes = []
    for step, (pac, k, technical, modality, variables) in sorted(found.items()):
        why = clustering_qc(pac, k, technical)
        if why is not None:
            assoc = f"; associated with {', '.join(sorted(variables, key=variables.get)[:4])}" if variables else ""
            notes.append(f"<li>Sample clusters of {e(modality or 'the data')} (step {e(step)}, k={e(k)}) are {e(why)}{e(assoc)}: a property of "
                         "these samples, not a subtype, so no hypothesis states them.</li>")
    if not notes:
        return ""
    return "<h2 id='qc-notes'>QC notes</h2><ul class='compact'>" + "".join(notes) + "</ul>"


def _design_checks_html(records: Any) -> str:
    """The confounder checks of a hypothesis's contrasts (proteus.confounding): per contrast, the columns that
    matter with test, effect, p, q and decision, and how many others were checked and found independent."""
    parts = []
    for r in [x for x in _as_list(records) if isinstance(x, dict)]:
        if r.get("kind") == "outlier runs":
            rows = "".join(f"<tr><td>{e(f.get('feature'))}</td><td class='num'>{e(_num(f.get('effect')))}</td><td class='num'>{e(_num(f.get('q')))}</td>"
                           f"<td class='num'>{e(_num(f.get('effect_without')))}</td><td class='num'>{e(_num(f.get('q_without')))}</td>"
                           f"<td>{'holds' if f.get('holds') else e(f.get('why') or 'does not hold')}</td></tr>"
                           for f in _as_list(r.get("features")) if isinstance(f, dict))
            parts.append(f"<p><b>Leave-outlier-out check</b> of {e(r.get('contrast'))} without {e(', '.join(map(str, _as_list(r.get('outliers')))))}: "
                         f"{e(r.get('n_hold'))} of {e(r.get('n_features'))} features still pass q &lt; {e(r.get('fdr'))} ({e(r.get('decision'))}).</p>"
                         "<table class='scores'><thead><tr><th>feature</th><th>effect</th><th>q</th><th>effect without</th><th>q without</th>"
                         f"<th>decision</th></tr></thead><tbody>{rows}</tbody></table>")
            continue
        if r.get("kind") == "carrier overlap":
            levels = "; ".join(f"{x.get('k')} of {x.get('n')} carriers in {x.get('where')} against {(x.get('non_carriers') or ['?', '?'])[0]} "
                               f"of {(x.get('non_carriers') or ['?', '?'])[1]} non-carriers (Fisher p={_num(x.get('p'))})"
                               for x in _as_list(r.get("levels")) if isinstance(x, dict))
            parts.append(f"<p><b>Where the carriers sit</b> ({e(r.get('gene'))}, {e(r.get('n_genotyped'))} genotyped samples): {e(levels)}.</p>")
            continue
        if r.get("kind") == "sample contamination":
            parts.append(f"<p><b>Contamination check</b> of {e(r.get('contrast'))}: {e(', '.join(map(str, _as_list(r.get('features')))))} "
                         f"{'is a' if len(_as_list(r.get('features'))) == 1 else 'are'} {e(r.get('panel'))} marker"
                         f"{'' if len(_as_list(r.get('features'))) == 1 else 's'}; the {e(r.get('panel'))} index "
                         f"{e(r.get('decision'))} between the groups ({e(r.get('test'))} p={e(_num(r.get('p')))}, {e(r.get('effect_name'))} {e(_num(r.get('effect')))}).</p>")
            continue
        rows = "".join(
            f"<tr><td>{e(c.get('column'))}</td><td>{e(c.get('test', ''))}</td><td class='num'>{e(_num(c.get('effect')))}</td>"
            f"<td class='num'>{e(_num(c.get('p')))}</td><td class='num'>{e(_num(c.get('q')))}</td><td class='num'>{e(_num(c.get('r2')))}</td>"
            f"<td>{e(c.get('decision'))}</td><td>{e(c.get('reason', ''))}</td></tr>" for c in _as_list(r.get("checks")) if isinstance(c, dict))
        rest = (f"{len(_as_list(r.get('independent')))} other columns independent of it (q &ge; 0.05), "
                f"{len(_as_list(r.get('not_testable')))} not testable on its samples")
        parts.append(f"<p><b>Confounder check</b> of {e(r.get('contrast'))} against {e(r.get('n_columns'))} columns: {rest}.</p>"
                     + ("<table class='scores'><thead><tr><th>column</th><th>test</th><th>effect</th><th>p</th><th>q</th><th>R²</th>"
                        f"<th>decision</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>" if rows else ""))
    return "".join(parts)


def _num(x: Any) -> str:
    return f"{x:.2g}" if isinstance(x, float) else "" if x is None else str(x)


def _count_text(st: dict[str, Any]) -> str:
    """``n`` of a kg.json relation (samples tested) with its per-group observed counts, ``48 (9/35 no, 0/13 yes)``."""
    seen = st.get("observed") if isinstance(st.get("observed"), dict) else {}
    groups = ", ".join(f"{v[0]}/{v[1]} {g}" for g, v in seen.items() if isinstance(v, list | tuple) and len(v) == 2)
    n = st.get("n")
    return (str(n) if isinstance(n, int) and not isinstance(n, bool) else "") + (f" ({groups})" if groups else "")


def _evidence_table(rels: dict[str, dict[str, Any]], ev: list[str]) -> str:
    rows = []
    for eid in ev[:25]:
        r = rels.get(eid)
        if r is None:
            rows.append(f"<tr><td><code>{e(eid)}</code></td><td colspan='6' class='missing'>not in kg.json</td></tr>")
            continue
        st = r.get("stats") if isinstance(r.get("stats"), dict) else {}
        prov = r.get("provenance") if isinstance(r.get("provenance"), dict) else {}
        subj = r.get("subject") if isinstance(r.get("subject"), dict) else {}
        obj = r.get("object") if isinstance(r.get("object"), dict) else {}
        eff = _fmt_num(st.get("effect")) + (f" ({st.get('effect_type')})" if st.get("effect_type") else "")
        rows.append(
            f"<tr><td>{e(subj.get('label'))}</td><td>{e(r.get('predicate'))}</td><td>{e(obj.get('label'))}</td>"
            f"<td class='num'>{e(eff)}</td><td class='num'>{e(_fmt_num(st.get('q')))}</td><td class='num'>{e(_count_text(st))}</td>"
            f"<td><code>{e(prov.get('tool'))}</code> ({e(prov.get('step'))})</td></tr>"
        )
    more = f"<p class='sub'>… and {len(ev) - 25} more edges.</p>" if len(ev) > 25 else ""
    return (
        "<div class='tablewrap'><table><thead><tr><th>subject</th><th>relation</th><th>object</th><th>effect</th><th>q</th><th>n</th><th>tool (step)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>{more}"
    )


def _validation_table(rels: dict[str, dict[str, Any]], v: Any) -> str:
    """Per evidence edge: held-out replication, permutation null, effect with its interval, other layers; then each key
    edge its claim re-tested with a model of its own (carriers against non-carriers, a refit adjusted for a column)."""
    edges = v.get("edges") if isinstance(v, dict) and isinstance(v.get("edges"), dict) else {}
    if not edges:
        return ""
    keyed = [(k.get("edge"), k) for k in _as_list(v.get("key_edges")) if isinstance(k, dict) and k.get("model", "edge") != "edge"]
    rows = []
    for eid, o in [*edges.items(), *keyed]:
        r = rels.get(eid, {})
        label = f"{(r.get('subject') or {}).get('label', eid)} {r.get('predicate', '')} {(r.get('object') or {}).get('label', '')}".strip()
        if o.get("model", "edge") != "edge":  # what the key's own model compared
            subject, obj = (r.get("subject") or {}).get("label", eid), (r.get("object") or {}).get("label", "")
            label = f"key, {o.get('role')}: " + ({"carriers": f"{subject} carriers against non-carriers ({obj})",
                                                  "levels": f"{subject} own feature between the levels ({obj}), genotyped samples"}
                                                 .get(o.get("model"), label))
        if o.get("status") != "tested":
            rows.append(f"<tr><td>{e(label)}</td><td colspan='4' class='muted'>not re-tested: {e(o.get('reason', ''))}</td></tr>")
            continue
        ci = o.get("ci") or [None, None]
        eff = (f"{_fmt_num(o.get('effect'))} [{_fmt_num(ci[0])}, {_fmt_num(ci[1])}] {str(o.get('effect_type') or '').replace('_', ' ')}".strip()
               if o.get("effect") is not None else "")
        cross = "; ".join(f"{k}: {'yes' if c.get('corroborated') else 'no'} ({_fmt_num(c.get('effect'))}, p={_fmt_num(c.get('p'))})" for k, c in (o.get("cross_omics") or {}).items())
        notes = "; ".join(o.get("notes") or [])
        rows.append(
            f"<tr><td>{e(label)}</td><td class='num'>{e(o.get('replicated_splits'))}/{e(o.get('n_splits'))}"
            f"{e(' (' + o['test'] + ')' if o.get('test') else '')}</td>"
            f"<td class='num'>{e(o.get('null_k'))}/{e(o.get('n_permutations'))}</td><td>{e(eff)}</td><td>{e(cross or '—')}{e('; ' + notes if notes else '')}</td></tr>"
        )
    return ("<table><thead><tr><th>evidence edge</th><th>held-out splits replicated</th><th>permuted labels as strong</th>"
            "<th>effect [95% CI]</th><th>other layers</th></tr></thead>" + f"<tbody>{''.join(rows)}</tbody></table>")


def _judge_counts(rd: RunData) -> str:
    """'N scored by X, M by the heuristic fallback' from each hypothesis's own judge label."""
    counts: dict[str, int] = {}
    for h in rd.hypotheses:
        counts[str(h.get("judge") or "not judged")] = counts.get(str(h.get("judge") or "not judged"), 0) + 1
    policy_judge = str(rd.run.get("judge") or "")
    parts = []
    for j, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        fallback = policy_judge and j != policy_judge and j == "heuristic"
        parts.append(f"{n} scored by the {_judge_label(j)}" + (" as a fallback (the model's answer was unusable)" if fallback else ""))
    return ", ".join(parts)


def _section_methods(rd: RunData) -> str:
    run = rd.run
    out = ["<h2 id='methods'>Methods and conventions</h2>"]
    out.append(f"<p><b>Decisions.</b> {e(_policy_label(run))}.")
    judges = sorted({str(h.get("judge")) for h in rd.hypotheses if h.get("judge")}) or ([str(run["judge"])] if run.get("judge") else [])
    if judges:
        out.append(f" <b>Judge.</b> {e('; '.join(_judge_label(j) for j in judges))}: {e(_judge_counts(rd))}.")
    vmethod = next((h["validation"].get("method") for h in rd.hypotheses if isinstance(h.get("validation"), dict) and h["validation"].get("method")), None)
    if vmethod:
        out.append(f" <b>Validation.</b> {e(vmethod)}")
    out.append("</p>")
    tools: dict[str, list[dict[str, Any]]] = {}
    for s in rd.steps().values():
        if s.get("tool"):
            tools.setdefault(str(s["tool"]), []).append(s)
    if tools:
        rows = []
        for name, steps in sorted(tools.items()):
            used = _params_used(steps)
            n_failed = sum(s.get("status") == "failed" for s in steps)
            calls = f"{len(steps)}" + (f" ({n_failed} failed)" if n_failed else "")
            rows.append(f"<tr><td><code>{e(name)}</code></td><td class='num'>{e(calls)}</td><td>{e(tool_method(name))}</td><td class='params'>{e(used)}</td></tr>")
        out.append(
            "<h4>Statistics by tool</h4><table><thead><tr><th>tool</th><th>calls</th><th>method</th><th>settings in this run</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>"
        )
    out.append(
        "<p class='sub'>Conventions: effect sizes are log2 fold changes (case vs control) for contrasts, Spearman ρ for "
        "correlations, hazard ratios for survival and NES for GSEA; q is the Benjamini-Hochberg adjusted p within a step; "
        "n is the number of samples behind a statistic. Judge scores run from 1 (poor) to 5 (strong).</p>"
    )
    facts = []
    if run.get("run_id"):
        facts.append(f"run id {e(run['run_id'])}")
    if "seed" in run:
        facts.append(f"seed {e(run.get('seed'))}")
    fp = run.get("fingerprint")
    if isinstance(fp, dict):
        facts.append(f"{len(fp)} input files fingerprinted (SHA-256)")
    for k in ("started", "finished"):
        if run.get(k):
            facts.append(f"{k} {e(run[k])}")
    if run.get("wall_seconds") is not None:
        facts.append(f"wall time {e(_fmt_num(run['wall_seconds']))} s")
    if run.get("status"):
        facts.append(f"status {e(run['status'])}")
    wording = run.get("wording")
    if isinstance(wording, dict) and wording.get("checked"):
        facts.append(f"claim checks: {e(wording.get('checked'))} drafted hypotheses, {e(wording.get('changed', 0))} reworded or with evidence dropped, "
                     f"{e(wording.get('rejected', 0))} rejected")
    if facts:
        out.append("<p>" + "; ".join(facts) + ".</p>")
    usage = run.get("usage")
    if isinstance(usage, dict) and usage:
        out.append("<p class='sub'>Model usage: " + ", ".join(f"{e(k)} {e(_short(v, 40))}" for k, v in usage.items() if k != "decided_by") + "</p>")
        out.append(_decided_by_table(usage.get("decided_by")))
    vers = run.get("versions")
    if isinstance(vers, dict) and vers:
        out.append("<h4>Software versions</h4><table><tbody>" + "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in vers.items()) + "</tbody></table>")
    return "\n".join(out)


def _review_states(rd: RunData) -> dict[str, Any]:
    if not rd.reviews:
        return {}
    try:
        return replay(rd.reviews)
    except Exception:  # a malformed review log must not cost the report
        rd.problems.append("reviews.jsonl: could not be replayed")
        return {}


def _decided_by_table(decided: Any) -> str:
    """Who made each type of decision: the model, the model after a repair, or the fallback."""
    if not isinstance(decided, dict) or not decided:
        return ""
    rows = "".join(
        f"<tr><td>{e(d)}</td>" + "".join(f"<td>{e(c.get(k, 0))}</td>" for k in ("model", "repaired", "fallback")) + "</tr>"
        for d, c in decided.items()
        if isinstance(c, dict)
    )
    warn = ""
    if all(isinstance(c, dict) and not c.get("model") and not c.get("repaired") for c in decided.values()):
        warn = "<p class='missing'>Every model decision fell back to the offline policy: this run's choices are the heuristic's.</p>"
    return f"<h4>Who decided</h4>{warn}<table><thead><tr><th>decision</th><th>model</th><th>repaired</th><th>fallback</th></tr></thead><tbody>{rows}</tbody></table>"


def render_report(run_dir: str | Path) -> str:
    """The report of ``run_dir`` as an HTML string (what :func:`write_report` writes)."""
    rd = load_run(run_dir)
    states = _review_states(rd)
    run = rd.run
    title = f"PROTEUS report — {run.get('run_id') or rd.path.name}"
    counts = run.get("counts") if isinstance(run.get("counts"), dict) else {}
    lead = []
    if counts:
        lead.append(", ".join(f"{e(v)} {e(k)}" for k, v in counts.items()))
    lead.append(e(_policy_label(run)))
    power, notes = _section_underpowered(rd), _section_qc_notes(rd)
    body = [
        f"<h1>{e(title)}</h1>",
        f"<p class='sub'>{' · '.join(lead)} · generated {e(time.strftime('%Y-%m-%d %H:%M'))}</p>",
        "<nav><a href='#summary'>Summary</a>" + ("<a href='#qc'>Sample quality</a>" if rd.quality.get("layers") else "") + "<a href='#workflows'>Objectives and workflows</a><a href='#hypotheses'>Hypotheses</a>"
        + ("<a href='#power'>Large effects</a>" if power else "") + ("<a href='#qc-notes'>QC notes</a>" if notes else "") + "<a href='#methods'>Methods</a></nav>",
    ]
    if rd.problems:
        body.append("<p class='missing'>Some artifacts could not be read: " + "; ".join(e(p) for p in rd.problems) + "</p>")
    if run.get("failure"):
        body.append(f"<p class='missing'><b>This run failed:</b> {e(run.get('failure'))}</p>")
    elif run.get("status") and run.get("status") != "finished":
        body.append(f"<p class='missing'>This run is {e(run.get('status'))}; the report shows what exists so far.</p>")
    for w in _as_list(run.get("warnings")):
        body.append(f"<p class='missing'><b>Warning:</b> {e(w)}</p>")
    body += [
        "<h2 id='summary'>Summary</h2>",
        _section_data(rd),
        _section_quality(rd),
        _section_benchmark(rd),
        _section_objectives_list(rd),
        _section_top_hypotheses(rd, states),
        _section_workflows(rd),
        _section_hypotheses(rd, states),
        power,
        notes,
        _section_methods(rd),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{_csp()}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{e(title)}</title><style>{_CSS}</style><script>{_SCRIPT}</script></head>"
        f"<body><main>\n{chr(10).join(body)}\n</main></body></html>\n"
    )


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` into ``run_dir`` (atomically) and return its path.

    Parameters
    ----------
    run_dir
        A run directory written by :func:`proteus.runner.run_research`; partial or empty ones
        give a shorter report.

    Returns
    -------
    Path of ``report.html``.
    """
    from proteus.rundir import RunDir

    path = Path(run_dir)
    if not path.is_dir():
        msg = f"{path} is not a run directory"
        raise FileNotFoundError(msg)
    target = RunDir(path).write_text("report.html", render_report(path))  # atomic, secrets redacted
    return target


def report_cli(
    run_dir: Annotated[Path, typer.Argument(help="run directory written by `proteus run`", exists=True, file_okay=False, dir_okay=True)],
) -> None:
    """Write the HTML report of a finished (or partial) run into RUN_DIR/report.html."""
    typer.echo(str(write_report(run_dir)))
