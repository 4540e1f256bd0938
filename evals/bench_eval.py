"""Benchmark of ``proteus eval`` (batch evaluation): wall time with 1 and 2 Dask workers, replication, null control.

::

    python -m proteus.evals.bench_eval [--datasets cptac-ucec ...] [--workers 1 2] [--out DIR] [--json]

Prints, for each worker count, the wall time of each dataset's tasks (prepare, discovery run,
null run, validation) and of the whole batch; and, from the last batch, each dataset's
replication rate with its Wilson 95% interval and the null control (label-permuted run), whose
target is at most one hypothesis that "replicates". Exit status 1 when the null target is missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["bench_eval", "main", "NULL_TARGET"]

NULL_TARGET = 1
"""At most this many null-control hypotheses may replicate on held-out samples."""


def bench_eval(datasets: list[str], workers: list[int], out: str | Path | None = None, *, seed: int = 1,
               max_objectives: int = 8) -> dict:
    """Run :func:`proteus.evals.harness.evaluate` once per worker count; return timings and validation."""
    from proteus.evals.harness import evaluate

    tmp = tempfile.mkdtemp(prefix="proteus-bench-eval-") if out is None else None
    root = Path(tmp or out)
    runs = {}
    try:
        for n in workers:
            rep = evaluate(datasets, root / f"workers{n}", seed=seed, workers=n, max_objectives=max_objectives, quiet=True)
            per = {}
            for d in rep["datasets"]:
                if d["status"] != "ok":
                    per[d["name"]] = {"error": d["error"]}
                    continue
                s = d["seconds"]
                per[d["name"]] = {"seconds": s, "wall": d["wall_seconds"],
                                  "replication": d["replication"], "null": d["null"], "cross_omics": d["cross_omics"],
                                  "hypotheses": d["discovery"]["hypotheses"], "objectives": d["discovery"]["objectives"]}
            runs[n] = {"batch_seconds": rep["wall_seconds"], "datasets": per, "overall": rep["overall"]}
        return {"datasets": datasets, "workers": workers, "runs": runs}
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["cptac-ucec"])
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--out", default=None, help="keep the evaluation folders here (default: temporary)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-objectives", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = bench_eval(a.datasets, a.workers, a.out, seed=a.seed, max_objectives=a.max_objectives)
    if a.json:
        print(json.dumps(res, indent=1, default=str))
    ok = True
    for n, run in res["runs"].items():
        if a.json:
            break
        print(f"workers={n}: batch {run['batch_seconds']:.0f} s")
        for name, d in run["datasets"].items():
            if "error" in d:
                print(f"  {name}: FAILED {d['error']}")
                continue
            s = d["seconds"]
            print(f"  {name}: prepare {s['prepare']:.0f} s, discovery {s['discovery']:.0f} s, null {s['null']:.0f} s, "
                  f"validation {s['validation']:.0f} s (dataset wall {d['wall']:.0f} s)")
    last = res["runs"][res["workers"][-1]]
    for name, d in last["datasets"].items():
        if "error" in d:
            ok = False
            continue
        r, nl = d["replication"], d["null"]
        ci = r["ci95"]
        rate = f"{r['k']}/{r['n']} = {r['rate']:.0%} (95% CI {ci[0]:.0%}-{ci[1]:.0%})" if r["n"] else "n/a"
        passed = nl["replicating"] <= NULL_TARGET
        ok &= passed
        if not a.json:
            print(f"  {name}: {d['objectives']} objectives, {d['hypotheses']} hypotheses; replication {rate}; "
                  f"null control {nl['hypotheses']} proposed, {nl['replicating']} replicating "
                  f"(target <= {NULL_TARGET}: {'ok' if passed else 'MISSED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
