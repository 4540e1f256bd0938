"""Benchmark: ``proteus run`` end to end on the Bodenmiller BCR-XL folder (8 FCS files, offline policy).

Run ``python -m proteus.evals.bench_cytometry_run [data_dir] [--out RUN_DIR]`` (or
``python evals/bench_cytometry_run.py`` from the repository). It runs the same command a user
types, ``proteus run DATA --out RUN -q``, in a subprocess (so import time counts), and prints one
JSON object: wall seconds, the target, whether it was met, the run's objectives, tool calls,
failures and hypotheses, and whether the B-cell BCR-XL signalling change (pS6 in B cells) was found.

Target: < 60 s wall time on a 2-core machine (reading, FlowSOM clustering, differential abundance
and state, hypotheses, judge, report). Stage timings of the tools alone: ``evals/bench_cytometry.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proteus.datasets import shared_dataset_dir

TARGET_S = 60.0
DEFAULT = shared_dataset_dir("bodenmiller-bcrxl")


def _data_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if DEFAULT is not None:
        return DEFAULT
    from proteus import datasets

    return datasets.fetch("bodenmiller-bcrxl", Path(tempfile.mkdtemp()) / "bodenmiller-bcrxl")


def run(data: Path, out: Path) -> dict:
    """Time ``proteus run data --out out -q`` and summarise the run directory."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "proteus", "run", str(data), "--out", str(out), "-q"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    res: dict = {"data": str(data), "wall_s": round(wall, 1), "target_s": TARGET_S, "met": wall < TARGET_S and proc.returncode == 0,
                 "returncode": proc.returncode}
    if proc.returncode != 0:
        res["stderr_tail"] = proc.stderr[-2000:]
        return res
    calls, bugs = [], 0
    for line in (out / "trace.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e.get("kind") == "tool_call":
            calls.append({"tool": e.get("tool"), "status": e.get("status"), "seconds": e.get("seconds")})
        bugs += e.get("kind") == "tool_bug"
    state = json.loads((out / "state.json").read_text())
    hyps = [json.loads(x) for x in (out / "hypotheses.jsonl").read_text().splitlines() if x.strip()]
    kg = json.loads((out / "kg.json").read_text())
    found = any(e.get("predicate") == "higher_in" and "ps6" in str(e.get("subject", {}).get("label", "")).lower()
                and "b cells" in str(e.get("subject", {}).get("label", "")).lower() for e in kg.get("edges", []))
    res.update({
        "objectives": [o.get("title") for o in state.get("objectives", [])],
        "tool_calls": calls,
        "tool_seconds": round(sum(c["seconds"] or 0 for c in calls), 1),
        "n_failed": sum(c["status"] != "done" for c in calls),
        "n_tool_bugs": bugs,
        "n_hypotheses": len(hyps),
        "pS6_B_cells_up": found,
    })
    return res


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out = None
    if "--out" in argv:
        i = argv.index("--out")
        out = Path(argv[i + 1])
        del argv[i : i + 2]
    data = _data_dir(argv[0] if argv else None)
    with tempfile.TemporaryDirectory() as tmp:
        res = run(data, out or Path(tmp) / "run")
    print(json.dumps(res, indent=1))
    print(f"wall time {res['wall_s']:.1f} s (target < {TARGET_S:.0f} s): {'met' if res['met'] else 'NOT met'}")
    return 0 if res["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
