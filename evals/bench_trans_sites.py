"""Speed of the offline plan's mutation trans-effect step on a phosphosite layer, against the same step on proteins.

On a study folder (e.g. the README's ``data/ucec``), the plan's ``mutation_association`` steps (``bulk_plays``:
top recurrent genes, each adjusted for plex, channel and the groupings its carriers are enriched in) are timed
in one process, the protein step being the reference run. Most sites of a TMT phosphosite layer are missing from
whole plexes, so their observed design is rank deficient (an empty plex column): ``lm_fit`` keeps the columns R's
pivoting keeps for all of them in one batch (:func:`proteus.stats.limma._fit_aliased`). Reported as seconds
(wall and CPU, best of ``repeats``) and the ratio of the site step to the protein step.

Measured (2-core machine shared with a training run, UCEC, 8 genes, 63k sites x 95 tumours vs 11k proteins):
the site step 70.6 s CPU before the batched fit (a QR per missingness pattern, ~16,000 a gene), 26.8 s after
the batched aliased fit, in one process; ``lm_fit`` of one gene's sites 6.5-7.2 s -> 1.9-2.1 s CPU.

Usage: ``python -m proteus.evals.bench_trans_sites --data DIR [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def bench(data: Path, repeats: int = 1) -> dict:
    from proteus.io import load_study
    from proteus.policy.playbooks import bulk_plays
    from proteus.profile import profile_study
    from proteus.tools.registry import ToolContext, get_tool

    study = load_study(data)
    steps = [s for p in bulk_plays(profile_study(study)) for s in p.steps if s.tool == "mutation_association"]
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for s in steps:
            wall = cpu = float("inf")
            for _ in range(repeats):
                w0, c0 = time.perf_counter(), time.process_time()
                r = get_tool("mutation_association")(study, s.params, ToolContext(out_dir=Path(tmp), seed=0, figures=False))
                wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
            out[s.params["modality"]] = {"rows": r.metrics["n_tested"], "genes": len(r.metrics["genes"]),
                                         "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
    ref, *others = list(out)
    for m in others:
        out[m]["cpu_ratio_to_" + ref] = round(out[m]["cpu_s"] / out[ref]["cpu_s"], 2)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a study folder, e.g. the README's data/ucec")
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    print(json.dumps(bench(a.data, a.repeats), indent=1))
