"""Export model decisions from run directories as reinforcement-learning trajectories.

Every model attempt that :class:`~proteus.policy.llm.LLMPolicy` traced (``kind:
"llm_decision"`` events carrying ``messages``), and every decision of an offline run
(:class:`~proteus.policy.reference.ReferencePolicy`, ``kind: "reference_decision"``: the prompt
the model path would have rendered, with the heuristic answer as ``completion``), becomes one
JSON line::

    {
      "prompt": [{"role": "system", "content": ...}, {"role": "user", "content": ...}, ...],
      "completion": "<the model's raw answer text>",
      "rewards": {
        "schema_valid": true,            # the answer parsed against the decision's pydantic schema
        "accepted": true,                # it also passed the semantic checks (tools, columns, ids)
        "tool_success": 0.75,            # planned steps that ran without failing (workflow decisions), else null
        "judge_scores": {"mean": 3.8, "n_hypotheses": 4, "by_metric": {...}},  # hypotheses it led to, else null
        "validation_outcome": {"n": 4, "supported": 3, "outcomes": [...]},      # their validation, else null
        "human_review": [...]            # reviews.jsonl rows about those hypotheses, else null
      },
      "meta": {"run": ..., "decision": "plan_workflow", "decision_id": ..., "attempt": 0,
               "outcome": "accepted", "reason": "", "backend": "llamacpp:tiny", ...},
      "data_source": "proteus/plan_workflow",
      "reward_model": {"style": "rule", "ground_truth": "<rewards as JSON>"},
      "extra_info": {"decision_id": ..., "run": ...},
      "task": {"decision": ..., "schema": {...}, "max_tokens": 576, "allowed": {...}, "reference": {...},
               "edge_replication": {"e_...": true, ...}}   # what proteus.train.rewards checks
    }

``prompt`` is a conversational prompt (a list of chat messages) as TRL's ``GRPOTrainer`` /
``RLOOTrainer`` read it (``datasets.load_dataset("json", data_files=...)``); extra columns such
as ``rewards`` reach TRL reward functions as keyword arguments. ``data_source``,
``reward_model`` and ``extra_info`` are the columns verl's RL datasets expect (write the file to
Parquet with ``pandas.read_json(path, lines=True).to_parquet(...)``). A repair attempt's prompt
includes the rejected answer and the error, exactly as the model saw it.

How contributions are traced: a workflow decision's steps are matched (tool + parameters) to the
``tool_call`` events that follow it; a step's relations come from ``kg.json`` provenance; a
hypothesis counts when one of its evidence edges came from those steps (``plan_objectives``: from
the objective's relations; ``propose_hypotheses``: the hypotheses with the drafted statements).
Rejected attempts contributed nothing, so their downstream rewards are ``null``.

``task`` carries what a verifiable reward needs without the data: the decision's JSON schema and
the names a valid answer may use (recorded by the reference policy), the accepted answer as a
reference, and for hypothesis proposals each evidence edge's held-out replication outcome
(``true`` / ``false``; untestable edges left out) from the run's in-run validation.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean
from typing import Any, Iterable

import typer

from proteus.records import METRICS
from proteus.rundir import read_jsonl, read_trace

__all__ = ["export_rl", "trajectories", "export_rl_cli"]


def _canon(params: Any) -> str:
    return json.dumps(params or {}, sort_keys=True, default=str)


class _Run:
    """Everything of one run directory needed to attribute rewards."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.trace = read_trace(path)
        self.hypotheses = read_jsonl(path / "hypotheses.jsonl")
        self.reviews = read_jsonl(path / "reviews.jsonl")
        self.info = json.loads((path / "run.json").read_text()) if (path / "run.json").exists() else {}
        self.rel_step: dict[str, str | None] = {}
        self.rel_objective: dict[str, str | None] = {}
        kg_path = path / "kg.json"
        if kg_path.exists():
            data = json.loads(kg_path.read_text())
            for e in data.get("edges", data.get("links", [])):
                prov = e.get("provenance")
                if isinstance(prov, dict) and "id" in e:
                    self.rel_step[e["id"]] = prov.get("step")
                    self.rel_objective[e["id"]] = prov.get("objective")
        self.objective_ids: dict[str, str] = {}
        state = path / "state.json"
        if state.exists():
            for o in json.loads(state.read_text()).get("objectives", []):
                if isinstance(o, dict) and "title" in o and "id" in o:
                    self.objective_ids.setdefault(o["title"], o["id"])

    # --- attribution ---------------------------------------------------------------------
    def steps_after(self, index: int, specs: list[dict[str, Any]], claimed: set[int]) -> list[dict[str, Any]]:
        """The ``tool_call`` events that ran ``specs``, searched forward from trace line ``index``."""
        found = []
        for spec in specs:
            key = (spec.get("tool"), _canon(spec.get("params")))
            for j in range(index + 1, len(self.trace)):
                ev = self.trace[j]
                if j not in claimed and ev.get("kind") == "tool_call" and (ev.get("tool"), _canon(ev.get("params"))) == key:
                    claimed.add(j)
                    found.append(ev)
                    break
        return found

    def edge_replication(self) -> dict[str, bool]:
        """Held-out replication of every evidence edge the run's validation tested."""
        out: dict[str, bool] = {}
        for h in self.hypotheses:
            for eid, o in ((h.get("validation") or {}).get("held_out") or {}).items():
                if isinstance(o, dict) and o.get("replicated") is not None:
                    out[eid] = bool(o["replicated"])
        return out

    def hypotheses_from(self, *, steps: set[str] = frozenset(), objectives: set[str] = frozenset(), statements: set[str] = frozenset()) -> list[dict[str, Any]]:
        out = []
        for h in self.hypotheses:
            ev = h.get("evidence", [])
            if (
                h.get("statement") in statements
                or any(self.rel_step.get(r) in steps for r in ev if self.rel_step.get(r))
                or any(self.rel_objective.get(r) in objectives for r in ev if self.rel_objective.get(r))
            ):
                out.append(h)
        return out


