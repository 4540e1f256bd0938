"""The five-metric judge in an evaluation: the run's own judge, a second judge, and per-judge summaries.

A run's hypotheses are scored during the run by its policy's judge (``hypothesis.judge`` names
it: ``heuristic`` for the offline rules, else the model). :func:`rejudge` re-scores a finished
run's hypotheses with another policy's judge (``proteus eval --judge-model``) without touching
the run. :func:`score_summary` gives, per judge, the mean and the 1-5 distribution of each metric;
offline (heuristic) and model judges are always reported apart, never averaged together.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from proteus.records import METRICS, Hypothesis, Objective

__all__ = ["METRICS", "rejudge", "score_summary", "is_model_judge"]

_OFFLINE = {"heuristic", "offline", ""}


def is_model_judge(name: str) -> bool:
    """Whether a judge label names a model (anything but the offline heuristic rules)."""
    return name not in _OFFLINE


def rejudge(run_dir: str | Path, policy) -> list[dict[str, Any]]:
    """Score every hypothesis of a finished run with ``policy.judge``.

    Parameters
    ----------
    run_dir
        Finished run directory (``profile.json``, ``kg.json``, ``state.json``, ``hypotheses.jsonl``).
    policy
        Any :class:`~proteus.policy.base.Policy`; its ``judge_name`` labels the scores.

    Returns
    -------
    ``[{"id", "judge", "scores": {metric: {"score", "reason"}}}]``, one per hypothesis, in file order.
    Tokens and cost are in ``policy.usage()``.
    """
    from proteus.graphs.nodes import judged_by
    from proteus.kg import KnowledgeGraph
    from proteus.policy.base import ResearchView
    from proteus.profile import DataProfile
    from proteus.rundir import RunDir
    from proteus.tools.registry import list_tools

    rd = RunDir(run_dir)
    kg = KnowledgeGraph.from_node_link(rd.read_json("kg.json"))
    profile = DataProfile.model_validate(rd.read_json("profile.json"))
    state = rd.read_json("state.json") if (rd.path / "state.json").exists() else {}
    view = ResearchView(
        profile=profile,
        kg=kg,
        tools=list_tools(),
        objectives=[Objective.model_validate(o) for o in state.get("objectives", [])],
        check_step=lambda spec: None,
    )
    out = []
    for h in rd.read_jsonl("hypotheses.jsonl"):
        v = h.get("validation") if isinstance(h.get("validation"), dict) else {}
        in_run = v.get("in_run") or (v if "edges" in v else None)  # what the run's own judge saw, not the eval's held-out cohort
        hyp = Hypothesis.model_validate({**h, "scores": {}, "validation": in_run})
        j = policy.judge(view, hyp)
        out.append({"id": hyp.id, "judge": judged_by(policy, j), "scores": j.model_dump()})
    return out


def score_summary(scored: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per judge: ``{"n", "model": bool, "mean": {metric: x}, "overall": x, "distribution": {metric: {1..5: count}}}``.

    ``scored`` holds hypothesis dicts (or :func:`rejudge` rows) with ``judge`` and ``scores``.
    """
    by_judge: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for h in scored:
        if h.get("scores"):
            by_judge[h.get("judge") or "heuristic"].append(h["scores"])
    out = {}
    for judge, rows in by_judge.items():
        dist = {m: {str(k): 0 for k in range(1, 6)} for m in METRICS}
        means = {}
        for m in METRICS:
            vals = [int(s[m]["score"]) for s in rows if m in s]
            for v in vals:
                dist[m][str(v)] += 1
            means[m] = round(sum(vals) / len(vals), 3) if vals else None
        got = [v for v in means.values() if v is not None]
        out[judge] = {
            "n": len(rows),
            "model": is_model_judge(judge),
            "mean": means,
            "overall": round(sum(got) / len(got), 3) if got else None,
            "distribution": dist,
        }
    return out
