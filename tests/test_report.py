"""The HTML report: self-contained, escaped, robust to partial runs, and renders in a browser.

A small synthetic run directory (schema-correct, written through the real records and knowledge
graph classes, with hostile strings in every data-derived field) covers the details; a real
offline run on CPTAC UCEC covers the whole (``ucec_run`` from ``conftest.py`` when the lead's
fixture exists, else one made here).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from proteus.kg import KnowledgeGraph
from proteus.records import Entity, Hypothesis, Objective, Provenance, Relation, Score, Stats, Step
from proteus.report import load_run, mean_score, render_report, write_report

HOSTILE = "<script>alert('x')</script>"
HOSTILE_IMG = '<img src=x onerror="alert(1)">'
MATH = r"$\frac{a}{b$"  # would crash matplotlib's mathtext if not escaped


def _png(path: Path, title: str = "volcano") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2.4))
    ax.scatter([-2, -1, 0, 1, 2.5], [3, 1, 0.2, 1.5, 4], c=["b", "k", "k", "k", "r"])
    ax.set_title(title)
    fig.savefig(path, dpi=60)
    plt.close(fig)


def make_synthetic_run(root: Path, *, hostile: bool = True) -> Path:
    """A finished, schema-correct run directory with two objectives, a failed step and 3 hypotheses."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "figures").mkdir(exist_ok=True)
    (root / "tables").mkdir(exist_ok=True)
    bad = HOSTILE if hostile else "TP53"
    contrast = Entity(type="sample_group", label=f"MSI_status: MSI-H vs MSS {HOSTILE_IMG if hostile else ''}".strip())
    prov1 = Provenance(objective="O1", workflow="O1.W1", step="O1.W1.S1", tool="differential_abundance",
                       params={"modality": "proteomics", "group": "MSI_status", "case": "MSI-H", "control": "MSS"})
    rels = [
        Relation(subject=Entity(type="protein", label="MLH1"), predicate="lower_in", object=contrast,
                 stats=Stats(effect=-2.1, effect_type="log2FC", p=1e-12, q=1e-9, n=95, direction="down"), modality="proteomics", provenance=prov1),
        Relation(subject=Entity(type="protein", label=bad), predicate="higher_in", object=contrast,
                 stats=Stats(effect=0.8, effect_type="log2FC", p=1e-4, q=0.01, n=95, direction="up"), modality="proteomics", provenance=prov1),
        Relation(subject=Entity(type="protein", label=MATH), predicate="higher_in", object=contrast,
                 stats=Stats(effect=0.5, effect_type="log2FC", p=1e-3, q=0.04, n=95, direction="up"), modality="proteomics", provenance=prov1),
    ]
    prov2 = Provenance(objective="O1", workflow="O1.W1", step="O1.W1.S2", tool="enrichment_ora", params={"source_step": "O1.W1.S1"})
    rels.append(Relation(subject=Entity(type="pathway", label="Mismatch repair"), predicate="enriched_in", object=contrast,
                         stats=Stats(effect=4.2, effect_type="odds_ratio", p=1e-5, q=1e-3, n=12), provenance=prov2))
    _png(root / "figures" / "O1.W1.S1_volcano.png")
    _png(root / "figures" / "O1.W1.S2_dotplot.png", "enrichment")
    (root / "tables" / "O1.W1.S1_results.tsv").write_text(
        "feature\tlog2FC\tAveExpr\tt\tp\tq\tn\n"
        "MLH1\t-2.1\t0.1\t-9\t1e-12\t1e-9\t95\n"
        f"{bad}\t0.8\t0.0\t4\t1e-4\t0.01\t95\n"
        f"{MATH}\t0.5\t0.0\t3\t1e-3\t0.04\t95\n"
    )
    steps1 = [
        Step(id="O1.W1.S1", tool="differential_abundance", params=prov1.params, rationale="compare MSI-H with MSS", status="done",
             summary=f"3 of 9000 proteins differ (q<0.05); top {bad}", metrics={"n_tested": 9000, "n_significant": 3, "method": "limma"},
             tables=["tables/O1.W1.S1_results.tsv"], figures=["figures/O1.W1.S1_volcano.png"], relation_ids=[r.id for r in rels[:3]]),
        Step(id="O1.W1.S2", tool="enrichment_ora", params=prov2.params, status="done", summary="mismatch repair enriched",
             figures=["figures/O1.W1.S2_dotplot.png", "figures/does_not_exist.png", "../../etc/passwd"], relation_ids=[rels[3].id]),
        Step(id="O1.W1.S3", tool="ppi_network", params={"source_step": "O1.W1.S1"}, status="failed", summary="too few hits for a network"),
    ]
    steps2 = [Step(id="O2.W1.S1", tool="cox_per_feature", params={"modality": "proteomics", "time": "OS_days", "event": "OS_event"},
                   status="failed", summary=f"invalid call: {HOSTILE if hostile else 'x'}")]
    objectives = [
        Objective(id="O1", title=f"MSI-H vs MSS {bad}", question="which proteins separate MSI-H from MSS?", family="differential", status="done", findings=f"MLH1 lost; {bad}"),
        Objective(id="O2", title="Survival", question="which proteins predict survival?", family="survival", status="done"),
        Objective(id="O3", title="Dropped one", question="?", family="mutation", status="dropped"),
    ]
    workflows = [
        {"id": "O1.W1", "objective": "O1", "title": "MSI contrast", "steps": [s.model_dump() for s in steps1],
         "log": [{"step": "O1.W1.S1", "interpretation": f"MLH1 silencing explains MSI-H; {bad}"}, {"update": f"hits found, add enrichment {bad}"},
                 {"step": "O1.W1.S2", "interpretation": "MMR pathway"}]},
        {"id": "O2.W1", "objective": "O2", "title": "Cox", "steps": [s.model_dump() for s in steps2], "log": []},
    ]
    def sc(v: int) -> Score:
        return Score(score=v, reason=f"because {bad}")

    hyps = [
        Hypothesis(id="H_mlh1", statement=f"Loss of MLH1 protein drives MSI-H {bad}", rationale=f"MLH1 lower in MSI-H; {bad}", evidence=[rels[0].id, rels[3].id],
                   entities=["protein:MLH1", "pathway:Mismatch repair"], test="IHC for MLH1 in an independent cohort",
                   scores={m: sc(v) for m, v in zip(("reliability", "logical_coherence", "biological_plausibility", "novelty", "evaluability"), (5, 5, 5, 2, 4))},
                   judge="heuristic", validation={"outcome": "supported", "method": "held-out samples", "q": 0.003}),
        Hypothesis(id="H_bad", statement=f"{bad} is higher in MSI-H", rationale="higher_in edge", evidence=[rels[1].id, rels[2].id], entities=[f"protein:{bad}"],
                   test="replicate", scores={m: sc(3) for m in ("reliability", "logical_coherence", "biological_plausibility", "novelty", "evaluability")}, judge="heuristic"),
        Hypothesis(id="H_ghost", statement="Evidence edge missing from the graph", rationale="-", evidence=["e_missing"], entities=[], test="-", judge=""),
    ]
    kg = KnowledgeGraph()
    kg.add_relations(rels)
    for o in objectives:
        kg.add_objective(o)
    for w in workflows:
        kg.add_workflow(w["id"], w["objective"], w["title"])
        for s in w["steps"]:
            kg.add_step(Step.model_validate(s), w["id"])
    for h in hyps:
        kg.add_hypothesis(h)
    (root / "kg.json").write_text(json.dumps(kg.to_node_link(), default=str))
    (root / "hypotheses.jsonl").write_text("".join(json.dumps(h.model_dump()) + "\n" for h in hyps))
    (root / "state.json").write_text(json.dumps({"objectives": [o.model_dump() for o in objectives], "workflows": workflows}))
    (root / "run.json").write_text(json.dumps({
        "run_id": root.name, "data": f"/data/{bad}", "policy": "heuristic", "model": "offline", "judge": "heuristic", "seed": 7,
        "fingerprint": {"proteomics.tsv": "ab" * 32, "clinical.tsv": "cd" * 32}, "status": "finished",
        "versions": {"python": "3.11", "pandas": "2.2"}, "started": "2025-01-01T00:00:00", "finished": "2025-01-01T00:01:00", "wall_seconds": 60.0,
        "inputs": ["proteomics.tsv: proteomics", f"{bad}.txt: skipped (unreadable)"],
        "counts": {"objectives": 2, "steps": 4, "relations": 4, "hypotheses": 3},
    }))
    (root / "profile.json").write_text(json.dumps({
        "modalities": [{"name": "proteomics", "kind": "proteomics", "level": "sample", "n_samples": 95, "n_features": 9000, "missing_fraction": 0.12, "id_type": "symbol"},
                       {"name": bad, "kind": "transcriptomics", "level": "sample", "n_samples": 95, "n_features": 20000, "missing_fraction": 0.0, "id_type": "symbol"}],
        "variables": [], "contrasts": [{"group": "MSI_status", "case": "MSI-H", "control": bad, "n_case": 25, "n_control": 70}],
        "survival": [["OS_days", "OS_event"]], "n_samples": 95, "files": [],
    }))
    return root


