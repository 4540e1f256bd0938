"""Serve a local model for ``proteus run --model vllm:NAME`` / ``llamacpp:NAME``.

Two engines, both speaking the OpenAI chat API with schema-constrained decoding:

- ``vllm`` (GPU): ``python -m vllm.entrypoints.openai.api_server`` with the structured-outputs
  backend (``--structured-outputs-config.backend xgrammar``; ``--guided-decoding-backend`` before
  vLLM 0.10.2) and, for RL-tuned adapters, ``--enable-lora --lora-modules NAME=PATH ...``; each
  adapter is then a model name of its own (``--model vllm:NAME``).
- ``llamacpp`` (CPU): ``python -m llama_cpp.server --model FILE.gguf`` (``pip install
  'llama-cpp-python[server]'``); JSON-schema answers are compiled to GBNF grammars.

:func:`serve_command` builds the command line (tested without starting anything); :func:`serve`
checks the engine can run here (vLLM needs the package and a CUDA GPU), starts it, waits for
``/v1/models`` to answer and returns a :class:`Server`. :func:`serve_cli` is the ``proteus serve``
command.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

__all__ = ["ServeError", "Server", "serve_command", "serve", "check_engine", "wait_ready", "serve_cli"]

ENGINES = ("vllm", "llamacpp")


class ServeError(RuntimeError):
    """The engine cannot run here (not installed, no GPU, no model file) or did not come up."""


def _lora_modules(lora: list[str]) -> list[str]:
    out = []
    for item in lora:
        name, sep, path = item.partition("=")
        if not sep:
            path, name = item, Path(item.rstrip("/")).name
        if not name or not path:
            msg = f"--lora {item!r}: expected NAME=PATH"
            raise ValueError(msg)
        out.append(f"{name}={path}")
    return out


def _vllm_version() -> tuple[int, ...] | None:
    try:
        from importlib.metadata import version

        return tuple(int(x) for x in version("vllm").split(".")[:3] if x.isdigit())
    except Exception:  # noqa: BLE001 - not installed or odd version string
        return None


def serve_command(
    model: str,
    *,
    engine: str = "vllm",
    port: int = 8000,
    host: str = "127.0.0.1",
    gpu_memory_utilization: float = 0.9,
    lora: list[str] | None = None,
    max_model_len: int | None = None,
    name: str | None = None,
    structured_backend: str = "xgrammar",
    python: str | None = None,
) -> list[str]:
    """The command line that serves ``model`` with ``engine`` on ``host:port``.

    ``name`` is the served model name (default: the file stem or the last path component), the
    ``NAME`` of ``--model ENGINE:NAME``. ``lora`` entries are ``NAME=PATH`` (vLLM only).
    """
    if engine not in ENGINES:
        msg = f"unknown engine {engine!r}; choose from {ENGINES}"
        raise ValueError(msg)
    py = python or sys.executable
    name = name or served_name(model)
    if engine == "llamacpp":
        if lora:
            msg = "LoRA adapters are served with --engine vllm (merge them into the GGUF for llama.cpp)"
            raise ValueError(msg)
        cmd = [py, "-m", "llama_cpp.server", "--model", str(model), "--host", host, "--port", str(port), "--model_alias", name]
        cmd += ["--n_ctx", str(max_model_len or 16384)]
        return cmd
    cmd = [py, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host", host, "--port", str(port)]
    cmd += ["--served-model-name", name, "--gpu-memory-utilization", str(gpu_memory_utilization)]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    v = _vllm_version()
    if v is not None and v < (0, 10, 2):
        cmd += ["--guided-decoding-backend", structured_backend]
    else:
        cmd += ["--structured-outputs-config.backend", structured_backend]
    if lora:
        cmd += ["--enable-lora", "--max-lora-rank", "64", "--lora-modules", *_lora_modules(lora)]
    return cmd


def served_name(model: str) -> str:
    p = Path(str(model).rstrip("/"))
    return p.stem if p.suffix == ".gguf" else p.name


def _has_gpu() -> str | None:
    """A description of the CUDA GPU(s), or ``None``."""
    if importlib.util.find_spec("torch") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 - broken torch install: fall through to nvidia-smi
            pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
            lines = [x for x in out.stdout.splitlines() if x.startswith("GPU")]
            if out.returncode == 0 and lines:
                return lines[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def check_engine(engine: str, model: str) -> None:
    """Raise :class:`ServeError` saying why ``engine`` cannot serve ``model`` here."""
    if engine == "vllm":
        if importlib.util.find_spec("vllm") is None:
            msg = "vLLM is not installed (pip install vllm; it needs a CUDA GPU). On a CPU use --engine llamacpp with a GGUF file."
            raise ServeError(msg)
        if _has_gpu() is None:
            msg = "vLLM needs a CUDA GPU and none was found (torch.cuda / nvidia-smi). On a CPU use --engine llamacpp with a GGUF file."
            raise ServeError(msg)
    elif engine == "llamacpp":
        if importlib.util.find_spec("llama_cpp") is None:
            msg = "llama.cpp server is not installed: pip install 'llama-cpp-python[server]'"
            raise ServeError(msg)
        if not Path(model).is_file():
            msg = f"llama.cpp serves a GGUF file; {model} is not a file"
            raise ServeError(msg)
    else:
        msg = f"unknown engine {engine!r}; choose from {ENGINES}"
        raise ServeError(msg)


def wait_ready(base_url: str, *, timeout_s: float = 600.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll ``{base_url}/models`` until it answers 200; fail early if ``proc`` exits."""
    import httpx

    deadline = time.monotonic() + timeout_s
    url = base_url.rstrip("/") + "/models"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            msg = f"server exited with code {proc.returncode} before it was ready\n{tail}"
            raise ServeError(msg)
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    msg = f"server at {base_url} not ready after {timeout_s:.0f} s"
    raise ServeError(msg)


