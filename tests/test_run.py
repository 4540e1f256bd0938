"""End to end: `proteus run` on real cohorts, its artifacts, the CLI's behaviour on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from proteus.records import METRICS
from proteus.tools import list_tools

pytestmark = pytest.mark.slow


def _proteus(*args: str, cwd: Path | None = None, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proteus", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def _jsonl(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def test_ucec_run_writes_every_artifact(ucec_run: Path):
    run = json.loads((ucec_run / "run.json").read_text())
    assert run["status"] == "finished"
    assert run["policy"] == "heuristic" and run["judge"] == "heuristic"
    assert run["seed"] == 0 and run["wall_seconds"] > 0
    assert "proteomics.tsv.gz" in run["fingerprint"] and len(run["fingerprint"]["proteomics.tsv.gz"]) == 64
    assert {"numpy", "pandas", "langgraph"} <= set(run["versions"])

    kg_data = json.loads((ucec_run / "kg.json").read_text())
    g = nx.node_link_graph(kg_data, directed=True, multigraph=True, edges="edges")
    types = {d["type"] for _, d in g.nodes(data=True)}
    assert {"objective", "workflow", "step", "hypothesis", "protein", "gene", "pathway", "sample_group", "mutation"} <= types
    assert all("id" in d and "type" in d for d in kg_data["nodes"])  # node-link JSON: the id is the node key
    relation_edges = {d["id"]: d for _, _, d in g.edges(data=True) if "stats" in d}
    assert len(relation_edges) > 200
    for d in relation_edges.values():
        assert d["predicate"] and d["subject"]["type"] and d["object"]["type"]
        assert {"effect", "p", "q", "n", "direction"} <= set(d["stats"])
        assert d["provenance"]["tool"] and d["provenance"]["step"] and d["provenance"]["objective"]
        assert d["modality"] is None or isinstance(d["modality"], str)

    hyps = _jsonl(ucec_run / "hypotheses.jsonl")
    assert len(hyps) >= 15
    for h in hyps:
        assert h["statement"] and h["rationale"] and h["test"] and h["entities"]
        assert h["evidence"] and all(e in relation_edges for e in h["evidence"])
        assert set(h["scores"]) == set(METRICS)
        assert all(1 <= s["score"] <= 5 and s["reason"] for s in h["scores"].values())
        assert h["judge"] == "heuristic"
        assert "validation" in h
    # the offline wording already obeys the claim checks applied to every draft (proteus.policy.claim_check)
    assert all(h["wording_checks"] == [] for h in hyps)
    # ... and the only drafts dropped are mutation hits that adjusting for another column explains (proteus.confounding)
    w = run["wording"]
    assert w["changed"] == 0 and w["checked"] == len(hyps) + w["rejected"]
    assert w["by_rule"] == ({"explained by another column_rejected": w["rejected"]} if w["rejected"] else {})

    state = json.loads((ucec_run / "state.json").read_text())
    done = [o for o in state["objectives"] if o["status"] == "done"]
    assert len(done) >= 5
    assert len({o["family"] for o in done}) >= 3
    tools_used = {s["tool"] for w in state["workflows"] for s in w["steps"] if s["status"] == "done"}
    assert {"differential_abundance", "enrichment_ora", "mrna_protein_concordance"} <= tools_used

    trace = _jsonl(ucec_run / "trace.jsonl")
    kinds = {e["kind"] for e in trace}
    assert {"run_start", "decision", "tool_call", "run_end"} <= kinds
    decisions = {e["decision"] for e in trace if e["kind"] == "decision"}
    assert {"plan_objectives", "plan_workflow", "interpret", "update_workflow", "update_objectives", "propose_hypotheses", "judge"} <= decisions
    assert all("seconds" in e for e in trace if e["kind"] in ("decision", "tool_call"))
    registered = {t.name for t in list_tools()}
    assert {e["tool"] for e in trace if e["kind"] == "tool_call"} <= registered

    figures = list((ucec_run / "figures").glob("*.png"))
    assert len(figures) >= 5
    for w in state["workflows"]:
        for s in w["steps"]:
            assert all((ucec_run / f).exists() for f in s["figures"]), s["figures"]
            assert all((ucec_run / t).exists() for t in s["tables"])
    html = (ucec_run / "report.html").read_text()
    assert "data:image/png;base64" in html and hyps[0]["statement"][:40].replace("'", "&#x27;") in html


def test_ucec_run_finds_known_biology(ucec_run: Path):
    """Published UCEC findings (Dou et al., Cell 2020) the offline analyst should recover."""
    kg = json.loads((ucec_run / "kg.json").read_text())
    rels = [d for d in kg["edges"] if "stats" in d]

    def has(subject: str, predicate: str, obj_part: str) -> bool:
        return any(d["subject"]["label"] == subject and d["predicate"] == predicate and obj_part in d["object"]["label"] for d in rels)

    # MLH1 loss in MSI-H tumours (promoter hypermethylation)
    assert has("MLH1", "lower_in", "MSI-H vs MSS")
    # ARID1A truncating mutations lower its protein; CTNNB1 hotspot mutations raise it
    cis = {(d["subject"]["label"], d["stats"]["direction"]) for d in rels if d["predicate"] == "cis_effect_on" and d["subject"]["type"] == "mutation"}
    assert ("ARID1A", "down") in cis
    # cell-cycle / DNA replication programs up in tumours
    up_paths = [d["subject"]["label"].lower() for d in rels if d["predicate"] == "enriched_in" and d["stats"]["direction"] == "up" and "Tumor vs" in d["object"]["label"]]
    assert any(w in p for p in up_paths for w in ("cell cycle", "replication", "mitotic"))


def test_tools_run_by_hand_writes_tsv(ucec_dir: Path, tmp_path: Path):
    params = {"modality": "proteomics", "group": "Proteomics_Tumor_Normal", "case": "Tumor", "control": "Adjacent_normal"}
    r = _proteus("tools", "run", "differential_abundance", "--data", str(ucec_dir), "--params", json.dumps(params), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    tsvs = list(tmp_path.glob("differential_abundance_*.tsv"))
    assert tsvs
    import pandas as pd

    t = pd.read_csv(tsvs[0], sep="\t")
    assert {"logFC", "t", "p", "q"} <= set(t.columns) and len(t) > 9000
    assert list(tmp_path.glob("figures/*.png"))


def test_tools_run_rejects_unknown_level_in_one_line(ucec_dir: Path, tmp_path: Path):
    params = {"modality": "proteomics", "group": "Proteomics_Tumor_Normal", "case": "Tumour", "control": "Adjacent_normal"}
    r = _proteus("tools", "run", "differential_abundance", "--data", str(ucec_dir), "--params", json.dumps(params), "--out", str(tmp_path))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "not a level" in r.stderr


def test_tools_list_prints_every_tool():
    r = _proteus("tools", "list")
    assert r.returncode == 0
    for t in list_tools():
        assert t.name in r.stdout


def test_no_usable_data_exits_with_one_line(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("nothing to see\n")
    (data / "junk.tsv").write_bytes(b"\x00\x01\x02garbage")
    r = _proteus("run", str(data), "--out", str(tmp_path / "run"), "--quiet")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "error:" in r.stderr


def test_same_seed_same_hypotheses_on_maxquant_plasma(nafld_dir: Path, tmp_path: Path):
    """Real MaxQuant LFQ data (alphastats example): the run is reproducible for a seed."""
    outs = []
    for name in ("a", "b"):
        r = _proteus("run", str(nafld_dir), "--out", str(tmp_path / name), "--seed", "3", "--quiet")
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append([(h["statement"], h["evidence"]) for h in _jsonl(tmp_path / name / "hypotheses.jsonl")])
    assert outs[0] == outs[1]
    assert outs[0], "the plasma cohort should yield hypotheses (cirrhosis vs healthy differences)"


def test_hypotheses_do_not_depend_on_hash_seed(ucec_run: Path):
    """Same knowledge graph -> same hypotheses, whatever PYTHONHASHSEED (set iteration must not leak)."""
    import os

    code = (
        "import json,sys; from proteus.kg import KnowledgeGraph; from proteus.policy.patterns import compose_hypotheses;"
        f"kg=KnowledgeGraph.from_node_link(json.load(open({str(ucec_run / 'kg.json')!r})));"
        "print(json.dumps([[d.statement, d.evidence] for d in compose_hypotheses(kg)]))"
    )
    outs = set()
    for seed in ("1", "3", "11"):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": seed}, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        outs.add(r.stdout)
    assert len(outs) == 1
