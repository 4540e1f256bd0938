"""Dynamic sampling (DAPO): a GRPO group whose answers all score alike is replaced by another
training prompt's group, and a prompt known to be flat is replaced before anything is sampled.

Real rollouts of the tiny random-weight llama GGUF under the serving grammar (its byte vocabulary
decoded as llama.cpp serves it), scored by the real reward: a prompt whose schema admits one answer only (every answer scores the same: flat) and a
judgement prompt (scores 1-5 sampled at random: uneven). Needs the ``[train]`` extra.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from llm_fixtures.server import tiny_gguf  # noqa: F401  (fixture)

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("llama_cpp")
pytest.importorskip("jsonschema")

from proteus.policy.decision_schemas import cap_strings, judgement_schema  # noqa: E402
from proteus.train.base_model import load_base  # noqa: E402
from proteus.train.dynamic import DynamicSampling  # noqa: E402
from proteus.train.grammar import ServingGrammar, grammar_rollout, prompt_key  # noqa: E402
from proteus.train.rewards import reward  # noqa: E402


def _row(content: str, task: dict) -> dict:
    return {"prompt": [{"role": "user", "content": content}], "task": json.dumps(task), "decision": task["decision"], "key": content}


def test_a_flat_group_is_replaced_by_an_uneven_one_and_not_sampled_again(tiny_gguf):  # noqa: F811
    import torch

    model, tok, template = load_base(tiny_gguf)
    grammar = ServingGrammar(template)
    one_answer = {"type": "object", "properties": {"verdict": {"const": "done"}}, "required": ["verdict"], "additionalProperties": False}
    judge = cap_strings(judgement_schema(), 12)
    metrics = judge["required"]
    flat = _row("flat", {"decision": "judge", "schema": one_answer, "reference": None})
    uneven = _row("judge", {"decision": "judge", "schema": judge, "reference": {m: {"score": 3, "reason": "r"} for m in metrics}})
    rows = [flat, uneven]
    rollout = grammar_rollout(grammar, tok, {prompt_key(r["prompt"]): json.loads(r["task"])["schema"] for r in rows})
    trainer = SimpleNamespace(model=model, max_completion_length=800, temperature=1.0)
    torch.manual_seed(0)
    plain = rollout([flat["prompt"]] * 4, trainer)
    flat_scores = {reward(grammar.served_text(c), json.loads(flat["task"])) for c in plain["completion_ids"]}
    assert len(flat_scores) == 1  # without dynamic sampling this group teaches nothing

    dyn = DynamicSampling(rollout, rows, reward, grammar.served_text, num_generations=4, max_tries=3, seed=0)
    out = dyn([flat["prompt"]] * 4, trainer)
    # the group trained on is the judgement prompt's, scored against its own task
    assert out["task"] == [uneven["task"]] * 4
    judge_ids = tok(tok.apply_chat_template(uneven["prompt"], add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"]
    assert out["prompt_ids"] == [judge_ids] * 4
    scores = [reward(grammar.served_text(c), json.loads(uneven["task"])) for c in out["completion_ids"]]
    assert max(scores) > min(scores)
    assert dyn.stats() == {"groups": 1, "sampled": 2, "replaced_unsampled": 0, "flat_prompts": 1}
    # asked for the flat prompt again: replaced before sampling it
    dyn([flat["prompt"]] * 4, trainer)
    assert dyn.stats()["replaced_unsampled"] == 1 and dyn.stats()["sampled"] == 3

    with pytest.raises(ValueError, match="max_tries"):
        DynamicSampling(rollout, rows, reward, grammar.served_text, num_generations=4, max_tries=0)
