"""Verifiable rewards for a model's answer to one PROTEUS decision.

A reward is computed from the answer text and the decision's ``task`` (written by
:mod:`proteus.rl_export`): the decision's JSON schema, the names a valid answer may use, the
reference answer and, for hypothesis proposals, each evidence edge's held-out replication.
Nothing here asks a model: every term is a check that can fail.

Terms, each in [0, 1] (``None`` where it does not apply):

``json``
    1 for a JSON object (a Markdown fence around it is tolerated), 0.5 for a JSON object
    embedded in other text, else 0.
``schema``
    1 when the object validates against the decision's JSON schema (Draft 2020-12); otherwise
    half the fraction of the schema's required top-level keys present.
``names``
    fraction of the names used that are real: registered tools, objective families and ids,
    knowledge-graph evidence edge ids (``None`` when the answer names nothing, 0 when it is not
    JSON at all).
``params``
    fraction of planned steps whose parameters validate against their tool's parameter schema.
``fresh``
    workflow updates: the fraction of proposed steps that do not repeat a step already run with the
    same parameters (the task's ``allowed["ran"]``; the agent drops such repeats from an answer, so
    an answer of repeats plans nothing new). ``None`` when nothing is proposed.
``replication``
    hypothesis proposals: over hypotheses citing at least one tested edge, the mean fraction of
    cited tested edges that replicated on held-out samples (the run's in-run validation).
``substance``
    an answer that only has the right shape loses: over the checks that apply, the fraction
    passed, where each top-level list must be empty exactly when the reference answer's is (no
    plan emptied, no objective dropped, no hypothesis list left empty where the reference acts,
    and nothing invented where it does not), and each non-empty text must not be a copy of a
    field description of the schema (``difflib`` ratio >= 0.8: a placeholder, not an answer).
    A schema-valid answer with no content scores at most ``(json + schema) / (json + schema + substance)``.
``judge_agreement``
    judge decisions: 1 minus the mean absolute score difference to the reference judgement / 4.

``total`` is the weighted mean of the applicable terms (:data:`WEIGHTS`); judge agreement has the
smallest weight, so a model cannot earn its reward by pleasing the judge.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from proteus.policy.decision_schemas import long_texts, placeholder_texts
from proteus.policy.decisions import call_key

__all__ = ["WEIGHTS", "parse_answer", "reward_terms", "reward", "trl_reward_function"]

WEIGHTS = {"json": 0.15, "schema": 0.3, "names": 0.25, "params": 0.15, "fresh": 0.3, "replication": 0.3, "substance": 0.5, "judge_agreement": 0.05}
"""Weight of each term in ``total``."""

_JUDGE_METRICS = ("reliability", "logical_coherence", "biological_plausibility", "novelty", "evaluability")


def parse_answer(text: str) -> tuple[dict[str, Any] | None, float]:
    """The JSON object in ``text`` and its ``json`` term (1 clean, 0.5 embedded, 0 none)."""
    s = text.strip()
    if s.startswith("```"):
        s = s.split("\n", 1)[1] if "\n" in s else ""
        s = s.rsplit("```", 1)[0].strip()
    try:  # strict=False, as the agent parses answers: grammar-constrained models write raw control characters in strings
        obj = json.loads(s, strict=False)
        if isinstance(obj, dict):
            return obj, 1.0
    except json.JSONDecodeError:
        pass
    start = s.find("{")
    if start >= 0:
        try:
            obj, _ = json.JSONDecoder(strict=False).raw_decode(s[start:])
            if isinstance(obj, dict):
                return obj, 0.5
        except json.JSONDecodeError:
            pass
    return None, 0.0


def _validator(schema: dict[str, Any]):
    import jsonschema

    return jsonschema.Draft202012Validator(schema)


def _schema_term(obj: dict[str, Any], schema: dict[str, Any] | None) -> float | None:
    if not schema:
        return None
    if _validator(schema).is_valid(obj):
        return 1.0
    required = schema.get("required") or []
    if not required:
        return 0.0
    return 0.5 * sum(k in obj for k in required) / len(required)


def _strings(values: Any) -> list[str]:
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []


def _named(obj: dict[str, Any], decision: str, allowed: dict[str, Any]) -> tuple[list[bool], list[bool]]:
    """(is each used name real, do each step's params validate)."""
    names: list[bool] = []
    params: list[bool] = []
    if "tools" in allowed:
        tools = allowed["tools"]
        steps = obj.get("steps") if isinstance(obj.get("steps"), list) else []
        for s in steps:
            tool = s.get("tool") if isinstance(s, dict) else None
            known = isinstance(tool, str) and tool in tools
            names.append(known)
            p = s.get("params") if isinstance(s, dict) else None
            params.append(known and isinstance(p, dict) and _validator(tools[tool]).is_valid(p))
    if "families" in allowed:
        specs = obj.get("objectives", obj.get("add"))
        for o in specs if isinstance(specs, list) else []:
            names.append(isinstance(o, dict) and o.get("family") in allowed["families"])
    if "objectives" in allowed:
        names += [d in allowed["objectives"] for d in _strings(obj.get("drop"))]
    if "evidence" in allowed:
        known = set(allowed["evidence"])
        for h in obj.get("hypotheses") if isinstance(obj.get("hypotheses"), list) else []:
            names += [e in known for e in _strings(h.get("evidence") if isinstance(h, dict) else None)] or [False]
    return names, params


def _fresh(obj: dict[str, Any], ran: list[str]) -> float | None:
    steps = [s for s in (obj.get("steps") if isinstance(obj.get("steps"), list) else []) if isinstance(s, dict) and isinstance(s.get("tool"), str) and isinstance(s.get("params"), dict)]
    if not steps:
        return None
    done = set(ran)
    return sum(call_key(s["tool"], s["params"]) not in done for s in steps) / len(steps)


def _replication(obj: dict[str, Any], edges: dict[str, bool]) -> float | None:
    fractions = []
    for h in obj.get("hypotheses") if isinstance(obj.get("hypotheses"), list) else []:
        cited = [edges[e] for e in _strings(h.get("evidence") if isinstance(h, dict) else None) if e in edges]
        if cited:
            fractions.append(sum(cited) / len(cited))
    return sum(fractions) / len(fractions) if fractions else None


def _substance(obj: dict[str, Any], reference: dict[str, Any] | None, schema: dict[str, Any] | None) -> float | None:
    checks = [bool(obj.get(k)) == bool(v) for k, v in (reference or {}).items() if isinstance(v, list)]
    copied = placeholder_texts(obj, schema)
    checks += [t not in copied for t in long_texts(obj)]
    return sum(checks) / len(checks) if checks else None


def _judge_agreement(obj: dict[str, Any], reference: dict[str, Any] | None) -> float | None:
    if not reference:
        return None
    diffs = []
    for m in _JUDGE_METRICS:
        mine, ref = obj.get(m), reference.get(m)
        score = mine.get("score") if isinstance(mine, dict) else None
        if isinstance(ref, dict) and isinstance(ref.get("score"), (int, float)):
            diffs.append(abs(score - ref["score"]) if isinstance(score, (int, float)) and not isinstance(score, bool) else 4)
    return 1 - min(4.0, sum(diffs) / len(diffs)) / 4 if diffs else None


def reward_terms(text: str, task: dict[str, Any]) -> dict[str, float | None]:
    """Every reward term of answer ``text`` to ``task`` (see the module docstring)."""
    decision = task.get("decision", "")
    allowed = task.get("allowed") or {}
    obj, json_term = parse_answer(text)
    terms: dict[str, float | None] = {"json": json_term, "schema": None, "names": None, "params": None, "fresh": None, "replication": None, "substance": None, "judge_agreement": None}
    if obj is None:
        terms["schema"] = 0.0 if task.get("schema") else None
        if allowed:
            terms["names"] = 0.0
        if decision == "propose_hypotheses" and task.get("edge_replication"):
            terms["replication"] = 0.0
        return terms
    terms["schema"] = _schema_term(obj, task.get("schema"))
    names, params = _named(obj, decision, allowed)
    if names:
        terms["names"] = sum(names) / len(names)
    if params:
        terms["params"] = sum(params) / len(params)
    if "ran" in allowed:
        terms["fresh"] = _fresh(obj, allowed["ran"])
    if decision == "propose_hypotheses" and task.get("edge_replication"):
        terms["replication"] = _replication(obj, task["edge_replication"]) or 0.0
    terms["substance"] = _substance(obj, task.get("reference"), task.get("schema"))
    if decision == "judge":
        terms["judge_agreement"] = _judge_agreement(obj, task.get("reference"))
    return terms


def reward(text: str, task: dict[str, Any]) -> float:
    """The weighted mean of the applicable terms of :func:`reward_terms`, in [0, 1]."""
    terms = {k: v for k, v in reward_terms(text, task).items() if v is not None}
    return sum(WEIGHTS[k] * v for k, v in terms.items()) / sum(WEIGHTS[k] for k in terms)


def _text(completion: Any) -> str:
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def trl_reward_function() -> Callable[..., list[float]]:
    """:func:`reward` as a TRL reward function: ``f(prompts, completions, task, **kw)``.

    ``task`` is the dataset column of JSON strings (one per prompt) that
    :func:`proteus.train.data.load_prompts` builds.
    """

    def verifiable_reward(prompts: list[Any], completions: list[Any], task: list[str], **kwargs: Any) -> list[float]:
        return [reward(_text(c), json.loads(t)) for c, t in zip(completions, task)]

    return verifiable_reward
