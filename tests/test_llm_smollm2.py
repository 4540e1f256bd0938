"""A real instruct model end to end: ``proteus run <BCR-XL> --model llamacpp:smollm2`` on
SmolLM2-135M-Instruct served by llama.cpp with its default 2048-token context.

The server does not report its context; the first prompt that is too long gets an HTTP 400 that
states it, and every later prompt is rendered compact to fit. The per-call schemas carry the
run's names, so no answer may be rejected for naming an unknown tool, column or family. The run
is capped (one objective, a call budget) to keep the suite's wall time small.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from llm_fixtures.server import needs_llama, needs_smollm2, smollm2_server  # noqa: F401  (fixtures)

from proteus.datasets import shared_dataset_dir

pytestmark = [needs_llama, needs_smollm2, pytest.mark.llamacpp, pytest.mark.slow]

UNKNOWN_NAME = ("unknown tool", "is not a clinical column", "is not loaded", "is not a level of", "unknown objective family", "not in the knowledge graph")


def _proteus(*args, cwd, timeout):
    exe = shutil.which("proteus")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "proteus", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_smollm2_run_on_bcrxl_accepts_model_decisions(smollm2_server, tmp_path):  # noqa: F811
    data = shared_dataset_dir("bodenmiller-bcrxl")
    if data is None:
        pytest.skip("the BCR-XL folder (shared/datasets/bodenmiller-bcrxl) is not beside the repository")
    (tmp_path / "proteus.toml").write_text("[model]\ntimeout_s = 600\n[model.budget]\nmax_calls = 6\n")
    run = tmp_path / "run"
    res = _proteus(
        "run", str(data), "--out", str(run), "--model", "llamacpp:smollm2", "--base-url", smollm2_server.base_url,
        "--max-objectives", "1", "--seed", "0", "--quiet", cwd=tmp_path, timeout=2400,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    events = [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines() if x.strip()]
    llm = [e for e in events if e.get("kind") == "llm_decision"]
    asked = [e for e in llm if "prompt_tokens" in e]
    assert asked, "no call reached the model"
    # the context was learned once: at most one prompt was too long, every later one is compact and fits
    overflow = [i for i, e in enumerate(llm) if e["reason"].startswith("prompt longer than the context")]
    assert len(overflow) <= 1
    after = [e for e in asked if not overflow or llm.index(e) > overflow[0]]
    assert after and all(e["compact"] for e in after)
    assert all(e["prompt_tokens"] + e["request"]["max_tokens"] <= 2048 for e in after)
    # the schemas carry the run's names: nothing is rejected for an unknown name
    rejected = [e["reason"] for e in llm if e["outcome"] == "rejected"]
    assert not [r for r in rejected if any(s in r for s in UNKNOWN_NAME)], rejected
    # the model decided, and the accounting says so per decision type
    decided = info["usage"]["decided_by"]
    by_model = sum(c["model"] + c["repaired"] for c in decided.values())
    assert by_model >= 1 and not info["usage"]["all_fell_back"]
    assert by_model == sum(e["outcome"] in ("accepted", "repaired") for e in llm)
    assert sum(c["fallback"] for c in decided.values()) == sum(e["outcome"] == "fallback" for e in llm)
    assert "Who decided" in (run / "report.html").read_text()
