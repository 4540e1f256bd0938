"""`proteus serve`: command lines per engine, refusals with reasons, a real llama.cpp server."""

from __future__ import annotations

import httpx
import pytest
import typer
from llm_fixtures.server import llama_server, needs_llama, tiny_gguf  # noqa: F401  (fixtures)
from typer.testing import CliRunner

import proteus.serve as ps
from proteus.serve import ServeError, check_engine, serve_cli, serve_command


def test_vllm_command_with_lora_and_structured_outputs():
    cmd = serve_command("Qwen/Qwen2.5-7B-Instruct", engine="vllm", port=8123, lora=["grpo=/ckpt/grpo-step-500", "/ckpt/sft"], max_model_len=16384, gpu_memory_utilization=0.8)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    s = " ".join(cmd)
    assert "--model Qwen/Qwen2.5-7B-Instruct" in s and "--port 8123" in s and "--host 127.0.0.1" in s
    assert "--served-model-name Qwen2.5-7B-Instruct" in s
    assert "--gpu-memory-utilization 0.8" in s and "--max-model-len 16384" in s
    assert "--enable-lora" in cmd
    i = cmd.index("--lora-modules")
    assert cmd[i + 1 : i + 3] == ["grpo=/ckpt/grpo-step-500", "sft=/ckpt/sft"]
    assert "--structured-outputs-config.backend" in cmd or "--guided-decoding-backend" in cmd


def test_llamacpp_command():
    cmd = serve_command("/models/tiny.gguf", engine="llamacpp", port=9001, host="127.0.0.1")
    assert cmd[1:] == ["-m", "llama_cpp.server", "--model", "/models/tiny.gguf", "--host", "127.0.0.1", "--port", "9001", "--model_alias", "tiny", "--n_ctx", "16384"]
    with pytest.raises(ValueError, match="vllm"):
        serve_command("/models/tiny.gguf", engine="llamacpp", lora=["a=b"])
    with pytest.raises(ValueError, match="unknown engine"):
        serve_command("m", engine="tgi")


def test_vllm_refused_without_package_or_gpu(monkeypatch):
    real = ps.importlib.util.find_spec
    monkeypatch.setattr(ps.importlib.util, "find_spec", lambda n, *a: None if n == "vllm" else real(n, *a))
    with pytest.raises(ServeError, match="not installed"):
        check_engine("vllm", "Qwen/Qwen2.5-7B-Instruct")
    monkeypatch.setattr(ps.importlib.util, "find_spec", lambda n, *a: object() if n == "vllm" else real(n, *a))
    monkeypatch.setattr(ps, "_has_gpu", lambda: None)
    with pytest.raises(ServeError, match="CUDA GPU"):
        check_engine("vllm", "Qwen/Qwen2.5-7B-Instruct")


def test_llamacpp_needs_a_file(tmp_path):
    with pytest.raises(ServeError):
        check_engine("llamacpp", str(tmp_path / "missing.gguf"))


def test_cli_reports_refusal():
    app = typer.Typer()
    app.command("serve")(serve_cli)
    res = CliRunner().invoke(app, ["/no/such/model.gguf", "--engine", "llamacpp"])
    assert res.exit_code == 2 and "error:" in res.output


@needs_llama
def test_real_llamacpp_server_lists_the_model(llama_server):  # noqa: F811
    r = httpx.get(llama_server.base_url + "/models", timeout=10)
    assert r.status_code == 200 and any(m["id"] == "tiny" for m in r.json()["data"])
    assert llama_server.usage_line().endswith(f"--model llamacpp:tiny --base-url {llama_server.base_url}")
