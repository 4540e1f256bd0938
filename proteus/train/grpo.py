"""GRPO with a LoRA adapter on the agent's own decision prompts.

Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300) as TRL's
``GRPOTrainer`` implements it: for every prompt a group of answers is sampled, each is scored by
:func:`proteus.train.rewards.reward`, and the policy is moved towards the answers that beat their
group's mean. Only a LoRA adapter (Hu et al. 2021, arXiv:2106.09685; PEFT) is trained.

:func:`train` reads export-rl files, holds prompts out, scores the base model on them, trains,
scores again, writes the adapter, the merged model as GGUF for llama.cpp, and ``train.json``
with the before / after mean reward and the paired change with its confidence interval.
A CUDA GPU is used when present (bf16), otherwise the CPU.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable

from proteus.train.data import load_prompts, split_held_out

__all__ = ["load_base", "train"]

log = logging.getLogger(__name__)


def load_base(base: str | Path, *, dtype: Any = None) -> tuple[Any, Any, Path | None]:
    """(model, tokenizer, template GGUF) for ``base``: a Hugging Face model folder or a ``.gguf``
    file (de-quantised by transformers' GGUF loader; the file is then the GGUF template)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(base)
    kw: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
    if p.suffix == ".gguf":
        if not p.is_file():
            msg = f"base model {p} does not exist"
            raise FileNotFoundError(msg)
        tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
        model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, **kw)
        # the weights are de-quantised to floats on load; only the marker of the GGUF origin stays,
        # and it makes the Trainer refuse to train
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        template: Path | None = p
    else:
        tok = AutoTokenizer.from_pretrained(str(base))
        model = AutoModelForCausalLM.from_pretrained(str(base), **kw)
        ggufs = sorted(p.glob("*.gguf")) if p.is_dir() else []
        template = ggufs[0] if ggufs else None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok, template


def _progress_callback(path: Path) -> Any:
    """A TRL/transformers callback that appends every training log (step, reward, loss) to
    ``path`` as one JSON line and logs it, so a long or interrupted run shows its progress."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
            entry = {"step": state.global_step, **(logs or {})}
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, default=str) + "\n")
            log.info("step %s reward %s loss %s", entry["step"], entry.get("reward"), entry.get("loss"))

    return Progress()


def _prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


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
    decisions: Iterable[str] | None = None,
    seed: int = 0,
    gguf: bool = True,
    evaluate: bool = True,
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
        llama.cpp) and ``train.json``.
    steps, num_generations, learning_rate, lora_rank
        GRPO optimisation steps, answers sampled per prompt, Adam learning rate, LoRA rank.
    max_prompt_tokens
        Prompts longer than this (in the base model's tokens) are left out, never cut.
    max_completion_tokens
        Longest sampled answer.
    held_out
        Fraction of prompts set aside for the before / after evaluation
        (:func:`proteus.train.data.split_held_out`); at most ``max_eval_prompts`` are scored.

    Returns
    -------
    The contents of ``train.json``.
    """
    from proteus.train import import_hf_datasets

    Dataset = import_hf_datasets().Dataset
    import torch
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from proteus.train.evaluate import held_out_rewards, paired_change
    from proteus.train.gguf_export import merge_adapter, write_gguf
    from proteus.train.rewards import trl_reward_function

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cuda = torch.cuda.is_available()
    model, tok, template = load_base(base, dtype=torch.bfloat16 if cuda else torch.float32)
    if cuda:
        model = model.to("cuda")
    rows = [r for r in load_prompts(trajectories, decisions=decisions) if _prompt_tokens(tok, r["prompt"]) <= max_prompt_tokens]
    train_rows, held_rows = split_held_out(rows, held_out, seed=seed)
    eval_rows = held_rows[:max_eval_prompts]
    if not train_rows:
        msg = f"no decision prompt of at most {max_prompt_tokens} tokens with a schema in {trajectories}; export runs with `proteus export-rl`"
        raise ValueError(msg)
    summary: dict[str, Any] = {
        "base": str(base),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "n_prompts": len(rows),
        "n_train": len(train_rows),
        "n_held_out": len(held_rows),
        "n_evaluated": len(eval_rows),
        "decisions": sorted({r["decision"] for r in rows}),
        "steps": steps,
        "num_generations": num_generations,
        "learning_rate": learning_rate,
        "lora_rank": lora_rank,
        "max_completion_tokens": max_completion_tokens,
        "seed": seed,
    }
    t0 = time.perf_counter()
    before = held_out_rewards(model, tok, eval_rows, max_new_tokens=max_completion_tokens) if evaluate and eval_rows else []
    summary["eval_before_s"] = round(time.perf_counter() - t0, 1)
    if before:
        log.info("held-out reward before training: %.3f over %d prompts (%.0f s)", sum(before) / len(before), len(before), summary["eval_before_s"])

    args = GRPOConfig(
        output_dir=str(out / "checkpoints"),
        max_steps=steps,
        per_device_train_batch_size=num_generations,
        gradient_accumulation_steps=1,
        num_generations=num_generations,
        max_completion_length=max_completion_tokens,
        learning_rate=learning_rate,
        temperature=1.0,
        beta=0.0,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=not cuda,
        bf16=cuda,
        seed=seed,
        data_seed=seed,
    )
    lora = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = GRPOTrainer(
        callbacks=[_progress_callback(out / "progress.jsonl")],
        model=model,
        processing_class=tok,
        reward_funcs=[trl_reward_function()],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": r["prompt"], "task": r["task"]} for r in train_rows]),
        peft_config=lora,
    )
    (out / "train.json").write_text(json.dumps({**summary, "rewards_before": before}, indent=1, default=str))  # partial, replaced below
    t1 = time.perf_counter()
    trainer.train()
    summary["train_s"] = round(time.perf_counter() - t1, 1)
    summary["log"] = [{k: v for k, v in e.items() if k in ("step", "loss", "reward", "reward_std", "completions/mean_length")} for e in trainer.state.log_history]
    tuned = trainer.model
    tuned.save_pretrained(str(out / "adapter"))
    tok.save_pretrained(str(out / "adapter"))

    t2 = time.perf_counter()
    after = held_out_rewards(tuned, tok, eval_rows, max_new_tokens=max_completion_tokens) if evaluate and eval_rows else []
    summary["eval_after_s"] = round(time.perf_counter() - t2, 1)
    if before:
        summary["held_out"] = paired_change(before, after)
        summary["held_out"]["rewards_before"] = before
        summary["held_out"]["rewards_after"] = after
    if gguf:
        if template is None:
            summary["gguf"] = None
            summary["gguf_skipped"] = "no template GGUF with the vocabulary (give a .gguf base or put one in the model folder)"
        else:
            merged = merge_adapter(tuned).to(torch.float32).cpu()
            summary["gguf"] = str(write_gguf(merged, out / "model.gguf", template=template, name=f"{Path(base).stem}-proteus"))
    (out / "train.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
