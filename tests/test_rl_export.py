"""RL export: traced model attempts become TRL/verl records with rewards attributed downstream."""

from __future__ import annotations

import json

from llm_fixtures.hosted import scripted_openai
from llm_fixtures.study import make_view, small_kg

from proteus.policy.llm import LLMPolicy
from proteus.records import Objective
from proteus.rl_export import export_rl, export_rl_cli
from proteus.rundir import RunDir

OBJ = Objective(id="obj_1", title="Age", question="Which proteins track Age?", family="correlation")
STEP = {"tool": "clinical_correlation", "params": {"modality": "proteomics", "variable": "Age"}, "rationale": "main"}


def _run(tmp_path):
    rd = RunDir(tmp_path / "run1")
    rd.write_json("run.json", {"model": "openai:gpt-4o-mini", "seed": 0})
    kg = small_kg()
    view = make_view(kg=kg)
    view.trace = rd.append_trace
    bad = json.dumps({"steps": [{"tool": "clinical_correlation", "params": {"modality": "proteomics", "variable": "BMI"}}]})
    backend, _ = scripted_openai([bad, json.dumps({"steps": [STEP]})])
    LLMPolicy(backend).plan_workflow(view, OBJ)
    # what the graph does next: the step runs and its relations land in the KG
    rd.append_trace({"kind": "tool_call", "step": "s_1", "tool": STEP["tool"], "params": STEP["params"], "status": "done"})
    data = kg.to_node_link()
    rids = []
    for e in data["edges"]:
        if "provenance" in e:
            e["provenance"]["step"] = "s_1"
            rids.append(e["id"])
    rd.write_json("kg.json", data)
    scores = {m: {"score": s, "reason": "r"} for m, s in zip(("reliability", "logical_coherence", "biological_plausibility", "novelty", "evaluability"), (5, 4, 4, 2, 5))}
    rd.write_jsonl(
        "hypotheses.jsonl",
        [
            {"id": "h1", "statement": "G0 up", "rationale": "", "evidence": rids[:1], "entities": [], "test": "", "scores": scores, "validation": {"supported": True}},
            {"id": "h2", "statement": "unrelated", "rationale": "", "evidence": ["e_other"], "entities": [], "test": "", "scores": scores},
        ],
    )
    rd.write_jsonl("reviews.jsonl", [{"hypothesis": "h1", "verdict": "plausible", "reviewer": "pi"}])
    return rd.path


def test_export_records_every_attempt_with_rewards(tmp_path):
    run = _run(tmp_path)
    out = tmp_path / "rl.jsonl"
    assert export_rl([run], out) == 2
    rej, rep = [json.loads(x) for x in out.read_text().splitlines()]
    for rec in (rej, rep):
        assert isinstance(rec["prompt"], list) and {m["role"] for m in rec["prompt"]} <= {"system", "user", "assistant"}
        assert rec["data_source"] == "proteus/plan_workflow"
        assert json.loads(rec["reward_model"]["ground_truth"]) == rec["rewards"]
    assert rej["meta"]["outcome"] == "rejected" and "BMI" in rej["meta"]["reason"]
    assert rej["rewards"]["schema_valid"] is True and rej["rewards"]["accepted"] is False
    assert rej["rewards"]["judge_scores"] is None and rej["rewards"]["tool_success"] is None
    assert rep["meta"]["outcome"] == "repaired" and rep["prompt"][-2]["role"] == "assistant"
    r = rep["rewards"]
    assert r["accepted"] and r["tool_success"] == 1.0
    assert r["judge_scores"]["n_hypotheses"] == 1 and r["judge_scores"]["mean"] == 4.0
    assert r["validation_outcome"]["supported"] == 1
    # the per-call schema the model answered under travels with every attempt, so model runs
    # are tuning prompts too; the accepted answer is the reference, a rejected one is not
    for rec in (rej, rep):
        assert rec["task"]["schema"]["required"] == ["steps"]
    assert rep["task"]["reference"] == json.loads(rep["completion"]) and rej["task"]["reference"] is None
    assert r["human_review"] == [{"hypothesis": "h1", "verdict": "plausible", "reviewer": "pi"}]
    assert rep["meta"]["objective"] == "obj_1" and rep["meta"]["backend"] == "openai:gpt-4o-mini"


def test_export_cli_searches_folders(tmp_path):
    _run(tmp_path)
    out = tmp_path / "all.jsonl"
    export_rl_cli([tmp_path], out)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2
    # TRL conversational prompt: every message is exactly {"role", "content"} strings
    assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) for r in rows for m in r["prompt"])


def test_offline_run_exports_every_decision_with_prompt_schema_and_reference(tmp_path):
    """An offline run (``proteus run`` without a model) records each decision as the model path
    would have asked it; export-rl turns them into prompts with the heuristic answer as reference."""
    from hostile_data import write_hostile_dataset

    from proteus.policy import make_policy
    from proteus.policy.heuristic import HeuristicPolicy
    from proteus.runner import run_research

    data = write_hostile_dataset(tmp_path / "data").data
    run_research(data, tmp_path / "offline", policy=make_policy("offline"), seed=0)
    run_research(data, tmp_path / "plain", policy=HeuristicPolicy(), seed=0)
    # recording changes nothing the run decides
    assert (tmp_path / "offline" / "hypotheses.jsonl").read_text() == (tmp_path / "plain" / "hypotheses.jsonl").read_text()
    out = tmp_path / "rl.jsonl"
    n = export_rl([tmp_path / "offline"], out)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    trace = [json.loads(x) for x in (tmp_path / "offline" / "trace.jsonl").read_text().splitlines()]
    assert n == len(recs) == sum(e["kind"] == "reference_decision" for e in trace) > 0
    assert export_rl([tmp_path / "plain"], tmp_path / "none.jsonl") == 0
    kinds = {r["meta"]["decision"] for r in recs}
    assert {"plan_objectives", "plan_workflow", "interpret", "update_workflow", "update_objectives", "propose_hypotheses", "judge"} <= kinds
    for r in recs:
        assert r["meta"]["outcome"] == "reference" and r["meta"]["policy"] == "heuristic"
        assert r["prompt"][0]["role"] == "system" and r["prompt"][-1]["role"] == "user"
        assert json.loads(r["completion"]) == r["task"]["reference"]
        assert r["task"]["schema"]["type"] == "object"
        # the answer budget the decision was served with, where a served answer is cut
        assert isinstance(r["task"]["max_tokens"], int) and r["task"]["max_tokens"] >= 64
    wf = next(r for r in recs if r["meta"]["decision"] == "plan_workflow")
    assert wf["rewards"]["accepted"] and wf["rewards"]["tool_success"] is not None
    assert all(s["tool"] in wf["task"]["allowed"]["tools"] for s in wf["task"]["reference"]["steps"])
    hyp = next(r for r in recs if r["meta"]["decision"] == "propose_hypotheses")
    assert set(hyp["task"]["allowed"]["evidence"]) >= {e for h in hyp["task"]["reference"]["hypotheses"] for e in h["evidence"]}
