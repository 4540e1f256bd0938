"""Per-call decision schemas: the run's names as enums, what they accept and reject, answer
budgets, prompts that fit a small context, and context limits read from server errors."""

from __future__ import annotations

import json

import pytest
from llm_fixtures.study import INJECTION, make_view

from proteus.llm.base import stated_context_limit
from proteus.policy import decision_schemas as ds
from proteus.policy.heuristic import HeuristicPolicy
from proteus.policy.llm import COMPACT_BELOW, PromptDoesNotFit, families, render_decision
from proteus.policy.decisions import StepSpec
from proteus.records import Hypothesis, Objective

jsonschema = pytest.importorskip("jsonschema")

OBJ = Objective(id="obj_1", title="MSI", question="Which proteins differ by MSI status?", family="differential")


def _valid(schema, answer) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(answer)


def test_workflow_schema_enumerates_tools_layers_columns_and_levels():
    view = make_view()
    schema = ds.workflow_schema(view.tools, ds.RunNames.of(view.profile), 4)
    branches = schema["properties"]["steps"]["items"]["anyOf"]
    tools = [b["properties"]["tool"]["const"] for b in branches]
    assert set(tools) <= {t.name for t in view.tools} and "differential_abundance" in tools
    da = [b["properties"]["params"] for b in branches if b["properties"]["tool"]["const"] == "differential_abundance"][0]
    # one branch per grouping column, its own levels for case and control
    by_group = {v["properties"]["group"]["const"]: v["properties"]["case"]["enum"] for v in da["anyOf"]}
    assert by_group["MSI_status"] == ["MSI-H", "MSS"] and by_group[INJECTION] == ["no", "yes"]
    assert da["anyOf"][0]["properties"]["modality"]["enum"] == ["proteomics"]


def test_workflow_schema_accepts_the_registrys_valid_steps_and_rejects_unknown_names():
    view = make_view()
    schema = ds.workflow_schema(view.tools, ds.RunNames.of(view.profile), view.max_steps_per_workflow)
    plan = HeuristicPolicy().plan_workflow(view, OBJ)
    assert plan.steps and all(view.check_step(s) is None for s in plan.steps)
    answer = json.loads(plan.model_dump_json())
    for s in answer["steps"]:
        s["params"] = {k: v for k, v in s["params"].items() if v is not None}
    assert _valid(schema, answer)
    step = {"tool": "differential_abundance", "params": {"modality": "proteomics", "group": "MSI_status", "case": "MSI-H", "control": "MSS"}, "rationale": "r"}
    assert _valid(schema, {"steps": [step]})
    for bad in (
        {**step, "tool": "dna_seq_analysis"},
        {**step, "params": {**step["params"], "group": "BMI"}},
        {**step, "params": {**step["params"], "case": "yes"}},  # a level of another column
        {**step, "params": {**step["params"], "modality": "rna"}},
    ):
        assert not _valid(schema, {"steps": [bad]}), bad


def test_objective_families_ids_and_scores_are_enumerated():
    view = make_view()
    fams = families(view)
    assert fams and "cytometry" not in fams  # no cell-level layer in this study: no cytometry tool applies
    plan = ds.objective_plan_schema(fams, 3)
    spec = {"title": "t", "question": "q", "family": fams[0], "rationale": "r"}
    assert _valid(plan, {"objectives": [spec]})
    assert not _valid(plan, {"objectives": [{**spec, "family": "research objectives"}]})
    assert not _valid(plan, {"objectives": [spec] * 4})
    upd = ds.objective_update_schema(fams, ["O2"])
    assert _valid(upd, {"drop": ["O2"]}) and not _valid(upd, {"drop": ["O9"]})
    judge = ds.judgement_schema()
    m = {"score": 5, "reason": "r"}
    answer = dict.fromkeys(judge["properties"], m)
    assert _valid(judge, answer) and not _valid(judge, {**answer, "novelty": {"score": 6, "reason": "r"}})


def test_hypothesis_evidence_is_limited_to_the_edges_the_prompt_shows():
    view = make_view()
    p = render_decision("propose_hypotheses", view, context_tokens=2048)
    shown = p.offered["evidence"]
    assert shown and all(rid in p.messages[1]["content"] for rid in shown)
    draft = {"statement": "s", "rationale": "r", "evidence": shown[:1], "entities": p.offered["entities"][:1], "test": "t"}
    assert _valid(p.schema, {"hypotheses": [draft]})
    assert not _valid(p.schema, {"hypotheses": [{**draft, "evidence": ["e_not_shown"]}]})


