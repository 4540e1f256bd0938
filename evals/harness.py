"""``proteus eval``: batch evaluation on published datasets, on Dask, with validation that does not trust the judge.

Per dataset (one Dask task each, so datasets and their two runs go in parallel)::

    prepare      fetch into DIR/data/<name> (or use a folder), load, seeded stratified 60/40 split
    discovery    run_research on the discovery samples                  -> DIR/<name>/discovery/
    null         run_research on the discovery samples, labels permuted -> DIR/<name>/null/
    validation   re-test every hypothesis's evidence on the held-out samples (both runs),
                 cross-omics corroboration, judge summaries (+ --judge-model re-scoring)

then ``DIR/eval.json`` (machine-readable), ``DIR/eval.md`` and ``DIR/eval.html`` (tables and a
figure of score distributions and replication rates). A dataset that fails is reported with its
error and the stage it failed in; the others finish.

With ``--scheduler tcp://HOST:8786`` the tasks go to an existing Dask cluster; workers must see
DIR at the same path (a shared file system) and have PROTEUS installed. Otherwise a
:class:`distributed.LocalCluster` of ``--workers`` processes (one thread each) is started.

>>> from proteus.evals.harness import evaluate
>>> result = evaluate(["gse7390-breast"], "evals_out", max_objectives=3)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import typer


__all__ = ["evaluate", "prepare_dataset", "run_arm", "validate_dataset", "summarise", "eval_cli", "MIN_SAMPLES"]

MIN_SAMPLES = 10
"""A dataset needs at least this many samples to be split into discovery and held-out parts."""

_STAGES = ("prepare", "discovery", "null", "validation")


# --------------------------------------------------------------------------------------------
# the four tasks (module-level functions, so Dask workers import them by name)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _load(folder: str):
    from proteus.io import load_study

    return load_study(Path(folder))


def _policy(model: str | None, base_url: str | None):
    from proteus.policy import make_policy

    return make_policy(model, base_url)


def prepare_dataset(name: str, out: str, *, seed: int = 1, fraction: float = 0.6) -> dict[str, Any]:
    """Fetch (or take the folder ``name``), load, split; write ``DIR/<label>/split.json``.

    Returns a small dict (label, folder, run folder, split) that the other tasks receive.
    """
    from proteus.datasets import fetch

    t0 = time.time()
    out_p = Path(out)
    if Path(name).exists():
        folder, label = Path(name).resolve(), _label(name)
    else:
        label = name
        folder = out_p / "data" / name
        if not (folder.is_dir() and any(folder.iterdir())):
            fetch(name, folder)
    study = _load(str(folder))
    from proteus.validation import stratified_split

    split = stratified_split(study, seed=seed, fraction=fraction)
    n = len(split.discovery) + len(split.held_out)
    if n < MIN_SAMPLES:
        msg = f"{label} has {n} samples; a discovery / held-out split needs at least {MIN_SAMPLES}"
        raise ValueError(msg)
    ddir = out_p / label
    ddir.mkdir(parents=True, exist_ok=True)
    (ddir / "split.json").write_text(json.dumps(split.to_json(), indent=1))
    return {
        "name": label,
        "dataset": name,
        "folder": str(folder),
        "dir": str(ddir),
        "split": split.to_json(),
        "modalities": sorted(study.modalities),
        "seconds": round(time.time() - t0, 2),
        "t_start": t0,
    }


def _families(run_dir: Path) -> list[str]:
    p = run_dir / "state.json"
    if not p.exists():
        return []
    state = json.loads(p.read_text())
    return sorted({o.get("family", "") for o in state.get("objectives", []) if o.get("status") == "done"})


def run_arm(
    prep: dict[str, Any],
    arm: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    seed: int = 1,
    max_objectives: int = 8,
) -> dict[str, Any]:
    """Run PROTEUS on the discovery samples (``arm="discovery"``) or on them with labels permuted (``"null"``).

    A finished run in ``DIR/<label>/<arm>`` is reused; an interrupted one is resumed.
    """
    from proteus.runner import run_research

    if arm not in ("discovery", "null"):
        msg = f"arm must be 'discovery' or 'null', got {arm!r}"
        raise ValueError(msg)
    t0 = time.time()
    run_dir = Path(prep["dir"]) / arm
    run_json = run_dir / "run.json"
    info = json.loads(run_json.read_text()) if run_json.exists() else None
    if not (info and info.get("status") == "finished"):
        study = _load(prep["folder"]).subset_samples(prep["split"]["discovery"])
        if arm == "null":
            from proteus.validation import permute_labels

            study = permute_labels(study, seed=seed)
        resume = (run_dir / "checkpoint.sqlite").exists()
        info = run_research(
            prep["folder"], run_dir, policy=_policy(model, base_url), seed=seed, study=study,
            max_objectives=max_objectives, model_label=model or "offline", resume=resume, force=True,
        )
    return {
        "arm": arm,
        "dir": str(run_dir),
        "policy": info.get("policy"),
        "model": info.get("model"),
        "judge": info.get("judge"),
        "counts": info.get("counts", {}),
        "families": _families(run_dir),
        "usage": info.get("usage", {}),
        "run_seconds": info.get("wall_seconds"),
        "seconds": round(time.time() - t0, 2),
    }


def _rate(k: int, n: int) -> dict[str, Any]:
    from proteus.validation import wilson_ci

    lo, hi = wilson_ci(k, n)
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else None, "ci95": [lo, hi]}


def _usage(*parts: dict[str, Any]) -> dict[str, Any]:
    keys = ("calls", "prompt_tokens", "completion_tokens", "cost_usd")
    return {k: round(sum(float(p.get(k, 0) or 0) for p in parts), 6) if k == "cost_usd" else int(sum(int(p.get(k, 0) or 0) for p in parts)) for k in keys}


def validate_dataset(
    prep: dict[str, Any],
    discovery: dict[str, Any],
    null: dict[str, Any],
    *,
    seed: int = 1,
    judge_model: str | None = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """Validate both runs on the held-out samples, summarise judges; the dataset's entry of ``eval.json``."""
    t0 = time.time()
    full = _load(prep["folder"])
    held = full.subset_samples(prep["split"]["held_out"])
    disc_study = full.subset_samples(prep["split"]["discovery"])
    scratch = Path(prep["dir"]) / "scratch"
    from proteus.evals.judge import rejudge, score_summary
    from proteus.validation import validate_run

    hyps = validate_run(discovery["dir"], held, cross_study=disc_study, seed=seed, scratch=scratch / "discovery")
    null_hyps = validate_run(null["dir"], held, cross_study=None, seed=seed, scratch=scratch / "null")
    shutil.rmtree(scratch, ignore_errors=True)

    judged = score_summary(hyps)
    judge_usage: dict[str, Any] = {}
    if judge_model:
        policy = _policy(judge_model, base_url)
        rows = rejudge(discovery["dir"], policy)
        jdir = Path(prep["dir"]) / "judges"
        jdir.mkdir(exist_ok=True)
        (jdir / f"{policy.judge_name.replace('/', '_').replace(':', '_')}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for k, v in score_summary(rows).items():
            judged[k if k not in judged else f"{k} (re-judge)"] = v
        judge_usage = policy.usage()

    ev = [h for h in hyps if h["validation"]["replicated"] is not None]
    cx = [h for h in hyps if h["validation"]["cross_omics"] is not None]
    nev = [h for h in null_hyps if h["validation"]["replicated"] is not None]
    edges = [o for h in hyps for o in h["validation"]["held_out"].values() if o.get("status") == "tested"]
    split = prep["split"]
    return {
        "name": prep["name"],
        "dataset": prep["dataset"],
        "status": "ok",
        "error": None,
        "split": {"n_discovery": len(split["discovery"]), "n_held_out": len(split["held_out"]),
                  "stratify_by": split["stratify_by"], "seed": split["seed"], "fraction": split["fraction"]},
        "discovery": {"run_dir": discovery["dir"], "policy": discovery["policy"], "model": discovery["model"],
                      **{k: discovery["counts"].get(k, 0) for k in ("objectives", "steps", "relations", "hypotheses")},
                      "families": discovery["families"]},
        "judges": judged,
        "replication": {**_rate(sum(bool(h["validation"]["replicated"]) for h in ev), len(ev)),
                        "n_hypotheses": len(hyps), "n_not_evaluable": len(hyps) - len(ev),
                        "edges_tested": len(edges), "edges_replicated": sum(bool(o["replicated"]) for o in edges),
                        "alpha": hyps[0]["validation"]["alpha"] if hyps else None},
        "cross_omics": {**_rate(sum(bool(h["validation"]["cross_omics"]) for h in cx), len(cx)),
                        "layer": next((h["validation"]["cross_omics_layer"] for h in hyps), None)},
        "null": {"run_dir": null["dir"], "hypotheses": len(null_hyps),
                 "relations": null["counts"].get("relations", 0),
                 "replicating": sum(bool(h["validation"]["replicated"]) for h in nev), "evaluable": len(nev),
                 "passed": sum(bool(h["validation"]["replicated"]) for h in nev) <= 1},
        "seconds": {"prepare": prep["seconds"], "discovery": discovery["seconds"], "null": null["seconds"],
                    "validation": round(time.time() - t0, 2)},
        "wall_seconds": round(time.time() - prep["t_start"], 2),
        "usage": _usage(discovery["usage"], null["usage"], judge_usage),
    }


# --------------------------------------------------------------------------------------------
# the batch
# --------------------------------------------------------------------------------------------


def summarise(datasets: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled numbers over the datasets that finished (replication pooled over hypotheses)."""
    ok = [d for d in datasets if d.get("status") == "ok"]
    rep_k, rep_n = sum(d["replication"]["k"] for d in ok), sum(d["replication"]["n"] for d in ok)
    cx_k, cx_n = sum(d["cross_omics"]["k"] for d in ok), sum(d["cross_omics"]["n"] for d in ok)
    judges: dict[str, Any] = {}
    for d in ok:
        for name, s in d["judges"].items():
            j = judges.setdefault(name, {"n": 0, "model": s["model"], "_sum": {}, "distribution": {}})
            j["n"] += s["n"]
            for m, v in s["mean"].items():
                if v is not None:
                    j["_sum"][m] = j["_sum"].get(m, 0.0) + v * s["n"]
            for m, dist in s["distribution"].items():
                tgt = j["distribution"].setdefault(m, {str(k): 0 for k in range(1, 6)})
                for k, c in dist.items():
                    tgt[k] += c
    for j in judges.values():
        sums = j.pop("_sum")
        j["mean"] = {m: round(v / j["n"], 3) for m, v in sums.items()} if j["n"] else {}
        j["overall"] = round(sum(j["mean"].values()) / len(j["mean"]), 3) if j["mean"] else None
    return {
        "datasets": len(datasets),
        "finished": len(ok),
        "failed": len(datasets) - len(ok),
        "objectives": sum(d["discovery"]["objectives"] for d in ok),
        "hypotheses": sum(d["discovery"]["hypotheses"] for d in ok),
        "judges": judges,
        "replication": _rate(rep_k, rep_n),
        "cross_omics": _rate(cx_k, cx_n),
        "null": {"hypotheses": sum(d["null"]["hypotheses"] for d in ok),
                 "replicating": sum(d["null"]["replicating"] for d in ok),
                 "evaluable": sum(d["null"]["evaluable"] for d in ok)},
        "usage": _usage(*(d["usage"] for d in ok)),
    }


def _label(name: str) -> str:
    """A dataset's label: the manifest name, or the folder (file) name of a path."""
    return Path(name).resolve().name if Path(name).exists() else name


def _one_line(e: BaseException) -> str:
    text = (str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def _client(scheduler: str | None, workers: int | None):
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout="30s")
        try:
            client.wait_for_workers(1, timeout=120)
        except TimeoutError as e:
            client.close()
            msg = f"no Dask worker joined {scheduler} within 120 s; start one with: dask worker {scheduler}"
            raise RuntimeError(msg) from e
        return client, None
    n = workers or max(1, min(2, os.cpu_count() or 1))
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.CRITICAL)
    return Client(cluster), cluster


def evaluate(
    datasets: list[str],
    out: str | Path,
    *,
    seed: int = 1,
    model: str | None = None,
    base_url: str | None = None,
    judge_model: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    max_objectives: int = 8,
    fraction: float = 0.6,
    quiet: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate PROTEUS on ``datasets`` (manifest names or data folders); writes and returns ``eval.json``.

    Parameters
    ----------
    datasets
        Names from :func:`proteus.datasets.list_datasets` or paths of data folders.
    out
        Evaluation folder: ``data/``, one folder per dataset (``discovery/``, ``null/``,
        ``split.json``), ``eval.json``, ``eval.md``, ``eval.html``.
    seed
        Seed of the split, the permutation and the runs.
    model, base_url
        The policy (:func:`proteus.policy.make_policy`); ``None`` is the offline heuristic policy.
    judge_model
        A second judge that re-scores the discovery hypotheses (reported per judge).
    scheduler
        Address of an existing Dask scheduler; default a local cluster of ``workers`` processes.
    workers
        Local cluster size (default 2 on a machine with >= 2 cores, else 1).
    max_objectives
        Cap on objectives per run.
    fraction
        Discovery share of the split.
    quiet
        No terminal progress.
    progress
        Optional callback receiving one line per finished task (used instead of the progress bar).
    """
    from distributed import as_completed

    from proteus.evals.report import write_eval_report

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    client, cluster = _client(scheduler, workers)
    try:
        n_workers = len(client.scheduler_info().get("workers", {}))
        futures: dict[str, list] = {}
        owner = {}
        for name in dict.fromkeys(datasets):
            p = client.submit(prepare_dataset, name, str(out), seed=seed, fraction=fraction, pure=False)
            kw = dict(model=model, base_url=base_url, seed=seed, max_objectives=max_objectives)
            d = client.submit(run_arm, p, "discovery", pure=False, priority=1, **kw)
            n = client.submit(run_arm, p, "null", pure=False, **kw)
            v = client.submit(validate_dataset, p, d, n, seed=seed, judge_model=judge_model, base_url=base_url, pure=False, priority=2)
            futures[name] = [p, d, n, v]
            for stage, f in zip(_STAGES, futures[name]):
                owner[f.key] = (name, stage)
        all_f = [f for fs in futures.values() for f in fs]
        bar = None
        if progress is None and not quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            bar = Progress(TextColumn("[cyan]proteus eval[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           TextColumn("{task.description}"), console=Console(stderr=True), transient=False)
            bar.start()
            task = bar.add_task(f"{len(futures)} dataset(s) on {n_workers} worker(s)", total=len(all_f))
        try:
            for f in as_completed(all_f):
                name, stage = owner[f.key]
                state = "done"
                if f.status == "error":
                    upstream = futures[name][: _STAGES.index(stage)] if stage != "validation" else futures[name][:3]
                    upstream = upstream[:1] if stage in ("discovery", "null") else upstream
                    state = "skipped (an earlier stage failed)" if any(u.status == "error" for u in upstream) else "failed"
                line = f"{_label(name)}: {stage} {state}"
                if progress is not None:
                    progress(line)
                elif bar is not None:
                    bar.update(task, advance=1, description=line)
        finally:
            if bar is not None:
                bar.stop()
        results = []
        for name, fs in futures.items():
            failed = next(((stage, f) for stage, f in zip(_STAGES, fs) if f.status == "error"), None)
            if failed is None:
                results.append(fs[-1].result())
                continue
            stage, f = failed
            exc = f.exception()
            tb = "".join(traceback.format_exception(type(exc), exc, f.traceback()))[-3000:] if exc else ""
            results.append({"name": _label(name), "dataset": name,
                            "status": "error", "stage": stage, "error": _one_line(exc) if exc else "unknown error",
                            "traceback": tb})
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    report = {
        "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config": {"datasets": list(dict.fromkeys(datasets)), "seed": seed, "model": model or "offline",
                   "judge_model": judge_model, "scheduler": scheduler or "local", "workers": n_workers,
                   "max_objectives": max_objectives, "fraction": fraction},
        "wall_seconds": round(time.time() - t0, 2),
        "datasets": results,
        "overall": summarise(results),
    }
    (out / "eval.json").write_text(json.dumps(report, indent=1, default=str))
    write_eval_report(out, report)
    return report


# --------------------------------------------------------------------------------------------
# CLI (wired by proteus/cli.py as ``app.command("eval")(eval_cli)``)
# --------------------------------------------------------------------------------------------


def eval_cli(
    datasets: list[str] = typer.Argument(..., help="dataset names (proteus datasets list) or data folders"),
    out: Path = typer.Option(Path("evals_out"), "--out", "-o", help="evaluation folder (eval.json, eval.md, eval.html)"),
    seed: int = typer.Option(1, "--seed", help="seed of the split, the label permutation and the runs"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    model: Optional[str] = typer.Option(None, "--model", help="offline | openai:NAME | anthropic:NAME | vllm:NAME | llamacpp:NAME"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL"),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="second judge that re-scores the hypotheses"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="existing Dask scheduler, e.g. tcp://HOST:8786"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="local Dask worker processes (default 2, 1 on one core)"),
    max_objectives: int = typer.Option(8, "--max-objectives", help="cap on objectives per run"),
) -> None:
    """Evaluate PROTEUS on published datasets: discovery, label-permuted null, held-out validation, judges."""
    from rich.console import Console

    report = evaluate(datasets, out, seed=seed, model=model, base_url=base_url, judge_model=judge_model,
                      scheduler=scheduler, workers=workers, max_objectives=max_objectives, quiet=quiet)
    con = Console()
    for d in report["datasets"]:
        if d["status"] != "ok":
            con.print(f"[red]{d['name']}[/]: failed in {d['stage']}: {d['error']}", highlight=False)
        elif not quiet:
            r = d["replication"]
            ci = r["ci95"]
            con.print(f"[green]{d['name']}[/]: {d['discovery']['hypotheses']} hypotheses, replicated "
                      f"{r['k']}/{r['n']}" + (f" ({r['rate']:.0%}, 95% CI {ci[0]:.0%}-{ci[1]:.0%})" if r["n"] else "")
                      + f"; null {d['null']['replicating']}/{d['null']['hypotheses']} replicating", highlight=False)
    if not quiet:
        con.print(f"wrote {Path(out) / 'eval.json'}, eval.md, eval.html in {report['wall_seconds']:.0f} s", highlight=False)
    if report["overall"]["finished"] == 0:
        raise typer.Exit(1)
