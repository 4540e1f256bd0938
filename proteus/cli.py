"""The ``proteus`` command line (typer): run, resume, tools, datasets, report, serve, export-rl, export h5mu, export gguf, train, eval.

Errors a user can act on (no usable data, a locked or changed run directory, a bad tool call)
print one line and exit non-zero, without a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

# Commands whose implementation lives next to what it drives: (module, function, help). They are
# imported when named (or when help lists them), so ``proteus tools run`` never imports the report,
# the evaluation harness, the LLM servers or training.
_LAZY_COMMANDS = {
    "report": ("proteus.report", "report_cli", "Re-render report.html from a run directory (including reviews)."),
    "serve": ("proteus.serve", "serve_cli", "Serve a local model (vLLM on GPU, llama.cpp on CPU) for --model/--base-url."),
    "export-rl": ("proteus.rl_export", "export_rl_cli", "Export model decisions with rewards as RL trajectories (TRL GRPO / verl)."),
    "eval": ("proteus.evals.harness", "eval_cli", "Batch evaluation on published datasets with held-out validation and null controls."),
    "train": ("proteus.train.command", "train_cli", "Tune a local model (GRPO + LoRA) on exported decisions with verifiable rewards; write adapter and GGUF."),
}


_LAZY_EXPORTS = {
    "h5mu": ("proteus.h5mu", "h5mu_cli", "Write RUN_DIR/study.h5mu (MuData: layers, clinical obs, contrast results in varm) for scanpy / muon."),
    "gguf": ("proteus.train.command", "export_gguf_cli", "Merge a LoRA adapter from `proteus train` into its base model; write one GGUF for llama.cpp."),
}


class _LazyCommands(TyperGroup):
    """A group whose commands in ``lazy`` (:data:`_LAZY_COMMANDS`) are built on first use (the
    lazy-loading pattern of click's documentation, with typer building each command)."""

    lazy = _LAZY_COMMANDS

    def list_commands(self, ctx) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in self.lazy if n not in self.commands)]

    def get_command(self, ctx, cmd_name: str):
        if cmd_name in self.lazy and cmd_name not in self.commands:
            import importlib

            module, attr, help_text = self.lazy[cmd_name]
            one = typer.Typer(add_completion=False)
            one.command(cmd_name, help=help_text)(getattr(importlib.import_module(module), attr))
            self.add_command(typer.main.get_command(one), cmd_name)
        return super().get_command(ctx, cmd_name)


class _LazyExports(_LazyCommands):
    lazy = _LAZY_EXPORTS


app = typer.Typer(cls=_LazyCommands, add_completion=False, no_args_is_help=True, help="PROTEUS: autonomous discovery for proteomics and multi-omics.")
tools_app = typer.Typer(no_args_is_help=True, help="List registered tools or run one by hand.")
datasets_app = typer.Typer(no_args_is_help=True, help="Published datasets, written as the raw files a user would have.")
app.add_typer(tools_app, name="tools")
app.add_typer(datasets_app, name="datasets")
export_app = typer.Typer(cls=_LazyExports, no_args_is_help=True, help="Write a run, or a tuned model, in a format other tools read.")
app.add_typer(export_app, name="export")

