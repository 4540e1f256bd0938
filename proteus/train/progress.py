"""What a training run has done so far, written as it happens, and when it must stop.

:class:`Progress` keeps a run's summary and writes it after every phase (``train.json``), and
appends each finished phase and each optimisation step to ``progress.jsonl``, so a run killed at
any moment still leaves what it finished. :meth:`Progress.callback` is a transformers
``TrainerCallback`` that logs every step (step, reward, loss, seconds) and stops training
(``control.should_training_stop``) when one more step would cross a deadline.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

__all__ = ["Progress"]

log = logging.getLogger(__name__)

_STEP_KEYS = ("loss", "reward", "reward_std", "completions/mean_length", "mean_token_accuracy", "learning_rate")


class Progress:
    """The summary of a run in ``out`` (``train.json``) and its event log (``progress.jsonl``).

    ``deadline`` is a ``time.time()`` value (``None``: no deadline).
    """

    def __init__(self, out: Path, summary: dict[str, Any], *, deadline: float | None = None) -> None:
        self.out = Path(out)
        self.summary = summary
        self.deadline = deadline
        self.t0 = time.time()

    def left_s(self) -> float:
        """Seconds to the deadline (infinite without one)."""
        return float("inf") if self.deadline is None else self.deadline - time.time()

    def event(self, **fields: Any) -> None:
        fields = {"t_s": round(time.time() - self.t0, 1), **fields}
        with open(self.out / "progress.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(fields, default=str) + "\n")

    def phase(self, name: str, seconds: float, **result: Any) -> None:
        """Record the finished phase ``name``: its wall time, its ``result`` merged into the summary."""
        self.summary[f"{name}_s"] = round(seconds, 1)
        self.summary.update(result)
        self.summary.setdefault("phases", []).append(name)
        self.write()
        brief = {k: v for k, v in result.items() if not isinstance(v, (list, dict))}
        self.event(phase=name, seconds=round(seconds, 1), **brief)
        log.info("phase %s done in %.1f s %s", name, seconds, brief)

    def write(self) -> None:
        (self.out / "train.json").write_text(json.dumps(self.summary, indent=1, default=str))

    def callback(self, phase: str, *, stop_at: float | None = None) -> Any:
        """A ``TrainerCallback`` logging each step of ``phase`` to the summary's ``log`` and to
        ``progress.jsonl``, and stopping training once ``now + slowest step so far > stop_at``
        (a ``time.time()`` value; ``None``: never)."""
        from transformers import TrainerCallback

        progress = self

        class StepLog(TrainerCallback):
            def __init__(self) -> None:
                self.last = time.time()
                self.longest = 0.0
                self.step_s = 0.0

            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                self.last = time.time()

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                now = time.time()
                self.step_s = now - self.last
                self.longest = max(self.longest, self.step_s)
                self.last = now
                if stop_at is not None and now + self.longest > stop_at:
                    control.should_training_stop = True
                    progress.summary[f"{phase}_stopped_by_deadline"] = True

            def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
                entry = {"phase": phase, "step": state.global_step, **{k: v for k, v in (logs or {}).items() if k in _STEP_KEYS}}
                if len(entry) == 2:  # the trainer's closing summary, not a step
                    return
                entry["step_s"] = round(self.step_s, 2)
                progress.summary.setdefault("log", []).append(entry)
                progress.event(**entry)
                log.info("%s step %s reward %s loss %s", phase, entry["step"], entry.get("reward"), entry.get("loss"))

        return StepLog()
