"""Nothing lost: runs killed with SIGKILL resume to the same result, artifacts are never half-written,
a run directory has one writer, and a run refuses to resume on changed inputs unless forced.

The kill tests drive real ``proteus`` subprocesses on the alphastats NAFLD plasma cohort (MaxQuant,
48 samples; 3 objectives, 8 tool calls, ~30 s) and kill them when the n-th ``tool_call`` line
appears in ``trace.jsonl``.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from proteus.rundir import RunDir

RUN_ARGS = ("--seed", "1", "--max-objectives", "3", "--quiet")


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "proteus", *args]


def _trace(run: Path) -> list[dict]:
    return RunDir(run).read_jsonl("trace.jsonl") if (run / "trace.jsonl").exists() else []


def _tool_calls(run: Path) -> list[dict]:
    return [e for e in _trace(run) if e.get("kind") == "tool_call"]


def _run_until(args: list[str], run: Path, done, timeout: float = 300) -> dict:
    """Start ``proteus`` with ``args``; SIGKILL it as soon as ``done(trace_events)`` holds.

    Returns ``{"killed": bool, "rc": int, "stderr": str}`` (``killed`` is False when the process
    finished before the condition was met).
    """
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t_end = time.monotonic() + timeout
    killed = False
    while proc.poll() is None:
        if done(_trace(run)):
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        if time.monotonic() > t_end:
            proc.kill()
            pytest.fail(f"{args} did not reach the kill point in {timeout} s")
        time.sleep(0.02)
    out, err = proc.communicate()
    return {"killed": killed, "rc": proc.returncode, "stderr": err, "stdout": out}


def _after_tool_calls(n: int):
    return lambda events: sum(e.get("kind") == "tool_call" for e in events) >= n


def _artifacts(run: Path) -> dict:
    hyps = RunDir(run).read_jsonl("hypotheses.jsonl")
    kg = json.loads((run / "kg.json").read_text())
    state = json.loads((run / "state.json").read_text())
    return {
        "hypotheses": [(h["statement"], h["evidence"], h["scores"]) for h in hyps],
        "relations": sorted(e["id"] for e in kg["edges"] if "stats" in e),
        "objectives": state["objectives"],
        "steps": [(s["id"], s["tool"], s["params"], s["status"], s["relation_ids"]) for w in state["workflows"] for s in w["steps"]],
        # everything else, whole: hypothesis records, graph nodes and edges with their statistics, tables
        "hypothesis_records": hyps,
        "kg": sorted(json.dumps(x, sort_keys=True) for x in kg["nodes"] + kg["edges"]),
        "tables": {p.name: gzip.decompress(p.read_bytes()).decode() for p in sorted((run / "tables").glob("*.tsv.gz"))},
    }


@pytest.fixture(scope="module")
def baseline(nafld_dir: Path, tmp_path_factory) -> subprocess.Popen:
    """An uninterrupted run with the same seed, started in the background (waited for by ``uninterrupted``)."""
    out = tmp_path_factory.mktemp("durable") / "baseline"
    proc = subprocess.Popen(_cmd("run", str(nafld_dir), "--out", str(out), *RUN_ARGS), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.out = out  # type: ignore[attr-defined]
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def uninterrupted(baseline) -> Path:
    _, err = baseline.communicate(timeout=600)
    assert baseline.returncode == 0, err[-3000:]
    return baseline.out


@pytest.fixture(scope="module")
def killed_run(nafld_dir: Path, baseline, tmp_path_factory) -> dict:
    """One run killed four times (after the 1st, 3rd and 6th tool call, then while proposing
    hypotheses) and resumed each time by a different entry point; one input file is changed in
    between (a trailing newline: new bytes, same table), which must be refused without --force.
    """
    root = tmp_path_factory.mktemp("killed")
    data = Path(shutil.copytree(nafld_dir, root / "data"))
    run = root / "run"
    t0 = time.monotonic()
    segs = {}
    segs["fresh"] = _run_until(_cmd("run", str(data), "--out", str(run), *RUN_ARGS), run, _after_tool_calls(1))
    # no --seed / --max-objectives: the run's own settings (seed 1, 3 objectives) must be used
    segs["resume_flag"] = _run_until(_cmd("run", str(data), "--out", str(run), "--resume", "--quiet"), run, _after_tool_calls(3))
    with open(data / "proteinGroups.txt", "ab") as f:
        f.write(b"\n")
    segs["refused"] = _run_until(_cmd("resume", str(run), "--quiet"), run, lambda ev: False)
    segs["forced"] = _run_until(_cmd("resume", str(run), "--force", "--quiet"), run, _after_tool_calls(6))
    segs["resume_late"] = _run_until(
        _cmd("run", str(data), "--out", str(run), "--resume", *RUN_ARGS),
        run,
        lambda ev: any(e.get("kind") == "decision" and e.get("decision") == "propose_hypotheses" for e in ev),
    )
    segs["final"] = _run_until(_cmd("resume", str(run)), run, lambda ev: False)
    return {"run": run, "data": data, "segments": segs, "elapsed": time.monotonic() - t0}


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(killed_run: dict, uninterrupted: Path):
    segs = killed_run["segments"]
    assert all(segs[k]["killed"] for k in ("fresh", "resume_flag", "forced")), {k: v["killed"] for k, v in segs.items()}
    final = segs["final"]
    assert final["rc"] == 0, final["stderr"][-3000:]
    run = killed_run["run"]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished"
    expected, got = _artifacts(uninterrupted), _artifacts(run)
    assert got["hypotheses"], "the plasma cohort yields hypotheses"
    for key in expected:
        assert got[key] == expected[key], key
    base = json.loads((uninterrupted / "run.json").read_text())
    assert info["counts"] == base["counts"]
    assert info["seed"] == 1 and info["config"]["max_objectives"] == 3
    # the resumed sessions read the same data as the uninterrupted run
    assert info["inputs"] == base["inputs"]


@pytest.mark.slow
def test_checkpoints_cite_relations_and_tables_on_disk(uninterrupted: Path):
    """The checkpoint holds paths to the steps' relation files, not the relations; together the files
    hold exactly the knowledge graph's statistical edges, every table a step lists is on disk, and
    only the latest checkpoint is kept once the run finished."""
    with RunDir(uninterrupted).checkpointer() as saver:
        state = saver.get_tuple({"configurable": {"thread_id": "research"}}).checkpoint["channel_values"]
    refs = state["relations"]
    assert refs and all(isinstance(r, str) and (uninterrupted / r).is_file() for r in refs), refs
    in_files = sorted(r["id"] for ref in refs for r in RunDir(uninterrupted).read_jsonl(ref))
    kg = json.loads((uninterrupted / "kg.json").read_text())
    assert in_files == sorted(e["id"] for e in kg["edges"] if "stats" in e)
    tables = [t for w in state["workflows"] for s in w["steps"] for t in s["tables"]]
    assert tables and all((uninterrupted / t).is_file() and t.endswith(".tsv.gz") for t in tables)
    # a finished run keeps only the latest checkpoint of each graph namespace (what resume needs)
    with sqlite3.connect(uninterrupted / "checkpoint.sqlite") as conn:
        per_ns = conn.execute("SELECT checkpoint_ns, COUNT(*) FROM checkpoints GROUP BY checkpoint_ns").fetchall()
    assert per_ns and all(n == 1 for _, n in per_ns), per_ns


@pytest.mark.slow
def test_finished_tool_calls_are_not_repeated(killed_run: dict, uninterrupted: Path):
    calls = _tool_calls(killed_run["run"])
    per_step = Counter(e["step"] for e in calls)
    assert set(per_step) == {e["step"] for e in _tool_calls(uninterrupted)}
    assert max(per_step.values()) <= 2, per_step
    kills = sum(s["killed"] for s in killed_run["segments"].values())
    assert sum(n - 1 for n in per_step.values()) <= kills  # only a call in flight at a kill runs again
    starts = [e for e in _trace(killed_run["run"]) if e["kind"] == "run_start"]
    assert [e["resume"] for e in starts] == [False, True, True, True, True]
    assert all(e["seed"] == 1 for e in starts)


@pytest.mark.slow
def test_wall_time_sums_the_killed_sessions(killed_run: dict):
    info = json.loads((killed_run["run"] / "run.json").read_text())
    tool_seconds = sum(e["seconds"] for e in _tool_calls(killed_run["run"]))
    assert tool_seconds <= info["wall_seconds"] <= killed_run["elapsed"]


@pytest.mark.slow
def test_changed_inputs_refuse_resume_unless_forced(killed_run: dict):
    refused = killed_run["segments"]["refused"]
    assert refused["rc"] != 0 and not refused["killed"]
    lines = [line for line in refused["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in refused["stderr"], refused["stderr"]
    assert "input files changed" in lines[0] and "proteinGroups.txt" in lines[0] and "--force" in lines[0]
    run = killed_run["run"]
    info = json.loads((run / "run.json").read_text())
    # --force resumed it; run.json now fingerprints the data the run finished on, and says what changed
    from proteus.rundir import fingerprint, input_files

    assert info["fingerprint"] == fingerprint(input_files(killed_run["data"]), killed_run["data"])
    assert info["inputs_changed_on_resume"] == ["proteinGroups.txt"]
    forced = [e for e in _trace(run) if e["kind"] == "run_start" and e.get("inputs_changed")]
    assert len(forced) == 1 and forced[0]["inputs_changed"] == ["proteinGroups.txt"]


@pytest.mark.slow
def test_every_trace_line_is_complete_json(killed_run: dict):
    for line in (killed_run["run"] / "trace.jsonl").read_text().splitlines():
        json.loads(line)
    assert not list(killed_run["run"].rglob(".*.tmp"))


@pytest.mark.slow
def test_resuming_a_finished_run_changes_nothing(killed_run: dict, tmp_path: Path):
    run = Path(shutil.copytree(killed_run["run"], tmp_path / "copy"))
    before = _artifacts(run)
    r = subprocess.run(_cmd("resume", str(run), "--quiet"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _artifacts(run) == before
    assert len(_tool_calls(run)) == len(_tool_calls(killed_run["run"]))


@pytest.mark.slow
def test_second_writer_is_refused_in_one_line(nafld_dir: Path, tmp_path: Path):
    """While a real run holds its directory, ``run``, ``run --resume`` and ``resume`` on it are refused."""
    run = tmp_path / "run"
    first = subprocess.Popen(_cmd("run", str(nafld_dir), "--out", str(run), "--quiet"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t_end = time.monotonic() + 120
        while not (run / "run.json").exists():  # the lock is taken before anything is written
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.monotonic() < t_end
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # holds the lock, spends no CPU while the others try
        probes = [
            subprocess.Popen(_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for args in (
                ("run", str(nafld_dir), "--out", str(run), "--quiet"),
                ("run", str(nafld_dir), "--out", str(run), "--resume", "--quiet"),
                ("resume", str(run), "--quiet"),
            )
        ]
        results = [(p.wait(timeout=120), p.communicate()[1]) for p in probes]
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    for rc, stderr in results:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert rc != 0
        assert len(lines) == 1 and "Traceback" not in stderr, stderr
        assert "in use by another PROTEUS process" in lines[0]
    # the refused processes wrote nothing: one session in the trace
    assert sum(e["kind"] == "run_start" for e in _trace(run)) <= 1


# --- atomic artifacts -----------------------------------------------------------------------------
def test_failed_rename_keeps_the_old_artifact_and_no_temp_file(tmp_path: Path, monkeypatch):
    from proteus.kg import KnowledgeGraph
    from proteus.runner import write_artifacts

    rd = RunDir(tmp_path / "run")
    old_state = {"hypotheses": [{"id": "H_old", "statement": "old"}], "objectives": [], "workflows": []}
    write_artifacts(rd, old_state, KnowledgeGraph())
    before = {n: (rd.path / n).read_bytes() for n in ("kg.json", "hypotheses.jsonl", "state.json")}

    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == "hypotheses.jsonl":
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    new_state = {"hypotheses": [{"id": f"H_{i}", "statement": "new " * 500} for i in range(50)], "objectives": [], "workflows": []}
    with pytest.raises(OSError):
        write_artifacts(rd, new_state, KnowledgeGraph())
    assert (rd.path / "hypotheses.jsonl").read_bytes() == before["hypotheses.jsonl"]
    assert rd.read_jsonl("hypotheses.jsonl") == old_state["hypotheses"]
    assert json.loads((rd.path / "kg.json").read_text())  # kg.json went first: new and complete
    assert not [p.name for p in rd.path.rglob("*.tmp")]


_WRITER = """
import sys
from proteus.rundir import RunDir
rd = RunDir(sys.argv[1])
a, b = "a" * 4_000_000 + "\\n", "b" * 6_000_000 + "\\n"
print("ready", flush=True)
while True:
    rd.write_text("hypotheses.jsonl", a)
    rd.write_text("hypotheses.jsonl", b)
