"""Verifiable rewards and the decisions an offline run records for tuning (no torch needed).

The records come from the reference policy deciding on a small study (the heuristic policy's
answers, each with the prompt and schema of the model path); the rewards are checked on those
answers and on answers broken in one way each.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess

import pytest
from llm_fixtures.study import make_view

from proteus.policy.decisions import call_key
from proteus.policy.reference import ReferencePolicy
from proteus.records import Hypothesis, Objective, Step
from proteus.train.data import load_prompts, split_held_out
from proteus.train.rewards import parse_answer, reward, reward_terms

pytest.importorskip("jsonschema")

OBJ = Objective(id="obj_1", title="MSI", question="Which proteins separate MSI-H from MSS?", family="differential")


@pytest.fixture(scope="module")
def decisions():
    """Every decision kind, recorded by the reference policy on the small study."""
    events: list[dict] = []
    view = make_view(events=events)
    view.objectives = [OBJ]
    policy = ReferencePolicy()
    policy.plan_objectives(view)
    wf = policy.plan_workflow(view, OBJ)
    rel = list(view.kg.relations)[:3]
    step = Step(id="s_1", tool=wf.steps[0].tool, params=wf.steps[0].params, status="done", summary="5 proteins differ", relation_ids=rel)
    policy.interpret(view, OBJ, step)
    policy.update_workflow(view, OBJ, [step], wf.steps[1:])
    policy.update_objectives(view, [], [OBJ])
    policy.propose_hypotheses(view)
    policy.judge(view, Hypothesis(id="h1", statement="G0 is higher in MSI-H", rationale="r", evidence=rel[:1], entities=["protein:G0"], test="t"))
    out = {e["decision"]: e for e in events if e["kind"] == "reference_decision"}
    assert set(out) == {"plan_objectives", "plan_workflow", "interpret", "update_workflow", "update_objectives", "propose_hypotheses", "judge"}
    return out


def _task(ev: dict, **extra) -> dict:
    return {"decision": ev["decision"], "schema": ev["schema"], "allowed": ev["allowed"], "reference": ev["value"], **extra}


def test_reference_events_carry_prompt_schema_and_names(decisions):
    wf = decisions["plan_workflow"]
    assert wf["policy"] == "heuristic" and wf["check"] is None
    assert [m["role"] for m in wf["messages"]] == ["system", "user"]
    assert all(s["tool"] in wf["allowed"]["tools"] for s in wf["value"]["steps"])
    assert wf["schema"]["required"] == ["steps"] and "$defs" not in wf["schema"]
    assert set(decisions["propose_hypotheses"]["allowed"]["evidence"]) == set(make_view().kg.relations)


@pytest.mark.parametrize("decision", ["plan_objectives", "plan_workflow", "interpret", "update_workflow", "update_objectives", "propose_hypotheses", "judge"])
def test_heuristic_answers_name_only_real_things_and_fit_the_schema_or_lose_for_it(decisions, decision):
    import jsonschema

    ev = decisions[decision]
    terms = reward_terms(json.dumps(ev["value"]), _task(ev))
    assert terms["json"] == 1.0 and terms["names"] in (None, 1.0) and terms["params"] in (None, 1.0)
    fits = jsonschema.Draft202012Validator(ev["schema"]).is_valid(ev["value"])
    # the per-call schema caps answer length to the model's answer budget; the heuristic
    # policy's many long hypotheses do not fit it, and the reward says so
    assert (terms["schema"] == 1.0) == fits
    assert (reward(json.dumps(ev["value"]), _task(ev)) == pytest.approx(1.0)) == fits
    assert fits or decision == "propose_hypotheses"


def test_unknown_tool_and_bad_params_lower_the_reward(decisions):
    ev = decisions["plan_workflow"]
    task = _task(ev)
    good = ev["value"]
    unknown = {"steps": [{**good["steps"][0], "tool": "run_shell"}] + good["steps"][1:]}
    bad_params = {"steps": [{**good["steps"][0], "params": {"modality": 3}}] + good["steps"][1:]}
    n = len(good["steps"])
    t_unknown, t_bad = reward_terms(json.dumps(unknown), task), reward_terms(json.dumps(bad_params), task)
    assert t_unknown["names"] == pytest.approx((n - 1) / n) and t_unknown["params"] == pytest.approx((n - 1) / n)
    assert t_bad["names"] == 1.0 and t_bad["params"] == pytest.approx((n - 1) / n)
    assert reward(json.dumps(unknown), task) < reward(json.dumps(bad_params), task) < 1.0


def test_text_that_is_not_json_earns_nothing_and_prose_around_json_earns_less(decisions):
    ev = decisions["plan_workflow"]
    task = _task(ev)
    assert reward("I would run a differential analysis.", task) == 0.0
    clean = json.dumps(ev["value"])
    assert parse_answer(f"```json\n{clean}\n```") == (ev["value"], 1.0)
    assert parse_answer(f"Here is the plan: {clean} Done.") == (ev["value"], 0.5)
    assert 0.5 < reward(f"Here is the plan: {clean}", task) < reward(clean, task)
    # a schema violation (missing required key) is partial credit, never full
    assert reward_terms('{"plan": []}', task)["schema"] == 0.0
    assert reward_terms('{"steps": [{"tool": "x"}]}', task)["schema"] == 0.5


def test_hypotheses_citing_missing_or_non_replicating_evidence_earn_less(decisions):
    ev = decisions["propose_hypotheses"]
    drafts = ev["value"]["hypotheses"]
    assert drafts, "the heuristic policy proposes hypotheses from the small knowledge graph"
    cited = sorted({e for h in drafts for e in h["evidence"]})
    replicates = {e: True for e in cited}
    fails = {e: False for e in cited}
    answer = json.dumps(ev["value"])
    assert reward_terms(answer, _task(ev, edge_replication=replicates))["replication"] == 1.0
    assert reward_terms(answer, _task(ev, edge_replication=fails))["replication"] == 0.0
    assert reward(answer, _task(ev, edge_replication=fails)) < reward(answer, _task(ev, edge_replication=replicates))
    invented = {"hypotheses": [{**drafts[0], "evidence": ["e_does_not_exist"]}]}
    assert reward_terms(json.dumps(invented), _task(ev))["names"] == 0.0


def test_judge_agreement_is_a_small_term(decisions):
    ev = decisions["judge"]
    task = _task(ev)
    flipped = {m: {"score": 6 - v["score"], "reason": v["reason"]} for m, v in ev["value"].items()}
    terms = reward_terms(json.dumps(flipped), task)
    assert terms["schema"] == 1.0 and terms["judge_agreement"] < 1.0
    assert reward(json.dumps(flipped), task) > 0.9  # a valid judgement that disagrees loses little


def test_answers_with_the_right_shape_and_no_content_lose(decisions):
    """The answers a GRPO-tuned SmolLM2 collapsed to (served on BCR-XL: every list emptied, the
    field descriptions copied as text, an objective dropped) are schema-valid; they must not
    earn what the reference answers earn."""
    for name in ("plan_workflow", "interpret", "update_objectives", "propose_hypotheses"):
        ev = decisions[name]
        assert reward_terms(json.dumps(ev["value"]), _task(ev))["substance"] == 1.0
    # nothing proposed where the reference proposes; a plan going on where the reference ends it
    ph = decisions["propose_hypotheses"]
    assert ph["value"]["hypotheses"]
    none = json.dumps({"hypotheses": []})
    terms = reward_terms(none, _task(ph))
    assert terms["schema"] == 1.0 and terms["substance"] == 0.0
    assert reward(none, _task(ph)) < 0.5 < reward(json.dumps(ph["value"]), _task(ph))
    uw = decisions["update_workflow"]
    assert uw["value"]["steps"] == []
    goes_on = json.dumps({"steps": decisions["plan_workflow"]["value"]["steps"][:1], "reason": ""})
    assert reward_terms(goes_on, _task(uw))["substance"] < 1.0 and reward(goes_on, _task(uw)) < reward(json.dumps(uw["value"]), _task(uw))
    it = decisions["interpret"]
    placeholder = it["schema"]["properties"]["summary"]["description"]
    copied = json.dumps({"summary": placeholder[0].upper() + placeholder[1:]})
    assert reward_terms(copied, _task(it))["schema"] == 1.0 and reward_terms(copied, _task(it))["substance"] == 0.0
    assert reward(copied, _task(it)) < 0.5
    uo = decisions["update_objectives"]
    assert uo["value"]["drop"] == [] and uo["value"]["add"] == []
    dropped = json.dumps({"drop": [OBJ.id], "add": [], "reason": ""})
    assert reward_terms(dropped, _task(uo))["substance"] == pytest.approx(1 / 2)  # drop disagrees, add agrees


def test_objective_families_and_drop_ids_are_checked(decisions):
    ev = decisions["update_objectives"]
    task = _task(ev)
    assert ev["allowed"]["objectives"] == ["obj_1"]
    assert reward_terms(json.dumps({"drop": ["obj_9"], "add": [], "reason": ""}), task)["names"] == 0.0
    assert reward_terms(json.dumps({"drop": ["obj_1"], "add": [], "reason": ""}), task)["names"] == 1.0
    plan = decisions["plan_objectives"]
    bad = {"objectives": [{**plan["value"]["objectives"][0], "family": "astrology"}]}
    assert reward_terms(json.dumps(bad), _task(plan))["names"] == 0.0


def test_prompt_rows_and_a_stable_held_out_split(decisions, tmp_path):
    path = tmp_path / "rl.jsonl"
    with open(path, "w") as f:
        for i, ev in enumerate(decisions.values()):
            rec = {"prompt": ev["messages"], "task": _task(ev), "extra_info": {"run": "r", "decision_id": ev["decision_id"]}}
            f.write(json.dumps(rec) + "\n")
            if i == 0:
                f.write(json.dumps(rec) + "\n")  # the same prompt twice is kept once
        f.write(json.dumps({"prompt": ev["messages"], "task": {"decision": "x"}}) + "\n")  # no schema: not a tuning prompt
    rows = load_prompts(path)
    assert len(rows) == len(decisions)
    gz = tmp_path / "rl.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert load_prompts(gz) == rows  # the compressed export (carried to a GPU machine) reads the same
    assert all(json.loads(r["task"])["schema"] for r in rows)
    assert len(load_prompts(path, decisions=["judge"])) == 1
    train, held = split_held_out(rows, 0.5, seed=1)
    assert len(train) + len(held) == len(rows) and split_held_out(rows, 0.5, seed=1) == (train, held)
    with pytest.raises(ValueError):
        split_held_out(rows, 1.0)


def test_rewards_split_by_decision_kind(decisions):
    """The per-kind breakdown the training summary carries: the reference answers against the
    same answers cut in half (no longer JSON), kind by kind, in prompt order."""
    from proteus.train.evaluate import by_decision

    evs = [ev for ev in decisions.values() for _ in range(2)]  # two prompts per kind
    kinds = [ev["decision"] for ev in evs]
    ref = [reward(json.dumps(ev["value"]), _task(ev)) for ev in evs]
    cut = [reward(json.dumps(ev["value"])[: len(json.dumps(ev["value"])) // 2], _task(ev)) for ev in evs]
    got = by_decision(kinds, before=cut, after=ref, after_sft=None)
    assert list(got) == sorted(decisions) and all(g["n"] == 2 and set(g) == {"n", "before", "after"} for g in got.values())
    for kind, g in got.items():
        assert g["after"] == pytest.approx(reward(json.dumps(decisions[kind]["value"]), _task(decisions[kind])))
        assert g["before"] == 0.0 < g["after"]
    # the kinds' means, weighted by their prompts, are the overall mean
    assert sum(g["n"] * g["after"] for g in got.values()) / len(evs) == pytest.approx(sum(ref) / len(ref))


def test_train_command_without_the_extra_prints_the_install_hint(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import proteus.train.command as command
    from proteus.cli import app
    from proteus.train import INSTALL_HINT

    monkeypatch.setattr(command, "missing_packages", lambda: ["torch", "trl"])
    res = CliRunner().invoke(app, ["train", str(tmp_path / "rl.jsonl"), "--base", "m.gguf", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and INSTALL_HINT in lines[0] and "torch, trl" in lines[0]
    assert not (tmp_path / "o").exists()


def test_a_workflow_update_that_repeats_a_step_already_run_earns_less(decisions):
    """The agent drops a repeated step (same tool and parameters) from a model's update as adding
    nothing; the reward's ``fresh`` term scores the same thing, from the run steps the record keeps."""
    ev = decisions["update_workflow"]
    task = _task(ev)
    ran_step = decisions["plan_workflow"]["value"]["steps"][0]
    assert ev["allowed"]["ran"] == [call_key(ran_step["tool"], ran_step["params"])]
    assert decisions["plan_workflow"]["allowed"].get("ran") is None  # nothing has run before a plan
    new = [{**ran_step, "params": {**ran_step["params"], "modality": "rna"}}]  # the same tool on another layer is new
    fresh = json.dumps({**ev["value"], "steps": new})
    repeat = json.dumps({**ev["value"], "steps": [{**ran_step, "params": {**ran_step["params"], "unset": None}}]})  # unset parameters do not make a step new
    half = json.dumps({**ev["value"], "steps": [ran_step, new[0]]})
    assert [reward_terms(t, task)["fresh"] for t in (fresh, repeat, half)] == [1.0, 0.0, 0.5]
    assert reward(fresh, task) > reward(half, task) > reward(repeat, task)
    assert reward_terms(json.dumps({**ev["value"], "steps": []}), task)["fresh"] is None  # planning nothing repeats nothing


