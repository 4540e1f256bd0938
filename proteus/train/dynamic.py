"""Dynamic sampling: every GRPO step trains on a group whose answers score differently.

GRPO's advantage is an answer's reward minus its group's mean, so a group whose answers all
score the same moves nothing, yet costs a full step (on a CPU about a minute: sampling plus the
forward and backward passes). DAPO (Yu et al. 2025, arXiv:2503.14476, "dynamic sampling")
over-samples and keeps only groups with some spread. :class:`DynamicSampling` does this inside
TRL's ``rollout_func``: a group that scores all alike marks its prompt as *flat* and another
training prompt is sampled in its place (up to ``max_tries`` groups a step); a prompt already
known to be flat is replaced before anything is sampled for it. The replacement's ``task`` goes
back to the trainer as an extra field, so the reward is computed against the prompt actually
answered. Which prompts are flat is learnt from the groups the run samples, never from the
held-out prompts.
"""

from __future__ import annotations

import json
import random
from typing import Any, Callable

from proteus.train.grammar import prompt_key

__all__ = ["DynamicSampling"]

Rollout = Callable[[list, Any], dict[str, Any]]


class DynamicSampling:
    """A TRL ``rollout_func`` wrapping ``rollout`` so that each group carries a learning signal.

    Parameters
    ----------
    rollout
        The rollout to wrap (e.g. :func:`proteus.train.grammar.grammar_rollout`).
    rows
        The training prompt rows (:func:`proteus.train.data.load_prompts`): the pool replacements
        are drawn from.
    reward
        ``reward(text, task) -> float`` (:func:`proteus.train.rewards.reward`).
    decode
        Sampled token ids to the text the reward scores, as the trainer decodes them.
    num_generations
        Answers per prompt: the trainer passes each prompt this many times in a row.
    max_tries
        Most groups sampled for one group of the trainer's; after that the last one is kept.
    """

    def __init__(
        self, rollout: Rollout, rows: list[dict[str, Any]], reward: Callable[[str, dict[str, Any]], float], decode: Callable[[list[int]], str], *,
        num_generations: int, max_tries: int = 3, seed: int = 0,
    ):
        if max_tries < 1:
            msg = f"max_tries must be at least 1, got {max_tries}"
            raise ValueError(msg)
        self.rollout, self.reward, self.decode = rollout, reward, decode
        self.num_generations, self.max_tries = num_generations, max_tries
        self.rows = {prompt_key(r["prompt"]): r for r in rows}
        self.tasks = {k: json.loads(r["task"]) for k, r in self.rows.items()}
        self.flat: set[str] = set()
        self.drawn: set[str] = set()
        self.groups = self.sampled = self.skipped = 0
        self._rng = random.Random(seed)

    def _another(self, key: str) -> str:
        """A training prompt not known to be flat, one not drawn yet first; ``key`` when none is left."""
        fresh = [k for k in self.rows if k not in self.flat and k not in self.drawn and k != key]
        pool = fresh or [k for k in self.rows if k not in self.flat and k != key]
        return self._rng.choice(pool) if pool else key

    def _group(self, key: str, trainer: Any) -> tuple[dict[str, Any], str]:
        """One group for the trainer's prompt ``key``: its own, or a replacement's when flat."""
        out: dict[str, Any] | None = None
        tries = 0
        while tries < self.max_tries:
            if key in self.flat and out is None:
                nxt = self._another(key)
                if nxt != key:  # replaced before sampling: costs nothing
                    self.skipped += 1
                    key = nxt
                    continue
            self.drawn.add(key)
            row = self.rows[key]
            out = self.rollout([row["prompt"]] * self.num_generations, trainer)
            self.sampled += 1
            tries += 1
            scores = [self.reward(self.decode(ids), self.tasks[key]) for ids in out["completion_ids"]]
            if max(scores) - min(scores) > 1e-9:
                break
            self.flat.add(key)
            nxt = self._another(key)
            if nxt == key:
                break
            key = nxt
        assert out is not None  # max_tries >= 1 samples at least once
        return out, self.rows[key]["task"]

    def __call__(self, prompts: list[list[dict[str, str]]], trainer: Any) -> dict[str, Any]:
        n = self.num_generations
        merged: dict[str, Any] = {"prompt_ids": [], "completion_ids": [], "logprobs": None, "task": []}
        for i in range(0, len(prompts), n):
            self.groups += 1
            out, task = self._group(prompt_key(prompts[i]), trainer)
            merged["prompt_ids"] += out["prompt_ids"]
            merged["completion_ids"] += out["completion_ids"]
            merged["task"] += [task] * len(out["completion_ids"])
        return merged

    def stats(self) -> dict[str, int]:
        """Groups the trainer asked for, groups sampled, flat prompts replaced unsampled, prompts found flat."""
        return {"groups": self.groups, "sampled": self.sampled, "replaced_unsampled": self.skipped, "flat_prompts": len(self.flat)}