def _console(stderr: bool = False, **kw):
    """rich's Console, imported where a command prints with it (``tools run`` prints plain text)."""
    from rich.console import Console

    return Console(stderr=stderr, **kw)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _fail(message: str, code: int = 2) -> None:
    # one line however long (soft_wrap), and text from the data (file names, columns) is not markup
    _console(stderr=True).print(f"[bold red]error:[/] {_escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _user_errors():
    from proteus.runner import InputsChangedError, NoResultsError
    from proteus.rundir import RunLockedError
    from proteus.study import NoUsableDataError
    from proteus.policy.llm import PromptDoesNotFit
    from proteus.tools.registry import ToolFailed, ToolInputError

    return (NoUsableDataError, NoResultsError, RunLockedError, InputsChangedError, FileExistsError, FileNotFoundError, ToolInputError, ToolFailed, NotADirectoryError, PromptDoesNotFit)


def _progress(quiet: bool):
    if quiet:
        return lambda msg: None
    console = _console(stderr=True)
    return lambda msg: console.print(f"[cyan]proteus[/] {_escape(msg)}", highlight=False, soft_wrap=True)


@app.command()
def run(
    data: Path = typer.Argument(..., help="folder of raw data files (or one file)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default runs/<data-name>)"),
    model: Optional[str] = typer.Option(None, "--model", help="offline | openai:NAME | anthropic:NAME | vllm:NAME | llamacpp:NAME"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (vllm, llamacpp)"),
    context_tokens: Optional[int] = typer.Option(None, "--context-tokens", help="the model's context in tokens (default: asked of the server)"),
    seed: int = typer.Option(0, "--seed", help="random seed: same data and seed give the same hypotheses"),
    max_objectives: int = typer.Option(8, "--max-objectives", help="cap on planned research objectives"),
    resume: bool = typer.Option(False, "--resume", help="continue a run from its checkpoint"),
    force: bool = typer.Option(False, "--force", help="resume even if the input files changed"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
) -> None:
    """Run the autonomous research loop on DATA and write a run directory."""
    out = out or Path("runs") / Path(data).resolve().name
    try:
        if not Path(data).exists():
            _fail(f"data folder {data} does not exist")
        from proteus.llm import resolve_model
        from proteus.policy import make_policy
        from proteus.runner import run_research

        resolved = resolve_model(model, base_url)  # the model actually used (argument, PROTEUS_MODEL or proteus.toml)
        policy = make_policy(model, base_url, context_tokens=context_tokens)
        info = run_research(
            data, out, policy=policy, seed=seed, resume=resume, force=force, max_objectives=max_objectives, progress=_progress(quiet),
            model_label=resolved["name"], base_url=resolved["base_url"],
        )
    except _user_errors() as e:
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    usage = info.get("usage") or {}
    if usage.get("all_fell_back"):
        reasons = ", ".join(f"{d} {c['fallback']}" for d, c in usage["decided_by"].items())
        _console(stderr=True).print(f"[bold yellow]warning:[/] every model decision fell back to the offline policy ({_escape(reasons)}); see trace.jsonl for why",
                                    highlight=False, soft_wrap=True)
    if not quiet:
        c = info["counts"]
        _console().print(
            f"[green]done[/] in {info['wall_seconds']:.0f} s: {c['objectives']} objectives, {c['steps']} steps, "
            f"{c['relations']} relations, {c['hypotheses']} hypotheses -> {_escape(str(out))}/report.html",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="run directory to continue"),
    force: bool = typer.Option(False, "--force", help="resume even if the input files changed"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Continue a killed or interrupted run from its checkpoint."""
    p = run_dir / "run.json"
    if not p.exists():
        _fail(f"{run_dir} is not a PROTEUS run directory (no run.json)")
    info = json.loads(p.read_text())
    config = info.get("config", {})
    # the run's own model and server (an offline run stays offline whatever PROTEUS_MODEL says)
    run(
        Path(info["data"]), run_dir, info.get("model") or "offline", config.get("base_url"), None,
        info.get("seed", 0), config.get("max_objectives", 8), True, force, quiet,
    )


@tools_app.command("list")
def tools_list() -> None:
    """Print the registered tools with their family and description."""
    from rich.table import Table

    from proteus.tools import list_tools

    t = Table("tool", "family", "needs", "description", show_lines=False)
    for tool in list_tools():
        t.add_row(tool.name, tool.family, ",".join(tool.requires) or "-", tool.description)
    _console(width=200).print(t)


@tools_app.command("run")
def tools_run(
    name: str = typer.Argument(..., help="tool name (see proteus tools list)"),
    data: Path = typer.Option(..., "--data", help="data folder"),
    params: str = typer.Option("{}", "--params", help="tool parameters as JSON"),
    out: Path = typer.Option(Path("out"), "--out", help="output folder for TSV tables and figures"),
    seed: int = typer.Option(0, "--seed"),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="keep the parsed data in the study cache (proteus.study_cache) and parse only the layers (and mutations) the call uses"),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="draw the tool's figures (PNG under OUT/figures); --no-figures writes the tables only"),
) -> None:
    """Run one tool by hand and write its tables (TSV) and figures."""
    from proteus.study_cache import import_anndata_without_dask, load_study_cached
    from proteus.tools import ToolContext, get_tool

    try:
        p = json.loads(params)
    except json.JSONDecodeError as e:
        _fail(f"--params is not valid JSON: {e}")
    try:
        tool = get_tool(name)
        if cache:  # a hit imports no reader, nor anndata (proteus.study_cache.CachedLayer)
            study = load_study_cached(data, layers=_layers_named(tool, p), mutations="mutations" in tool.requires)
        else:
            import_anndata_without_dask()
            from proteus.io import load_study

            study = load_study(data)
        out.mkdir(parents=True, exist_ok=True)
        result = tool(study, p, ToolContext(out_dir=out, seed=seed, figures=figures))
    except _user_errors() as e:
        _fail(str(e).splitlines()[0])
    for tname, table in result.tables.items():
        table.to_csv(out / f"{name}_{tname}.tsv", sep="\t", index=False)
    typer.echo(result.summary)
    typer.echo(f"{len(result.tables)} table(s), {len(result.figures)} figure(s), {len(result.relations)} relation(s) -> {out}")


def _layers_named(tool, params: dict) -> set[str] | None:
    """The layers a tool call names through the registry's layer fields (``modality``,
    ``other_modality``, ``modalities``; defaults included); None (all layers) when a layer field is
    left empty (the tool then picks among all), when none is named, or when the parameters do not
    parse (the tool reports the error with the full study's choices)."""
    from pydantic import ValidationError

    try:
        values = tool.params.model_validate(params).model_dump(mode="json")
    except ValidationError:
        return None
    fields = [k for k in ("modality", "other_modality", "modalities") if k in values]
    if not fields or any(values[k] is None for k in fields):
        return None
    named = {v for k in fields for v in ([values[k]] if isinstance(values[k], str) else values[k])}
    return named or None


@datasets_app.command("list")
def datasets_list() -> None:
    """Published datasets PROTEUS can write offline."""
    from rich.table import Table

    from proteus.datasets import list_datasets

    t = Table("name", "description", "licence", "source")
    for d in list_datasets():
        t.add_row(d.name, d.description, d.licence, d.citation)
    _console(width=200).print(t)


@datasets_app.command("fetch")
def datasets_fetch(name: str = typer.Argument(...), dest: Path = typer.Argument(...)) -> None:
    """Write dataset NAME into DEST as raw files."""
    from proteus.datasets import MissingSourceError, fetch

    try:
        path = fetch(name, dest)
    except (KeyError, MissingSourceError, FileNotFoundError) as e:
        _fail(str(e).strip("'\""))
    _console().print(f"wrote {name} to {path}", highlight=False)


def main() -> None:  # pragma: no cover
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