def test_warm_start_answers_are_what_the_grammar_allows_with_the_same_decision():
    """A reference answer is taught as a grammar-constrained model could write it: prose cut to
    the compact schema's lengths (a model taught longer prose is cut off where it is served), and
    lists to their most items, and shortened further by leaving out optional prose only, never a
    tool, parameter or family."""
    import jsonschema

    from proteus.train.grpo import as_the_grammar_allows

    events: list[dict] = []
    view = make_view(events=events)
    view.objectives = [OBJ]
    policy = ReferencePolicy(context_tokens=2048)  # compact prompts and schemas, as for the benchmark's small model
    policy.plan_objectives(view)
    wf = policy.plan_workflow(view, OBJ)
    step = Step(id="s_1", tool=wf.steps[0].tool, params=wf.steps[0].params, status="done", summary="5 proteins differ", relation_ids=list(view.kg.relations)[:3])
    policy.update_workflow(view, OBJ, [step], wf.steps[1:])
    recorded = {e["decision"]: e for e in events if e["kind"] == "reference_decision"}
    plan = recorded["plan_objectives"]
    assert not jsonschema.Draft202012Validator(plan["schema"]).is_valid(plan["value"])  # the heuristic's prose is longer than the compact schema allows
    for ev in recorded.values():
        fitted = as_the_grammar_allows(ev["value"], ev["schema"])
        short = as_the_grammar_allows(ev["value"], ev["schema"], drop_prose=True)
        assert jsonschema.Draft202012Validator(ev["schema"]).is_valid(fitted), ev["decision"]
        assert len(json.dumps(short)) <= len(json.dumps(fitted)) <= len(json.dumps(ev["value"]))
        for answer in (fitted, short):
            families, steps = [o["family"] for o in answer.get("objectives", [])], [(s["tool"], s["params"]) for s in answer.get("steps", [])]
            assert families == [o["family"] for o in ev["value"].get("objectives", [])][: len(families)]  # the first, as planned
            assert steps == [(s["tool"], s["params"]) for s in ev["value"].get("steps", [])][: len(steps)]
            assert bool(families) == bool(ev["value"].get("objectives")) and bool(steps) == bool(ev["value"].get("steps"))
    update = recorded["update_workflow"]
    if update["value"].get("reason"):
        assert "reason" not in as_the_grammar_allows(update["value"], update["schema"], drop_prose=True)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed")
