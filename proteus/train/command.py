"""The ``proteus train`` and ``proteus export gguf`` commands (import nothing heavy until they run)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from proteus.train import INSTALL_HINT, missing_packages

__all__ = ["train_cli", "export_gguf_cli"]


def train_cli(
    trajectories: list[Path] = typer.Argument(..., help="JSONL files written by `proteus export-rl`"),
    base: Path = typer.Option(..., "--base", help="base model: a Hugging Face model folder or a .gguf file"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for adapter/, model.gguf and train.json"),
    steps: int = typer.Option(20, "--steps", help="GRPO optimisation steps"),
    num_generations: int = typer.Option(4, "--num-generations", help="answers sampled per prompt"),
    learning_rate: float = typer.Option(2e-4, "--learning-rate", help="learning rate of the LoRA weights"),
    lora_rank: int = typer.Option(16, "--lora-rank", help="LoRA rank"),
    max_prompt_tokens: int = typer.Option(2048, "--max-prompt-tokens", help="leave out longer prompts (never cut)"),
    max_completion_tokens: int = typer.Option(256, "--max-completion-tokens", help="longest sampled answer"),
    held_out: float = typer.Option(0.25, "--held-out", help="fraction of prompts kept for the before/after evaluation"),
    sft_epochs: float = typer.Option(0, "--sft-epochs", help="supervised warm start on the training prompts' reference answers (epochs; 0: none)"),
    budget_s: Optional[float] = typer.Option(None, "--budget-s", help="stop training early enough to evaluate and save within this many seconds"),
    train_s: Optional[float] = typer.Option(None, "--train-s", help="seconds of training (warm start + GRPO), evaluations not counted"),
    decision: Optional[list[str]] = typer.Option(None, "--decision", help="train on these decisions only (repeatable)"),
    constrained: bool = typer.Option(True, "--constrained/--unconstrained", help="sample answers under the grammar llama.cpp serves each decision with (needs the base's GGUF)"),
    dynamic_sampling: int = typer.Option(0, "--dynamic-sampling", help="most groups sampled per step until one scores unevenly (0: off, the default)"),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="start from this trained LoRA adapter (OUT/adapter of an earlier run; --steps 0 evaluates it)"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Tune a local model (GRPO + LoRA) on exported decisions with rewards the data verifies."""
    _require_train_extra("proteus train")
    import time

    from proteus.train.grpo import train

    try:
        s = train(
            trajectories, base, out, steps=steps, num_generations=num_generations, learning_rate=learning_rate, lora_rank=lora_rank,
            max_prompt_tokens=max_prompt_tokens, max_completion_tokens=max_completion_tokens, held_out=held_out, decisions=decision, seed=seed,
            sft_epochs=sft_epochs, deadline=None if budget_s is None else time.time() + budget_s, train_s=train_s, constrained=constrained,
            dynamic_sampling=dynamic_sampling, adapter=adapter,
        )
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    ho = s.get("held_out")
    if ho:
        c = ho["change"]
        low = f"{c['low']:+.3f}" if c["low"] is not None else "-"
        high = f"{c['high']:+.3f}" if c["high"] is not None else "-"
        typer.echo(f"held-out mean reward {ho['before']['mean']:.3f} -> {ho['after']['mean']:.3f} (change {c['mean']:+.3f}, 95% CI {low} .. {high}, n={c['n']})")
    typer.echo(f"adapter: {out / 'adapter'}  (proteus serve BASE --lora tuned={out / 'adapter'})")
    if s.get("gguf"):
        typer.echo(f"gguf: {s['gguf']}  (proteus serve {s['gguf']} --engine llamacpp --name tuned; proteus run DATA --model llamacpp:tuned)")


def export_gguf_cli(
    adapter: Path = typer.Option(..., "--adapter", help="LoRA adapter folder written by `proteus train` (OUT/adapter)"),
    base: Path = typer.Option(..., "--base", help="the base model it was trained on: a .gguf file or a Hugging Face model folder"),
    out: Path = typer.Option(..., "--out", "-o", help="the .gguf file to write"),
    template: Optional[Path] = typer.Option(None, "--template", help="a GGUF with the base's vocabulary, when --base is a folder without one"),
) -> None:
    """Merge a LoRA adapter into its base model and write one GGUF file for llama.cpp."""
    _require_train_extra("proteus export gguf")
    from proteus.train.gguf_export import export_gguf

    try:
        path = export_gguf(adapter, base, out, template=template)
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)  (proteus serve {path} --engine llamacpp --name tuned; proteus run DATA --model llamacpp:tuned)")


def _require_train_extra(command: str) -> None:
    """Exit 2 with the one-line install hint when the [train] extra is missing."""
    missing = missing_packages()
    if missing:
        typer.echo(f"error: {command} needs {', '.join(missing)}: {INSTALL_HINT}", err=True)
        raise typer.Exit(2)
