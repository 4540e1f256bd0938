"""Benchmark: does GRPO on the agent's own decisions raise the verifiable reward on held-out prompts?

1. Offline runs on the given data folders, each decision recorded as the model path would ask
   it for a model with ``--context-tokens`` of context (:class:`~proteus.policy.reference.ReferencePolicy`),
   exported with ``proteus export-rl`` (skipped with ``--trajectories``).
2. ``proteus.train.grpo.train`` on the base model, answers sampled under the serving grammar
   (``--unconstrained``: without it): mean reward of greedy answers on the held-out prompts before and after, the paired change with its 95% t and bootstrap intervals, wall
   times of evaluation and training, the device.
3. With ``--served-run DATA``: the base and the tuned GGUF each served by llama.cpp and used by
   ``proteus run`` on DATA; per model the decisions accepted first time, repaired and fallen
   back, the rejections for unknown names, hypotheses and validated ones, wall time
   (:func:`decision_stats`). The tuned GGUF is quantised to the base's type first (llama.cpp's
   quantiser; ``--keep-precision`` serves it as written). With ``--tuned GGUF`` (an adapter trained elsewhere, merged by
   ``proteus export gguf``) only this comparison runs.

With ``--budget-s`` the whole process (imports included) ends within that many seconds: the
warm start and GRPO stop early enough for the evaluation after them (see
:func:`proteus.train.grpo.train`). ``--out`` receives, as each phase ends, ``train.json`` and
``progress.jsonl`` (phase wall times, every optimisation step), ``adapter/`` (the LoRA as
safetensors), and at the end ``bench_train.json``. Example (CPU, 2 cores, SmolLM2-135M: 30 minutes of GRPO under the serving grammar, ~25 steps)::

    python evals/bench_train.py --data UCEC NAFLD BCRXL UPS_50vs0.5 UPS_50vs5 --base SmolLM2-135M-Instruct.Q4_1.gguf \\
        --out /tmp/bench-train --steps 10000 --num-generations 4 --lora-rank 8 --max-eval-prompts 64 --train-s 1800

then the served comparison on a study the prompts did not come from::

    python evals/bench_train.py --base SmolLM2-135M-Instruct.Q4_1.gguf --tuned /tmp/bench-train/model.gguf \\
        --served-run UPS_25vs12.5 --out /tmp/bench-served

Measured on that CPU (SmolLM2-135M Q4_1, LoRA r8, 4 generations, prompts rendered for 2,048 tokens):

- GRPO only, 30 min (25 steps; 100 training / 39 held-out prompts): held-out reward 0.873 -> 0.961,
  +0.088 (95% CI +0.019 .. +0.157). Served on UPS1 25 vs 12.5 fmol: 75% of decisions accepted first time
  (base) vs 70% (tuned): no gain where it is used.
- ``--sft-epochs 2`` then GRPO, 30 min together (warm start 886 s on the 56 reference answers that fit
  192 tokens, then 13 GRPO steps; 94 / 47 prompts): held-out reward 0.812 -> 0.846 after the warm start,
  0.839 after GRPO, +0.027 (95% CI -0.092 .. +0.146). Served (``--served-run``, quantised back to Q4_1):
  decisions the model made (first time or repaired) 51/60 (base) -> 59/60 (tuned), first time 39 -> 42,
  rejected answers 32 -> 3, heuristic fallbacks 9 -> 1; workflow plans 4/10 -> 10/10 first time (the
  base named technical columns as covariates). Workflow updates still repeat steps already run (17/18
  repaired by dropping them).
- After compact step schemas let an update keep each planned step as planned (same five runs, 95 / 46
  prompts): the base's held-out reward is 0.867 (workflow updates 0.953). ``--sft-epochs 2`` (67 reference
  answers as the grammar allows them, 884 s) then 14 GRPO steps: 0.867 -> 0.863 -> 0.864, change -0.003
  (95% CI -0.099 .. +0.092); greedy workflow updates collapse to an empty plan (0.953 -> 0.825), and 7 of 13
  GRPO groups scored all answers alike (no advantage, no update). GRPO only, 26 steps in 1,683 s: 0.867 ->
  0.867 (CI -0.046 .. +0.045). Served (UPS1 25 vs 12.5 fmol, placeholder answers rejected): decisions the
  model made 40/50 (base) -> 45/49 (GRPO), first time 34 -> 36, rejected answers 31 -> 12, fallbacks 10 -> 4.
  No one model yet meets both targets.
- Answers cut at the budget each decision was served with (``--max-completion-tokens 704`` covers every
  served budget, 74-682; five runs, 96 / 51 prompts): one GRPO-only model, 23 steps in 1,729 s (trained with
  the older single 192-token cap), then evaluated with ``--adapter DIR --steps 0``: held-out reward 0.931 ->
  0.964, +0.034 (95% t CI -0.004 .. +0.072; bootstrap +0.006 .. +0.077); 18 prompts up, 5 down, 28 unchanged;
  update_objectives 0.79 -> 0.97. Under the single 192-token cap the same model read 0.875 -> 0.851: two
  workflow updates of 338 and 470 tokens (served with ~576) were cut off and scored 0. Served (UPS1 25 vs
  12.5 fmol): decisions the model made 40/50 (base) -> 47/51 (tuned), first time 34 -> 37, rejected answers
  31 -> 13, fallbacks 10 -> 4. Evaluating with served budgets costs time: 1,203 s for the 51 prompts (two
  processes sharing the 2 cores) against 379 s under the 192-token cap. Paired change by prompt (signed-rank
  test, :func:`proteus.train.evaluate.paired_change`): 18 up, 5 down, p=0.015.
- A replicate with served budgets in the GRPO rollouts too and ``--dynamic-sampling 3`` (same 96 / 51 prompts,
  ``--max-completion-tokens 704 --max-prompt-tokens 1856``): the longer answers make a step cost 55-190 s, so
  14 steps in 1,708 s (17 groups sampled, 3 flat ones replaced): held-out 0.931 -> 0.954, +0.023 (t CI -0.015 ..
  +0.061; bootstrap -0.005 .. +0.067); 10 up, 7 down, signed-rank p=0.54; update_objectives 0.79 -> 0.97,
  update_workflow 0.953 -> 0.928. Served (UPS1 25 vs 12.5 fmol): decisions the model made 40/50 -> 42/48, first
  time 34 -> 35, rejected answers 31 -> 18, fallbacks 10 -> 6, workflow plans 7/10 -> 10/10 first time. Both
  models serve better than the base; the held-out gain is significant for the first only.
"""