def test_paired_change_counts_moves_and_matches_r_signed_rank_test():
    """Held-out rewards change in a few prompts and stay in most (ties at 0 and 1): the benchmark's
    signed-rank p equals R's wilcox.test (paired, normal approximation, no continuity correction), and
    the up / down / same counts add up to the prompts."""
    from proteus.train.evaluate import paired_change

    before = [0.9, 1.0, 0.83, 0.9, 0.0, 0.79, 1.0, 0.95, 0.9, 0.97, 1.0, 0.0, 0.5, 0.83, 1.0]
    after = [0.97, 1.0, 1.0, 0.9, 0.96, 0.97, 1.0, 0.93, 0.9, 0.97, 0.0, 0.9, 0.5, 0.9, 1.0]
    change = paired_change(before, after)["change"]
    assert (change["up"], change["down"], change["same"]) == (6, 2, 7)
    r = subprocess.run(["Rscript", "-e", f"cat(format(wilcox.test(c({','.join(map(str, after))}), c({','.join(map(str, before))}), paired=TRUE, "
                                          "exact=FALSE, correct=FALSE)$p.value, digits=15))"], capture_output=True, text=True, check=True)
    assert change["wilcoxon_p"] == pytest.approx(float(r.stdout), rel=1e-9)
    assert paired_change([0.5, 1.0], [0.5, 1.0])["change"]["wilcoxon_p"] is None
