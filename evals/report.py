"""``eval.md`` and ``eval.html``: the evaluation a person reads, from ``eval.json``.

One table per view (datasets, judges, validation), and one figure (embedded PNG in the HTML,
``eval.png`` next to the Markdown): the distribution of each judge metric, and the replication
rate of each dataset (discovery vs label-permuted null) with its Wilson 95% interval.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from proteus.records import METRICS

__all__ = ["write_eval_report", "render_markdown", "render_html", "plot"]

_SHORT = {"reliability": "rel", "logical_coherence": "logic", "biological_plausibility": "plaus", "novelty": "nov", "evaluability": "eval"}


def _pct(r: dict[str, Any]) -> str:
    if not r or not r.get("n"):
        return "n/a"
    lo, hi = r["ci95"]
    return f"{r['k']}/{r['n']} = {r['rate']:.0%} [{lo:.0%}, {hi:.0%}]"


def _f(x: Any, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["dataset", "objectives", "families", "hypotheses", "judge", *(_SHORT[m] for m in METRICS),
            "replicated (95% CI)", "cross-omics", "null: proposed / replicating", "wall s", "tokens", "cost $"]
    rows = []
    for d in report["datasets"]:
        if d["status"] != "ok":
            rows.append([d["name"], f"FAILED in {d.get('stage')}: {d.get('error')}", *[""] * (len(head) - 2)])
            continue
        judges = d["judges"] or {"-": {"mean": {}}}
        for i, (jname, s) in enumerate(judges.items()):
            first = i == 0
            wall = d.get("wall_seconds") or sum(d["seconds"].values())
            u = d["usage"]
            rows.append([
                d["name"] if first else "",
                str(d["discovery"]["objectives"]) if first else "",
                str(len(d["discovery"]["families"])) if first else "",
                str(d["discovery"]["hypotheses"]) if first else "",
                jname + (" (model)" if s.get("model") else " (offline)" if jname != "-" else ""),
                *(_f(s["mean"].get(m)) for m in METRICS),
                _pct(d["replication"]) if first else "",
                _pct(d["cross_omics"]) if first else "",
                f"{d['null']['hypotheses']} / {d['null']['replicating']}" if first else "",
                f"{wall:.0f}" if first else "",
                str(u["prompt_tokens"] + u["completion_tokens"]) if first else "",
                f"{u['cost_usd']:.4f}" if first else "",
            ])
    o = report["overall"]
    for i, (jname, s) in enumerate((o["judges"] or {"-": {"mean": {}}}).items()):
        first = i == 0
        u = o["usage"]
        rows.append([
            "**overall**" if first else "", str(o["objectives"]) if first else "", "", str(o["hypotheses"]) if first else "",
            jname + (" (model)" if s.get("model") else " (offline)" if jname != "-" else ""),
            *(_f(s["mean"].get(m)) for m in METRICS),
            _pct(o["replication"]) if first else "", _pct(o["cross_omics"]) if first else "",
            f"{o['null']['hypotheses']} / {o['null']['replicating']}" if first else "",
            f"{report['wall_seconds']:.0f}" if first else "",
            str(u["prompt_tokens"] + u["completion_tokens"]) if first else "", f"{u['cost_usd']:.4f}" if first else "",
        ])
    return head, rows


def plot(report: dict[str, Any]) -> bytes:
    """PNG: per-metric score distributions (pooled, per judge) and replication rates with 95% CIs."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    judges = report["overall"]["judges"]
    width = 0.8 / max(1, len(judges))
    for j, (jname, s) in enumerate(judges.items()):
        for i, m in enumerate(METRICS):
            dist = s["distribution"].get(m, {})
            total = sum(dist.values()) or 1
            bottom = 0.0
            for k in range(1, 6):
                frac = dist.get(str(k), 0) / total
                ax1.bar(i + j * width, frac, width * 0.95, bottom=bottom, color=matplotlib.colormaps["RdYlGn"]((k - 1) / 4),
                        edgecolor="white", label=f"score {k}" if (i == 0 and j == 0) else None)
                bottom += frac
        if len(judges) > 1:
            ax1.text(j * width, 1.02, jname[:12], fontsize=6, rotation=45)
    ax1.set_xticks([i + width * (len(judges) - 1) / 2 for i in range(len(METRICS))], [_SHORT[m] for m in METRICS])
    ax1.set_ylabel("fraction of hypotheses")
    ax1.set_title("judge scores (1-5), all datasets", fontsize=10)
    if judges:
        ax1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=5, frameon=False)
    ok = [d for d in report["datasets"] if d["status"] == "ok"]
    names = [d["name"] for d in ok] + ["overall"]
    for off, key, colour, label in ((-0.18, "replication", "tab:blue", "discovery"), (0.18, "null", "tab:grey", "label-permuted null")):
        vals, lo, hi = [], [], []
        for d in [*ok, None]:
            if key == "replication":
                r = d["replication"] if d else report["overall"]["replication"]
                k, n = r["k"], r["n"]
            else:
                r = d["null"] if d else report["overall"]["null"]
                k, n = r["replicating"], r["evaluable"]
            from proteus.validation import wilson_ci

            a, b = wilson_ci(k, n)
            rate = k / n if n else 0.0
            vals.append(rate)
            lo.append(rate - (a if a is not None else 0))
            hi.append((b if b is not None else 0) - rate)
        xs = [i + off for i in range(len(names))]
        ax2.bar(xs, vals, 0.34, color=colour, label=label)
        ax2.errorbar(xs, vals, yerr=[lo, hi], fmt="none", ecolor="k", capsize=3, lw=1)
    ax2.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("hypotheses replicated on held-out samples")
    ax2.set_title("replication rate (Wilson 95% CI)", fontsize=10)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _method(report: dict[str, Any]) -> str:
    from proteus.validation import METHOD

    return METHOD.format(alpha=0.05)