@pytest.mark.parametrize("context", [1400, 2048, 3000, 8192])
def test_every_decision_fits_the_context_with_its_answer(context):
    view = make_view()
    rid = list(view.kg.relations)
    from proteus.records import Step

    step = Step(id="s_1", tool="differential_abundance", params={"modality": "proteomics"}, status="done", summary="5 proteins higher in MSI-H", relation_ids=rid)
    h = Hypothesis(id="h1", statement="G0 is higher in MSI-H", rationale="r", evidence=rid[:2], entities=["protein:G0"], test="t")
    calls = {
        "plan_objectives": (), "plan_workflow": (OBJ,), "interpret": (OBJ, step), "update_workflow": (OBJ, [step], []),
        "update_objectives": ([OBJ], [OBJ]), "propose_hypotheses": (), "judge": (h,),
    }
    for decision, args in calls.items():
        p = render_decision(decision, view, *args, context_tokens=context)
        assert p.compact == (context < COMPACT_BELOW)
        assert p.prompt_tokens + p.max_tokens <= context, decision
        assert 16 < p.max_tokens <= ds.answer_tokens(p.schema)


def test_a_context_too_small_for_the_compact_prompt_is_one_clear_error():
    with pytest.raises(PromptDoesNotFit, match="plan_objectives prompt needs .* tokens .* larger context"):
        render_decision("plan_objectives", make_view(), context_tokens=500)


def test_fit_answer_shortens_strings_then_lists():
    schema = ds.objective_plan_schema(["differential"], 8)
    full = ds.answer_tokens(schema)
    fitted, budget = ds.fit_answer(schema, 300)
    assert full > 300 >= budget == ds.answer_tokens(fitted)
    assert fitted["properties"]["objectives"]["maxItems"] < 8
    assert schema["properties"]["objectives"]["maxItems"] == 8  # the input is not changed


@pytest.mark.parametrize(
    ("message", "limit"),
    [
        ("Requested tokens (3580) exceed context window of 2048", 2048),  # llama-cpp-python
        ("This model's maximum context length is 2048 tokens. However, you requested 3580 tokens", 2048),  # vLLM
        ('{"error": {"code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": 5000, "n_ctx": 4096}}', 4096),  # llama.cpp
        ("prompt is too long: 250000 tokens > 200000 maximum", 200000),  # Anthropic
        ("invalid temperature", None),
    ],
)
def test_context_limit_read_from_server_errors(message, limit):
    assert stated_context_limit(message) == limit


def test_compact_step_schema_leaves_out_optional_parameters_a_grammar_cannot_bound():
    view = make_view()
    names = ds.RunNames.of(view.profile)
    tool = next(t for t in view.tools if t.name == "clinical_correlation")
    full = ds.tool_step_schema(tool, names)["properties"]["params"]["properties"]
    short = ds.tool_step_schema(tool, names, required_only=True)["properties"]["params"]["properties"]
    assert {"max_relations", "fdr", "restrict"} <= set(full)
    assert set(short) == {"modality", "variable", "method", "covariates"}  # required, or enumerated


def test_a_compact_workflow_update_can_keep_each_planned_step_as_planned():
    """A small model's update must be able to keep the plan: optional levels of the grouping stay
    in compact steps (enumerated per grouping column), and each planned step is a branch as is."""
    view = make_view()
    names = ds.RunNames.of(view.profile)
    compact = ds.workflow_schema(view.tools, names, 6, update=True, required_only=True)
    ora = {"tool": "enrichment_ora", "params": {"modality": "proteomics", "group": "MSI_status", "case": "MSI-H", "control": "MSS"}, "rationale": "r"}
    assert _valid(compact, {"steps": [ora]})
    assert not _valid(compact, {"steps": [{**ora, "params": {**ora["params"], "control": "yes"}}]})  # a level of another column
    planned = StepSpec(tool="clinical_correlation", params={"modality": "proteomics", "variable": "BMI", "restrict": {"MSI_status": "MSS"}})
    step = {"tool": planned.tool, "params": planned.params, "rationale": "kept"}
    assert not _valid(compact, {"steps": [step]})  # restrict: an optional object no grammar can bound
    kept = ds.workflow_schema(view.tools, names, 6, update=True, required_only=True, planned=[planned])
    assert _valid(kept, {"steps": [step, ora]})
    assert not _valid(kept, {"steps": [{**step, "params": {**planned.params, "restrict": {"MSI_status": "MSI-H"}}}]})


def test_technical_and_block_columns_group_quality_control_only():
    view = make_view()
    names = ds.RunNames(["proteomics"], ["MSI_status", "plex"], {"MSI_status": ["MSI-H", "MSS"], "plex": ["p1", "p2"]}, {"plex"})
    tool = {t.name: t for t in view.tools}
    da = ds.tool_step_schema(tool["differential_abundance"], names)["properties"]["params"]
    assert da["properties"]["group"] == {"const": "MSI_status"}  # one branch: the biological column only
    pca = ds.tool_step_schema(tool["pca_qc"], names)["properties"]["params"]["properties"]["group"]
    assert {"type": "string", "enum": ["MSI_status", "plex"]} in [{k: v for k, v in b.items() if k in ("type", "enum")} for b in pca["anyOf"]]


def test_raw_control_characters_inside_strings_still_parse():
    from proteus.llm.base import parse_json
    from proteus.policy.decisions import Interpretation

    parsed, err = parse_json('{"summary": "line one\nline two"}', Interpretation)
    assert err is None and parsed.summary == "line one\nline two"