def _judge_scores(hyps: list[dict[str, Any]]) -> dict[str, Any] | None:
    per_h, by_metric = [], {m: [] for m in METRICS}
    for h in hyps:
        s = {m: v["score"] for m, v in (h.get("scores") or {}).items() if isinstance(v, dict) and "score" in v}
        if s:
            per_h.append(mean(s.values()))
            for m, v in s.items():
                by_metric.setdefault(m, []).append(v)
    if not per_h:
        return None
    return {"mean": round(mean(per_h), 4), "n_hypotheses": len(per_h), "by_metric": {m: round(mean(v), 4) for m, v in by_metric.items() if v}}


def _validation(hyps: list[dict[str, Any]]) -> dict[str, Any] | None:
    outcomes = [h["validation"] for h in hyps if h.get("validation")]
    if not outcomes:
        return None
    supported = sum(1 for v in outcomes if v.get("supported") is True or v.get("outcome") in ("supported", "replicated", "validated"))
    return {"n": len(outcomes), "supported": supported, "outcomes": outcomes}


def _reviews(run: _Run, hyps: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    ids = {h.get("id") for h in hyps}
    rows = [r for r in run.reviews if r.get("hypothesis") in ids or r.get("hypothesis_id") in ids or r.get("id") in ids]
    return rows or None


def trajectories(run_dir: str | Path) -> Iterable[dict[str, Any]]:
    """Yield one training record per traced model attempt in ``run_dir`` (see module docstring)."""
    run = _Run(Path(run_dir))
    claimed: set[int] = set()
    for i, ev in enumerate(run.trace):
        reference = ev.get("kind") == "reference_decision"
        if not (reference or ev.get("kind") == "llm_decision") or not ev.get("messages"):
            continue
        decision = ev.get("decision", "")
        accepted = ev.get("check") is None if reference else ev.get("outcome") in ("accepted", "repaired")
        value = ev.get("value") or {}
        tool_success = None
        hyps: list[dict[str, Any]] = []
        if accepted:
            if decision in ("plan_workflow", "update_workflow"):
                ran = run.steps_after(i, value.get("steps", []), claimed)
                if ran:
                    tool_success = round(sum(r.get("status") == "done" for r in ran) / len(ran), 4)
                hyps = run.hypotheses_from(steps={r["step"] for r in ran if r.get("step")})
            elif decision == "interpret" and ev.get("step"):
                hyps = run.hypotheses_from(steps={ev["step"]})
            elif decision in ("plan_objectives", "update_objectives"):
                specs = value.get("objectives", value.get("add", []))
                ids = {run.objective_ids[s["title"]] for s in specs if s.get("title") in run.objective_ids}
                hyps = run.hypotheses_from(objectives=ids)
            elif decision == "propose_hypotheses":
                hyps = run.hypotheses_from(statements={h.get("statement") for h in value.get("hypotheses", [])})
        rewards = {
            "schema_valid": True if reference else bool(ev.get("schema_valid", False)),
            "accepted": accepted,
            "tool_success": tool_success,
            "judge_scores": _judge_scores(hyps) if accepted and decision != "judge" else None,
            "validation_outcome": _validation(hyps) if accepted and decision != "judge" else None,
            "human_review": _reviews(run, hyps) if accepted else None,
        }
        meta = {
            "run": str(run.path),
            "run_model": run.info.get("model") or run.info.get("policy"),
            "seed": run.info.get("seed"),
            "decision": decision,
            "decision_id": ev.get("decision_id"),
            "attempt": ev.get("attempt"),
            "outcome": "reference" if reference else ev.get("outcome"),
            "reason": (ev.get("check") or "") if reference else ev.get("reason", ""),
            "backend": ev.get("backend"),
            "policy": ev.get("policy"),
            "prompt_tokens": ev.get("prompt_tokens"),
            "completion_tokens": ev.get("completion_tokens"),
            "cost_usd": ev.get("cost_usd"),
            "latency_s": ev.get("latency_s"),
            **{k: ev[k] for k in ("objective", "step", "hypothesis") if k in ev},
        }
        task = {"decision": decision, "schema": ev.get("schema"), "max_tokens": ev.get("max_tokens"), "allowed": ev.get("allowed"), "reference": value if accepted else None}
        if decision == "propose_hypotheses":
            task["edge_replication"] = run.edge_replication()
        yield {
            "prompt": ev["messages"],
            "completion": json.dumps(value, ensure_ascii=False) if reference else ev.get("completion", ""),
            "rewards": rewards,
            "meta": meta,
            "data_source": f"proteus/{decision}",
            "reward_model": {"style": "rule", "ground_truth": json.dumps(rewards, default=str)},
            "extra_info": {"decision_id": ev.get("decision_id"), "run": str(run.path)},
            "task": task,
        }


def export_rl(run_dirs: Iterable[str | Path] | str | Path, out_jsonl: str | Path) -> int:
    """Write the trajectories of every run in ``run_dirs`` to ``out_jsonl``; returns the count.

    A folder that is not a run directory (no ``trace.jsonl``) but holds run directories is
    searched one level down.
    """
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    dirs: list[Path] = []
    for d in map(Path, run_dirs):
        if (d / "trace.jsonl").exists():
            dirs.append(d)
        elif d.is_dir():
            dirs.extend(sorted(p.parent for p in d.glob("*/trace.jsonl")))
        else:
            msg = f"{d} is not a run directory"
            raise FileNotFoundError(msg)
    out = Path(out_jsonl)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for d in dirs:
            for rec in trajectories(d):
                f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
                n += 1
    tmp.replace(out)
    return n


def export_rl_cli(
    run_dirs: list[Path] = typer.Argument(..., help="run directories (or folders holding them)"),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file to write"),
) -> None:
    """Export model decisions of runs as RL trajectories (TRL / verl JSONL with rewards)."""
    try:
        n = export_rl(run_dirs, out)
    except FileNotFoundError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{n} decisions -> {out}")
