"""``proteus eval``: a real Dask scheduler and worker, a failing dataset next to a finishing one, eval.json schema."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proteus.records import METRICS

pytest.importorskip("distributed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_schema(report: dict) -> None:
    assert report["version"] == 1
    assert set(report) >= {"created", "config", "wall_seconds", "datasets", "overall"}
    assert set(report["config"]) >= {"datasets", "seed", "model", "judge_model", "scheduler", "workers", "max_objectives"}
    for d in report["datasets"]:
        assert d["status"] in ("ok", "error")
        if d["status"] == "error":
            assert d["stage"] in ("prepare", "discovery", "null", "validation") and d["error"]
            continue
        assert set(d) >= {"name", "split", "discovery", "judges", "replication", "cross_omics", "null", "seconds", "wall_seconds", "usage"}
        assert d["wall_seconds"] >= max(d["seconds"].values())
        assert set(d["seconds"]) == {"prepare", "discovery", "null", "validation"}
        assert set(d["usage"]) == {"calls", "prompt_tokens", "completion_tokens", "cost_usd"}
        r = d["replication"]
        assert 0 <= r["k"] <= r["n"] <= r["n_hypotheses"] == d["discovery"]["hypotheses"]
        if r["n"]:
            lo, hi = r["ci95"]
            assert 0 <= lo <= r["rate"] <= hi <= 1
        for judge, s in d["judges"].items():
            assert set(s["mean"]) == set(METRICS)
            assert all(sum(s["distribution"][m].values()) == s["n"] for m in METRICS)
        assert d["null"]["replicating"] <= d["null"]["evaluable"] <= d["null"]["hypotheses"]
    o = report["overall"]
    assert o["finished"] + o["failed"] == o["datasets"] == len(report["datasets"])


def test_eval_through_dask_scheduler_with_a_failing_dataset(tmp_path):
    """A real ``dask scheduler`` + ``dask worker`` on 127.0.0.1; one bogus dataset, one corrupted folder, one real."""
    pytest.importorskip("sksurv", reason="pip install scikit-survival")
    from proteus.evals.harness import evaluate

    bad = tmp_path / "corrupted"
    bad.mkdir()
    (bad / "proteins.tsv").write_bytes(b"\x00\x01 not a table \xff\xfe")
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    sched = subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads", "1",
                                   "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
        lines: list[str] = []
        t0 = time.time()
        report = evaluate(["gse7390-breast", "no-such-dataset", str(bad)], tmp_path / "eval", scheduler=addr,
                          max_objectives=2, seed=1, progress=lines.append)
        assert time.time() - t0 < 400
    finally:
        for p in (worker, sched):
            if p is not None:
                p.terminate()
        for p in (worker, sched):
            if p is not None:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
    _check_schema(report)
    assert report["config"]["scheduler"] == addr and report["config"]["workers"] == 1
    by = {d["name"]: d for d in report["datasets"]}
    assert by["gse7390-breast"]["status"] == "ok"
    assert by["no-such-dataset"]["status"] == "error" and by["no-such-dataset"]["stage"] == "prepare"
    assert "unknown dataset" in by["no-such-dataset"]["error"]
    assert by["corrupted"]["status"] == "error" and by["corrupted"]["stage"] == "prepare"
    ok = by["gse7390-breast"]
    assert ok["discovery"]["hypotheses"] > 0 and ok["replication"]["n"] > 0
    assert "heuristic" in ok["judges"] and ok["judges"]["heuristic"]["model"] is False
    assert ok["null"]["replicating"] <= 1
    assert len(lines) == 12 and any("failed" in x for x in lines)
    # the discovery run's hypotheses carry their validation
    for line in Path(ok["discovery"]["run_dir"], "hypotheses.jsonl").read_text().splitlines():
        assert "replicated" in json.loads(line)["validation"]
    on_disk = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert on_disk["overall"] == report["overall"]
    md = (tmp_path / "eval" / "eval.md").read_text()
    assert "gse7390-breast" in md and "FAILED in prepare" in md
    page = (tmp_path / "eval" / "eval.html").read_text()
    assert "data:image/png;base64," in page and "replicated" in page


def test_eval_cli_reports_failures_and_exits_nonzero(tmp_path):
    """The typer command on a local cluster; every dataset fails in prepare, so the exit status is 1."""
    import typer
    from typer.testing import CliRunner

    from proteus.evals.harness import eval_cli

    app = typer.Typer()
    app.command("eval")(eval_cli)
    app.command("noop")(lambda: None)  # a second command keeps 'eval' a subcommand, as in proteus.cli
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(app, ["eval", "no-such-dataset", str(empty), "--out", str(tmp_path / "e"), "--workers", "1", "--quiet"])
    assert res.exit_code == 1, res.output
    assert "no-such-dataset" in res.output and "failed in prepare" in res.output
    report = json.loads((tmp_path / "e" / "eval.json").read_text())
    _check_schema(report)
    assert report["overall"]["failed"] == 2
