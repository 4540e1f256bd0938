"""Benchmark of one offline run (issues 2 and 12): wall time, peak memory and what the run produced, against targets.

Runs the offline (heuristic) pipeline on a published dataset (default ``cptac-ucec``) in this
process and prints one table::

    python -m proteus.evals.bench_run [--dataset cptac-ucec] [--out DIR] [--seed 0] [--json]

Targets: wall time <= 60 s and peak memory (resident set size, ``getrusage``) <= 2 GiB for the whole
run including in-run validation (issue 12; issue 2 asked 120 s / 4 GiB without it), >= 5 objectives
over >= 3 analysis families, >= 15 hypotheses, every hypothesis with a validation block, each of the
five judge scores varying across hypotheses, run directory <= 25 MB (issue 16). Also reported: the validate node's own seconds (from
``trace.jsonl``) and how many hypotheses validated / failed / were not testable. Exit status 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["TARGETS", "bench_run", "main"]

TARGETS = {"wall_seconds": 60.0, "peak_gib": 2.0, "objectives": 5, "families": 3, "hypotheses": 15,
           "validation_blocks": 1.0, "varying_scores": 5, "run_dir_mb": 25.0}
METRICS = ("reliability", "logical_coherence", "biological_plausibility", "novelty", "evaluability")


def _peak_gib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024**2


def bench_run(dataset: str = "cptac-ucec", out: str | Path | None = None, *, seed: int = 0, max_objectives: int = 8) -> dict:
    """Fetch ``dataset``, run the offline pipeline on it, return measurements and pass/fail per target."""
    from proteus.datasets import fetch
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.rundir import read_trace
    from proteus.runner import run_research

    tmp = tempfile.mkdtemp(prefix="proteus-bench-") if out is None else None
    root = Path(tmp or out)
    try:
        data = fetch(dataset, root / "data" / dataset)
        run_dir = root / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        t0, c0 = time.perf_counter(), time.process_time()
        info = run_research(data, run_dir, policy=HeuristicPolicy(), seed=seed, max_objectives=max_objectives)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        state = json.loads((run_dir / "state.json").read_text())
        families = sorted({o["family"] for o in state["objectives"] if o["status"] == "done"})
        hyps = [json.loads(x) for x in (run_dir / "hypotheses.jsonl").read_text().splitlines() if x.strip()]
        trace = read_trace(run_dir)
        validation_s = sum(e.get("seconds", 0.0) for e in trace if e.get("kind") == "validation")
        statuses = {s: sum((h.get("validation") or {}).get("status") == s for h in hyps) for s in ("validated", "inconclusive", "failed", "untestable")}
        varying = sum(len({(h.get("scores") or {}).get(m, {}).get("score") for h in hyps}) >= 2 for m in METRICS)
        got = {
            "wall_seconds": round(wall, 1),
            "peak_gib": round(_peak_gib(), 2),
            "objectives": info["counts"]["objectives"],
            "families": len(families),
            "hypotheses": info["counts"]["hypotheses"],
            "validation_blocks": round(sum(bool(h.get("validation")) for h in hyps) / max(1, len(hyps)), 3),
            "varying_scores": varying,
            "run_dir_mb": round(sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) / 1e6, 1),
        }
        ok = {
            "wall_seconds": got["wall_seconds"] <= TARGETS["wall_seconds"],
            "peak_gib": got["peak_gib"] <= TARGETS["peak_gib"],
            "objectives": got["objectives"] >= TARGETS["objectives"],
            "families": got["families"] >= TARGETS["families"],
            "hypotheses": got["hypotheses"] >= TARGETS["hypotheses"],
            "validation_blocks": got["validation_blocks"] >= TARGETS["validation_blocks"],
            "varying_scores": got["varying_scores"] >= TARGETS["varying_scores"],
            "run_dir_mb": got["run_dir_mb"] <= TARGETS["run_dir_mb"],
        }
        return {"dataset": dataset, "measured": got, "targets": TARGETS, "passed": ok, "family_names": families,
                "relations": info["counts"]["relations"], "steps": info["counts"]["steps"],
                "validation_seconds": round(validation_s, 1), "cpu_seconds": round(cpu, 1), "validation": statuses, "judged": info.get("judged")}
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="cptac-ucec")
    ap.add_argument("--out", default=None, help="keep the data and run here (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = ap.parse_args(argv)
    res = bench_run(a.dataset, a.out, seed=a.seed)
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"bench_run on {res['dataset']} (offline policy)")
        ops = {"wall_seconds": "<=", "peak_gib": "<=", "objectives": ">=", "families": ">=", "hypotheses": ">=",
               "validation_blocks": ">=", "varying_scores": ">=", "run_dir_mb": "<="}
        for k, v in res["measured"].items():
            print(f"  {k:<13} {v:>8}   target {ops[k]} {TARGETS[k]:<6} {'ok' if res['passed'][k] else 'MISSED'}")
        print(f"  families: {', '.join(res['family_names'])}; {res['steps']} steps, {res['relations']} relations")
        print(f"  process CPU {res['cpu_seconds']} s (wall time depends on what else shares the cores)")
        print(f"  in-run validation: {res['validation_seconds']} s; {res['validation']}; judged: {res['judged']}")
    return 0 if all(res["passed"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
