"""Decision policies: the offline analyst's autopilot (:mod:`proteus.policy.heuristic`) and the
model-driven policy (:mod:`proteus.policy.llm`), both answering :class:`~proteus.policy.base.Policy`.

>>> from proteus.policy import make_policy
>>> make_policy("offline").name
'heuristic'
"""

from __future__ import annotations

from typing import Any

from proteus.llm import Budget, make_backend, parse_model, resolve_model

__all__ = ["make_policy"]


def make_policy(
    model: str | None = None,
    base_url: str | None = None,
    *,
    budget: Budget | dict[str, Any] | None = None,
    judge_model: str | None = None,
    context_tokens: int | None = None,
    **backend_options: Any,
) -> Any:
    """The :class:`~proteus.policy.base.Policy` for ``--model`` (see :mod:`proteus.llm`).

    ``offline`` gives the heuristic policy, its decisions recorded with the prompts a model would
    have seen (:class:`~proteus.policy.reference.ReferencePolicy`); any other model an
    :class:`~proteus.policy.llm.LLMPolicy` whose backends (planner and judge) share one
    :class:`Budget`. ``judge_model`` defaults to ``model``. ``context_tokens`` (``--context-tokens``)
    overrides the model's context size the server reports.
    """
    conf = resolve_model(model, base_url)
    provider, _ = parse_model(conf["name"])
    if provider == "offline":
        from proteus.policy.reference import ReferencePolicy

        return ReferencePolicy(context_tokens=context_tokens or int(conf.get("context_tokens", 8000)))
    from proteus.policy.llm import LLMPolicy

    shared = Budget.of(budget if budget is not None else conf.get("budget"))
    for key in ("max_completion_tokens", "timeout_s", "temperature"):
        if key in conf:
            backend_options.setdefault(key, conf[key])
    backend = make_backend(conf["name"], conf["base_url"], budget=shared, **backend_options)
    judge = conf.get("judge") if judge_model is None else judge_model
    judge_backend = None
    offline_judge = bool(judge) and parse_model(judge)[0] == "offline"
    if judge and not offline_judge and judge != conf["name"]:
        judge_backend = make_backend(judge, conf.get("judge_base_url"), budget=shared, **backend_options)
    tokens = context_tokens or (int(conf["context_tokens"]) if conf.get("context_tokens") else None)
    return LLMPolicy(backend, judge_backend=judge_backend, context_tokens=tokens, offline_judge=offline_judge)