# --- checks -------------------------------------------------------------------------------------

IMG_SRC = re.compile(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", re.I)


def check_images(text: str) -> int:
    """Every <img> is a data: URI that decodes to a PNG; returns how many."""
    n_tags = len(re.findall(r"<img\b", text, re.I))
    srcs = IMG_SRC.findall(text)
    assert len(srcs) == n_tags
    for src in srcs:
        assert src.startswith("data:image/png;base64,"), src[:80]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return len(srcs)


def check_self_contained(text: str) -> None:
    assert "http://" not in text.replace("http-equiv", "")
    assert "https://" not in text
    assert not re.search(r"<(link|iframe|object|embed)\b", text, re.I)
    assert len(re.findall(r"<script\b", text, re.I)) == 1  # the one inline image counter


def test_synthetic_report_sections_images_escaping(tmp_path):
    run = make_synthetic_run(tmp_path / "run1")
    out = write_report(run)
    assert out == run / "report.html"
    text = out.read_text(encoding="utf-8")
    for section in ("id='summary'", "id='workflows'", "id='hypotheses'", "id='methods'", "Input files", "Modalities", "Top hypotheses",
                    "Statistics by tool", "Software versions", "Workflow updater"):
        assert section in text, section
    # 2 step figures (the missing one and the path outside the run are reported, not embedded) + 2 evidence graphs
    assert check_images(text) == 4
    assert "does_not_exist.png is missing" in text
    assert "passwd" in text and "root:" not in text
    check_self_contained(text)
    # hostile text only ever appears escaped
    assert HOSTILE not in text and HOSTILE_IMG not in text
    assert html.escape(HOSTILE) in text
    assert "onerror=\"alert" not in text
    # labels for policy and judge
    assert "offline heuristic policy" in text
    assert "heuristic judge" in text
    assert "seed 7" in text and "2 input files fingerprinted" in text
    # hypotheses ranked by mean score; validation and scores shown
    assert text.index("id='hyp-H_mlh1'") < text.index("id='hyp-H_bad'")
    assert "supported" in text and "held-out samples" in text
    assert "IHC for MLH1" in text
    assert "not in kg.json" in text  # H_ghost's evidence
    # result table: top rows with effect and q, sorted by q
    assert "sorted by q" in text and "MLH1" in text
    # failed steps shown with their reason
    assert text.count("badge bad") >= 2 and "too few hits for a network" in text


def test_mean_score():
    assert mean_score({"scores": {"reliability": {"score": 4, "reason": ""}, "novelty": {"score": 2, "reason": ""}}}) == 3.0
    assert mean_score({"scores": {}}) is None
    assert mean_score({}) is None


@pytest.mark.parametrize("keep", [(), ("run.json",), ("run.json", "state.json"), ("hypotheses.jsonl",), ("kg.json", "hypotheses.jsonl")])
def test_partial_run_directories(tmp_path, keep):
    full = make_synthetic_run(tmp_path / "full")
    part = tmp_path / "part"
    part.mkdir()
    for name in keep:
        shutil.copy(full / name, part / name)
    text = write_report(part).read_text()
    assert "id='methods'" in text
    check_images(text)
    assert HOSTILE not in text


def test_corrupt_artifacts_are_reported_not_raised(tmp_path):
    run = make_synthetic_run(tmp_path / "run")
    (run / "kg.json").write_text("{not json")
    (run / "state.json").write_text("[1, 2]")
    with open(run / "hypotheses.jsonl", "a") as f:
        f.write('{"id": "H_torn", "stat')  # a torn last line
    (run / "figures" / "O1.W1.S1_volcano.png").write_text(HOSTILE)  # not a PNG
    (run / "tables" / "O1.W1.S1_results.tsv").write_bytes(b"\x00\xff\xfe garbage")
    text = write_report(run).read_text()
    assert "kg.json: unreadable" in text
    assert "line 4 is not JSON" in text
    check_images(text)
    assert HOSTILE not in text


def test_running_run_and_no_hypotheses(tmp_path):
    run = make_synthetic_run(tmp_path / "run")
    (run / "hypotheses.jsonl").write_text("")
    info = json.loads((run / "run.json").read_text())
    info["status"] = "running"
    info["policy"] = "llm"
    info["model"] = "gpt-test"
    (run / "run.json").write_text(json.dumps(info))
    text = write_report(run).read_text()
    assert "No hypotheses were proposed" in text
    assert "this run is running" in text.lower()
    assert "llm policy, model gpt-test" in text


def test_reviews_show_in_report(tmp_path):
    from proteus.review import ReviewSession

    run = make_synthetic_run(tmp_path / "run")
    rv = ReviewSession(run, reviewer=HOSTILE)
    rv.accept("H_mlh1")
    rv.edit("H_bad", "Edited statement about TP53")
    rv.reject("H_bad", "weak")
    rv.comment("H_bad", HOSTILE_IMG)
    rv.score("H_bad", novelty=1)
    text = render_report(run)
    assert "Edited statement about TP53" in text
    assert "badge ok'>accepted" in text.replace('"', "'") or ">accepted<" in text
    assert ">rejected<" in text
    assert HOSTILE not in text and HOSTILE_IMG not in text


def test_missing_run_dir_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope")


def test_report_cli_is_typer_compatible(tmp_path):
    import typer
    from typer.testing import CliRunner

    from proteus.report import report_cli

    app = typer.Typer()
    app.command("report")(report_cli)
    app.command("noop")(lambda: None)
    run = make_synthetic_run(tmp_path / "run")
    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert (run / "report.html").exists()
    assert CliRunner().invoke(app, ["report", str(tmp_path / "absent")]).exit_code != 0


# --- a real run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_run(request, tmp_path_factory):
    """The lead's ``ucec_run`` session fixture when it exists, else an offline run made here."""
    try:
        return Path(request.getfixturevalue("ucec_run"))
    except pytest.FixtureLookupError:
        pass
    from proteus.datasets import MissingSourceError, fetch
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.runner import run_research

    base = tmp_path_factory.mktemp("ucec")
    try:
        data = Path(request.getfixturevalue("ucec_dir"))
    except pytest.FixtureLookupError:
        try:
            data = fetch("cptac-ucec", base / "data")
        except MissingSourceError as ex:
            pytest.skip(str(ex))
    out = base / "run"
    run_research(data, out, policy=HeuristicPolicy(), max_objectives=3)
    return out


@pytest.mark.slow
def test_real_run_report(real_run, tmp_path):
    rd = load_run(real_run)
    assert rd.run.get("policy") == "heuristic"
    text = write_report(real_run).read_text()
    n = check_images(text)
    n_figs = sum(1 for s in rd.steps().values() for f in s.get("figures") or [] if rd.artifact_path(f))
    assert n >= n_figs
    check_self_contained(text)
    assert "offline heuristic policy" in text
    for m in rd.profile.get("modalities", []):
        assert html.escape(m["name"]) in text
    if rd.hypotheses:
        assert "evidence subgraph" in text
    _render_in_chromium(real_run / "report.html", tmp_path, expect_images=n)


# --- headless browser ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)")


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check", "--mute-audio",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=120)


_CONSOLE_PROBLEM = re.compile(r"(Uncaught|Refused to|Content Security Policy|CONSOLE.*(error|Error)|Failed to load resource|net::ERR_)")


def _render_in_chromium(report: Path, tmp: Path, *, expect_images: int) -> None:
    url = report.resolve().as_uri()
    shot = tmp / "shot.png"
    prof = Path(tempfile.mkdtemp(dir=tmp))
    res = _chromium([f"--screenshot={shot}", "--window-size=1280,2000", url], prof)
    assert shot.exists(), res.stderr[-2000:]
    problems = [ln for ln in res.stderr.splitlines() if _CONSOLE_PROBLEM.search(ln)]
    assert not problems, problems
    # the screenshot is not blank: its pixels vary
    import matplotlib.image as mpimg

    px = mpimg.imread(shot)
    assert px.shape[0] >= 1000 and px.shape[1] >= 1200
    assert float(px[..., :3].std()) > 0.02
    # every image decoded: the page's inline counter writes data-images-loaded on load
    res = _chromium(["--dump-dom", url], Path(tempfile.mkdtemp(dir=tmp)))
    dom = res.stdout
    m = re.search(r'data-images-loaded="(\d+)"', dom)
    t = re.search(r'data-images-total="(\d+)"', dom)
    assert m and t, "image counter did not run: " + res.stderr[-1500:]
    assert int(t.group(1)) == expect_images
    assert int(m.group(1)) == expect_images
    problems = [ln for ln in res.stderr.splitlines() if _CONSOLE_PROBLEM.search(ln)]
    assert not problems, problems
    # hostile text stayed text: the only <script> element in the live DOM is the report's own
    assert len(re.findall(r"<script\b", dom, re.I)) == 1
    assert not re.search(r"<img\b[^>]*onerror", dom, re.I)


@needs_chromium
def test_synthetic_report_renders_in_chromium(tmp_path):
    run = make_synthetic_run(tmp_path / "run")
    text = write_report(run).read_text()
    _render_in_chromium(run / "report.html", tmp_path, expect_images=check_images(text))
