"""Pytest fixtures: the tiny GGUF and a real ``llama_cpp.server`` serving it on a free port.

Import them into a test module (``from llm_fixtures.server import tiny_gguf, llama_server``).
Skipped with a reason when ``llama_cpp.server`` is not importable.
"""

from __future__ import annotations

import importlib.util
import socket

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
    from proteus.serve import serve

    log = tmp_path_factory.mktemp("llama") / "server.log"
    server = serve(str(tiny_gguf), engine="llamacpp", port=free_port(), name="tiny", max_model_len=32768, timeout_s=120, log=log)
    try:
        yield server
    finally:
        server.stop()
