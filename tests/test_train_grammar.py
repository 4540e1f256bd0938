"""Training answers drawn under the serving grammar: a random-weight model constrained by a
decision's schema, as llama.cpp serves it, writes only JSON that the schema accepts.

The model is the tiny random-weight llama GGUF of the llama.cpp tests (its byte vocabulary can
spell any text); the schemas are real decision schemas with their strings capped as the policy
caps them to fit a small context: a judgement, and the interpretation schema a reference run
recorded for export-rl. The prompts are short: what a random model is asked does not matter,
and it keeps the test fast. Needs the ``[train]`` extra.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from llm_fixtures.server import tiny_gguf  # noqa: F401  (fixture)
from llm_fixtures.study import recorded_interpretations

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("trl")
pytest.importorskip("llama_cpp")
jsonschema = pytest.importorskip("jsonschema")

from proteus.llm.openai_backend import grammar_schema  # noqa: E402
from proteus.policy.decision_schemas import cap_strings, judgement_schema  # noqa: E402
from proteus.train.base_model import load_base  # noqa: E402
from proteus.train.data import load_prompts  # noqa: E402
from proteus.train.evaluate import answers, generate  # noqa: E402
from proteus.train.grammar import ServingGrammar, grammar_rollout, prompt_key  # noqa: E402


@pytest.fixture(scope="module")
def interpret_rows(tmp_path_factory):
    """Prompt rows of interpret decisions the reference policy recorded on the small study."""
    out, _ = recorded_interpretations(tmp_path_factory.mktemp("run") / "run", 3)
    return load_prompts(out)


@pytest.fixture(scope="module")
def tiny(tiny_gguf):  # noqa: F811
    model, tok, template = load_base(tiny_gguf)
    return model, tok, ServingGrammar(template)


def _valid(text: str, schema: dict) -> bool:
    """``text`` is one JSON value the schema accepts, read as the agent reads answers (raw control
    characters in strings allowed: llama.cpp's grammar lets byte tokens write them) and checked
    against the schema llama.cpp is sent (the bounds it cannot hold are the policy's to check)."""
    try:
        jsonschema.validate(json.loads(text, strict=False), grammar_schema(schema))
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def test_sampled_and_greedy_answers_under_the_grammar_follow_each_rows_schema(interpret_rows, tiny):
    import torch

    model, tok, grammar = tiny
    interpret = cap_strings(json.loads(interpret_rows[0]["task"])["schema"], 40)
    judgement = cap_strings(judgement_schema(), 20)
    schemas = [interpret, interpret, judgement, judgement]  # rows of one batch follow different schemas
    prompts = [[{"role": "user", "content": f"decision {i}"}] for i in range(len(schemas))]
    texts = [tok.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    unconstrained = tok.batch_decode(generate(model, tok, texts, max_new_tokens=64), skip_special_tokens=True)
    assert not any(_valid(t, s) for t, s in zip(unconstrained, schemas))  # random weights alone write no JSON
    for seed in range(2):
        torch.manual_seed(seed)
        ids = generate(model, tok, texts, max_new_tokens=800, do_sample=True, logits_processor=grammar.processor(schemas, sample=True))
        assert all(row[-1] == tok.eos_token_id for row in ids)  # every answer ended, after the grammar closed it
        sampled = [grammar.served_text(row) for row in ids]
        assert all(_valid(t, s) for t, s in zip(sampled, schemas)), sampled
    greedy_ids = generate(model, tok, texts, max_new_tokens=800, logits_processor=grammar.processor(schemas))
    # the held-out evaluation's answers are these, as transformers decodes them
    assert answers(model, tok, prompts, max_new_tokens=800, batch_size=len(prompts), grammar=grammar, schemas=schemas) == tok.batch_decode(greedy_ids, skip_special_tokens=True)
    served = [grammar.served_text(row) for row in greedy_ids]
    assert all(_valid(t, s) for t, s in zip(served, schemas)), served
    assert set(json.loads(served[-1], strict=False)) == set(judgement["required"])


def test_grpo_rollout_answers_every_prompt_under_its_schema(interpret_rows, tiny):
    """What TRL's GRPOTrainer gets from ``rollout_func``: per prompt entry its token ids and one
    sampled answer, at the trainer's temperature and length limit."""
    model, tok, grammar = tiny
    schema = cap_strings(json.loads(interpret_rows[0]["task"])["schema"], 40)
    asked = [[{"role": "user", "content": f"decision {i}"}] for i in range(2)]
    schemas = {prompt_key(asked[0]): schema, prompt_key(asked[1]): cap_strings(judgement_schema(), 20)}
    prompts = [p for p in asked for _ in range(2)]  # the trainer repeats each prompt once per answer it wants
    trainer = SimpleNamespace(model=model, max_completion_length=800, temperature=1.0)
    out = grammar_rollout(grammar, tok, schemas)(prompts, trainer)
    assert out["logprobs"] is None and len(out["prompt_ids"]) == len(out["completion_ids"]) == len(prompts)
    for p, ids, comp in zip(prompts, out["prompt_ids"], out["completion_ids"]):
        assert ids == tok(tok.apply_chat_template(p, add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"]
        assert _valid(grammar.served_text(comp), schemas[prompt_key(p)])
    # a short limit cuts answers off: no end token, and the reward's JSON check fails them, as when served
    short = grammar_rollout(grammar, tok, schemas)(prompts[:2], SimpleNamespace(model=model, max_completion_length=5, temperature=1.0))
    assert all(len(c) == 5 and c[-1] != tok.eos_token_id for c in short["completion_ids"])
    # so does a prompt's own served budget, in the same batch as a prompt answered in full
    budgeted = grammar_rollout(grammar, tok, schemas, {prompt_key(asked[1]): 5})(prompts, trainer)
    cut = [len(c) == 5 and c[-1] != tok.eos_token_id for c in budgeted["completion_ids"]]
    assert cut == [False, False, True, True]
    assert all(_valid(grammar.served_text(c), schemas[prompt_key(p)]) for p, c in zip(prompts[:2], budgeted["completion_ids"][:2]))
