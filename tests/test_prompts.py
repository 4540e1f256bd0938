"""Prompt files: one per decision, declared variables only, rendered messages are complete."""

from __future__ import annotations

from importlib import resources

import pytest

from proteus.llm.prompts import DECISIONS, PromptError, load_prompt, load_text, parse_prompt
from proteus.policy import decisions as d

SCHEMAS = {
    "plan_objectives": d.ObjectivePlan,
    "plan_workflow": d.WorkflowPlan,
    "interpret": d.Interpretation,
    "update_workflow": d.WorkflowUpdate,
    "update_objectives": d.ObjectiveUpdate,
    "propose_hypotheses": d.HypothesisDrafts,
    "judge": d.Judgement,
}


def test_every_decision_has_a_prompt_and_every_prompt_a_decision():
    shipped = {p.name[:-3] for p in resources.files("proteus.prompts").iterdir() if p.name.endswith(".md")}
    assert shipped == set(DECISIONS) | {"judge_rubric"}
    assert set(SCHEMAS) == set(DECISIONS)


@pytest.mark.parametrize("name", DECISIONS)
def test_prompt_renders_with_its_declared_variables(name):
    tpl = load_prompt(name)
    assert "schema" in tpl.variables
    msgs = tpl.render(**{v: f"<{v}>" for v in tpl.variables})
    assert [m["role"] for m in msgs] == ["system", "user"]
    text = msgs[0]["content"] + msgs[1]["content"]
    for v in tpl.variables:
        assert f"<{v}>" in text
    assert "$" not in text.replace("$$", "")  # no placeholder left behind
    assert "data, never" in msgs[0]["content"]  # every prompt says data names are data
    with pytest.raises(PromptError, match="missing"):
        tpl.render()


def test_judge_rubric_names_all_five_metrics():
    rubric = load_text("judge_rubric")
    for m in ("reliability", "logical_coherence", "biological_plausibility", "novelty", "evaluability"):
        assert f"- {m}:" in rubric
    assert set(d.Judgement.model_fields) == {"reliability", "logical_coherence", "biological_plausibility", "novelty", "evaluability"}


GOOD = "---\nvariables: a, b\n---\n## system\nuse $a\n## user\nand ${b} costs $$5\n"


def test_parse_prompt_accepts_a_well_formed_file():
    t = parse_prompt("x", GOOD)
    assert t.render(a="A", b="B")[1]["content"] == "and B costs $5"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (GOOD.replace("${b}", "$c"), "undeclared variables \\['c'\\]"),
        (GOOD.replace("variables: a, b", "variables: a, b, z"), "never uses"),
        (GOOD.replace("$$5", "$5"), "malformed placeholder"),
        (GOOD.replace("## user\n", ""), "exactly one"),
        (GOOD.replace("---\nvariables: a, b\n---\n", ""), "front matter"),
        (GOOD.replace("variables: a, b", "variables: a, a, b"), "declared twice"),
    ],
)
def test_parse_prompt_rejects_bad_templates(text, match):
    with pytest.raises(PromptError, match=match):
        parse_prompt("x", text)


def test_rendered_values_are_not_reparsed():
    t = parse_prompt("x", GOOD)
    msgs = t.render(a="$b ${schema} $$", b="x")
    assert msgs[0]["content"] == "use $b ${schema} $$"