from __future__ import annotations

import time

T0 = time.time()  # the budget counts from here, before the heavy imports

import argparse
import json
import logging
import sys
from pathlib import Path


def export_decisions(data: list[Path], out: Path, context_tokens: int) -> Path:
    from proteus.policy.reference import ReferencePolicy
    from proteus.rl_export import export_rl
    from proteus.runner import run_research

    runs = []
    for d in data:
        run = out / "runs" / d.name
        if not (run / "run.json").exists():
            run_research(d, run, policy=ReferencePolicy(context_tokens=context_tokens), seed=0)
        runs.append(run)
    path = out / "trajectories.jsonl"
    n = export_rl(runs, path)
    print(f"{n} decisions from {len(runs)} runs -> {path}", file=sys.stderr)
    return path


# rejection reasons that mean the model named something the run does not have
UNKNOWN_NAME = ("unknown tool", "is not a clinical column", "is not loaded", "is not a level of", "unknown objective family", "not in the knowledge graph", "not remaining objective ids")


def decision_stats(run_dir: Path) -> dict:
    """What the model decided in a model run, from its ``trace.jsonl`` and ``run.json``.

    ``decisions``: decision nodes (each ends accepted, repaired or fallback); ``accepted``: the
    model's first answer passed every check; ``repaired``: passed after a local fix or a re-ask;
    ``fallback``: the heuristic decided; ``rate``: (accepted + repaired) / decisions;
    ``rejected``: rejected answers, ``unknown_names`` of them for naming something the run does
    not have; per decision type the same counts; hypotheses and validated ones from ``run.json``."""
    events = [json.loads(x) for x in (run_dir / "trace.jsonl").read_text().splitlines() if x.strip()]
    llm = [e for e in events if e.get("kind") == "llm_decision"]
    final = [e for e in llm if e.get("outcome") in ("accepted", "repaired", "fallback")]
    rejected = [e.get("reason", "") for e in llm if e.get("outcome") == "rejected"]

    def counts(es: list[dict]) -> dict:
        n = {k: sum(e["outcome"] == k for e in es) for k in ("accepted", "repaired", "fallback")}
        return {"decisions": len(es), **n, "rate": (n["accepted"] + n["repaired"]) / len(es) if es else None}

    info = json.loads((run_dir / "run.json").read_text())
    return {
        **counts(final),
        "rejected": len(rejected),
        "unknown_names": sum(any(u in r for u in UNKNOWN_NAME) for r in rejected),
        "rejection_reasons": sorted({r[:120] for r in rejected}),
        "calls": sum("prompt_tokens" in e for e in llm),
        "completion_tokens": sum(e.get("completion_tokens") or 0 for e in llm),
        "by_decision": {d: counts([e for e in final if e["decision"] == d]) for d in sorted({e["decision"] for e in final})},
        "hypotheses": info["counts"]["hypotheses"],
        "validated": info["validation"]["validated"],
        "run_wall_s": info.get("wall_seconds"),
    }


