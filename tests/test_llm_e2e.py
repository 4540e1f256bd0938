"""End to end: ``proteus run <real dataset> --model llamacpp:tiny --base-url ...`` through the CLI.

The tiny random-weight model cannot plan real analyses, so the run exercises the whole LLM path
(prompts, constrained decoding, rejection, repair, budget) and finishes on heuristic fallbacks;
every artifact must still be written and the trace must show the rejections and fallbacks.
A ``proteus.toml`` in the working directory bounds the model use (call budget; the tiny GGUF tokenizes
about one token per character, so it is given a 12000-token context).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from llm_fixtures.server import llama_server, needs_llama, tiny_gguf  # noqa: F401  (fixtures)

pytestmark = [needs_llama, pytest.mark.llamacpp, pytest.mark.slow]

DATASET = "nafld-plasma"


def _proteus(*args, cwd, timeout):
    exe = shutil.which("proteus")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "proteus", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_run_with_llamacpp_tiny(llama_server, tmp_path):  # noqa: F811
    data = tmp_path / "data"
    fetched = _proteus("datasets", "fetch", DATASET, str(data), cwd=tmp_path, timeout=300)
    if fetched.returncode != 0:
        pytest.skip(f"dataset {DATASET} not available offline: {fetched.stderr.strip()[-300:]}")
    (tmp_path / "proteus.toml").write_text(
        "[model]\ncontext_tokens = 12000\nmax_completion_tokens = 160\ntimeout_s = 60\n[model.budget]\nmax_calls = 10\n"
    )
    run = tmp_path / "run"
    res = _proteus("run", str(data), "--out", str(run), "--model", "llamacpp:tiny", "--base-url", llama_server.base_url, "--seed", "0", "--quiet", cwd=tmp_path, timeout=1500)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("run.json", "kg.json", "hypotheses.jsonl", "report.html", "trace.jsonl"):
        assert (run / name).exists(), name
    info = json.loads((run / "run.json").read_text())
    assert "llamacpp:tiny" in json.dumps(info)
    events = [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines() if x.strip()]
    llm = [e for e in events if e.get("kind") == "llm_decision"]
    outcomes = {e["outcome"] for e in llm}
    assert "rejected" in outcomes and "fallback" in outcomes
    assert sum(e["outcome"] != "fallback" for e in llm) <= 10  # the call budget held
    assert any(e["reason"].startswith("budget exhausted") for e in llm if e["outcome"] == "fallback")
    assert all(e["backend"] == "llamacpp:tiny" for e in llm)
    # the trajectories export
    out = tmp_path / "rl.jsonl"
    from proteus.rl_export import export_rl

    n = export_rl([run], out)
    assert n == sum(1 for e in llm if e.get("messages"))


def test_context_too_small_is_one_clear_error(llama_server, tmp_path):  # noqa: F811
    from proteus.datasets import shared_dataset_dir

    data = shared_dataset_dir("bodenmiller-bcrxl")
    if data is None:
        pytest.skip("the BCR-XL folder (shared/datasets/bodenmiller-bcrxl) is not beside the repository")
    res = _proteus("run", str(data), "--out", str(tmp_path / "run"), "--model", "llamacpp:tiny", "--base-url", llama_server.base_url, "--context-tokens", "300", "--quiet", cwd=tmp_path, timeout=600)
    assert res.returncode == 2
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the plan_objectives prompt needs")
    assert "larger context" in lines[0] and "Traceback" not in res.stderr
