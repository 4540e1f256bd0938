"""Mean verifiable reward of a model on held-out decision prompts, with a confidence interval.

Each prompt is answered once by greedy decoding (deterministic, so before / after differences
are the model's, not the sampler's) and scored with :func:`proteus.train.rewards.reward`. The
change between two models on the same prompts is summarised by the mean paired difference and
its 95% t interval (Student 1908), and the percentile bootstrap as a check.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from scipy import stats

from proteus.train.rewards import reward

__all__ = ["answer", "held_out_rewards", "mean_ci", "paired_change"]


def answer(model: Any, tokenizer: Any, messages: list[dict[str, str]], *, max_new_tokens: int = 256) -> str:
    """The model's greedy answer to chat ``messages``."""
    import torch

    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def held_out_rewards(model: Any, tokenizer: Any, rows: list[dict[str, Any]], *, max_new_tokens: int = 256) -> list[float]:
    """The reward of the model's answer to every prompt row."""
    was_training = model.training
    model.eval()
    try:
        return [reward(answer(model, tokenizer, r["prompt"], max_new_tokens=max_new_tokens), json.loads(r["task"])) for r in rows]
    finally:
        model.train(was_training)


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
    """Mean paired difference ``after - before`` with its t interval and a bootstrap interval."""
    d = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    out: dict[str, Any] = {"before": mean_ci(before, level), "after": mean_ci(after, level), "change": mean_ci(list(d), level)}
    if len(d) >= 2:
        rng = np.random.default_rng(seed)
        boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
        out["change"]["bootstrap"] = [float(np.quantile(boots, (1 - level) / 2)), float(np.quantile(boots, 0.5 + level / 2))]
    return out
