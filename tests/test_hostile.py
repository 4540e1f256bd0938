"""Nothing let in: hostile names in the data, secrets in the environment, code proposed by a policy.

- A dataset whose feature ids, clinical headers and values and file names carry instructions and
  payloads (tests/hostile_data.py), with symlinks out of the data folder to a secret: the offline
  run completes, calls only registered tools, reads nothing outside the folder, and the report
  escapes every payload.
- API keys in the environment never reach the run directory or the terminal.
- A policy that proposes ``exec``, ``__import__`` or ``os.system`` as tools gets each step
  rejected as an unknown tool (error kind ``input``); nothing but the registry is ever called.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proteus.rundir import RunDir

sys.path.insert(0, str(Path(__file__).parent))
from hostile_data import HOSTILE, MARKUP, SCRIPT, write_hostile_dataset  # noqa: E402

_AUDIT: dict = {"on": False, "root": None, "hits": []}


def _audit(event: str, args: tuple) -> None:
    """Record every open / directory listing that resolves under the forbidden folder."""
    if not _AUDIT["on"] or event not in ("open", "os.scandir", "os.listdir", "os.open"):
        return
    path = args[0] if args else None
    if isinstance(path, (str, bytes, os.PathLike)):
        try:
            real = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return
        if real == _AUDIT["root"] or real.startswith(_AUDIT["root"] + os.sep):
            _AUDIT["hits"].append((event, real))


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def hostile_ds(tmp_path_factory):
    """The hostile dataset (tests/hostile_data.py)."""
    return write_hostile_dataset(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def hostile(hostile_ds):
    """One offline run on the hostile dataset (in-process, with the CLI's progress printer)."""
    from proteus.cli import _progress
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.runner import run_research

    ds = hostile_ds
    root = ds.data.parent
    data_listing = sorted(p.name for p in ds.data.iterdir())
    run = root / "run"
    _AUDIT.update(on=True, root=os.path.realpath(ds.outside), hits=[])
    try:
        info = run_research(ds.data, run, policy=HeuristicPolicy(), seed=0, max_objectives=3, progress=_progress(False))
    finally:
        _AUDIT["on"] = False
    return {"ds": ds, "run": run, "info": info, "hits": list(_AUDIT["hits"]), "data_listing": data_listing}


def _all_bytes(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_hostile_run_completes_calling_registered_tools_only(hostile):
    from proteus.tools import list_tools

    run = hostile["run"]
    assert hostile["info"]["status"] == "finished"
    trace = RunDir(run).read_jsonl("trace.jsonl")
    calls = [e for e in trace if e["kind"] == "tool_call"]
    assert calls and {e["tool"] for e in calls} <= {t.name for t in list_tools()}
    assert all(e["status"] == "done" for e in calls), [(e["tool"], e["summary"]) for e in calls if e["status"] != "done"]
    # the payloads did reach the analysis (so the checks below are not vacuous)
    hyps = RunDir(run).read_jsonl("hypotheses.jsonl")
    text = json.dumps(hyps, ensure_ascii=False) + (run / "kg.json").read_text()
    assert SCRIPT in text and "{{7*7}}" in text and "$(rm -rf /)" in text
    assert any(h in json.dumps(hyps, ensure_ascii=False) for h in HOSTILE)


@pytest.mark.slow
def test_nothing_outside_the_data_folder_is_read(hostile):
    ds, run = hostile["ds"], hostile["run"]
    assert hostile["hits"] == [], hostile["hits"]
    canary = ds.canary.encode()
    leaked = [str(p) for p, b in _all_bytes(run).items() if canary in b]
    assert leaked == []
    inputs = "\n".join(hostile["info"]["inputs"])
    assert "zz_secret_link.tsv" in inputs and "linked_dir" in inputs and "refused" in inputs
    assert not any("secret" in k or "linked_dir" in k for k in hostile["info"]["fingerprint"])


@pytest.mark.slow
def test_nothing_is_written_outside_the_run_directory(hostile):
    ds, run = hostile["ds"], hostile["run"]
    assert sorted(p.name for p in ds.data.iterdir()) == hostile["data_listing"]
    assert sorted(p.name for p in ds.outside.iterdir()) == ["secret.tsv"]
    assert sorted(p.name for p in run.parent.iterdir()) == ["data", "outside", "run"]
    root = run.resolve()
    for p in run.rglob("*"):
        assert p.resolve() == root or root in p.resolve().parents, p
        assert not p.is_symlink()


@pytest.mark.slow
def test_report_escapes_every_payload(hostile):
    html = (hostile["run"] / "report.html").read_text()
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == html.count("</script>")
    for block in html.split("<script")[1:]:
        assert "alert(1)" not in block.split("</script>")[0]
    assert "{{7*7}}" in html  # shown literally, never evaluated as a template
    assert 'href="file:' not in html and "href='file:" not in html
    assert "[link=file:///etc/passwd]" in html  # rich markup shown as text


def test_markup_in_a_path_is_printed_not_interpreted(tmp_path: Path):
    """Text from the user's file system goes to the terminal as text (rich markup escaped)."""
    missing = tmp_path / "[bold]x[/bold]" / MARKUP.replace("/", "_")
    r = subprocess.run([sys.executable, "-m", "proteus", "run", str(missing), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "[bold]x[/bold]" in lines[0]


# --- secrets -----------------------------------------------------------------------------------
FAKE_SECRETS = {
    "OPENAI_API_KEY": "sk-proteusFAKEopenai-9f3c2a1b7e6d5c4b3a29180716",
    "ANTHROPIC_API_KEY": "sk-ant-proteusFAKEanthropic-0a1b2c3d4e5f6a7b8c9d",
    "HF_TOKEN": "hf_proteusFAKEhuggingface5e6f7a8b9c0d1e2f",
}


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket goes: connections are refused


@pytest.mark.slow
@pytest.mark.parametrize("model", ["offline", "openai:gpt-4o-mini"])
def test_api_keys_never_reach_the_run_directory_or_the_terminal(model: str, tmp_path: Path):
    pytest.importorskip("openai")
    ds = write_hostile_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    env = {**os.environ, **FAKE_SECRETS}
    env.pop("PROTEUS_MODEL", None)
    env.pop("PROTEUS_BASE_URL", None)
    args = [sys.executable, "-m", "proteus", "run", str(ds.data), "--out", str(run), "--max-objectives", "1"]
    url = f"http://proteus:{FAKE_SECRETS['HF_TOKEN']}@127.0.0.1:{_closed_port()}/v1"
    if model != "offline":
        args += ["--model", model, "--base-url", url]
        # the first refused call spends the budget, so the run falls back at once instead of retrying every decision
        (tmp_path / "proteus.toml").write_text("[model.budget]\nmax_calls = 1\n")
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["model"] == model
    if model != "offline":
        trace = RunDir(run).read_jsonl("trace.jsonl")
        assert any(e["kind"] == "llm_decision" and e.get("outcome") == "fallback" for e in trace)
        # recorded for `proteus resume`, without the credentials a URL may carry
        assert info["config"]["base_url"] == url.replace(f"proteus:{FAKE_SECRETS['HF_TOKEN']}@", "")
        r2 = subprocess.run([sys.executable, "-m", "proteus", "resume", str(run)], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
        assert r2.returncode == 0, r2.stderr[-3000:]
        starts = [e for e in RunDir(run).read_jsonl("trace.jsonl") if e["kind"] == "run_start"]
        assert [e["model"] for e in starts] == [model, model]
        r = subprocess.CompletedProcess(args, 0, r.stdout + r2.stdout, r.stderr + r2.stderr)
    else:
        assert info["config"]["base_url"] is None
    files = _all_bytes(run)
    assert {"run.json", "trace.jsonl", "report.html", "kg.json", "hypotheses.jsonl", "state.json", "checkpoint.sqlite"} <= {p.name for p in files}
    assert any(p.parent.name == "tables" for p in files)
    for name, value in FAKE_SECRETS.items():
        for needle in (value, value[-12:], value[3:15]):
            assert needle not in r.stdout and needle not in r.stderr, name
            leaked = [str(p.relative_to(run)) for p, b in files.items() if needle.encode() in b]
            assert leaked == [], (name, leaked)


# --- no code from a model is ever executed ---------------------------------------------------------
MARKER_NAME = "PWNED"


def _code_steps(marker: Path):
    from proteus.policy.decisions import StepSpec

    m = str(marker)
    return [
        StepSpec(tool="exec", params={"source": f"open({m!r}, 'w').write('x')"}, rationale="run this code"),
        StepSpec(tool="__import__", params={"name": "os"}, rationale="import os"),
        StepSpec(tool="os.system", params={"command": f"touch {m}"}, rationale="shell"),
        StepSpec(tool="eval", params={"expression": f"__import__('os').system('touch {m}')"}),
        StepSpec(tool="subprocess.run", params={"args": ["touch", m]}),
        StepSpec(tool="differential_abundance; import os", params={}),
    ]


def _policy(marker: Path):
    from proteus.policy.decisions import ObjectivePlan, ObjectiveSpec, ObjectiveUpdate, WorkflowPlan, WorkflowUpdate
    from proteus.policy.heuristic import HeuristicPolicy

    class Proposer(HeuristicPolicy):
        """The offline analyst, except that its workflow starts with code disguised as tools."""

        name = "code-proposer"

        def plan_objectives(self, view):
            return ObjectivePlan(objectives=[ObjectiveSpec(title="run code", question="can a policy run code?", family="differential", rationale="attack")])

        def plan_workflow(self, view, objective):
            genuine = super().plan_workflow(view, objective).steps[0]
            return WorkflowPlan(steps=[*_code_steps(marker), genuine])

        def update_workflow(self, view, objective, done, remaining):
            return WorkflowUpdate(steps=remaining, reason="keep the plan")

        def update_objectives(self, view, done, remaining):
            return ObjectiveUpdate()

    return Proposer()


def test_only_registered_tools_can_be_called(hostile_ds, tmp_path: Path, monkeypatch):
    from langgraph.checkpoint.memory import InMemorySaver

    from proteus.graphs.research import build_research_graph
    from proteus.graphs.state import RunContext
    from proteus.io import load_study
    from proteus.profile import profile_study
    from proteus.tools.registry import REGISTRY, Tool

    marker = tmp_path / MARKER_NAME
    spawned: list = []
    real_popen = subprocess.Popen

    class Popen(real_popen):  # record, never block: a child process is not forbidden, code from the model is
        def __init__(self, args, *a, **kw):
            spawned.append(args)
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", Popen)
    monkeypatch.setattr(os, "system", lambda cmd: spawned.append(cmd) or 1)

    study = load_study(hostile_ds.data, on_problem=lambda r: None)
    rundir = RunDir(tmp_path / "run")
    ctx = RunContext(study=study, profile=profile_study(study), policy=_policy(marker), rundir=rundir, seed=0, max_objectives=1)
    graph = build_research_graph().compile(checkpointer=InMemorySaver())
    final = graph.invoke({}, {"configurable": {"thread_id": "t"}, "recursion_limit": 500}, context=ctx)

    calls = [e for e in rundir.read_jsonl("trace.jsonl") if e["kind"] == "tool_call"]
    proposed = [s.tool for s in _code_steps(marker)]
    by_tool = {e["tool"]: e for e in calls}
    assert set(proposed) <= set(by_tool)
    for name in proposed:
        e = by_tool[name]
        assert e["status"] == "failed" and e["error"] == "input", e
        assert f"unknown tool {name!r}" in e["summary"]
    genuine = calls[-1]
    assert genuine["tool"] in REGISTRY and genuine["status"] == "done"
    steps = final["workflows"][0]["steps"]
    assert [s["status"] for s in steps] == ["failed"] * len(proposed) + ["done"]
    assert not marker.exists()
    assert not [c for c in spawned if str(marker) in str(c)]
    # the registry holds only Tool records of functions defined in the shipped tool modules
    assert all(isinstance(t, Tool) and t.fn.__module__.startswith("proteus.tools.") for t in REGISTRY.values())
