"""Run the research graph on a data folder, durably: lock, fingerprint, checkpoint, atomic artifacts.

:func:`run_research` is what ``proteus run`` and ``proteus resume`` call. A run killed at any point
continues from its last LangGraph checkpoint (``checkpoint.sqlite``); finished tool calls are not
repeated. A run whose inputs changed since it started refuses to resume unless ``force``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

from proteus.graphs.nodes import PromisedSamplesMissing
from proteus.graphs.research import build_research_graph
from proteus.graphs.state import RunContext
from proteus.kg import KnowledgeGraph
from proteus.policy.base import Policy
from proteus.policy.claim_check import wording_counts
from proteus.profile import profile_study
from proteus.quality import contrast_retests, study_quality
from proteus.rundir import RunDir, fingerprint, input_files, package_versions

__all__ = ["run_research", "InputsChangedError", "NoResultsError", "run_warnings", "judge_counts"]


class InputsChangedError(RuntimeError):
    """The data folder changed since the run started."""


class NoResultsError(RuntimeError):
    """No tool call of the run succeeded (or a tool could not find the samples the profile promised)."""


def run_warnings(state: dict[str, Any]) -> tuple[list[str], str | None]:
    """What a reader must not miss: objectives whose every step failed, a run without findings.

    Returns the warnings and, when no tool call succeeded at all, the failure that makes the run
    exit non-zero.
    """
    steps = [s for w in state.get("workflows", []) for s in w["steps"]]
    warnings = [f"objective {o['id']} ({o['title']}): every step failed" for o in state.get("objectives", []) if o.get("status") == "failed"]
    if not any(s["status"] == "done" for s in steps):
        first = next((f"; first: {s['tool']}: {s.get('summary', '')[:300]}" for s in steps), "")
        return warnings, f"no tool call succeeded ({len(steps)} tried{first})"
    if not state.get("relations"):
        warnings.append("no result passed its thresholds: the knowledge graph holds no relation")
    return warnings, None


def run_research(
    data: str | Path,
    out: str | Path,
    *,
    policy: Policy,
    seed: int = 0,
    resume: bool = False,
    force: bool = False,
    max_objectives: int = 8,
    progress: Callable[[str], None] = lambda msg: None,
    model_label: str = "offline",
    base_url: str | None = None,
    study=None,
) -> dict[str, Any]:
    """Run (or resume) PROTEUS on ``data`` writing to ``out``; returns the final ``run.json`` dict.

    ``model_label`` and ``base_url`` (credentials stripped) are recorded so that ``proteus resume``
    continues with the same model. ``study`` may be passed pre-loaded (evaluation harness:
    held-out splits, permuted labels).
    """
    from proteus.io import load_study
    from proteus.study import NoUsableDataError

    data, rundir = Path(data), RunDir(out)
    preloaded = study is not None
    rundir.lock()
    try:
        fp = fingerprint(input_files(data), data) if study is None or data.exists() else {}
        run_json_path = rundir.path / "run.json"
        previous = json.loads(run_json_path.read_text()) if run_json_path.exists() else None
        if previous and not resume and (rundir.path / "checkpoint.sqlite").exists():
            msg = f"{rundir.path} already holds a run; use --resume to continue it or choose another --out"
            raise FileExistsError(msg)
        changed_inputs: list[str] = []
        if resume and previous and previous.get("fingerprint") != fp:
            changed = sorted(set(previous.get("fingerprint", {}).items()) ^ set(fp.items()))
            changed_inputs = sorted({k for k, _ in changed})
            if not force:
                msg = f"input files changed since the run started ({', '.join(changed_inputs[:5])}); pass --force to resume anyway"
                raise InputsChangedError(msg)
        if resume and previous:
            # a resumed run continues with the settings it started with (its checkpoint was made with them)
            config = previous.get("config", {})
            kept = int(config.get("seed", seed)), int(config.get("max_objectives", max_objectives))
            if kept != (seed, max_objectives):
                progress(f"resuming with the run's own seed {kept[0]} and max objectives {kept[1]}")
            seed, max_objectives = kept
        elapsed_before = _elapsed_before(rundir) if resume else 0.0
        t0 = time.time()
        if study is None:
            progress(f"reading {data}")
            study = load_study(data)
        for r in study.reports:
            if r.problem:
                progress(f"skipped {r.path}: {r.problem}")
        for m in study.sample_matching:
            progress(m.summary())
        if study.sample_matching and not any(m.n_matched for m in study.sample_matching):
            raise NoUsableDataError(f"nothing to analyse in {data}: no sample of any layer matches a row of the sample table "
                                    f"({'; '.join(m.summary() for m in study.sample_matching)[:600]})")
        for note in study.sample_notes:
            progress(note)
        profile = profile_study(study)
        rundir.write_json("profile.json", profile.model_dump(mode="json"))
        quality = study_quality(study, profile)
        rundir.write_json("qc.json", quality)
        for name, layer in quality["layers"].items():
            for o in layer["outliers"]:
                progress(f"QC: {o['sample']} is an outlier run of {name}: {o['reason']}")
        run_info: dict[str, Any] = {
            "run_id": rundir.path.name,
            "data": str(data.resolve()),
            "config": {"seed": seed, "max_objectives": max_objectives, "resume": resume, "base_url": _public_url(base_url)},
            "policy": policy.name,
            "model": model_label,
            "judge": policy.judge_name,
            "seed": seed,
            "fingerprint": fp,
            "versions": {"python": sys.version.split()[0], "platform": platform.platform(), **package_versions()},
            "started": previous.get("started") if (previous and resume) else time.strftime("%Y-%m-%dT%H:%M:%S"),
            "status": "running",
            "inputs": [f"{r.path}: {r.kind or 'skipped'}" + (f" ({r.problem})" if r.problem else "") for r in study.reports],
            "sample_matching": [m.summary() for m in study.sample_matching] + study.sample_notes,
        }
        if preloaded:  # e.g. an evaluation's discovery split: what `proteus export h5mu` reads back
            cells = [str(s) for a in study.cell_level().values() for s in a.obs["sample_id"].unique()]
            run_info["samples"] = list(dict.fromkeys(study.samples() + cells))
        changed_before = previous.get("inputs_changed_on_resume", []) if (previous and resume) else []
        if changed_before or changed_inputs:
            run_info["inputs_changed_on_resume"] = sorted(set(changed_before) | set(changed_inputs))
        rundir.write_json("run.json", run_info)
        rundir.append_trace(
            {
                "kind": "run_start",
                "resume": resume,
                "policy": policy.name,
                "model": model_label,
                "seed": seed,
                "setup_seconds": round(time.time() - t0, 3),
                **({"inputs_changed": changed_inputs} if changed_inputs else {}),
            }
        )

        ctx = RunContext(study=study, profile=profile, quality=quality, policy=policy, rundir=rundir, seed=seed, max_objectives=max_objectives, progress=progress)
        try:
            with rundir.checkpointer() as saver:
                graph = build_research_graph().compile(checkpointer=saver)
                config = {"configurable": {"thread_id": "research"}, "recursion_limit": 2000}
                has_checkpoint = graph.get_state(config).values if resume else None
                final = graph.invoke(None if has_checkpoint else {}, config, context=ctx)
            rundir.compact_checkpoints()  # finished: resume needs only the latest checkpoint
        except PromisedSamplesMissing as e:
            _fail_run(rundir, run_info, str(e))
            raise NoResultsError(str(e)) from e

        kg = ctx.kg(final)
        if any(layer["outliers"] for layer in quality["layers"].values()):  # every differential claim's contrast, re-tested without them
            quality["leave_outlier_out"] = contrast_retests(ctx.relations(final), quality, study, ctx.retests, seed=seed)
            rundir.write_json("qc.json", quality)
        write_artifacts(rundir, final, kg)
        usage = policy.usage()
        run_info.update(
            status="finished",
            finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
            wall_seconds=round(elapsed_before + time.time() - t0, 2),
            judge=policy.judge_name,  # who judged in the end (a model's judge may have fallen back)
            usage=usage,
            counts={
                "objectives": sum(o["status"] == "done" for o in final.get("objectives", [])),
                "steps": sum(len(w["steps"]) for w in final.get("workflows", [])),
                "relations": len(ctx.relations(final)),
                "hypotheses": len(final.get("hypotheses", [])),
            },
        )
        run_info["wording"] = wording_counts(final.get("hypotheses", []), final.get("hypotheses_rejected", []))
        run_info["judged"] = judge_counts(final.get("hypotheses", []), policy.judge_name)
        run_info["validation"] = {s: sum((h.get("validation") or {}).get("status") == s for h in final.get("hypotheses", []))
                                  for s in ("validated", "inconclusive", "failed", "untestable")}
        warnings, failure = run_warnings(final)
        for w in warnings:
            progress(f"WARNING: {w}")
        if warnings:
            run_info["warnings"] = warnings
        rundir.write_json("run.json", run_info)
        rundir.append_trace({"kind": "run_end", "counts": run_info["counts"], "usage": usage, "warnings": warnings})
        if failure:
            if not any(m.level == "sample" for m in profile.modalities) and not study.cell_level():
                failure += "; no omics layer was read from the inputs, so no analysis tool applies"
            _fail_run(rundir, run_info, failure)
            raise NoResultsError(failure)
        from proteus.report import write_report

        write_report(rundir.path)
        return run_info
    finally:
        rundir.unlock()


def _fail_run(rundir: RunDir, run_info: dict[str, Any], reason: str) -> None:
    """Mark the run failed with ``reason`` in run.json, trace and report (which say so at the top)."""
    from proteus.report import write_report

    run_info.update(status="failed", failure=reason, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    rundir.write_json("run.json", run_info)
    rundir.append_trace({"kind": "run_failed", "reason": reason})
    write_report(rundir.path)


def judge_counts(hypotheses: list[dict[str, Any]], policy_judge: str) -> dict[str, Any]:
    """How many hypotheses the policy's own judge scored and how many fell back to another
    (each hypothesis's ``judge`` names who actually scored it)."""
    by: dict[str, int] = {}
    for h in hypotheses:
        by[str(h.get("judge") or "")] = by.get(str(h.get("judge") or ""), 0) + 1
    own = by.get(policy_judge, 0)
    return {"judge": policy_judge, "scored_by_judge": own, "fallback": sum(by.values()) - own, "by": by}


def _public_url(url: str | None) -> str | None:
    """``url`` without user:password (never written to the run directory)."""
    if not url:
        return None
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _elapsed_before(rundir: RunDir) -> float:
    """Wall seconds of the earlier sessions of this run, from ``trace.jsonl``.

    A session runs from its ``run_start`` event (less its ``setup_seconds``, the reading before
    it) to its last event; a killed session leaves no ``run_end``, so its time is counted up to its
    last traced event. A fresh (non-resume) ``run_start`` starts the count again.
    """
    total, start, last = 0.0, None, None
    for e in rundir.read_jsonl("trace.jsonl"):
        t = e.get("t")
        if not isinstance(t, (int, float)):
            continue
        if e.get("kind") == "run_start":
            if start is not None and last is not None:
                total += max(0.0, last - start)
            if not e.get("resume"):
                total = 0.0
            start = t - float(e.get("setup_seconds") or 0.0)
        last = t
    if start is not None and last is not None:
        total += max(0.0, last - start)
    return total


def write_artifacts(rundir: RunDir, state: dict[str, Any], kg: KnowledgeGraph) -> None:
    """kg.json, hypotheses.jsonl and state.json, each written atomically."""
    rundir.write_json("kg.json", kg.to_node_link(), indent=None)
    rundir.write_jsonl("hypotheses.jsonl", state.get("hypotheses", []))
    rundir.write_json(
        "state.json",
        {"objectives": state.get("objectives", []), "workflows": state.get("workflows", [])},
    )