"""


def test_sigkill_while_writing_leaves_old_or_new_file(tmp_path: Path):
    """SIGKILL a process rewriting a 4-6 MB artifact in a loop: the file is always whole."""
    run = tmp_path / "run"
    RunDir(run).write_text("hypotheses.jsonl", "a" * 4_000_000 + "\n")
    for delay in (0.05, 0.13, 0.21, 0.34, 0.55):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(run)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        text = (run / "hypotheses.jsonl").read_text()
        assert text in ("a" * 4_000_000 + "\n", "b" * 6_000_000 + "\n")
        rd = RunDir(run)
        rd.lock()  # the next writer clears what a killed one left behind
        rd.unlock()
        assert not list(run.glob(".*.tmp"))


def test_torn_trace_line_is_skipped_then_cut_before_the_next_event(tmp_path: Path):
    rd = RunDir(tmp_path / "run")
    rd.append_trace({"kind": "run_start"})
    rd.append_trace({"kind": "tool_call", "step": "O1.W1.S1"})
    with open(rd.path / "trace.jsonl", "a") as f:
        f.write('{"t": 1.0, "kind": "tool_call", "step": "O1.W1')  # killed mid-append
    assert [e["kind"] for e in rd.read_jsonl("trace.jsonl")] == ["run_start", "tool_call"]
    rd.lock()  # a resumed run takes the lock first
    rd.append_trace({"kind": "run_start", "resume": True})
    rd.unlock()
    lines = (rd.path / "trace.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["run_start", "tool_call", "run_start"]


def test_large_trace_values_are_stored_once_by_content(tmp_path: Path):
    """A per-call schema repeated by every decision lands in blobs/ once; read_trace gives the events back whole."""
    from proteus.rundir import BLOB_MIN_BYTES, read_trace

    rd = RunDir(tmp_path / "run")
    schema = {"enum": [f"edge_{i:05d}" for i in range(BLOB_MIN_BYTES // 8)]}
    for i in range(3):
        rd.append_trace({"kind": "decision", "n": i, "schema": schema, "small": {"a": 1}})
    lines = (rd.path / "trace.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(len(x) < 300 for x in lines)
    assert len(list((rd.path / "blobs").glob("*.json.gz"))) == 1
    events = read_trace(rd.path)
    assert [e["schema"] for e in events] == [schema] * 3 and [e["small"] for e in events] == [{"a": 1}] * 3
    assert [e["n"] for e in rd.read_jsonl("trace.jsonl")] == [0, 1, 2]