def served_run(gguf: str, data: Path, out: Path, context_tokens: int, name: str) -> dict:
    """``gguf`` served by llama.cpp (answers constrained by each decision's JSON schema, as in
    production) and used by ``proteus run`` on ``data``: :func:`decision_stats` and the wall time."""
    from proteus.policy import make_policy
    from proteus.runner import run_research
    from proteus.serve import serve

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.perf_counter()
    with serve(gguf, engine="llamacpp", port=port, name=name, max_model_len=context_tokens, timeout_s=300, log=out / f"serve-{name}.log") as server:
        policy = make_policy(server.model_arg, server.base_url, context_tokens=context_tokens)
        run_research(data, out / f"run-{name}", policy=policy, seed=0)
    return {"gguf": gguf, **decision_stats(out / f"run-{name}"), "wall_s": round(time.perf_counter() - t, 1)}


def served_comparison(base: str, tuned: str, data: Path, out: Path, context_tokens: int, *, same_precision: bool = True) -> dict:
    """The base and the tuned GGUF, one after the other, each in a ``proteus run`` on ``data``;
    with ``same_precision`` the tuned one is first quantised to the base's type
    (:func:`proteus.train.gguf_export.quantize_like`), so only the training differs."""
    served = tuned
    if same_precision:
        from proteus.train.gguf_export import quantize_like

        served = str(quantize_like(tuned, base, out / f"{Path(tuned).stem}-as-base.gguf"))
    result = {"data": str(data), "base": served_run(base, data, out, context_tokens, "base"), "tuned": served_run(served, data, out, context_tokens, "tuned")}
    result["tuned"]["quantised_from"] = tuned if same_precision else None
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="*", type=Path, default=[], help="data folders for the offline runs")
    ap.add_argument("--trajectories", type=Path, help="an export-rl file instead of --data")
    ap.add_argument("--base", required=True, help="base model (.gguf or Hugging Face folder)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--num-generations", type=int, default=4)
    ap.add_argument("--learning-rate", type=float, default=2e-4)
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--context-tokens", type=int, default=2048, help="context the decisions are rendered for")
    ap.add_argument("--max-completion-tokens", type=int, default=192, help="longest answer (each is also cut at the budget it was served with)")
    ap.add_argument("--max-prompt-tokens", type=int, help="leave out longer prompts (default: context tokens less --max-completion-tokens)")
    ap.add_argument("--held-out", type=float, default=0.3)
    ap.add_argument("--max-eval-prompts", type=int, default=24)
    ap.add_argument("--eval-batch-size", type=int, default=8)
    ap.add_argument("--sft-epochs", type=float, default=0, help="supervised warm start epochs on the training split's reference answers")
    ap.add_argument("--budget-s", type=float, help="seconds the whole process may take")
    ap.add_argument("--train-s", type=float, help="seconds of training (warm start + GRPO; evaluations not counted)")
    ap.add_argument("--work-dir", type=Path, help="trainers' scratch folder (default OUT/checkpoints)")
    ap.add_argument("--no-gguf", action="store_true", help="do not write the merged GGUF")
    ap.add_argument("--dynamic-sampling", type=int, default=0, help="most groups sampled per GRPO step until one scores unevenly (0: off)")
    ap.add_argument("--unconstrained", action="store_true", help="sample training and held-out answers without the serving grammar")
    ap.add_argument("--keep-precision", action="store_true", help="serve the tuned GGUF as written (F16) instead of quantised to the base's type")
    ap.add_argument("--served-run", type=Path, help="data folder for the base vs tuned proteus run through llama.cpp")
    ap.add_argument("--adapter", type=Path, help="start from this trained LoRA adapter (with --steps 0: evaluate it on the held-out prompts)")
    ap.add_argument("--tuned", help="a tuned GGUF (e.g. from `proteus export gguf`): no training, only the --served-run comparison")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)

    args.out.mkdir(parents=True, exist_ok=True)
    if args.tuned:
        if args.served_run is None:
            ap.error("--tuned needs --served-run DATA")
        result = {"context_tokens": args.context_tokens, "served_run": served_comparison(args.base, args.tuned, args.served_run, args.out, args.context_tokens, same_precision=not args.keep_precision)}
        (args.out / "bench_train.json").write_text(json.dumps(result, indent=1, default=str))
        print(json.dumps(result, default=str)[:4000])
        return result

    from proteus.train.grpo import train

    traj = args.trajectories or export_decisions(args.data, args.out, args.context_tokens)
    s = train(
        traj, args.base, args.out, steps=args.steps, num_generations=args.num_generations, learning_rate=args.learning_rate,
        lora_rank=args.lora_rank, max_prompt_tokens=args.max_prompt_tokens or args.context_tokens - args.max_completion_tokens, max_completion_tokens=args.max_completion_tokens,
        held_out=args.held_out, max_eval_prompts=args.max_eval_prompts, eval_batch_size=args.eval_batch_size, sft_epochs=args.sft_epochs,
        deadline=None if args.budget_s is None else T0 + args.budget_s, train_s=args.train_s, seed=args.seed, work_dir=args.work_dir, constrained=not args.unconstrained,
        dynamic_sampling=args.dynamic_sampling, adapter=args.adapter, gguf=not args.no_gguf and (args.served_run is not None or str(args.base).endswith(".gguf")),
    )
    result = {"trajectories": str(traj), "context_tokens": args.context_tokens, "budget_s": args.budget_s, "total_s": round(time.time() - T0, 1), **s}
    if args.served_run is not None and s.get("gguf"):
        result["served_run"] = served_comparison(str(args.base), s["gguf"], args.served_run, args.out, args.context_tokens, same_precision=not args.keep_precision)
    (args.out / "bench_train.json").write_text(json.dumps(result, indent=1, default=str))
    ho = result.get("held_out")
    if ho:
        c = ho["change"]
        print(f"held-out reward {ho['before']['mean']:.3f} -> {ho['after']['mean']:.3f}; change {c['mean']:+.3f} "
              f"(95% CI {c['low']:+.3f} .. {c['high']:+.3f}; bootstrap {c['bootstrap'][0]:+.3f} .. {c['bootstrap'][1]:+.3f}; n={c['n']}); "
              f"sft {s.get('sft_s', 0)} s, grpo {s.get('grpo_s', 0)} s ({s.get('grpo_steps', 0)} steps) on {s['device']}")
    print(json.dumps({k: v for k, v in result.items() if k not in ("log",) and not k.startswith("rewards_")}, default=str)[:4000])
    return result


if __name__ == "__main__":
    main()