def render_markdown(report: dict[str, Any], png_name: str = "eval.png") -> str:
    head, rows = _rows(report)
    c = report["config"]
    lines = [
        "# PROTEUS evaluation",
        "",
        f"{report['created']}; policy `{c['model']}`, seed {c['seed']}, {c['workers']} Dask worker(s) ({c['scheduler']}); "
        f"batch wall time {report['wall_seconds']:.0f} s. Judge `heuristic` = offline rules, reported apart from model judges.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(x.replace("|", "\\|") for x in r) + " |" for r in rows),
        "",
        f"![scores and replication]({png_name})",
        "",
        "## How validation works",
        "",
        "Samples are split 60/40 (seeded, stratified by the first candidate contrast) into discovery and held-out parts. "
        "PROTEUS runs on the discovery part; a null-control run uses the same samples with clinical labels, mutation calls "
        "and secondary omics layers permuted. Then, for every hypothesis: " + _method(report) + ". Cross-omics: "
        "protein-level evidence re-tested in the RNA layer with the same tool and parameters.",
        "",
    ]
    failed = [d for d in report["datasets"] if d["status"] != "ok"]
    if failed:
        lines += ["## Failed datasets", ""] + [f"- `{d['name']}` ({d.get('stage')}): {d.get('error')}" for d in failed] + [""]
    return "\n".join(lines)


def render_html(report: dict[str, Any], png: bytes) -> str:
    head, rows = _rows(report)
    esc = html.escape
    table = "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
    for r in rows:
        cls = ' class="fail"' if len(r) > 1 and r[1].startswith("FAILED") else ""
        table += f"<tr{cls}>" + "".join(f"<td>{esc(x.replace('**', ''))}</td>" for x in r) + "</tr>"
    table += "</tbody></table>"
    md = render_markdown(report)
    method = md.split("## How validation works", 1)[1].split("##", 1)[0].strip()
    c = report["config"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>PROTEUS evaluation</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}th{{background:#f0f0f0}}tr.fail td{{color:#b00}}</style></head><body>
<h1>PROTEUS evaluation</h1>
<p>{esc(report['created'])}; policy <code>{esc(str(c['model']))}</code>, seed {c['seed']}, {c['workers']} Dask worker(s) ({esc(str(c['scheduler']))});
batch wall time {report['wall_seconds']:.0f} s. Judge <code>heuristic</code> = offline rules, reported apart from model judges.</p>
{table}
<p><img alt="score distributions and replication rates" src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>
<h2>How validation works</h2><p>{esc(method)}</p>
<p>Machine-readable: <code>eval.json</code>.</p></body></html>"""


def write_eval_report(out: str | Path, report: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``eval.md`` (+ ``eval.png``) and ``eval.html`` into ``out`` (from ``eval.json`` if not given)."""
    out = Path(out)
    if report is None:
        report = json.loads((out / "eval.json").read_text())
    png = plot(report)
    (out / "eval.png").write_bytes(png)
    md = out / "eval.md"
    md.write_text(render_markdown(report))
    page = out / "eval.html"
    page.write_text(render_html(report, png))
    return md, page
