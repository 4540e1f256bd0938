"""Tuning and serving back: GRPO + LoRA on recorded decisions, the adapter merged into a GGUF
that llama.cpp runs. Needs the ``[train]`` extra (skipped without it) and, for serving,
llama-cpp-python[server].

The model is the tiny random-weight llama GGUF the llama.cpp tests build (2 layers, 64-d);
the prompts are decisions the reference policy recorded on the small study.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from llm_fixtures.server import free_port, llama_available, tiny_gguf  # noqa: F401  (fixture)
from llm_fixtures.study import recorded_interpretations

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("trl")
pytest.importorskip("peft")
pytest.importorskip("gguf")

from proteus.train.grpo import load_base, train  # noqa: E402
from proteus.train.gguf_export import merge_adapter, write_gguf  # noqa: E402


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    """export-rl of a run directory holding interpret decisions recorded for a small context."""
    out, n = recorded_interpretations(tmp_path_factory.mktemp("run") / "run", 6)
    assert n == 6
    return out


def _logits_llama_cpp(path, tokens):
    from llama_cpp import Llama

    llm = Llama(str(path), logits_all=True, n_ctx=64, verbose=False)
    try:
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)])
    finally:
        llm.close()


@pytest.mark.skipif(not llama_available(), reason="llama-cpp-python is not installed")
def test_merged_adapter_in_gguf_computes_what_transformers_computes(tiny_gguf, tmp_path):  # noqa: F811
    import torch
    from peft import LoraConfig, get_peft_model

    model, _, template = load_base(tiny_gguf)
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    tokens = [1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100]
    with torch.no_grad():
        tuned = peft_model(torch.tensor([tokens])).logits[0].numpy()
        merged = merge_adapter(peft_model)
        assert np.allclose(merged(torch.tensor([tokens])).logits[0].numpy(), tuned, atol=1e-4)
    gguf_path = write_gguf(merged, tmp_path / "tuned.gguf", template=template)
    served = _logits_llama_cpp(gguf_path, tokens)
    base = _logits_llama_cpp(tiny_gguf, tokens)
    # llama.cpp runs the adapter's weights (F16-rounded): its logits follow the tuned model,
    # not the base it was built from
    assert np.corrcoef(served.ravel(), tuned.ravel())[0, 1] > 0.999
    assert np.abs(served - tuned).max() < np.abs(base - tuned).max() / 10


@pytest.mark.skipif(not llama_available(), reason="llama-cpp-python is not installed")
def test_export_gguf_command_merges_a_saved_adapter_that_llama_cpp_then_runs(tiny_gguf, tmp_path):  # noqa: F811
    """An adapter trained elsewhere (saved by PEFT, as the GPU run returns it) becomes one GGUF
    through ``proteus export gguf``; llama.cpp's logits follow the adapter, not the base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from typer.testing import CliRunner

    from proteus.cli import app

    model, _, _ = load_base(tiny_gguf)
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    tokens = [1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100]
    with torch.no_grad():
        tuned = peft_model(torch.tensor([tokens])).logits[0].numpy()
    out = tmp_path / "tuned.gguf"
    res = CliRunner().invoke(app, ["export", "gguf", "--adapter", str(tmp_path / "adapter"), "--base", str(tiny_gguf), "--out", str(out)])
    assert res.exit_code == 0, res.output
    served, base = _logits_llama_cpp(out, tokens), _logits_llama_cpp(tiny_gguf, tokens)
    assert np.corrcoef(served.ravel(), tuned.ravel())[0, 1] > 0.999
    assert np.abs(served - tuned).max() < np.abs(base - tuned).max() / 10
    # a folder that is not an adapter is one line and exit 2, not a traceback
    res = CliRunner().invoke(app, ["export", "gguf", "--adapter", str(tmp_path), "--base", str(tiny_gguf), "--out", str(tmp_path / "x.gguf")])
    assert res.exit_code == 2 and "no adapter_config.json" in res.output and not (tmp_path / "x.gguf").exists()


def test_one_grpo_step_writes_adapter_gguf_and_held_out_rewards(trajectories, tiny_gguf, tmp_path):  # noqa: F811
    out = tmp_path / "tuned"
    s = train(trajectories, tiny_gguf, out, steps=1, num_generations=2, max_completion_tokens=8, max_prompt_tokens=4096, held_out=0.5, max_eval_prompts=2, lora_rank=4)
    saved = json.loads((out / "train.json").read_text())
    assert saved["n_train"] + saved["n_held_out"] == s["n_prompts"] == 6 and 1 <= saved["n_evaluated"] <= 2
    assert saved["decisions"] == ["interpret"] and saved["device"] == "cpu" and saved["constrained"]  # answers under the serving grammar
    steps = [e for e in saved["log"] if "reward" in e]
    assert len(steps) == 1 and 0.0 <= steps[0]["reward"] <= 1.0
    progress = [json.loads(x) for x in (out / "progress.jsonl").read_text().splitlines()]
    assert [p["reward"] for p in progress if "reward" in p] == [steps[0]["reward"]]
    ho = saved["held_out"]
    assert len(ho["rewards_before"]) == len(ho["rewards_after"]) == saved["n_evaluated"]
    assert ho["change"]["mean"] == pytest.approx(np.mean(ho["rewards_after"]) - np.mean(ho["rewards_before"]))
    assert ho["by_decision"] == {"interpret": {"n": saved["n_evaluated"], "before": pytest.approx(np.mean(ho["rewards_before"])), "after": pytest.approx(np.mean(ho["rewards_after"]))}}
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["peft_type"] == "LORA"
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    import gguf

    reader = gguf.GGUFReader(str(out / "model.gguf"))
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["tokenizer.ggml.tokens"].contents() == gguf.GGUFReader(str(tiny_gguf)).fields["tokenizer.ggml.tokens"].contents()
    # the saved adapter, evaluated again without training, answers the held-out prompts as it did
    again = train(trajectories, tiny_gguf, tmp_path / "again", steps=0, adapter=out / "adapter", max_completion_tokens=8, max_prompt_tokens=4096,
                  held_out=0.5, max_eval_prompts=2, gguf=False)
    assert again["from_adapter"] == str(out / "adapter") and "grpo" not in again["phases"]
    assert again["held_out"]["rewards_before"] == ho["rewards_before"] and again["held_out"]["rewards_after"] == ho["rewards_after"]


