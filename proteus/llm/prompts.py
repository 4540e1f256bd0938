"""Prompt templates: one Markdown file per decision in ``prompts/``, with declared variables.

File format::

    ---
    decision: plan_workflow
    variables: objective, profile, kg, tools, max_steps, schema
    ---
    ## system
    ... text with $variables ...
    ## user
    ... text with $variables ...

Placeholders use :class:`string.Template` syntax (``$name`` / ``${name}``, ``$$`` for a dollar)
so JSON braces in prompt text need no escaping. :func:`load_prompt` rejects a template that uses
a variable it does not declare, declares one it never uses, or has a malformed placeholder;
:meth:`PromptTemplate.render` rejects missing or extra values. Substituted values are never
re-parsed as templates. ``judge_rubric.md`` has no sections or variables; it is read with
:func:`load_text` and given to the judge prompt as ``$rubric``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Template

__all__ = ["DECISIONS", "PromptTemplate", "PromptError", "load_prompt", "load_text", "parse_prompt"]

DECISIONS = (
    "plan_objectives",
    "plan_workflow",
    "interpret",
    "update_workflow",
    "update_objectives",
    "propose_hypotheses",
    "judge",
)
"""Decision names; each has ``prompts/<name>.md``."""


class PromptError(ValueError):
    """A prompt file is malformed or rendered with the wrong variables."""


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed prompt file: declared variables and the system / user message templates."""

    name: str
    variables: tuple[str, ...]
    system: str
    user: str

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages with every declared variable substituted (all and only those)."""
        missing = set(self.variables) - set(values)
        extra = set(values) - set(self.variables)
        if missing or extra:
            msg = f"prompt {self.name!r}: missing variables {sorted(missing)}, undeclared variables {sorted(extra)}"
            raise PromptError(msg)
        vals = {k: str(v) for k, v in values.items()}
        return [
            {"role": "system", "content": Template(self.system).substitute(vals).strip()},
            {"role": "user", "content": Template(self.user).substitute(vals).strip()},
        ]


_FRONT = re.compile(r"\A---\n(?P<head>.*?)\n---\n(?P<body>.*)\Z", re.S)
_SECTION = re.compile(r"^## (system|user)\s*$", re.M)


def _front_matter(name: str, text: str) -> tuple[dict[str, str], str]:
    m = _FRONT.match(text.replace("\r\n", "\n"))
    if not m:
        msg = f"prompt {name!r}: missing '---' front matter with 'variables:'"
        raise PromptError(msg)
    head: dict[str, str] = {}
    for line in m["head"].splitlines():
        if line.strip():
            key, _, value = line.partition(":")
            head[key.strip()] = value.strip()
    if "variables" not in head:
        msg = f"prompt {name!r}: front matter must declare 'variables:'"
        raise PromptError(msg)
    return head, m["body"]


def parse_prompt(name: str, text: str) -> PromptTemplate:
    """Parse and check a prompt file's text (see module docstring)."""
    head, body = _front_matter(name, text)
    declared = tuple(v.strip() for v in head["variables"].split(",") if v.strip())
    if len(set(declared)) != len(declared):
        msg = f"prompt {name!r}: a variable is declared twice: {declared}"
        raise PromptError(msg)
    parts = _SECTION.split(body)
    sections = dict(zip(parts[1::2], parts[2::2]))
    if set(sections) != {"system", "user"} or len(parts) != 5:
        msg = f"prompt {name!r}: needs exactly one '## system' and one '## user' section"
        raise PromptError(msg)
    used: set[str] = set()
    for section, tpl in sections.items():
        t = Template(tpl)
        if not t.is_valid():
            msg = f"prompt {name!r} ({section}): malformed placeholder (use $$ for a literal dollar)"
            raise PromptError(msg)
        used |= set(t.get_identifiers())
    unknown = used - set(declared)
    if unknown:
        msg = f"prompt {name!r} uses undeclared variables {sorted(unknown)}; declared: {list(declared)}"
        raise PromptError(msg)
    unused = set(declared) - used
    if unused:
        msg = f"prompt {name!r} declares variables it never uses: {sorted(unused)}"
        raise PromptError(msg)
    return PromptTemplate(name, declared, sections["system"], sections["user"])


def _read(name: str) -> str:
    try:
        return resources.files("proteus.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"no prompt file {name}.md in proteus.prompts"
        raise PromptError(msg) from None


@lru_cache(maxsize=None)
def load_prompt(name: str) -> PromptTemplate:
    """The checked template ``prompts/<name>.md`` shipped with the package."""
    return parse_prompt(name, _read(name))


@lru_cache(maxsize=None)
def load_text(name: str) -> str:
    """The body of a plain prompt file (front matter stripped), e.g. ``judge_rubric``."""
    _, body = _front_matter(name, _read(name))
    return body.strip()
