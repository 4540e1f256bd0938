"""Mean verifiable reward of a model on held-out decision prompts, with a confidence interval.

Each prompt is answered once by greedy decoding (deterministic up to batch padding, so before /
after differences are the model's, not the sampler's), optionally under the grammar the model is
served with (:mod:`proteus.train.grammar`), and scored with :func:`proteus.train.rewards.reward`. The
change between two models on the same prompts is summarised by the mean paired difference and
its 95% t interval (Student 1908), and the percentile bootstrap as a check; :func:`by_decision`
splits the mean rewards by decision type.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from scipy import stats

from proteus.train.rewards import reward

__all__ = ["generate", "answer_budget", "answers", "held_out_rewards", "mean_ci", "paired_change", "by_decision"]


def _per_row(limit: int | list[int], n: int) -> list[int]:
    """One answer limit per prompt: ``limit`` as given when a list, else repeated ``n`` times."""
    return limit if isinstance(limit, list) else [limit] * n


def generate(
    model: Any, tokenizer: Any, texts: list[str], *, max_new_tokens: int | list[int], do_sample: bool = False, temperature: float = 1.0,
    logits_processor: Any = None,
) -> list[list[int]]:
    """Token ids of the model's answer to each chat-rendered prompt of ``texts``, generated as one
    left-padded batch (so every answer starts where its prompt ends), each cut after its first
    end-of-sequence token (kept). ``max_new_tokens``: one limit, or one per prompt (an answer
    longer than its own limit is cut there, as a server cuts it). ``logits_processor``: e.g.
    :meth:`proteus.train.grammar.ServingGrammar.processor`."""
    limits = _per_row(max_new_tokens, len(texts))
    import torch
    from transformers import LogitsProcessorList

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    finally:
        tokenizer.padding_side = side
    kw: dict[str, Any] = {"do_sample": do_sample}
    if do_sample:  # plain sampling at ``temperature``: transformers would run top-k / top-p before ``logits_processor``
        kw |= {"temperature": temperature, "top_k": 0, "top_p": 1.0}
    if logits_processor is not None:
        kw["logits_processor"] = LogitsProcessorList([logits_processor])
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=max(limits), pad_token_id=tokenizer.pad_token_id, **kw)
    stops = model.generation_config.eos_token_id
    stops = {tokenizer.eos_token_id, *(stops if isinstance(stops, list) else [stops])} - {None}
    out = []
    for row, limit in zip(gen[:, enc["input_ids"].shape[1] :].tolist(), limits):
        row = row[:limit]
        end = next((j for j, t in enumerate(row) if t in stops), len(row) - 1)
        out.append(row[: end + 1])
    return out


def answer_budget(task: dict[str, Any], cap: int) -> int:
    """Tokens an answer to ``task`` may take: the budget it was served with (``max_tokens``,
    recorded by export-rl), at most ``cap``; ``cap`` when none was recorded."""
    served = task.get("max_tokens")
    return min(int(served), cap) if isinstance(served, int) and served > 0 else cap


def answers(
    model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]], *, max_new_tokens: int | list[int] = 256, batch_size: int = 8,
    grammar: Any = None, schemas: list[dict[str, Any]] | None = None,
) -> list[str]:
    """The model's greedy answers to chat ``prompts``, generated ``batch_size`` at a time, each at
    most ``max_new_tokens`` long (one limit, or one per prompt); with a
    :class:`~proteus.train.grammar.ServingGrammar`, each under the grammar of its schema in ``schemas``."""
    limits = _per_row(max_new_tokens, len(prompts))
    out: list[str] = []
    for i in range(0, len(prompts), batch_size):
        texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts[i : i + batch_size]]
        processor = grammar.processor(schemas[i : i + batch_size]) if grammar is not None else None
        ids = generate(model, tokenizer, texts, max_new_tokens=limits[i : i + batch_size], logits_processor=processor)
        out += tokenizer.batch_decode(ids, skip_special_tokens=True)
    return out


def held_out_rewards(model: Any, tokenizer: Any, rows: list[dict[str, Any]], *, max_new_tokens: int = 256, batch_size: int = 8, grammar: Any = None) -> list[float]:
    """The reward of the model's greedy answer to every prompt row (under the serving grammar when
    given), each answer at most as long as it was served (:func:`answer_budget`, at most ``max_new_tokens``)."""
    was_training = model.training
    model.eval()
    tasks = [json.loads(r["task"]) for r in rows]
    try:
        texts = answers(
            model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=[answer_budget(t, max_new_tokens) for t in tasks], batch_size=batch_size,
            grammar=grammar, schemas=[t["schema"] for t in tasks],
        )
    finally:
        model.train(was_training)
    return [reward(t, task) for t, task in zip(texts, tasks)]


def mean_ci(values: list[float], level: float = 0.95) -> dict[str, float | int | None]:
    """Mean of ``values`` with its t confidence interval."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": None, "low": None, "high": None}
    m = float(x.mean())
    if n < 2:
        return {"n": n, "mean": m, "low": None, "high": None}
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return {"n": n, "mean": m, "low": m - half, "high": m + half}


def paired_change(before: list[float], after: list[float], *, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean paired difference ``after - before`` with its t interval and a bootstrap interval; the
    prompts that went up, down and stayed; and the Wilcoxon signed-rank p (two-sided, unchanged pairs
    dropped, normal approximation with tie correction: Wilcoxon 1945, doi:10.2307/3001968), which
    suits rewards bounded in [0, 1] whose changes are mostly zero and a few large ones."""
    d = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    out: dict[str, Any] = {"before": mean_ci(before, level), "after": mean_ci(after, level), "change": mean_ci(list(d), level)}
    moved = d[np.abs(d) > 1e-9]
    out["change"] |= {"up": int((moved > 0).sum()), "down": int((moved < 0).sum()), "same": int(len(d) - len(moved)),
                      "wilcoxon_p": float(stats.wilcoxon(moved, method="approx", correction=False).pvalue) if len(moved) else None}
    if len(d) >= 2:
        rng = np.random.default_rng(seed)
        boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
        out["change"]["bootstrap"] = [float(np.quantile(boots, (1 - level) / 2)), float(np.quantile(boots, 0.5 + level / 2))]
    return out


def by_decision(decisions: list[str], **rewards: list[float] | None) -> dict[str, dict[str, Any]]:
    """Per decision type: ``n`` prompts and the mean of every reward list given by name (one
    reward per prompt, in the order of ``decisions``; ``None`` lists are left out)."""
    out: dict[str, dict[str, Any]] = {}
    for d in sorted(set(decisions)):
        idx = [i for i, x in enumerate(decisions) if x == d]
        out[d] = {"n": len(idx), **{k: float(np.mean([v[i] for i in idx])) for k, v in rewards.items() if v is not None}}
    return out