def test_warm_start_then_grpo_until_the_deadline_writes_every_phase(trajectories, tiny_gguf, tmp_path):  # noqa: F811
    import time

    out = tmp_path / "tuned"
    # the reference answers are 41 tokens of this vocabulary: all fit 48, so the warm start has rows
    s = train(trajectories, tiny_gguf, out, steps=10_000, num_generations=2, max_completion_tokens=48, max_prompt_tokens=4096, held_out=0.5,
              max_eval_prompts=1, lora_rank=4, sft_epochs=10_000, deadline=time.time() + 60, gguf=False, constrained=False, dynamic_sampling=2)
    assert s["phases"] == ["load", "prompts", "eval_before", "sft", "eval_after_sft", "grpo", "eval_after"]
    assert json.loads((out / "train.json").read_text()) == json.loads(json.dumps(s, default=str))
    # the warm start learns from the training split's reference answers only
    assert s["n_sft"] == s["n_train"] and s["sft_change"]["change"]["n"] == s["n_evaluated"]
    assert s["held_out"]["by_decision"]["interpret"]["after_sft"] == pytest.approx(np.mean(s["rewards_after_sft"]))
    assert s["sft_stopped_by_deadline"]  # 10,000 epochs do not fit: it stopped at its share of the time
    # GRPO ran until one more step would not leave time for the evaluation after it
    assert s["grpo_stopped_by_deadline"] and 1 <= s["grpo_steps"] < 10_000
    # every step's group came through dynamic sampling (a flat group was sampled again, at most twice)
    ds = s["dynamic_sampling"]
    assert ds["groups"] >= s["grpo_steps"] and ds["groups"] <= ds["sampled"] <= 2 * ds["groups"]
    progress = [json.loads(x) for x in (out / "progress.jsonl").read_text().splitlines()]
    assert [p["phase"] for p in progress if "seconds" in p] == s["phases"]
    grpo = [p for p in progress if p["phase"] == "grpo" and "step" in p]
    assert [p["step"] for p in grpo] == list(range(1, s["grpo_steps"] + 1))
    assert all(0.0 <= p["reward"] <= 1.0 and p["step_s"] > 0 for p in grpo)
    assert len([p for p in progress if p["phase"] == "sft" and "loss" in p]) >= 1
    assert (out / "adapter" / "adapter_model.safetensors").exists()


def test_a_passed_deadline_skips_training_and_the_untrained_adapter_changes_nothing(trajectories, tiny_gguf, tmp_path):  # noqa: F811
    import time

    out = tmp_path / "tuned"
    s = train(trajectories, tiny_gguf, out, steps=5, num_generations=2, max_completion_tokens=16, max_prompt_tokens=4096, held_out=0.5,
              max_eval_prompts=2, lora_rank=4, sft_epochs=1, deadline=time.time(), gguf=False)
    assert s["phases"] == ["load", "prompts", "eval_before", "eval_after"]
    # LoRA starts as the identity (B = 0): the same greedy answers, the same rewards
    assert s["held_out"]["rewards_after"] == s["held_out"]["rewards_before"] and s["held_out"]["change"]["mean"] == 0
    assert (out / "adapter" / "adapter_config.json").exists()


@pytest.mark.skipif(not llama_available(), reason="llama-cpp-python[server] is not installed")
def test_tuned_gguf_served_by_llama_cpp_answers_a_decision(trajectories, tiny_gguf, tmp_path):  # noqa: F811
    from proteus.llm import make_backend
    from proteus.policy.decisions import Interpretation
    from proteus.serve import serve

    out = tmp_path / "tuned"
    s = train(trajectories, tiny_gguf, out, steps=1, num_generations=2, max_completion_tokens=8, max_prompt_tokens=4096, evaluate=False, lora_rank=4)
    with serve(s["gguf"], engine="llamacpp", port=free_port(), name="tuned", max_model_len=8192, timeout_s=120, log=tmp_path / "server.log") as server:
        backend = make_backend(server.model_arg, server.base_url, max_completion_tokens=64, timeout_s=120)
        prompt = json.loads(trajectories.read_text().splitlines()[0])["prompt"]
        c = backend.complete(prompt, Interpretation, name="interpret")
    assert c.prompt_tokens > 0 and c.completion_tokens > 0
    assert c.text.lstrip().startswith("{")  # the grammar forces JSON from the tuned weights too