@dataclass
class Server:
    """A running model server. ``model_arg`` / ``base_url`` are what ``proteus run`` takes."""

    proc: subprocess.Popen
    engine: str
    name: str
    base_url: str
    log: Path
    adapters: tuple[str, ...] = ()

    @property
    def model_arg(self) -> str:
        return f"{self.engine}:{self.name}"

    def usage_line(self) -> str:
        return f"proteus run DATA --model {self.model_arg} --base-url {self.base_url}"

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    model: str,
    *,
    engine: str = "vllm",
    port: int = 8000,
    host: str = "127.0.0.1",
    gpu_memory_utilization: float = 0.9,
    lora: list[str] | None = None,
    max_model_len: int | None = None,
    name: str | None = None,
    wait: bool = True,
    timeout_s: float = 900.0,
    log: str | Path | None = None,
) -> Server:
    """Start serving ``model`` (see :func:`serve_command`) and, with ``wait``, block until ready.

    Raises :class:`ServeError` when the engine cannot run here or the server does not come up.
    Server output goes to ``log`` (default ``proteus-serve-<engine>-<port>.log`` in the working
    directory).
    """
    check_engine(engine, model)
    cmd = serve_command(model, engine=engine, port=port, host=host, gpu_memory_utilization=gpu_memory_utilization, lora=lora, max_model_len=max_model_len, name=name)
    log_path = Path(log or f"proteus-serve-{engine}-{port}.log")
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://{host}:{port}/v1"
    server = Server(proc, engine, name or served_name(model), base, log_path, tuple(m.split("=")[0] for m in _lora_modules(lora or [])))
    if wait:
        try:
            wait_ready(base, timeout_s=timeout_s, proc=proc, log=log_path)
        except BaseException:
            server.stop()
            raise
    return server


def serve_cli(
    model: str = typer.Argument(..., help="model to serve: a Hugging Face id or folder (vllm) or a .gguf file (llamacpp)"),
    engine: str = typer.Option("vllm", "--engine", help="vllm (GPU) | llamacpp (CPU, GGUF)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8000, "--port", help="port to listen on"),
    lora: Optional[list[str]] = typer.Option(None, "--lora", help="LoRA adapter NAME=PATH (repeatable; vllm only)"),
    gpu_memory_utilization: float = typer.Option(0.9, "--gpu-memory-utilization", help="fraction of GPU memory vLLM may use"),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="context length (llama.cpp default 16384)"),
    name: Optional[str] = typer.Option(None, "--name", help="served model name (default: file stem / folder name)"),
    timeout: float = typer.Option(900.0, "--timeout", help="seconds to wait for the server to be ready"),
) -> None:
    """Serve a local model for `proteus run --model vllm:NAME` or `--model llamacpp:NAME`."""
    try:
        server = serve(model, engine=engine, port=port, host=host, gpu_memory_utilization=gpu_memory_utilization, lora=lora or [], max_model_len=max_model_len, name=name, timeout_s=timeout)
    except (ServeError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"serving {model} with {engine} at {server.base_url} (log: {server.log})")
    typer.echo(f"use: {server.usage_line()}")
    for a in server.adapters:
        typer.echo(f"  adapter: proteus run DATA --model {engine}:{a} --base-url {server.base_url}")
    try:
        server.proc.wait()
    except KeyboardInterrupt:
        server.stop()
