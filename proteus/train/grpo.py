"""GRPO with a LoRA adapter on the agent's own decision prompts, after an optional supervised warm start.

Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300) as TRL's
``GRPOTrainer`` implements it: for every prompt a group of answers is sampled, each is scored by
:func:`proteus.train.rewards.reward`, and the policy is moved towards the answers that beat their
group's mean. Only a LoRA adapter (Hu et al. 2021, arXiv:2106.09685; PEFT) is trained.
By default the answers are sampled (TRL's ``rollout_func``) and the held-out answers decoded under
the grammar llama.cpp serves each decision with (:mod:`proteus.train.grammar`): the JSON format is
then given, as when served, and the reward measures what the grammar leaves free. A group whose
answers all score alike teaches nothing; with ``dynamic_sampling`` another training prompt is
sampled in its place (:class:`~proteus.train.dynamic.DynamicSampling`, DAPO's dynamic sampling;
off by default until the benchmark measures it: plain GRPO spent 5 of 23 steps, 15% of its
training time, on such groups).

An optional supervised warm start (TRL ``SFTTrainer``, loss on the answer tokens only) first
fits the same adapter to the reference answers of the *training* prompts, so that GRPO starts
from a model whose sampled answers already earn some reward.

:func:`train` reads export-rl files, holds prompts out, scores the base model on them, warms up,
trains, scores again, writes the adapter, the merged model as GGUF for llama.cpp, and
``train.json`` with the before / after mean reward, the paired change with its confidence
interval, and the means per decision type. Every phase is written as it finishes (:class:`~proteus.train.progress.Progress`);
with a ``deadline`` training stops early enough for the evaluation after it to finish.
A CUDA GPU is used when present (bf16), otherwise the CPU.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable

from proteus.train.data import load_prompts, split_held_out
from proteus.train.base_model import load_base
from proteus.train.progress import Progress

__all__ = ["load_base", "train"]

log = logging.getLogger(__name__)


def _prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def _free_text(node: Any) -> bool:
    """A schema node for prose: a bounded string with no enum or constant (a rationale, a reason)."""
    return isinstance(node, dict) and node.get("type") == "string" and "maxLength" in node and "enum" not in node and "const" not in node


def _branch(value: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """The ``anyOf`` / ``oneOf`` branch of ``schema`` that ``value`` breaks least (else ``schema``)."""
    branches = schema.get("anyOf") or schema.get("oneOf")
    if not branches:
        return schema
    import jsonschema

    return min(branches, key=lambda b: sum(1 for _ in jsonschema.Draft202012Validator(b).iter_errors(value)))


def _cut(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars``, at the last word boundary when there is one."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    return head.rsplit(" ", 1)[0] if " " in head else head


def as_the_grammar_allows(value: Any, schema: dict[str, Any], *, drop_prose: bool = False) -> Any:
    """``value`` as an answer under ``schema``'s grammar can be: every string cut to its
    ``maxLength`` and every list to its ``maxItems``, the first kept (the served schema caps
    prose and lists for small contexts, as :func:`proteus.policy.decision_schemas.fit_answer`
    does; lists are ordered most important first); with ``drop_prose`` every
    optional free-text field (:func:`_free_text`) left out, so the decision stays the same
    (tools, parameters, scores, ids) and only the explanations go."""
    schema = _branch(value, schema)
    if isinstance(value, str):
        return _cut(value, schema["maxLength"]) if isinstance(schema.get("maxLength"), int) else value
    if isinstance(value, dict):
        props, required = schema.get("properties") or {}, set(schema.get("required") or [])
        return {
            k: as_the_grammar_allows(v, props.get(k) or {}, drop_prose=drop_prose)
            for k, v in value.items()
            if not (drop_prose and k not in required and isinstance(v, str) and _free_text(props.get(k)))
        }
    if isinstance(value, list):
        items = schema.get("items") or {}
        return [as_the_grammar_allows(v, items, drop_prose=drop_prose) for v in value[: schema.get("maxItems")]]
    return value


def _reference_answers(row: dict[str, Any]) -> list[str]:
    """The reference answer as the grammar allows it, then without its optional prose; none
    when it breaks the schema otherwise (e.g. a parameter the served step schema leaves out):
    a sampled answer could never be it."""
    import jsonschema

    task = json.loads(row["task"])
    ref, schema = task.get("reference"), task.get("schema") or {}
    fitted = as_the_grammar_allows(ref, schema) if ref else None
    if not fitted or not jsonschema.Draft202012Validator(schema).is_valid(fitted):
        return []
    answers = [json.dumps(a, ensure_ascii=False) for a in (fitted, as_the_grammar_allows(ref, schema, drop_prose=True))]
    return answers[:1] if answers[0] == answers[1] else answers


def _sft_rows(tokenizer: Any, rows: list[dict[str, Any]], max_completion_tokens: int) -> list[dict[str, Any]]:
    """Prompt / completion pairs: each row's reference answer as the grammar allows it, or when
    that does not fit its answer budget (:func:`~proteus.train.evaluate.answer_budget`) the same answer without its optional prose (a
    model taught longer answers would be cut off where it is asked). Keeping only the answers
    that fit as written taught mostly empty workflow updates (plans with steps carry a rationale
    per step) and prose longer than the served schema lets a model write."""
    from proteus.train.evaluate import answer_budget

    out = []
    for r in rows:
        limit = answer_budget(json.loads(r["task"]), max_completion_tokens)
        ref = next((a for a in _reference_answers(r) if len(tokenizer(a, add_special_tokens=False)["input_ids"]) < limit), None)
        if ref:
            out.append({"prompt": r["prompt"], "completion": [{"role": "assistant", "content": ref}]})
    return out


def _common_args(cuda: bool, seed: int, out: Path) -> dict[str, Any]:
    return {
        "output_dir": str(out),
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": not cuda,
        "bf16": cuda,
        "seed": seed,
        "data_seed": seed,
        "disable_tqdm": True,
    }


def train(
    trajectories: str | Path | Iterable[str | Path],
    base: str | Path,
    out: str | Path,
    *,
    steps: int = 20,
    num_generations: int = 4,
    learning_rate: float = 2e-4,
    lora_rank: int = 16,
    max_prompt_tokens: int = 2048,
    max_completion_tokens: int = 256,
    held_out: float = 0.25,
    max_eval_prompts: int = 24,
    eval_batch_size: int = 8,
    sft_epochs: float = 0,
    deadline: float | None = None,
    train_s: float | None = None,
    decisions: Iterable[str] | None = None,
    seed: int = 0,
    gguf: bool = True,
    evaluate: bool = True,
    constrained: bool = True,
    dynamic_sampling: int = 0,
    adapter: str | Path | None = None,
    work_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Tune ``base`` on the decision prompts of ``trajectories``; write results to ``out``.

    Parameters
    ----------
    trajectories
        ``proteus export-rl`` JSONL file(s).
    base
        A Hugging Face model folder or a ``.gguf`` file.
    out
        Folder for ``adapter/`` (PEFT LoRA; vLLM ``--lora-modules``), ``model.gguf`` (merged,
        llama.cpp), ``train.json`` and ``progress.jsonl``.
    steps, num_generations, learning_rate, lora_rank
        Most GRPO optimisation steps, answers sampled per prompt, Adam learning rate, LoRA rank.
    max_prompt_tokens
        Prompts longer than this (in the base model's tokens) are left out, never cut.
    max_completion_tokens
        Longest answer, sampled or greedy; an answer is also cut where it was cut when served
        (the decision's recorded ``max_tokens``, :func:`proteus.train.evaluate.answer_budget`).
    held_out
        Fraction of prompts set aside for the before / after evaluation
        (:func:`proteus.train.data.split_held_out`); at most ``max_eval_prompts`` are scored,
        ``eval_batch_size`` at a time.
    sft_epochs
        Epochs of the supervised warm start on the training prompts' reference answers (0: none).
        Should it fail, its error is recorded (``sft_error``) and GRPO goes on.
    deadline
        A ``time.time()`` value: the warm start gets at most half the time left after the
        evaluations it needs, GRPO stops when one more step would leave too little time for the
        evaluation after it (timed as the slowest evaluation so far), and the GGUF export is skipped when late.
    train_s
        Most seconds of training (warm start and GRPO together; the evaluations are not counted):
        the warm start gets at most half, GRPO stops at the end.
    constrained
        Sample GRPO's answers and the held-out answers under the grammar llama.cpp serves each
        decision with (:mod:`proteus.train.grammar`; needs the base's GGUF and llama-cpp-python),
        so that the reward measures what the grammar leaves free, not the JSON format.
    dynamic_sampling
        Most groups sampled per GRPO step until one scores unevenly (:class:`~proteus.train.dynamic.DynamicSampling`;
        0, the default: off, every group the trainer draws is trained on, even when all its answers score alike).
    adapter
        A LoRA adapter folder (``out/adapter`` of an earlier run) to start from instead of a fresh
        adapter of ``lora_rank``; with ``steps=0`` and no warm start the run evaluates it.
    work_dir
        Scratch folder of the trainers (default ``out/checkpoints``); nothing is saved there.

    Returns
    -------
    The contents of ``train.json``.
    """
    from proteus.train import import_hf_datasets

    Dataset = import_hf_datasets().Dataset
    import torch
    from peft import LoraConfig, get_peft_model
    from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

    from proteus.train.evaluate import by_decision, held_out_rewards, paired_change
    from proteus.train.gguf_export import merge_adapter, write_gguf
    from proteus.train.rewards import trl_reward_function

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "progress.jsonl").unlink(missing_ok=True)
    work = Path(work_dir) if work_dir is not None else out / "checkpoints"
    torch.manual_seed(seed)
    cuda = torch.cuda.is_available()
    summary: dict[str, Any] = {
        "base": str(base),
        "train_s": train_s,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "steps": steps,
        "num_generations": num_generations,
        "learning_rate": learning_rate,
        "lora_rank": lora_rank,
        "max_prompt_tokens": max_prompt_tokens,
        "max_completion_tokens": max_completion_tokens,
        "sft_epochs": sft_epochs,
        "seed": seed,
        "constrained": constrained,
    }
    prog = Progress(out, summary, deadline=deadline)
    t = time.time()
    model, tok, template = load_base(base, dtype=torch.bfloat16 if cuda else torch.float32)
    if cuda:
        model = model.to("cuda")
    grammar = None
    if constrained:
        if template is None:
            msg = f"constrained sampling needs the GGUF llama.cpp serves {base} from (its vocabulary); give a .gguf base or pass constrained=False"
            raise ValueError(msg)
        from proteus.train.grammar import ServingGrammar

        grammar = ServingGrammar(template)
    prog.phase("load", time.time() - t)

    t = time.time()
    rows = [r for r in load_prompts(trajectories, decisions=decisions) if _prompt_tokens(tok, r["prompt"]) <= max_prompt_tokens]
    train_rows, held_rows = split_held_out(rows, held_out, seed=seed)
    eval_rows = held_rows[:max_eval_prompts] if evaluate else []
    if not train_rows:
        msg = f"no decision prompt of at most {max_prompt_tokens} tokens with a schema in {trajectories}; export runs with `proteus export-rl`"
        raise ValueError(msg)
    prog.phase(
        "prompts", time.time() - t, n_prompts=len(rows), n_train=len(train_rows), n_held_out=len(held_rows), n_evaluated=len(eval_rows),
        decisions=sorted({r["decision"] for r in rows}),
    )

    def score(m: Any, name: str) -> list[float]:
        t = time.time()
        rewards = held_out_rewards(m, tok, eval_rows, max_new_tokens=max_completion_tokens, batch_size=eval_batch_size, grammar=grammar) if eval_rows else []
        prog.phase(f"eval_{name}", time.time() - t, **{f"rewards_{name}": rewards, f"mean_{name}": sum(rewards) / len(rewards) if rewards else None})
        return rewards

    before = score(model, "before")

    def reserve() -> float:
        """What one more evaluation needs (the slowest so far, with a margin) and saving the adapter."""
        return 1.5 * max(summary[k] for k in ("eval_before_s", "eval_after_sft_s") if k in summary) + 10

    train_end = None if train_s is None else time.time() + train_s

    def sooner(a: float | None, b: float | None) -> float | None:
        return b if a is None else a if b is None else min(a, b)

    if adapter is not None:  # go on from a trained adapter (with no steps: evaluate it)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
        summary["from_adapter"] = str(adapter)
    else:
        model = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"))
    if sft_epochs > 0:
        pairs = _sft_rows(tok, train_rows, max_completion_tokens)
        stop_at = None if deadline is None else time.time() + (prog.left_s() - 2 * reserve()) / 2
        stop_at = sooner(stop_at, None if train_s is None else time.time() + train_s / 2)
        if pairs and (stop_at is None or stop_at > time.time()):
            t = time.time()
            args = SFTConfig(
                **_common_args(cuda, seed, work), num_train_epochs=sft_epochs, per_device_train_batch_size=4 if cuda else 1,
                learning_rate=learning_rate, max_length=max_prompt_tokens + max_completion_tokens, packing=False,
            )
            try:
                sft = SFTTrainer(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list(pairs), callbacks=[prog.callback("sft", stop_at=stop_at)])
                sft.train()
            except Exception as e:  # the warm start is optional: GRPO still runs and is measured
                log.exception("supervised warm start failed")
                prog.phase("sft_failed", time.time() - t, sft_error=f"{type(e).__name__}: {e}")
            else:
                model = sft.model
                model.save_pretrained(str(out / "adapter"))
                prog.phase("sft", time.time() - t, n_sft=len(pairs))
                if eval_rows:
                    t = time.time()
                    after_sft = score(model, "after_sft")
                    train_end = None if train_end is None else train_end + time.time() - t  # not training time
                    summary["sft_change"] = paired_change(before, after_sft)
                    prog.write()

    stop_at = sooner(None if deadline is None else deadline - reserve(), train_end)
    # a GRPO step samples about one evaluation batch and trains on it: start only if one fits
    one_step = 2 * max(summary[k] for k in ("eval_before_s", "eval_after_sft_s") if k in summary) / max(1, -(-len(eval_rows) // eval_batch_size))
    if steps > 0 and (stop_at is None or stop_at > time.time() + one_step):
        t = time.time()
        args = GRPOConfig(
            **_common_args(cuda, seed, work), max_steps=steps,
            # a group per step; on the CPU one answer per forward pass (memory), the group's gradients accumulated
            per_device_train_batch_size=num_generations if cuda else 1, gradient_accumulation_steps=1 if cuda else num_generations,
            num_generations=num_generations, max_completion_length=max_completion_tokens, learning_rate=learning_rate, temperature=1.0, beta=0.0,
        )
        from proteus.train.grammar import grammar_rollout, prompt_key

        from proteus.train.evaluate import answer_budget

        tasks = {prompt_key(r["prompt"]): json.loads(r["task"]) for r in train_rows}
        rollout: Any = grammar_rollout(
            grammar, tok, {k: t["schema"] for k, t in tasks.items()}, {k: answer_budget(t, max_completion_tokens) for k, t in tasks.items()},
        )
        if dynamic_sampling:
            from proteus.train.dynamic import DynamicSampling
            from proteus.train.rewards import reward

            rollout = DynamicSampling(
                rollout, train_rows, reward, lambda ids: tok.decode(ids, skip_special_tokens=True), num_generations=num_generations,  # as TRL decodes answers
                max_tries=dynamic_sampling, seed=seed,
            )
        trainer = GRPOTrainer(
            model=model, processing_class=tok, reward_funcs=[trl_reward_function()], args=args, callbacks=[prog.callback("grpo", stop_at=stop_at)],
            rollout_func=rollout,
            train_dataset=Dataset.from_list([{"prompt": r["prompt"], "task": r["task"]} for r in train_rows]),
        )
        trainer.train()
        model = trainer.model
        prog.phase("grpo", time.time() - t, grpo_steps=trainer.state.global_step, **({"dynamic_sampling": rollout.stats()} if dynamic_sampling else {}))
    model.save_pretrained(str(out / "adapter"))
    summary["adapter"] = str(out / "adapter")
    prog.write()

    if eval_rows:
        after = score(model, "after")
        summary["held_out"] = {
            **paired_change(before, after), "rewards_before": before, "rewards_after": after,
            "by_decision": by_decision([r["decision"] for r in eval_rows], before=before, after_sft=summary.get("rewards_after_sft"), after=after),
        }
        prog.write()
    if gguf:
        if template is None:
            summary["gguf"] = None
            summary["gguf_skipped"] = "no template GGUF with the vocabulary (give a .gguf base or put one in the model folder)"
        elif prog.left_s() < 60:
            summary["gguf"] = None
            summary["gguf_skipped"] = "too little time left before the deadline"
        else:
            t = time.time()
            merged = merge_adapter(model).to(torch.float32).cpu()
            prog.phase("gguf", time.time() - t, gguf=str(write_gguf(merged, out / "model.gguf", template=template, name=f"{Path(base).stem}-proteus")))
    prog.write()
    return summary
